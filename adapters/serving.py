"""Serving engine: one copy of each base model, many LoRA classifier adapters.

Adapters are loaded on demand and evicted least recently used beyond a bound. The
champion is looked up per request (a ``stat`` of its pointer, the JSON re-read only when
the file changed), so a promotion is picked up by the next request without a restart;
in-flight requests finish on the version they started with because each holds its own
head tensors and the forward pass runs under the base's lock.

Two backends compute the embeddings, with the same result:

- BERT-family bases (the default encoder included) use
  :class:`~deskpilot.adapters.fastencoder.FastEncoder`: packed sequences (no padding in
  the linear layers), fused QKV, per-adapter LoRA segments for mixed batches, merged
  weights for a pass that serves one adapter, bf16 weights where the CPU has native bf16
  (``bf16="auto"``: AMX or AVX512-BF16), all under ``torch.inference_mode``;
- anything else (another architecture, a LoRA variant the fast path does not know)
  goes through PEFT (``adapter_names`` for mixed batches), as before.

:meth:`Engine.similar` finds the training rows closest to a text (a decision's explanation)
in the embedding space the out-of-scope similarity uses: one forward pass, then a product
with the adapter's ``examples.safetensors``, loaded on first use (``predict`` never reads it).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deskpilot.adapters import examples
from deskpilot.adapters.catalog import BaseModel, resolve
from deskpilot.adapters.classifier import HEAD_FILE, data_hash
from deskpilot.adapters.encoding import embed, load_encoder, load_tokenizer, tokenize
from deskpilot.adapters.fastencoder import FastEncoder, supports
from deskpilot.adapters.hardware import configure_threads, server_threads, tune_malloc, use_bf16
from deskpilot.adapters.registry import CARD, CHAMPION, AdapterCard, Registry
from deskpilot.config import Settings
from deskpilot.errors import AdapterNotFoundError, DeskpilotError, InputDataError
from deskpilot.types import AdapterSummary, Alternative, Prediction

TOP_K = 3
FAST = "fast"
PEFT = "peft"


logger = logging.getLogger("deskpilot.serving")


@dataclass
class _Head:
    """What a loaded adapter needs beyond its LoRA weights."""

    key: str
    card: AdapterCard
    weight: torch.Tensor
    bias: torch.Tensor
    temperature: float
    threshold: float
    max_length: int
    centroids: torch.Tensor | None = None
    similarity_threshold: float = 0.0
    backend: str = PEFT


class _Base:
    """One base encoder, its fast path (if it has one), its PEFT wrapper (made on demand)
    and the adapters currently resident."""

    def __init__(self, base: BaseModel, *, fast: bool = True, dtype: torch.dtype = torch.float32) -> None:
        self.base = base
        self.tokenizer = load_tokenizer(base)
        self.encoder = load_encoder(base)
        self.fast = FastEncoder(self.encoder, dtype=dtype) if fast and supports(self.encoder) else None
        if self.fast is not None:
            self.fast.warm()
        self.peft: Any = None
        self.lock = threading.RLock()
        self.resident: OrderedDict[str, _Head] = OrderedDict()

    def attach(self, key: str, path: Path) -> str:
        """Load an adapter's LoRA weights; returns the backend that will serve it."""
        if self.fast is not None and self.fast.load(key, path):
            return FAST
        from peft import PeftModel

        if self.peft is None:
            self.peft = PeftModel.from_pretrained(
                self.encoder, str(path), adapter_name=key, is_trainable=False
            )
        else:
            self.peft.load_adapter(str(path), adapter_name=key, is_trainable=False)
        self.peft.eval()
        return PEFT

    def has(self, head: _Head) -> bool:
        if head.backend == FAST:
            return self.fast is not None and (head.key in self.fast.adapters or head.key in self.fast.bare)
        return self.peft is not None and head.key in self.peft.peft_config

    def adapter_names(self) -> set[str]:
        """Adapters whose weights are loaded, in either backend."""
        names = set(self.fast.adapters) | self.fast.bare if self.fast is not None else set()
        return names | (set(self.peft.peft_config) if self.peft is not None else set())

    def detach(self, key: str) -> None:
        if self.fast is not None:
            self.fast.remove(key)
        # the last PEFT adapter stays: PEFT cannot run without an active one
        if self.peft is not None and key in self.peft.peft_config and len(self.peft.peft_config) > 1:
            if self.peft.active_adapter == key:
                self.peft.set_adapter(next(k for k in self.peft.peft_config if k != key))
            self.peft.delete_adapter(key)


