"""Received documents: one row per file and tenant (deduplicated on the content's sha256).

An accepted document is written with a ticket row (source ``document``) and the job that will
classify and file it, in one transaction, as tickets are; a refused one is written too, with
its reason, so nothing that arrived is lost without a trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from deskpilot.documents.model import ExtractedDocument, RejectedPart

from . import queue
from .models import DocumentRecord, TicketRecord, utcnow
from .repositories import tenant_id_for
from .workflow import audit

PROCESS_DOCUMENT = "process_document"
DOCUMENT_SOURCE = "document"
# a document's text as its ticket body: enough for classification, fields and a person's view
MAX_BODY_CHARS = 100_000


@dataclass(frozen=True, slots=True)
class DocumentAccepted:
    document_id: int
    ticket_id: int | None
    job_id: int | None
    state: str
    duplicate: bool


def find_document(session: Session, tenant_id: int, sha256: str) -> DocumentRecord | None:
    return session.scalars(
        select(DocumentRecord).where(DocumentRecord.tenant_id == tenant_id, DocumentRecord.sha256 == sha256)
    ).one_or_none()


def get_document(session: Session, tenant_id: int, document_id: int) -> DocumentRecord | None:
    row = session.get(DocumentRecord, document_id)
    return row if row is not None and row.tenant_id == tenant_id else None


def list_documents(
    session: Session,
    tenant_id: int,
    *,
    state: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[DocumentRecord]:
    query = select(DocumentRecord).where(DocumentRecord.tenant_id == tenant_id)
    if state is not None:
        query = query.where(DocumentRecord.state == state)
    if before_id is not None:
        query = query.where(DocumentRecord.id < before_id)
    return list(session.scalars(query.order_by(DocumentRecord.id.desc()).limit(limit)))


def _existing(session: Session, tenant_id: int, sha256: str) -> DocumentAccepted | None:
    row = find_document(session, tenant_id, sha256)
    if row is None:
        return None
    return DocumentAccepted(row.id, row.ticket_id, None, row.state, duplicate=True)


def _insert_once(
    session: Session, tenant_id: int, sha256: str, rows: Callable[[], list[Any]]
) -> DocumentAccepted | None:
    """Add ``rows()`` in a savepoint; None when added, the first copy's answer when a concurrent
    copy of the same file won the unique key."""
    try:
        with session.begin_nested():
            for row in rows():
                session.add(row)
                session.flush()
    except IntegrityError:
        found = _existing(session, tenant_id, sha256)
        if found is None:
            raise
        return found
    return None


def _title(doc: ExtractedDocument) -> str:
    title = next((line for line in doc.title_lines if line.strip()), "")
    return (f"{doc.filename}: {title}" if title else doc.filename)[:500]


def accept_document(
    session: Session,
    tenant: str,
    doc: ExtractedDocument,
    *,
    source: str,
    actor: str,
    meta: dict[str, Any] | None = None,
    max_attempts: int = 5,
) -> DocumentAccepted:
    """Store an extracted document with its ticket and job, unless the tenant has it already."""
    tenant_id = tenant_id_for(session, tenant)
    found = _existing(session, tenant_id, doc.sha256)
    if found is not None:
        return found
    now = utcnow()
    info = {
        "filename": doc.filename,
        "media_type": doc.media_type,
        "sha256": doc.sha256,
        "title_lines": list(doc.title_lines),
        **dict(doc.metadata),
        **(meta or {}),
    }
    ticket = TicketRecord(
        tenant_id=tenant_id,
        source=DOCUMENT_SOURCE,
        external_id=None,
        subject=_title(doc),
        body=doc.text[:MAX_BODY_CHARS],
        requester=str(info.get("from")) if info.get("from") else None,
        meta={"document": True, "channel": source, **info},
        state="received",
        created_at=now,
        updated_at=now,
    )
    row = DocumentRecord(
        tenant_id=tenant_id,
        sha256=doc.sha256,
        parent_sha256=doc.parent_sha256,
        filename=doc.filename[:255],
        media_type=doc.media_type,
        size=doc.size,
        pages=doc.pages,
        method=doc.method,
        source=source,
        state="received",
        abstained=False,
        fields={},
        meta=info,
        created_at=now,
        updated_at=now,
    )

    # the document row needs the ticket's id: flushed one after the other in the savepoint
    def rows_linked() -> list[Any]:
        session.add(ticket)
        session.flush()
        row.ticket_id = ticket.id
        return [row]

    lost = _insert_once(session, tenant_id, doc.sha256, rows_linked)
    if lost is not None:
        return lost
    ticket.meta = {**ticket.meta, "document_id": row.id}
    job_id = queue.enqueue(
        session, tenant_id, PROCESS_DOCUMENT, {"document_id": row.id}, max_attempts=max_attempts
    )
    audit(
        session,
        tenant_id,
        "document.received",
        actor,
        {"document_id": row.id, "filename": doc.filename, "sha256": doc.sha256, "source": source},
        ticket_id=ticket.id,
    )
    return DocumentAccepted(row.id, ticket.id, job_id, "received", duplicate=False)


def reject_document(
    session: Session,
    tenant: str,
    part: RejectedPart,
    *,
    source: str,
    actor: str,
    meta: dict[str, Any] | None = None,
) -> DocumentAccepted:
    """Record a refused file (its original is kept by the caller) with the reason."""
    tenant_id = tenant_id_for(session, tenant)
    found = _existing(session, tenant_id, part.sha256)
    if found is not None:
        return found
    now = utcnow()
    row = DocumentRecord(
        tenant_id=tenant_id,
        sha256=part.sha256,
        parent_sha256=part.parent_sha256,
        filename=part.filename[:255],
        media_type="application/octet-stream",
        size=part.size,
        source=source,
        state="rejected",
        reason=part.reason,
        message=part.message,
        abstained=False,
        fields={},
        meta=dict(meta or {}),
        created_at=now,
        updated_at=now,
    )
    lost = _insert_once(session, tenant_id, part.sha256, lambda: [row])
    if lost is not None:
        return lost
    audit(
        session,
        tenant_id,
        "document.rejected",
        actor,
        {"document_id": row.id, "filename": part.filename, "reason": part.reason, "message": part.message},
    )
    return DocumentAccepted(row.id, None, None, "rejected", duplicate=False)


def document_out(row: DocumentRecord) -> dict[str, Any]:
    """The API's view of a document (no text: that is the ticket's body)."""
    return {
        "id": row.id,
        "ticket_id": row.ticket_id,
        "filename": row.filename,
        "media_type": row.media_type,
        "size": row.size,
        "pages": row.pages,
        "sha256": row.sha256,
        "parent_sha256": row.parent_sha256,
        "source": row.source,
        "state": row.state,
        "reason": row.reason,
        "message": row.message,
        "doctype": row.doctype,
        "score": row.score,
        "abstained": row.abstained,
        "fields": dict(row.fields or {}),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
