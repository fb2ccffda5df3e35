"""What the document modules pass to each other (and to the store, jobs and connectors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from deskpilot.errors import InputDataError

MiB = 1024 * 1024

# why a file was refused, for the API, the store and the tests
RejectReason = Literal[
    "empty",
    "too_large",
    "too_many_pages",
    "too_deep",
    "too_many_attachments",
    "encrypted",
    "corrupt",
    "bomb",
    "wrong_extension",
    "unsupported",
    "no_text",
    "ocr_unavailable",
]

# the document classes of the generated test set and the demo policy
DOCTYPES = ("invoice", "purchase_order", "shipping_order", "inventory_report")
# the key fields; values are normalised (dates ISO 8601, amounts "1234.50", IBAN/VAT without spaces)
FIELD_NAMES = (
    "number",  # the document's own number (invoice no., PO no.)
    "date",  # issue date
    "due_date",
    "supplier",
    "customer",
    "total",
    "currency",  # ISO 4217 code
    "vat_id",
    "iban",
    "order_reference",  # the purchase order an invoice refers to
)
# the fields each doctype is expected to carry (when printed on it); the benchmark scores these
DOCTYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice": FIELD_NAMES,
    "purchase_order": ("number", "date", "supplier", "customer", "total", "currency"),
    "shipping_order": ("number", "date", "customer"),
    "inventory_report": ("date",),
}


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Bounds on what one upload may cost; every one is a setting (``DESKPILOT_DOC_*``)."""

    max_bytes: int = 20 * MiB
    max_pages: int = 200
    max_depth: int = 3  # attachments inside attachments (an email in an email ...)
    max_attachments: int = 50  # files found in one upload, all levels together
    max_text_chars: int = 2_000_000
    max_unpacked_bytes: int = 100 * MiB  # a DOCX (zip) may not inflate past this ...
    max_compression_ratio: float = 200.0  # ... nor any member past this ratio
    ocr_timeout_s: float = 60.0
    max_image_pixels: int = 60_000_000  # width x height of one image (A4 at 600 dpi is ~35 M)


class DocumentRejected(InputDataError):
    """A file that cannot be used; ``reason`` is a stable code, the message says why to a person."""

    code = "document_rejected"

    def __init__(self, reason: RejectReason, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    """One file's text. An email yields one for its body and one per attachment (recursively)."""

    filename: str
    media_type: str  # detected from the content, e.g. "application/pdf"
    sha256: str  # of the original bytes
    size: int
    text: str
    method: str  # "pdf-text", "pdf-ocr", "docx", "email", "html", "text", "image-ocr"
    pages: int | None = None
    title_lines: tuple[str, ...] = ()  # the first short, prominent lines (layout cue)
    depth: int = 0  # 0 = the uploaded file; 1 = an attachment of it; ...
    parent_sha256: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. email subject/from/date
    # the original bytes (kept by the caller in the content-addressed store; an attachment's
    # bytes are needed to attach it to the ERP record)
    content: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class RejectedPart:
    """A file (or an attachment inside one) refused, with the reason; its bytes are still kept."""

    filename: str
    sha256: str
    size: int
    reason: RejectReason
    message: str
    depth: int = 0
    parent_sha256: str | None = None
    content: bytes = field(default=b"", repr=False)  # the original bytes, kept all the same


@dataclass(frozen=True, slots=True)
class ExtractedField:
    """One key field: normalised value, how sure, and where in the text it came from."""

    name: str
    value: str
    confidence: float  # 0..1
    start: int  # span in the document text: text[start:end] is what was read
    end: int
    method: str = "rule"  # "rule", "rule+validator", "generator", ...

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "confidence": round(self.confidence, 3),
            "span": [self.start, self.end],
            "method": self.method,
        }
