"""Bytes in, text out, safely: the one entry point for every uploaded or mailed document.

Whatever the bytes, the only exception that leaves is DocumentRejected (a stable reason code
and a message a person can act on): parser errors, recursion and memory errors, and Python
warnings raised by the parsers are all caught here, so one bad file never stops a worker.
An email yields its body and then every attachment, depth-first; a bad attachment becomes a
RejectedPart while its siblings are still read.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

from deskpilot.documents import readers
from deskpilot.documents.html_text import declared_charset, html_to_text
from deskpilot.documents.mail import Attachment, parse_mail
from deskpilot.documents.model import (
    DocumentLimits,
    DocumentRejected,
    ExtractedDocument,
    RejectedPart,
    RejectReason,
)
from deskpilot.documents.originals import OriginalStore, sha256_hex
from deskpilot.documents.sniff import MEDIA_TYPES, NAMES, Kind, decode_text, sniff

log = logging.getLogger(__name__)

Part = ExtractedDocument | RejectedPart
_TITLE_MAX_CHARS = 80
_TITLE_LOOKAHEAD = 15  # title lines are near the top; a line far down is not a title


def extract(
    data: bytes,
    filename: str,
    limits: DocumentLimits | None = None,
    *,
    originals: OriginalStore | None = None,
) -> list[Part]:
    """The upload first, then (for an email) each attachment depth-first, nested mails included.

    Raises DocumentRejected when the upload itself cannot be read; an attachment that cannot
    is listed as a RejectedPart. With ``originals``, every file's bytes (attachments and
    refused ones too) are kept there, named by their SHA-256.
    """
    limits = limits or DocumentLimits()
    if originals is not None:
        originals.put(data)
    doc, attachments = _read(data, filename, limits, depth=0, parent=None)
    out: list[Part] = [doc]
    _Walk(limits, originals, out).children(attachments, doc, depth=1)
    return out


def extract_one(
    data: bytes,
    filename: str,
    limits: DocumentLimits | None = None,
    *,
    depth: int = 0,
    parent_sha256: str | None = None,
) -> ExtractedDocument:
    """One file's own text (an email: its subject and body, not its attachments); raises on any failure."""
    return _read(data, filename, limits or DocumentLimits(), depth=depth, parent=parent_sha256)[0]


class _Walk:
    """Attachments, counted across the whole upload, down to ``max_depth``."""

    def __init__(self, limits: DocumentLimits, originals: OriginalStore | None, out: list[Part]) -> None:
        self.limits, self.originals, self.out = limits, originals, out
        self.seen = 0

    def children(self, attachments: list[Attachment], parent: ExtractedDocument, depth: int) -> None:
        for index, attachment in enumerate(attachments):
            data, name = attachment.data, attachment.filename
            if self.originals is not None:
                self.originals.put(data)
            reject = _rejected_part(data, name, depth, parent.sha256)
            if depth > self.limits.max_depth:
                self.out.append(
                    reject(
                        "too_deep",
                        f"{name} is attached {depth} levels deep inside {parent.filename}; at most "
                        f"{self.limits.max_depth} levels are opened (forward it on its own)",
                    )
                )
                continue
            self.seen += 1
            if self.seen > self.limits.max_attachments:
                others = len(attachments) - index - 1
                unread = f"{name} and {others} more attachment(s)" if others else name
                self.out.append(
                    reject(
                        "too_many_attachments",
                        f"this upload holds more than {self.limits.max_attachments} files; {unread} of "
                        f"{parent.filename} were not read (send them in separate emails)",
                    )
                )
                return
            try:
                doc, nested = _read(data, name, self.limits, depth=depth, parent=parent.sha256)
            except DocumentRejected as exc:
                self.out.append(reject(exc.reason, str(exc)))
                continue
            self.out.append(doc)
            self.children(nested, doc, depth + 1)


def _rejected_part(
    data: bytes, name: str, depth: int, parent: str
) -> Callable[[RejectReason, str], RejectedPart]:
    def make(reason: RejectReason, message: str) -> RejectedPart:
        return RejectedPart(name, sha256_hex(data), len(data), reason, message, depth, parent, content=data)

    return make


