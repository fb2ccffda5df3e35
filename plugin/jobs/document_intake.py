"""Receiving files: keep the original, extract within the limits, and store what came of it.

Shared by ``POST /v1/documents``, the email webhook and the CLI. Extraction runs here, in the
caller's thread, so a refused file is answered with its reason at once; classification and
filing run later in the ``process_document`` job. Every original is written to the
content-addressed store first, refused ones included: nothing that arrived is lost.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from deskpilot.config import Settings
from deskpilot.documents.extract import extract
from deskpilot.documents.model import DocumentLimits, DocumentRejected, ExtractedDocument, RejectedPart
from deskpilot.documents.originals import OriginalStore
from deskpilot.store import Database
from deskpilot.store.documents import DocumentAccepted, accept_document, reject_document

logger = logging.getLogger("deskpilot.documents")


def limits_from(settings: Settings) -> DocumentLimits:
    return DocumentLimits(
        max_bytes=settings.doc_max_bytes,
        max_pages=settings.doc_max_pages,
        max_depth=settings.doc_max_depth,
        max_attachments=settings.doc_max_attachments,
        max_unpacked_bytes=settings.doc_max_unpacked_bytes,
        max_compression_ratio=settings.doc_max_compression_ratio,
        ocr_timeout_s=settings.doc_ocr_timeout_s,
        max_image_pixels=settings.doc_max_image_pixels,
        max_text_chars=settings.doc_max_text_chars,
    )


@dataclass
class FileOutcome:
    """What became of one received file (or one attachment inside it)."""

    filename: str
    sha256: str
    state: str  # received | rejected | (a duplicate's current state)
    document_id: int | None = None
    ticket_id: int | None = None
    job_id: int | None = None
    duplicate: bool = False
    reason: str | None = None
    message: str | None = None
    depth: int = 0
    media_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k in ("document_id",)}


@dataclass
class Intake:
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def job_ids(self) -> list[int]:
        return [f.job_id for f in self.files if f.job_id is not None]

    @property
    def accepted(self) -> int:
        return sum(1 for f in self.files if f.state != "rejected")


def _documents_of(
    parts: list[ExtractedDocument | RejectedPart], *, email_body: bool
) -> list[ExtractedDocument]:
    """The parts to classify: an email's attachments, or its body when it has none."""
    docs = [p for p in parts if isinstance(p, ExtractedDocument)]
    if not email_body or len(docs) <= 1:
        return docs
    attachments = [d for d in docs if d.depth > 0]
    return attachments or docs[:1]


def receive_file(
    database: Database,
    settings: Settings,
    tenant: str,
    filename: str,
    data: bytes,
    *,
    source: str,
    actor: str,
    meta: dict[str, Any] | None = None,
) -> Intake:
    """Keep ``data``, extract it (an email: body and attachments) and store the outcome."""
    store = OriginalStore(settings.documents_dir)
    intake = Intake()
    try:
        # extract keeps every original it meets (the upload first, so a refused one too)
        parts: list[ExtractedDocument | RejectedPart] = list(
            extract(data, filename, limits_from(settings), originals=store)
        )
    except DocumentRejected as exc:
        sha = hashlib.sha256(data).hexdigest()
        parts = [RejectedPart(filename, sha, len(data), exc.reason, str(exc), content=data)]
    is_email = bool(parts) and isinstance(parts[0], ExtractedDocument) and parts[0].method == "email"
    wanted = {id(d) for d in _documents_of(parts, email_body=is_email)}
    with database.session() as session:
        for part in parts:
            if isinstance(part, RejectedPart):
                got: DocumentAccepted = reject_document(
                    session, tenant, part, source=source, actor=actor, meta=meta
                )
                intake.files.append(
                    FileOutcome(
                        part.filename,
                        part.sha256,
                        got.state,
                        got.document_id,
                        duplicate=got.duplicate,
                        reason=part.reason,
                        message=part.message,
                        depth=part.depth,
                    )
                )
                continue
            if id(part) not in wanted:  # an email's body when attachments carry the business
                continue
            got = accept_document(
                session,
                tenant,
                part,
                source=source,
                actor=actor,
                meta=meta,
                max_attempts=settings.job_max_attempts,
            )
            intake.files.append(
                FileOutcome(
                    part.filename,
                    part.sha256,
                    got.state,
                    got.document_id,
                    got.ticket_id,
                    got.job_id,
                    got.duplicate,
                    depth=part.depth,
                    media_type=part.media_type,
                )
            )
    for outcome in intake.files:
        logger.info(
            "document %s (%s) from %s: %s%s",
            outcome.filename,
            outcome.sha256[:12],
            source,
            outcome.state,
            f" ({outcome.reason})" if outcome.reason else "",
        )
    return intake
