"""One reader per binary format (PDF, DOCX, PNG/JPEG), each checking its limits before parsing.

Every reader returns :class:`Read` or raises DocumentRejected; anything else a parser throws
is turned into ``corrupt`` by the caller (:mod:`.extract`).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

from deskpilot.documents import ocr
from deskpilot.documents.model import DocumentLimits, DocumentRejected, MiB

_SCAN_CHUNK = MiB
# OOXML never needs a DTD: one here is a billion-laughs or XXE attempt
_DTD_MARKERS = tuple(
    marker.encode(enc) for marker in ("<!doctype", "<!entity") for enc in ("ascii", "utf-16-le", "utf-16-be")
)
_MIN_OCR_SIDE = 32  # smaller pictures are rules, bullets and logos, not scanned text


@dataclass(slots=True)
class Read:
    text: str
    method: str
    pages: int | None = None
    first_page: str | None = None  # where a PDF's title lines come from
    metadata: dict[str, Any] = field(default_factory=dict)


def _bomb(message: str, hint: str = "send the document as a PDF") -> DocumentRejected:
    return DocumentRejected("bomb", message, hint=hint)


# --- PDF ---------------------------------------------------------------------------------


def read_pdf(data: bytes, filename: str, limits: DocumentLimits) -> Read:
    """Text layer page by page; pages without one are OCR'd from their images when possible.

    Encryption: a PDF that opens with the empty password (an "owner password" that only
    restricts printing or copying, common on supplier invoices) is read like any viewer
    would; one that asks for a password is refused as ``encrypted``.
    """
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    reader = PdfReader(io.BytesIO(data), strict=False)
    meta: dict[str, Any] = {}
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except (DependencyError, NotImplementedError):
            opened = False
        if not opened:
            raise DocumentRejected(
                "encrypted",
                f"{filename} is password-protected, so its text cannot be read",
                hint="send a copy without a password (print to PDF, or remove the protection)",
            )
        meta["encrypted"] = "opens without a password"
    count = len(reader.pages)
    if count > limits.max_pages:
        raise DocumentRejected(
            "too_many_pages",
            f"{filename} has {count} pages; at most {limits.max_pages} are read",
            hint="split it into smaller files or raise DESKPILOT_DOC_MAX_PAGES",
        )
    if count == 0:
        raise DocumentRejected("no_text", f"{filename} has no pages", hint="check the right file was sent")
    texts: list[str] = []
    scanned: list[int] = []
    total = 0
    for number, page in enumerate(reader.pages):
        text = (page.extract_text() or "") if total <= limits.max_text_chars else ""
        total += len(text)
        texts.append(text)
        if not text.strip() and _has_images(page):
            scanned.append(number)
    if scanned and ocr.tesseract_available():
        for number in scanned:
            texts[number] = _ocr_page(reader.pages[number], f"page {number + 1} of {filename}", limits)
        meta["ocr_pages"] = [number + 1 for number in scanned]
    elif scanned:
        if not any(text.strip() for text in texts):
            ocr.require_tesseract(filename)  # raises: nothing readable without OCR
        meta["pages_without_text"] = [number + 1 for number in scanned]
        meta["warning"] = "some pages are scans and OCR is not installed (apt-get install tesseract-ocr)"
    if not any(text.strip() for text in texts):
        raise DocumentRejected(
            "no_text",
            f"{filename} contains no text (blank pages, or drawings without a text layer)",
            hint="check that the right file was sent",
        )
    first = next(text for text in texts if text.strip())
    method = "pdf-ocr" if "ocr_pages" in meta else "pdf-text"
    return Read("\n\n".join(t.strip() for t in texts), method, pages=count, first_page=first, metadata=meta)


def _has_images(page: Any) -> bool:
    try:
        return len(page.images) > 0
    except Exception:  # broken resources on a blank page: nothing to OCR, not a reason to refuse
        return False


def _ocr_page(page: Any, label: str, limits: DocumentLimits) -> str:
    """The words in a scanned page's pictures; their declared size is checked before decoding."""
    found: list[str] = []
    for image_file in page.images:
        image = image_file.image
        if image is None:
            continue
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise _bomb(f"a picture on {label} is {width}x{height} pixels, over the limit")
        if min(width, height) < _MIN_OCR_SIDE:
            continue
        text = ocr.ocr_image(image, limits.ocr_timeout_s, what=label)
        if text.strip():
            found.append(text)
    return "\n".join(found)