def _read(
    data: bytes, filename: str, limits: DocumentLimits, *, depth: int, parent: str | None
) -> tuple[ExtractedDocument, list[Attachment]]:
    """Checks, sniffing and the reader, with every foreign exception turned into a rejection."""
    name = filename or "the file"
    if not data:
        raise DocumentRejected("empty", f"{name} is empty (0 bytes)", hint="check that the upload finished")
    if len(data) > limits.max_bytes:
        raise DocumentRejected(
            "too_large",
            f"{name} is {len(data):,} bytes; the limit is {limits.max_bytes:,}",
            hint="send a smaller file or raise DESKPILOT_DOC_MAX_BYTES",
        )
    kind: Kind | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf/Pillow warn about damaged files; we decide
            kind = sniff(data, name).kind
            read, attachments = _dispatch(kind, data, name, limits)
    except DocumentRejected:
        raise
    except RecursionError as exc:
        raise DocumentRejected(
            "bomb",
            f"{name} is nested too deeply to read safely",
            hint="export it again (as a PDF if possible), or send attached files on their own",
        ) from exc
    except MemoryError as exc:
        raise DocumentRejected(
            "too_large", f"{name} needs more memory to read than this server has", hint="send a smaller file"
        ) from exc
    except Exception as exc:
        log.info("could not read %s as %s", name, kind, exc_info=True)
        raise _corrupt(name, kind, exc) from exc
    text = read.text.replace("\r\n", "\n").replace("\x00", "")
    if not text.strip() and not attachments:
        raise DocumentRejected(
            "no_text",
            f"{name} contains no readable text",
            hint="check that the right file was sent; a photo needs to be sharp enough to read",
        )
    metadata = dict(read.metadata)
    if len(text) > limits.max_text_chars:
        text = text[: limits.max_text_chars]
        metadata["truncated"] = True
    doc = ExtractedDocument(
        filename=name,
        media_type=MEDIA_TYPES[kind],
        sha256=sha256_hex(data),
        size=len(data),
        text=text,
        method=read.method,
        pages=read.pages,
        title_lines=title_lines(read.first_page if read.first_page is not None else text),
        depth=depth,
        parent_sha256=parent,
        metadata=metadata,
        content=data,
    )
    return doc, attachments


def _corrupt(name: str, kind: Kind | None, exc: BaseException) -> DocumentRejected:
    what = NAMES.get(kind or "", "a document")
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    from pypdf.errors import LimitReachedError

    if isinstance(exc, LimitReachedError):
        return DocumentRejected(
            "bomb", f"{name} trips a safety limit while being read ({detail})", hint="send a smaller PDF"
        )
    return DocumentRejected(
        "corrupt",
        f"{name} looks like {what} but is damaged and cannot be read ({detail})",
        hint="open it on your computer and save or export it again, then resend",
    )


def _dispatch(
    kind: Kind, data: bytes, name: str, limits: DocumentLimits
) -> tuple[readers.Read, list[Attachment]]:
    if kind == "pdf":
        return readers.read_pdf(data, name, limits), []
    if kind == "docx":
        return readers.read_docx(data, name, limits), []
    if kind in ("png", "jpeg"):
        return readers.read_image(data, name, limits), []
    if kind == "html":
        return readers.Read(html_to_text(_decode_html(data)), "html"), []
    if kind == "eml":
        mail = parse_mail(data, name)
        subject = mail.metadata.get("subject", "")
        text = f"{subject}\n\n{mail.body}".strip() if subject else mail.body
        meta = {**mail.metadata, "attachments": len(mail.attachments)}
        return readers.Read(text, "email", metadata=meta), mail.attachments
    plain = decode_text(data)
    return readers.Read(plain if plain is not None else data.decode("utf-8", "replace"), "text"), []


def _decode_html(data: bytes) -> str:
    """BOM, then the ``<meta charset>``, then UTF-8, then cp1252."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return decode_text(data) or data.decode("utf-8", "replace")
    charset = declared_charset(data)
    for encoding in (charset, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
    return data.decode("cp1252", "replace")


def title_lines(text: str) -> tuple[str, ...]:
    """Up to five short non-empty lines from the top: a layout cue (a heading, a company name)."""
    found: list[str] = []
    for seen, raw in enumerate(line for line in text.splitlines() if line.strip()):
        if seen >= _TITLE_LOOKAHEAD or len(found) == 5:
            break
        line = " ".join(raw.split())
        if len(line) <= _TITLE_MAX_CHARS:
            found.append(line)
    return tuple(found)