@dataclass(frozen=True, slots=True)
class Request:
    """One classification request, as queued by the micro-batcher."""

    tenant: str
    task: str
    texts: Sequence[str]
    version: str | None = None
    abstain: bool = True


def adapter_key(card: AdapterCard) -> str:
    # PEFT adapter names become module keys: no dots or slashes
    return f"{card.tenant}__{card.task}__{card.version}"


class _CardCache:
    """Registry reads, re-done only when a file changed (``stat``: mtime, inode, size).

    Promotion and card updates replace files atomically (a new inode), so a changed
    champion is seen by the very next request, as with an uncached read.
    """

    def __init__(self, registry: Registry, limit: int = 4096) -> None:
        self.registry = registry
        self.limit = limit
        self._entries: dict[Path, tuple[tuple[int, int, int], Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, path: Path, read: Any) -> Any:
        try:
            st = path.stat()
        except OSError:
            return read()  # the registry raises the right error (or finds it after all)
        signature = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            hit = self._entries.get(path)
        if hit is not None and hit[0] == signature:
            return hit[1]
        value = read()
        with self._lock:
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[path] = (signature, value)
        return value

    def card(self, tenant: str, task: str, version: str | None) -> AdapterCard:
        if version is None:
            pointer = self.registry.task_dir(tenant, task) / CHAMPION
            version = self._cached(pointer, lambda: self.registry.champion_version(tenant, task))
            if version is None:
                return self.registry.card(tenant, task, None)  # raises "no adapter is registered"
        path = self.registry.path(tenant, task, version) / CARD
        card: AdapterCard = self._cached(path, lambda: self.registry.card(tenant, task, version))
        return card


class Engine:
    """Implements :class:`deskpilot.tasks.classify.Predictor` over the on-disk registry.

    ``bf16``: ``"auto"`` keeps the fast path's weights in bfloat16 where the CPU multiplies
    it natively, ``"on"``/``"off"`` force it; the default is exact fp32 (servers pass the
    ``DESKPILOT_BF16`` setting, see :meth:`from_settings`). ``fast=False`` serves every
    adapter through PEFT. ``keep_freed_memory`` lets glibc keep freed memory for the next pass
    (process-wide, see :func:`~deskpilot.adapters.hardware.tune_malloc`).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_resident: int = 64,
        batch_size: int = 64,
        threads: int | None = None,
        bf16: str = "off",
        fast: bool = True,
        keep_freed_memory: bool = True,
    ) -> None:
        if keep_freed_memory:
            tune_malloc()
        self.registry = registry
        self.max_resident = max_resident
        self.batch_size = batch_size
        self._threads = threads
        self.fast = fast
        self.dtype = torch.bfloat16 if use_bf16(bf16) else torch.float32
        self._bases: dict[str, _Base] = {}
        self._cards = _CardCache(registry)
        self._examples = examples.ExampleCache(limit=8)
        self._lock = threading.RLock()
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, *, warm: bool = True) -> Engine:
        """The engine a server runs (``deskpilot serve``, ``deskpilot worker``)."""
        engine = cls(
            Registry(settings.adapters_dir),
            max_resident=settings.max_adapters_resident,
            batch_size=settings.engine_batch_texts,
            threads=server_threads(settings.threads),
            bf16=settings.bf16,
            keep_freed_memory=settings.malloc_tuning,
        )
        if warm:
            engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Load every champion so the first request is fast; marks the engine ready."""
        configure_threads(self._threads)
        for tenant in self.registry.tenants():
            for task in self.registry.tasks(tenant):
                if self.registry.champion_version(tenant, task):
                    try:
                        self._head(tenant, task, None)
                    except (AdapterNotFoundError, InputDataError):
                        continue
        self._ready = True

    def ready(self) -> bool:
        return self._ready

    def describe(self) -> dict[str, Any]:
        """How the loaded bases are served (for benchmarks and logs)."""
        return {
            name: {
                "backend": FAST if b.fast is not None else PEFT,
                "dtype": str(self.dtype).removeprefix("torch."),
                "resident": len(b.resident),
                "merged": b.fast.merged_key if b.fast is not None else None,
            }
            for name, b in self._bases.items()
        }

    # --- Predictor -------------------------------------------------------------------
    def adapters(self, tenant: str) -> list[AdapterSummary]:
        out: list[AdapterSummary] = []
        for task in self.registry.tasks(tenant):
            champion = self.registry.champion_version(tenant, task)
            for card in self.registry.versions(tenant, task):
                metrics = card.metrics.get("eval") or card.metrics.get("validation") or {}
                out.append(
                    AdapterSummary(
                        tenant=tenant,
                        task=task,
                        version=card.version,
                        champion=card.version == champion,
                        base_model=card.base_model,
                        labels=tuple(card.labels),
                        metrics={k: v for k, v in metrics.items() if isinstance(v, int | float) or v is None},
                        created_at=card.created_at,
                    )
                )
        return out

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        (result,) = self.predict_many([Request(tenant, task, texts, version, abstain)])
        if isinstance(result, Exception):
            raise result
        return result

    def predict_many(
        self, requests: Sequence[Request], *, embeddings: dict[int, torch.Tensor] | None = None
    ) -> list[list[Prediction] | DeskpilotError]:
        """Answer several requests; those on one base share forward passes.

        Rows of different adapters go through the encoder together (one pass, each row
        with its own LoRA); each request then gets its own head, calibration and
        thresholds. A request that cannot be served (unknown task, say) gets its error in
        place of a result. ``embeddings``, when given, receives each served request's encoder
        embeddings by request index (what :meth:`explain` searches the examples with).
        """
        results: list[list[Prediction] | DeskpilotError] = [[] for _ in requests]
        groups: dict[str, list[tuple[int, _Head]]] = {}
        for i, request in enumerate(requests):
            if not request.texts:
                continue
            try:
                head, base = self._head(request.tenant, request.task, request.version)
            except DeskpilotError as exc:
                results[i] = exc
                continue
            groups.setdefault(base.base.name, []).append((i, head))
        for name, items in groups.items():
            base = self._base(name)
            # never more distinct adapters in one pass than may be resident at once
            chunks: list[list[tuple[int, _Head]]] = [[]]
            keys: set[str] = set()
            for item in items:
                if item[1].key not in keys and len(keys) >= self.max_resident:
                    chunks.append([])
                    keys = set()
                keys.add(item[1].key)
                chunks[-1].append(item)
            for chunk in chunks:
                self._run_chunk(base, chunk, requests, results, embeddings)
        return results

    def probabilities(
        self, tenant: str, task: str, texts: Sequence[str], *, version: str | None = None
    ) -> tuple[list[str], torch.Tensor]:
        """Calibrated class probabilities, for evaluation and reports."""
        head, base = self._head(tenant, task, version)
        emb = self._embed(base, [(head, tokenize(base.tokenizer, texts, head.max_length))])
        return head.card.labels, self._head_scores(head, emb)[0]

    def similar(
        self, tenant: str, task: str, text: str, *, k: int = 3, version: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` training rows most like ``text`` (``text``, ``label``, cosine ``score``), so a
        person can see why a decision went its way; [] for adapters that kept none (trained
        before ``examples.safetensors``, or without ``train.jsonl``)."""
        if k < 1 or not text:
            return []
        head, base = self._head(tenant, task, version)
        # the same embedding _head_scores compares with the centroids
        emb = self._embed(base, [(head, tokenize(base.tokenizer, [text], head.max_length))])
        return self._search(head, emb[0], k)

    def explain(
        self, tenant: str, tasks: Sequence[str], text: str, *, k: int = 3
    ) -> dict[str, tuple[Prediction, list[dict[str, Any]]] | DeskpilotError]:
        """Each task's prediction for ``text`` with its ``k`` most similar training rows.

        One encoder pass for all the tasks (a mixed-adapter batch), and the similar rows are
        found with the embedding the prediction used: a worker routing a ticket on several
        tasks pays for one forward, not one per task and another per explanation.
        """
        requests = [Request(tenant, task, [text]) for task in tasks]
        rows: dict[int, torch.Tensor] = {}
        results = self.predict_many(requests, embeddings=rows)
        out: dict[str, tuple[Prediction, list[dict[str, Any]]] | DeskpilotError] = {}
        for i, (task, result) in enumerate(zip(tasks, results, strict=True)):
            if isinstance(result, DeskpilotError):
                out[task] = result
                continue
            similar: list[dict[str, Any]] = []
            try:
                head, _ = self._head(tenant, task, result[0].adapter_version)
                similar = self._search(head, rows[i][0], k) if k > 0 and text else []
            except Exception:  # an explanation must never fail a prediction
                logger.warning("similar-row lookup failed for %s/%s", tenant, task, exc_info=True)
            out[task] = (result[0], similar)
        return out

    def _search(self, head: _Head, emb: torch.Tensor, k: int) -> list[dict[str, Any]]:
        card = head.card
        folder = self.registry.path(card.tenant, card.task, card.version)

        def rows_match(texts: list[str], labels: list[str]) -> bool:
            return not card.data_hash or data_hash(texts, labels) == card.data_hash

        kept = self._examples.get(folder, rows_match)
        return kept.search(emb, k) if kept is not None else []

    # --- internals -------------------------------------------------------------------
    def _run_chunk(
        self,
        base: _Base,
        chunk: list[tuple[int, _Head]],
        requests: Sequence[Request],
        results: list[list[Prediction] | DeskpilotError],
        embeddings: dict[int, torch.Tensor] | None = None,
    ) -> None:
        # one tokenizer call per max_length, not one per request
        by_length: dict[int, list[int]] = {}
        for n, (_, head) in enumerate(chunk):
            by_length.setdefault(head.max_length, []).append(n)
        features: list[list[dict[str, list[int]]]] = [[] for _ in chunk]
        for max_length, members in by_length.items():
            texts = [t for n in members for t in requests[chunk[n][0]].texts]
            encoded = tokenize(base.tokenizer, texts, max_length)
            offset = 0
            for n in members:
                size = len(requests[chunk[n][0]].texts)
                features[n] = encoded[offset : offset + size]
                offset += size
        emb = self._embed(base, [(head, fs) for (_, head), fs in zip(chunk, features, strict=True)])
        # one head product per adapter, then split back into requests
        spans: dict[str, list[tuple[int, int, int]]] = {}
        heads: dict[str, _Head] = {}
        offset = 0
        for n, (_, head) in enumerate(chunk):
            spans.setdefault(head.key, []).append((n, offset, offset + len(features[n])))
            heads[head.key] = head
            if embeddings is not None:
                embeddings[chunk[n][0]] = emb[offset : offset + len(features[n])]
            offset += len(features[n])
        for key, parts in spans.items():
            head = heads[key]
            rows = (
                torch.cat([emb[s:e] for _, s, e in parts])
                if len(parts) > 1
                else emb[parts[0][1] : parts[0][2]]
            )
            probs, similarity = self._head_scores(head, rows)
            k = min(TOP_K, probs.shape[1])
            top_scores, top_idx = probs.topk(k, dim=-1)
            scores_l, idx_l, sim_l = top_scores.tolist(), top_idx.tolist(), similarity.tolist()
            row = 0
            for n, s, e in parts:
                abstain = requests[chunk[n][0]].abstain
                results[chunk[n][0]] = [
                    self._prediction(head, scores_l[r], idx_l[r], sim_l[r], abstain)
                    for r in range(row, row + e - s)
                ]
                row += e - s

    def _embed(self, base: _Base, parts: Sequence[tuple[_Head, list[dict[str, list[int]]]]]) -> torch.Tensor:
        """Encoder embeddings for every row of every part, one adapter per part."""
        with base.lock:
            for head, _ in parts:
                if not base.has(head):  # evicted since _head returned it
                    self._make_resident(head, base)
            fast_rows = [h.backend == FAST for h, fs in parts for _ in fs]
            if all(fast_rows):
                ids = [f["input_ids"] for _, fs in parts for f in fs]
                keys = [h.key for h, fs in parts for _ in fs]
                return base.fast.embed(ids, keys, batch_size=self.batch_size)  # type: ignore[union-attr]
            if not any(fast_rows):
                return self._embed_peft(base, parts)
            fast_parts = [(h, fs) for h, fs in parts if h.backend == FAST]
            slow_parts = [(h, fs) for h, fs in parts if h.backend != FAST]
            fast = base.fast.embed(  # type: ignore[union-attr]
                [f["input_ids"] for _, fs in fast_parts for f in fs],
                [h.key for h, fs in fast_parts for _ in fs],
                batch_size=self.batch_size,
            )
            slow = self._embed_peft(base, slow_parts)
            out = torch.empty(len(fast_rows), fast.shape[1])
            mask = torch.tensor(fast_rows)
            out[mask], out[~mask] = fast, slow
            return out

    def _embed_peft(
        self, base: _Base, parts: Sequence[tuple[_Head, list[dict[str, list[int]]]]]
    ) -> torch.Tensor:
        features = [f for _, fs in parts for f in fs]
        names = [head.key for head, fs in parts for _ in fs]
        if len(set(names)) == 1:  # one adapter: the plain (faster) PEFT path
            base.peft.set_adapter(names[0])
            return embed(base.peft, base.tokenizer, features, batch_size=self.batch_size)
        return embed(base.peft, base.tokenizer, features, batch_size=self.batch_size, adapter_names=names)

    def _head_scores(self, head: _Head, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated probabilities and the similarity to the closest trained class."""
        logits = emb @ head.weight.T + head.bias
        probs = (logits / head.temperature).softmax(-1)
        if head.centroids is None:
            return probs, torch.ones(len(emb))
        return probs, (emb @ head.centroids.T).max(-1).values

    def _prediction(
        self, head: _Head, scores: list[float], idx: list[int], similarity: float, abstain: bool
    ) -> Prediction:
        labels = head.card.labels
        top = [Alternative(labels[i], round(s, 6)) for s, i in zip(scores, idx, strict=True)]
        threshold = float(head.card.thresholds.get("per_class", {}).get(top[0].label, head.threshold))
        reason = None
        # a threshold of 1.0 means "a person reviews everything", even a saturated 1.0 score
        if scores[0] < threshold or threshold >= 1.0:
            reason = f"confidence {top[0].score:.2f} below threshold {threshold:.2f}"
        elif similarity < head.similarity_threshold:
            reason = (
                f"unlike the trained classes (similarity {similarity:.2f} < {head.similarity_threshold:.2f})"
            )
        abstained = abstain and reason is not None
        return Prediction(
            label=top[0].label,
            score=top[0].score,
            abstained=abstained,
            alternatives=tuple(top),
            task=head.card.task,
            adapter_version=head.card.version,
            threshold=threshold,
            reason=reason if abstained else None,
        )

    def _base(self, name: str) -> _Base:
        with self._lock:
            if name not in self._bases:
                self._bases[name] = _Base(resolve(name), fast=self.fast, dtype=self.dtype)
            return self._bases[name]

    def _head(self, tenant: str, task: str, version: str | None) -> tuple[_Head, _Base]:
        card = self._cards.card(tenant, task, version)
        if card.kind != "classifier":
            raise InputDataError(f"task '{task}' is a {card.kind}, not a classifier")
        key = adapter_key(card)
        base = self._base(card.base_model)
        with base.lock:
            head = base.resident.get(key)
            if head is None:
                head = self._load(card, key, base)
                self._make_resident(head, base, attached=True)
            base.resident.move_to_end(key)
        return head, base

    def _make_resident(self, head: _Head, base: _Base, *, attached: bool = False) -> None:
        """Attach (unless already) and evict least recently used adapters beyond the bound."""
        if not attached:
            c = head.card
            head.backend = base.attach(head.key, self.registry.load_path(c.tenant, c.task, c.version))
        base.resident[head.key] = head
        base.resident.move_to_end(head.key)
        while len(base.resident) > self.max_resident:
            old, _ = base.resident.popitem(last=False)
            base.detach(old)

    def _load(self, card: AdapterCard, key: str, base: _Base) -> _Head:
        from safetensors.torch import load_file

        path = self.registry.load_path(card.tenant, card.task, card.version)
        if not (path / "adapter_model.safetensors").is_file() or not (path / HEAD_FILE).is_file():
            raise AdapterNotFoundError(f"adapter {card.task} {card.version} is missing its safetensors files")
        backend = base.attach(key, path)
        tensors = load_file(str(path / HEAD_FILE))
        return _Head(
            key=key,
            card=card,
            weight=tensors["weight"].float(),
            bias=tensors["bias"].float(),
            temperature=float(card.calibration.get("temperature", 1.0)),
            threshold=float(card.thresholds.get("default", 0.0)),
            max_length=int(card.recipe.get("max_length", 128)),
            centroids=tensors["centroids"].float() if "centroids" in tensors else None,
            similarity_threshold=float(card.thresholds.get("similarity", 0.0)),
            backend=backend,
        )


def build_predictor(settings: Settings) -> Any:
    """What servers use: a warmed-up engine behind a micro-batcher."""
    from deskpilot.adapters.batching import MicroBatcher

    return MicroBatcher(
        Engine.from_settings(settings),
        max_batch_texts=settings.engine_batch_texts,
        max_wait_ms=settings.engine_max_wait_ms,
    )
