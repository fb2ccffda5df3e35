"""The responder's knowledge base: resolved tickets with their accepted answers.

Functions take a Session (the caller owns the transaction), like ``repositories.py``;
:class:`KnowledgeRepository` wraps a :class:`Database` for the in-memory index in
``deskpilot.tasks.knowledge_index``, which cannot import the store (sibling layers).

Re-adding a ``source_id`` deletes the old row and inserts a new one instead of updating it in
place: the new row gets a larger id, so an index that follows ``entries_since(last_id)`` sees
an edited answer without rescanning the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from deskpilot.errors import InputDataError
from deskpilot.types import KnowledgeItem, StoredKnowledge

from .db import Database
from .models import KNOWLEDGE_ORIGINS, KnowledgeEntry, TicketRecord, utcnow
from .repositories import _tenant_id, get_or_create_tenant

MAX_SOURCE_ID_CHARS = 200
_INSERT_CHUNK = 500


def _plain(row: KnowledgeEntry) -> StoredKnowledge:
    return StoredKnowledge(
        id=row.id,
        source_id=row.source_id,
        question=row.question,
        answer=row.answer,
        label=row.label,
        origin=row.origin,
        ticket_id=row.ticket_id,
        embedding=bytes(row.embedding),
        embedding_model=row.embedding_model,
        created_at=row.created_at,
    )


def _check(entry: KnowledgeItem, i: int) -> None:
    where = f"knowledge entry {i}"
    source_id = entry.source_id
    if not isinstance(source_id, str) or not source_id.strip() or len(source_id) > MAX_SOURCE_ID_CHARS:
        raise InputDataError(
            f"{where}: source_id must be a non-empty string of at most {MAX_SOURCE_ID_CHARS} characters"
        )
    for name in ("question", "answer", "embedding_model"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not value.strip():
            raise InputDataError(f"{where} ({source_id}): {name} must be a non-empty string")
    if entry.origin not in KNOWLEDGE_ORIGINS:
        raise InputDataError(
            f"{where} ({source_id}): origin {entry.origin!r} is not one of {', '.join(KNOWLEDGE_ORIGINS)}"
        )
    vector = entry.embedding
    if not isinstance(vector, bytes) or not vector or len(vector) % 4:
        raise InputDataError(f"{where} ({source_id}): embedding must be non-empty float32 bytes")


def add_entries(session: Session, tenant: str, entries: Sequence[KnowledgeItem]) -> list[int]:
    """Store entries; an existing ``source_id`` is replaced (the last copy in ``entries`` wins).

    Returns the new row ids in the order of ``entries``' distinct source ids. A ``ticket_id``
    must name one of the tenant's own tickets.
    """
    for i, entry in enumerate(entries):
        _check(entry, i)
    latest: dict[str, KnowledgeItem] = {}
    for entry in entries:
        latest.pop(entry.source_id, None)  # re-insert so the order follows the last copy
        latest[entry.source_id] = entry
    if not latest:
        return []
    owner = get_or_create_tenant(session, tenant).id
    tickets = {e.ticket_id for e in latest.values() if e.ticket_id is not None}
    if tickets:
        known = set(
            session.scalars(
                select(TicketRecord.id).where(TicketRecord.tenant_id == owner, TicketRecord.id.in_(tickets))
            )
        )
        missing = sorted(tickets - known)
        if missing:
            raise InputDataError(f"tenant {tenant!r} has no ticket {missing[0]}")
    ids = list(latest)
    for start in range(0, len(ids), _INSERT_CHUNK):
        chunk = ids[start : start + _INSERT_CHUNK]
        session.execute(
            delete(KnowledgeEntry).where(
                KnowledgeEntry.tenant_id == owner, KnowledgeEntry.source_id.in_(chunk)
            )
        )
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "tenant_id": owner,
            "ticket_id": e.ticket_id,
            "source_id": e.source_id,
            "question": e.question,
            "answer": e.answer,
            "label": e.label,
            "origin": e.origin,
            "embedding": e.embedding,
            "embedding_model": e.embedding_model,
            "created_at": now,
        }
        for e in latest.values()
    ]
    stmt = insert(KnowledgeEntry).returning(KnowledgeEntry.id, sort_by_parameter_order=True)
    out: list[int] = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        out.extend(session.scalars(stmt, rows[start : start + _INSERT_CHUNK]))
    return out


def entries_since(
    session: Session, tenant: str, after_id: int = 0, *, limit: int | None = None
) -> list[StoredKnowledge]:
    """Entries with an id above ``after_id``, oldest first: what an index has not seen yet."""
    owner = _tenant_id(session, tenant)
    if owner is None:
        return []
    query = (
        select(KnowledgeEntry)
        .where(KnowledgeEntry.tenant_id == owner, KnowledgeEntry.id > after_id)
        .order_by(KnowledgeEntry.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_plain(row) for row in session.scalars(query)]


def get_entry(session: Session, tenant: str, source_id: str) -> StoredKnowledge | None:
    owner = _tenant_id(session, tenant)
    if owner is None:
        return None
    row = session.scalars(
        select(KnowledgeEntry).where(KnowledgeEntry.tenant_id == owner, KnowledgeEntry.source_id == source_id)
    ).one_or_none()
    return None if row is None else _plain(row)


def count_entries(session: Session, tenant: str) -> int:
    owner = _tenant_id(session, tenant)
    if owner is None:
        return 0
    query = select(func.count()).select_from(KnowledgeEntry).where(KnowledgeEntry.tenant_id == owner)
    return int(session.scalar(query) or 0)


def delete_entry(session: Session, tenant: str, source_id: str) -> bool:
    """True when the tenant had an entry with this ``source_id`` (now gone)."""
    owner = _tenant_id(session, tenant)
    if owner is None:
        return False
    result = session.execute(
        delete(KnowledgeEntry).where(KnowledgeEntry.tenant_id == owner, KnowledgeEntry.source_id == source_id)
    )
    return bool(getattr(result, "rowcount", 0))


def set_embeddings(session: Session, tenant: str, vectors: Mapping[int, bytes], model: str) -> int:
    """Replace stored vectors (after the encoder changed) without giving the rows new ids."""
    owner = _tenant_id(session, tenant)
    if owner is None or not vectors:
        return 0
    changed = 0
    for row_id, vector in vectors.items():
        result = session.execute(
            update(KnowledgeEntry)
            .where(KnowledgeEntry.tenant_id == owner, KnowledgeEntry.id == row_id)
            .values(embedding=vector, embedding_model=model)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


class KnowledgeRepository:
    """The knowledge functions over a :class:`Database`, one short transaction each.

    This is what ``deskpilot.tasks.knowledge_index.KnowledgeIndex`` takes as its store.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, tenant: str, entries: Sequence[KnowledgeItem]) -> list[int]:
        with self.database.session() as session:
            return add_entries(session, tenant, entries)

    def entries_since(self, tenant: str, after_id: int = 0) -> list[StoredKnowledge]:
        with self.database.session() as session:
            return entries_since(session, tenant, after_id)

    def count(self, tenant: str) -> int:
        with self.database.session() as session:
            return count_entries(session, tenant)

    def delete(self, tenant: str, source_id: str) -> bool:
        with self.database.session() as session:
            return delete_entry(session, tenant, source_id)

    def set_embeddings(self, tenant: str, vectors: Mapping[int, bytes], model: str) -> int:
        with self.database.session() as session:
            return set_embeddings(session, tenant, vectors, model)
