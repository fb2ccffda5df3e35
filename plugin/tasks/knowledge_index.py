"""Retrieval of similar resolved tickets: an in-memory matrix of question embeddings per tenant.

The store (``deskpilot.store.knowledge.KnowledgeRepository``) is the truth; the index is a
cache that follows it by id (``entries_since(last_id)``) and rebuilds itself when the row
counts disagree (a deletion, or a row committed out of id order by another process). The
core cannot import the store (sibling layers), so the store is a protocol here.

Snapshots are copy-on-write: a search works on the arrays it started with while a refresh
builds new ones, so readers never take a lock and never see a half-applied update.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from deskpilot.errors import InputDataError
from deskpilot.types import KnowledgeItem, StoredKnowledge

log = logging.getLogger("deskpilot.respond")

MEMORY_TENANT = "default"
"""The tenant of an index built with :meth:`KnowledgeIndex.from_pairs` unless another is named."""
Origin = str  # "import" | "feedback" | "resolved" (checked by the store)
_QUERY_CACHE = 64


class Embedder(Protocol):
    """A sentence encoder (``deskpilot.adapters.embedder.SentenceEmbedder`` in production).

    ``embed`` returns one L2-normalised float32 row per text, so a dot product is a cosine.
    ``name`` identifies the encoder: vectors of another encoder are recomputed, not compared.
    """

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]: ...


class KnowledgeStore(Protocol):
    """What the index needs of persistence (``KnowledgeRepository`` provides it)."""

    def add(self, tenant: str, entries: Sequence[KnowledgeItem]) -> list[int]: ...
    def entries_since(self, tenant: str, after_id: int = 0) -> Sequence[StoredKnowledge]: ...
    def count(self, tenant: str) -> int: ...
    def delete(self, tenant: str, source_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved resolved ticket; ``score`` is the cosine similarity of the questions."""

    source_id: str
    question: str
    answer: str
    label: str | None
    score: float


@dataclass(frozen=True, slots=True)
class _Snapshot:
    matrix: NDArray[np.float32]  # (n, d), rows L2-normalised
    source_ids: tuple[str, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    labels: NDArray[np.object_]
    last_id: int = 0
    refreshed_at: float = float("-inf")

    def __len__(self) -> int:
        return len(self.source_ids)


def _empty(dim: int = 0) -> _Snapshot:
    return _Snapshot(np.zeros((0, dim), np.float32), (), (), (), np.array([], dtype=object))


def normalise(vectors: NDArray[np.floating] | Sequence[Sequence[float]]) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero): a defence against a sloppy embedder."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def _merge(
    snap: _Snapshot, items: Sequence[tuple[str, str, str, str | None]], vectors: NDArray[np.float32]
) -> _Snapshot:
    """``snap`` with ``items`` added; an existing source id is replaced where it stands."""
    if len(snap) and snap.matrix.shape[1] != vectors.shape[1]:
        raise InputDataError(
            f"embedding width {vectors.shape[1]} does not match the index ({snap.matrix.shape[1]})"
        )
    position = {sid: i for i, sid in enumerate(snap.source_ids)}
    matrix = snap.matrix.copy() if len(snap) else np.zeros((0, vectors.shape[1]), np.float32)
    source_ids, questions, answers = list(snap.source_ids), list(snap.questions), list(snap.answers)
    labels = list(snap.labels)
    new_rows: list[NDArray[np.float32]] = []
    for (source_id, question, answer, label), vector in zip(items, vectors, strict=True):
        at = position.get(source_id)
        if at is None:
            position[source_id] = len(source_ids)
            source_ids.append(source_id)
            questions.append(question)
            answers.append(answer)
            labels.append(label)
            new_rows.append(vector)
        elif at < len(matrix):
            matrix[at], questions[at], answers[at], labels[at] = vector, question, answer, label
        else:  # added earlier in this same batch
            new_rows[at - len(matrix)] = vector
            questions[at], answers[at], labels[at] = question, answer, label
    if new_rows:
        matrix = np.concatenate([matrix, np.stack(new_rows)]).astype(np.float32, copy=False)
    return replace(
        snap,
        matrix=matrix,
        source_ids=tuple(source_ids),
        questions=tuple(questions),
        answers=tuple(answers),
        labels=np.array(labels, dtype=object),
    )


