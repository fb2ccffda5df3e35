"""What a file really is, from its bytes; the name's extension is only a claim to check.

A renamed file is refused (``wrong_extension``) rather than fed to the wrong parser: a
"PDF" that is a picture, or random bytes called ``invoice.docx``, is a mistake a person
should hear about. Two harmless mix-ups are tolerated: PNG vs JPEG (decoded by content
anyway) and text vs HTML vs email (all text; the extension picks the reader).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from deskpilot.documents.model import DocumentRejected

Kind = Literal["pdf", "docx", "eml", "html", "text", "png", "jpeg"]

MEDIA_TYPES: dict[Kind, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "eml": "message/rfc822",
    "html": "text/html",
    "text": "text/plain",
    "png": "image/png",
    "jpeg": "image/jpeg",
}
# what a person calls each kind, in messages
NAMES: dict[str, str] = {
    "pdf": "a PDF",
    "docx": "a Word document (DOCX)",
    "eml": "an email (EML)",
    "html": "a web page (HTML)",
    "text": "plain text",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
}
EXTENSIONS: dict[str, Kind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".eml": "eml",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".txt": "text",
    ".text": "text",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
}
_SUPPORTED: dict[str, Kind] = {kind: kind for kind in MEDIA_TYPES}
_TEXT_FAMILY = frozenset({"text", "html", "eml"})
_IMAGE_FAMILY = frozenset({"png", "jpeg"})

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office saves a password-protected DOCX/XLSX as an OLE file holding this stream
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_ENCRYPTED_OFFICE = "a password-protected Office file"
# recognised, and refused with a way out
_MAGIC_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
    (_OLE, "an old Office file (DOC/XLS/MSG)"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript file"),
)
_MAIL_HEADERS = frozenset(
    {"from", "to", "cc", "subject", "date", "message-id", "received", "return-path", "mime-version",
     "content-type", "reply-to", "sender", "delivered-to", "x-mailer", "in-reply-to", "references"}
)  # fmt: skip
_STRONG_MAIL_HEADERS = frozenset({"from", "received", "message-id", "mime-version", "return-path"})
_HEADER_LINE = re.compile(rb"^([A-Za-z0-9][A-Za-z0-9_\-]{0,75}):[ \t]?")


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: Kind
    media_type: str


def decode_text(data: bytes) -> str | None:
    """The text in bytes: BOM-marked UTF-8/16, plain UTF-8, else cp1252; None for binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in data[:65536]:
        return None
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _mostly_printable(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return False
    odd = sum(1 for ch in sample if not ch.isprintable() and ch not in "\n\r\t\f\v")
    return odd <= len(sample) * 0.02


def _looks_like_mail(data: bytes) -> bool:
    """An RFC 822 header block: header lines up to the first blank line, from known names."""
    head = data[:65536].replace(b"\r\n", b"\n")
    if head.startswith(b"From "):  # an mbox separator line
        head = head.split(b"\n", 1)[-1]
    names: list[str] = []
    for line in head.split(b"\n"):
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t") and names:
            continue  # a folded header
        found = _HEADER_LINE.match(line)
        if not found:
            return False
        names.append(found.group(1).decode("ascii").lower())
    known = [name for name in names if name in _MAIL_HEADERS]
    return len(known) >= 2 and any(name in _STRONG_MAIL_HEADERS for name in names)


def _looks_like_html(text: str) -> bool:
    head = text[:4096].lstrip().lower()
    return head.startswith(("<!doctype html", "<html")) or "<html" in head or "<body" in head


def _zip_kind(data: bytes) -> str:
    """``docx`` or what else a zip container holds (an unsupported label)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return "damaged zip"
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "an Excel workbook (XLSX)"
    if "ppt/presentation.xml" in names:
        return "a PowerPoint file (PPTX)"
    if "mimetype" in names or "content.xml" in names:
        return "an OpenDocument file"
    return "a zip archive"


def content_kind(data: bytes) -> str:
    """A supported :data:`Kind`, or a description of what the bytes are instead."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "a WebP image"
    if data.startswith(_OLE) and _ENCRYPTED_PACKAGE in data:
        return _ENCRYPTED_OFFICE
    text = decode_text(data)
    is_text = text is not None and _mostly_printable(text)
    for magic, label in _MAGIC_UNSUPPORTED:
        # "MZ", "BM", ... also start ordinary lines ("BMW invoice"): those need binary content
        if data.startswith(magic) and (not is_text or not magic.isalpha()):
            return label
    if text is None or not is_text:
        return "binary data of an unknown kind"
    if _looks_like_mail(data):
        return "eml"
    if _looks_like_html(text):
        return "html"
    return "text"


def claimed_kind(filename: str) -> Kind | None:
    """The kind a name's extension promises; None when it promises nothing we read."""
    return EXTENSIONS.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def sniff(data: bytes, filename: str) -> Sniffed:
    """The kind to read ``data`` as, or DocumentRejected (``unsupported``/``wrong_extension``/``corrupt``)."""
    found = content_kind(data)
    claimed = claimed_kind(filename)
    kind = _SUPPORTED.get(found)
    if kind is not None:
        if claimed is not None and claimed != kind:
            if claimed in _TEXT_FAMILY and kind in _TEXT_FAMILY:
                kind = claimed
            elif not (claimed in _IMAGE_FAMILY and kind in _IMAGE_FAMILY):
                raise _wrong(filename, claimed, NAMES[kind])
        return Sniffed(kind, MEDIA_TYPES[kind])
    if found == _ENCRYPTED_OFFICE:
        raise DocumentRejected(
            "encrypted",
            f"{filename} is a password-protected Office document, so its text cannot be read",
            hint="save a copy without a password (File > Info > Protect Document), or send a PDF",
        )
    if found == "damaged zip" and claimed == "docx":
        raise DocumentRejected(
            "corrupt",
            f"{filename} is damaged: its zip container cannot be read",
            hint="open it in Word and save it again, or send a PDF",
        )
    if claimed is not None:
        raise _wrong(filename, claimed, found)
    raise DocumentRejected(
        "unsupported",
        f"{filename} is {found}, which cannot be read here",
        hint="send a PDF, DOCX, EML, HTML, plain-text, PNG or JPEG file",
    )


def _wrong(filename: str, claimed: Kind, found: str) -> DocumentRejected:
    return DocumentRejected(
        "wrong_extension",
        f"{filename} is named like {NAMES[claimed]} but its content is {found}",
        hint="check that the right file was sent, or give it the extension that matches its content",
    )