# --- DOCX --------------------------------------------------------------------------------


def check_docx_zip(data: bytes, filename: str, limits: DocumentLimits) -> None:
    """Refuse zip and XML bombs before python-docx inflates or parses anything."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > 10_000:
            raise _bomb(f"{filename} holds {len(members)} files inside; a Word document has a few dozen")
        unpacked = sum(member.file_size for member in members)
        if unpacked > limits.max_unpacked_bytes:
            raise _bomb(
                f"{filename} would unpack to {unpacked // MiB} MiB, over the "
                f"{limits.max_unpacked_bytes // MiB} MiB limit (a zip bomb, or huge embedded media)",
                hint="remove large pictures or videos, or send a PDF",
            )
        for member in members:
            ratio = member.file_size / max(member.compress_size, 1)
            # below 1 MiB a member cannot hurt, and tiny parts compress oddly
            if member.file_size > MiB and ratio > limits.max_compression_ratio:
                raise _bomb(
                    f"{filename}: part {member.filename} is compressed {ratio:.0f}:1 "
                    f"(limit {limits.max_compression_ratio:g}:1), the shape of a zip bomb"
                )
        for member in members:
            if member.filename.lower().endswith((".xml", ".rels")):
                _refuse_dtd(archive, member, filename)


def _refuse_dtd(archive: zipfile.ZipFile, member: zipfile.ZipInfo, filename: str) -> None:
    tail = b""
    with archive.open(member) as stream:  # zipfile stops at the declared size, checked above
        while chunk := stream.read(_SCAN_CHUNK):
            window = (tail + chunk).lower()
            if any(marker in window for marker in _DTD_MARKERS):
                raise _bomb(
                    f"{filename}: part {member.filename} declares a DTD or entities, which Word never "
                    "writes (an XML bomb or an attempt to read server files)",
                    hint="open it in Word and save it again, or send a PDF",
                )
            tail = window[-32:]


def read_docx(data: bytes, filename: str, limits: DocumentLimits) -> Read:
    """Header, then body paragraphs and table rows in document order, then footer."""
    check_docx_zip(data, filename, limits)
    import docx

    document = docx.Document(io.BytesIO(data))
    head: list[str] = []
    foot: list[str] = []
    for section in document.sections:
        for part, out in ((section.header, head), (section.footer, foot)):
            if part.is_linked_to_previous:
                continue
            text = _blocks(part.iter_inner_content())
            if text and text not in out:
                out.append(text)
    body = _blocks(document.iter_inner_content())
    return Read("\n".join(t for t in (*head, body, *foot) if t), "docx")


def _blocks(items: Any) -> str:
    """Paragraphs as lines, table rows as tab-separated cells (nested tables inline)."""
    from docx.table import Table

    lines: list[str] = []
    for item in items:
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                seen: set[int] = set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell repeats across the span
                        continue
                    seen.add(id(cell._tc))
                    cells.append(" ".join(_blocks(cell.iter_inner_content()).split()))
                if any(cells):
                    lines.append("\t".join(cells))
        elif item.text.strip():
            lines.append(item.text)
    return "\n".join(lines)


# --- PNG / JPEG --------------------------------------------------------------------------


def read_image(data: bytes, filename: str, limits: DocumentLimits) -> Read:
    """OCR of a photo or scan, after its header proves it is not a decompression bomb."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise _bomb(
                    f"{filename} is {width}x{height} pixels, over the limit of {limits.max_image_pixels:,}",
                    hint="send a scan at 300 dpi",
                )
            ocr.require_tesseract(filename)
            image.load()  # a truncated or damaged picture fails here, not inside Tesseract
    except Image.DecompressionBombError as exc:
        raise _bomb(f"{filename} is too many pixels to decode safely", hint="send a scan at 300 dpi") from exc
    text = ocr.ocr_image(data, limits.ocr_timeout_s, what=filename)
    return Read(text, "image-ocr", metadata={"width": width, "height": height})