class KnowledgeIndex:
    """Nearest resolved tickets per tenant, from the store or (``from_pairs``) from memory only.

    With a store, a search first pulls rows it has not seen when the last refresh is older than
    ``refresh_interval_s``; :meth:`remember` and :meth:`refresh` update at once.
    """

    def __init__(
        self, embedder: Embedder, store: KnowledgeStore | None = None, *, refresh_interval_s: float = 2.0
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.refresh_interval_s = refresh_interval_s
        self._snapshots: dict[str, _Snapshot] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._queries: OrderedDict[str, NDArray[np.float32]] = OrderedDict()

    @classmethod
    def from_pairs(
        cls,
        questions: Sequence[str],
        answers: Sequence[str],
        ids: Sequence[str] | None,
        embedder: Embedder,
        *,
        labels: Sequence[str | None] | None = None,
        tenant: str = MEMORY_TENANT,
    ) -> KnowledgeIndex:
        """A store-less index (evaluation, training); ``ids`` default to ``"kb:<row>"``."""
        if len(questions) != len(answers) or (ids is not None and len(ids) != len(questions)):
            raise InputDataError("questions, answers and ids must have the same length")
        if labels is not None and len(labels) != len(questions):
            raise InputDataError("labels must have one entry per question")
        index = cls(embedder)
        items = [
            KnowledgeItem(
                source_id=ids[i] if ids is not None else f"kb:{i}",
                question=questions[i],
                answer=answers[i],
                label=labels[i] if labels is not None else None,
            )
            for i in range(len(questions))
        ]
        index.add(tenant, items)
        return index

    # --- embedding ---------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, 0), np.float32)
        vectors = normalise(self.embedder.embed(list(texts)))
        if vectors.shape[0] != len(texts):
            raise InputDataError(f"the embedder returned {vectors.shape[0]} vectors for {len(texts)} texts")
        return vectors

    def _query_vector(self, text: str) -> NDArray[np.float32]:
        """Embeddings of recent queries are kept: a responder asks about one ticket more than once."""
        with self._guard:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
        vector = np.asarray(self.embed([text])[0], dtype=np.float32)
        with self._guard:
            self._queries[text] = vector
            while len(self._queries) > _QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    # --- state ---------------------------------------------------------------------------------
    def _lock(self, tenant: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(tenant, threading.Lock())

    def _snapshot(self, tenant: str) -> _Snapshot:
        snap = self._snapshots.get(tenant)
        if self.store is None:
            return snap if snap is not None else _empty()
        if snap is None or time.monotonic() - snap.refreshed_at >= self.refresh_interval_s:
            self.refresh(tenant)
            snap = self._snapshots[tenant]
        return snap

    def size(self, tenant: str) -> int:
        return len(self._snapshot(tenant))

    def refresh(self, tenant: str, *, full: bool = False) -> int:
        """Pull new rows from the store (everything when ``full``); returns the entry count."""
        if self.store is None:
            return len(self._snapshots.get(tenant, _empty()))
        with self._lock(tenant):
            snap = self._snapshots.get(tenant)
            if full or snap is None:
                snap = self._apply(tenant, _empty(), self.store.entries_since(tenant, 0))
            else:
                snap = self._apply(tenant, snap, self.store.entries_since(tenant, snap.last_id))
                if self.store.count(tenant) != len(snap):
                    log.info("knowledge index for %s out of step with the store: rebuilding", tenant)
                    snap = self._apply(tenant, _empty(), self.store.entries_since(tenant, 0))
            snap = replace(snap, refreshed_at=time.monotonic())
            self._snapshots[tenant] = snap
            return len(snap)

    def _apply(self, tenant: str, snap: _Snapshot, rows: Sequence[StoredKnowledge]) -> _Snapshot:
        if not rows:
            return snap
        name = self.embedder.name
        vectors: list[NDArray[np.float32] | None] = []
        for row in rows:
            stored = np.frombuffer(row.embedding, dtype="<f4") if row.embedding_model == name else None
            width = snap.matrix.shape[1] if len(snap) else None
            usable = stored is not None and stored.size > 0 and (width is None or stored.size == width)
            vectors.append(stored.astype(np.float32) if usable and stored is not None else None)
        stale = [i for i, v in enumerate(vectors) if v is None]
        if stale:
            log.info("re-embedding %d knowledge entries of %s for %s", len(stale), tenant, name)
            fresh = self.embed([rows[i].question for i in stale])
            for i, vector in zip(stale, fresh, strict=True):
                vectors[i] = vector
            # kept, so the next process does not embed them again (ids stay: no index sees a change)
            write_back = getattr(self.store, "set_embeddings", None)
            if callable(write_back):
                write_back(
                    tenant,
                    {rows[i].id: v.astype("<f4").tobytes() for i, v in zip(stale, fresh, strict=True)},
                    name,
                )
        matrix = normalise(np.stack([v for v in vectors if v is not None]))
        items = [(r.source_id, r.question, r.answer, r.label) for r in rows]
        merged = _merge(snap, items, matrix)
        return replace(merged, last_id=max(snap.last_id, max(r.id for r in rows)))

    # --- writing -------------------------------------------------------------------------------
    def add(self, tenant: str, items: Sequence[KnowledgeItem]) -> None:
        """Embed and add entries (to the store too, when there is one); a known source id is replaced."""
        if not items:
            return
        for item in items:
            if not item.source_id or not item.question.strip() or not item.answer.strip():
                raise InputDataError(
                    f"knowledge entry {item.source_id!r} needs a source id, question and answer"
                )
        vectors = self.embed([item.question for item in items])
        if self.store is not None:
            encoded = [
                replace(item, embedding=v.astype("<f4").tobytes(), embedding_model=self.embedder.name)
                for item, v in zip(items, vectors, strict=True)
            ]
            self.store.add(tenant, encoded)
            self.refresh(tenant)
            return
        with self._lock(tenant):
            snap = self._snapshots.get(tenant, _empty())
            rows = [(i.source_id, i.question, i.answer, i.label) for i in items]
            self._snapshots[tenant] = _merge(snap, rows, vectors)

    def remember(
        self,
        tenant: str,
        question: str,
        answer: str,
        source_id: str,
        label: str | None = None,
        origin: Origin = "feedback",
        ticket_id: int | None = None,
    ) -> None:
        """One accepted or edited reply; searchable as soon as this returns."""
        self.add(tenant, [KnowledgeItem(source_id, question, answer, label, origin, ticket_id)])

    def forget(self, tenant: str, source_id: str) -> bool:
        """Remove an entry (from the store too); True when it existed."""
        if self.store is not None:
            found = self.store.delete(tenant, source_id)
            self.refresh(tenant)
            return found
        with self._lock(tenant):
            snap = self._snapshots.get(tenant, _empty())
            if source_id not in snap.source_ids:
                return False
            keep = [i for i, sid in enumerate(snap.source_ids) if sid != source_id]
            self._snapshots[tenant] = replace(
                snap,
                matrix=snap.matrix[keep],
                source_ids=tuple(snap.source_ids[i] for i in keep),
                questions=tuple(snap.questions[i] for i in keep),
                answers=tuple(snap.answers[i] for i in keep),
                labels=snap.labels[keep],
            )
            return True

    # --- reading -------------------------------------------------------------------------------
    def search(
        self,
        tenant: str,
        text: str,
        k: int = 3,
        floor: float | None = None,
        label: str | None = None,
    ) -> list[Hit]:
        """The ``k`` most similar entries with a similarity of at least ``floor``, best first.

        With ``label`` (the routing decision's class), entries of that class come first and the
        others only fill the remaining places: an answer from the right queue beats a slightly
        closer one from another, but an empty class never leaves the responder empty-handed.
        """
        if k < 1:
            return []
        snap = self._snapshot(tenant)
        if not len(snap):
            return []
        return self._rank(snap, self._query_vector(text), k, floor, label)

    def best_similarity(self, tenant: str, text: str) -> float | None:
        """The similarity of the nearest entry, whatever it is (None for an empty index)."""
        hits = self.search(tenant, text, k=1)
        return hits[0].score if hits else None

    @staticmethod
    def _rank(
        snap: _Snapshot, query: NDArray[np.float32], k: int, floor: float | None, label: str | None
    ) -> list[Hit]:
        if query.shape[0] != snap.matrix.shape[1]:
            raise InputDataError(
                f"query embedding width {query.shape[0]} does not match the index ({snap.matrix.shape[1]})"
            )
        scores = snap.matrix @ query
        eligible = np.ones(len(snap), dtype=bool) if floor is None else scores >= floor
        groups = [eligible]
        if label is not None:
            same = eligible & (snap.labels == label)
            groups = [same, eligible & ~same]
        chosen: list[int] = []
        for group in groups:
            room = k - len(chosen)
            candidates = np.flatnonzero(group)
            if room <= 0 or not candidates.size:
                continue
            if candidates.size > room:
                top = np.argpartition(-scores[candidates], room - 1)[:room]
                candidates = candidates[top]
            # ties broken by position: the older entry first, so results are stable
            order = sorted(candidates.tolist(), key=lambda i: (-float(scores[i]), i))
            chosen.extend(order)
        return [
            Hit(
                source_id=snap.source_ids[i],
                question=snap.questions[i],
                answer=snap.answers[i],
                label=snap.labels[i],
                score=float(scores[i]),
            )
            for i in chosen
        ]
