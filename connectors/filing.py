"""What the ERP connectors read from a ``file_document`` action, whichever system files it.

The worker sends one action per document and system::

    Action(kind="file_document", fields={"create": "purchase_invoice" | "task", "queue": ...,
           "assignee": ..., <record fields>}, idempotency_key="<tenant>:document:<id>:<system>",
           context={"document": {"sha256", "filename", "media_type", "size", "path"},
                    "fields": {"number", "date", "supplier", "total", ...},  # any subset
                    "doctype": "invoice" | None, "triage": bool, "note": "..."})

:func:`incoming` checks that context once (a bad one is a permanent failure: retrying cannot
fix it). :meth:`Incoming.read` reads the original and checks its SHA-256, so a file replaced on
disk is never filed under another document's hash. The ``marker`` (``deskpilot:doc:<sha256>``)
goes into the record each connector creates; finding it again is what makes filing idempotent
on the document, not on one attempt.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePath
from typing import Any, Literal

from deskpilot.connectors.base import ActionFailedError
from deskpilot.types import Action

Kind = Literal["purchase_invoice", "task"]
KINDS: tuple[Kind, ...] = ("purchase_invoice", "task")
MARKER_PREFIX = "deskpilot:doc:"
MAX_FILENAME_CHARS = 140  # Frappe's File.file_name and most ERP name fields
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# the extracted fields, in the order a person reads them
LABELS = {
    "number": "Number",
    "date": "Date",
    "due_date": "Due date",
    "supplier": "Supplier",
    "customer": "Customer",
    "total": "Total",
    "currency": "Currency",
    "vat_id": "VAT id",
    "iban": "IBAN",
    "order_reference": "Order reference",
}


def permanent(message: str, hint: str | None = None) -> ActionFailedError:
    return ActionFailedError(message, transient=False, hint=hint)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One document to file: what the worker knows about it, checked."""

    document_id: int
    kind: Kind
    sha256: str
    filename: str
    media_type: str
    path: Path
    fields: dict[str, str]
    doctype: str | None
    triage: bool
    note: str

    @property
    def marker(self) -> str:
        return f"{MARKER_PREFIX}{self.sha256}"

    def title(self) -> str:
        """``Invoice: inv-1.pdf``; ``Unclassified document: ...`` when the classifier abstained."""
        label = self.doctype.replace("_", " ").capitalize() if self.doctype else "Unclassified document"
        return f"{label}: {self.filename}"

    def read(self) -> bytes:
        """The original bytes. Missing or replaced: permanent; an I/O hiccup: transient."""
        where = f"the original of document {self.document_id} ({self.path})"
        try:
            content = self.path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise permanent(
                f"{where} is missing", hint="the stored upload was removed; upload the document again"
            ) from None
        except PermissionError:
            raise permanent(f"{where} cannot be read (permission denied)") from None
        except OSError as exc:
            raise ActionFailedError(f"{where} could not be read: {exc}", transient=True) from None
        if hashlib.sha256(content).hexdigest() != self.sha256:
            raise permanent(
                f"{where} is not the uploaded file: its SHA-256 differs from {self.sha256}",
                hint="the stored file was changed after the upload; upload the document again",
            )
        return content

    def amount(self, key: str = "total") -> Decimal | None:
        """A normalised amount (``"1234.50"``) as a Decimal; None when absent or unreadable."""
        try:
            value = Decimal(self.fields.get(key, ""))
        except InvalidOperation:
            return None
        return value if value.is_finite() else None

    def day(self, key: str) -> str | None:
        """An ISO date field (``2026-03-14``), None when absent or not a date."""
        try:
            return date.fromisoformat(self.fields.get(key, "")).isoformat()
        except ValueError:
            return None

    def summary(self) -> list[str]:
        """``Label: value`` lines for the extracted fields, in a fixed order."""
        return [f"{label}: {self.fields[key]}" for key, label in LABELS.items() if key in self.fields]

    def explanation(self) -> list[str]:
        """The note's paragraphs, then what was filed: shown in the record for the person."""
        paragraphs = [p.strip() for p in self.note.split("\n\n") if p.strip()]
        if self.doctype is None:
            state = "unclassified (triage)"
        else:
            state = f"{self.doctype}, sent to triage" if self.triage else self.doctype
        return [*paragraphs, f"Document {self.document_id}: {self.filename} ({self.media_type}), {state}."]


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _filename(raw: str, sha256: str) -> str:
    """The file's own name, without a directory or control characters, at most 140 characters."""
    name = _CONTROL.sub("", PurePath(raw.replace("\\", "/")).name).strip()
    if not name or name in (".", ".."):
        return f"document-{sha256[:12]}"
    if len(name) <= MAX_FILENAME_CHARS:
        return name
    stem, dot, ext = name.rpartition(".")
    keep = MAX_FILENAME_CHARS - len(ext) - 1 if dot and len(ext) <= 10 else MAX_FILENAME_CHARS
    return f"{stem[:keep]}.{ext}" if dot and len(ext) <= 10 else name[:keep]


def incoming(action: Action) -> Incoming:
    """Check a ``file_document`` action's context; a permanent ActionFailedError names what is wrong."""
    document = action.context.get("document")
    if not isinstance(document, Mapping):
        raise permanent(f"document {action.ticket_id}: the action has no context.document")
    sha256 = _text(document.get("sha256")).lower()
    if not _SHA256.fullmatch(sha256):
        raise permanent(f"document {action.ticket_id}: context.document.sha256 is not a SHA-256 hex digest")
    path = _text(document.get("path"))
    if not path:
        raise permanent(f"document {action.ticket_id}: context.document.path is empty")
    filename = _filename(_text(document.get("filename")), sha256)
    media_type = (
        _text(document.get("media_type")) or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    )
    raw_fields = action.context.get("fields")
    fields = {
        key: value.strip()
        for key, value in (raw_fields.items() if isinstance(raw_fields, Mapping) else ())
        if isinstance(key, str) and isinstance(value, str) and value.strip()
    }
    doctype = _text(action.context.get("doctype")) or None
    triage = action.context.get("triage") is True or doctype is None
    create = action.fields.get("create")
    if create is None and triage:
        create = "task"
    if create not in KINDS:
        raise permanent(
            f"document {action.ticket_id}: fields.create is {create!r}, not one of {', '.join(KINDS)}",
            hint="set `create:` in the policy's document destination",
        )
    kind: Kind = "purchase_invoice" if create == "purchase_invoice" else "task"
    return Incoming(
        document_id=action.ticket_id,
        kind=kind,
        sha256=sha256,
        filename=filename,
        media_type=media_type,
        path=Path(path),
        fields=fields,
        doctype=doctype,
        triage=triage,
        note=_text(action.context.get("note")),
    )
