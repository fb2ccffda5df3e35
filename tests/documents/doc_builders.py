"""Tiny documents built in code (no binary fixtures in the repository), good and hostile.

Import by name (``from doc_builders import ...``): pytest puts tests/documents on sys.path.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zipfile
import zlib
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from PIL import Image

FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)


def unavailable(reason: str) -> None:
    """Skip, or fail under CI's DESKPILOT_REQUIRE_SERVICES=1 (as tests/jobs/jobs_support.py does)."""
    if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and DESKPILOT_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def require_tesseract() -> None:
    if shutil.which("tesseract") is None:
        unavailable("tesseract not installed (apt-get install tesseract-ocr)")


# --- PDF ---------------------------------------------------------------------------------


def make_pdf(lines: list[str], *, pages: int = 1) -> bytes:
    """A text-layer PDF: ``lines`` on every page (page N adds "Page N")."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, invariant=True)
    for number in range(1, pages + 1):
        y = 800
        for line in [*lines, f"Page {number}"]:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def encrypt_pdf(data: bytes, *, user_password: str, owner_password: str = "owner-secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def join_pdfs(*documents: bytes) -> bytes:
    """One PDF with every page of ``documents`` in order."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in documents:
        writer.append(PdfReader(io.BytesIO(data)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pdf(pages: int = 1) -> bytes:
    """Pages with nothing on them: no text layer and no pictures."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_scanned_pdf(lines: list[str]) -> bytes:
    """An image-only PDF (no text layer), like a scanner writes."""
    image = render_text_image(lines)
    out = io.BytesIO()
    image.save(out, format="PDF", resolution=150.0)
    return out.getvalue()


# --- images ------------------------------------------------------------------------------


def render_text_image(lines: list[str]) -> Image.Image:
    """Black text on white, large and clean enough for Tesseract to read reliably."""
    from PIL import Image, ImageDraw, ImageFont

    font_file = next((path for path in FONT_FILES if Path(path).is_file()), None)
    font = ImageFont.truetype(font_file, 40) if font_file else ImageFont.load_default(size=40)
    image = Image.new("L", (1400, 120 + 70 * len(lines)), color=255)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((60, 60 + 70 * number), line, fill=0, font=font)
    return image


def make_png(lines: list[str]) -> bytes:
    out = io.BytesIO()
    render_text_image(lines).save(out, format="PNG")
    return out.getvalue()


def make_jpeg(lines: list[str]) -> bytes:
    out = io.BytesIO()
    render_text_image(lines).save(out, format="JPEG", quality=95)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: the header is all a decompression bomb needs."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# --- DOCX --------------------------------------------------------------------------------


def make_docx(
    paragraphs: list[str], *, table: list[list[str]] | None = None, header: str | None = None
) -> bytes:
    """Paragraphs, then an optional table, with an optional page header."""
    import docx

    document = docx.Document()
    if header:
        document.sections[0].header.paragraphs[0].text = header
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    document.add_paragraph("End of document")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def replace_zip_member(
    data: bytes, name: str | None, content: bytes, *, extra: dict[str, bytes] | None = None
) -> bytes:
    """The same zip with one member's content swapped (and ``extra`` members added), deflated."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for member in source.infolist():
            target.writestr(member.filename, content if member.filename == name else source.read(member))
        for extra_name, extra_content in (extra or {}).items():
            target.writestr(extra_name, extra_content)
    return out.getvalue()


def zip_bomb_docx(megabytes: int = 50) -> bytes:
    """A real DOCX carrying a member of zeros that deflates about 1000:1."""
    return replace_zip_member(
        make_docx(["harmless"]), None, b"", extra={"word/media/padding.bin": bytes(megabytes * 1024 * 1024)}
    )


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>
"""


def xml_bomb_docx() -> bytes:
    return replace_zip_member(make_docx(["harmless"]), "word/document.xml", BILLION_LAUGHS)


# --- email -------------------------------------------------------------------------------


def make_email(
    *,
    subject: str = "Invoice INV-1001",
    body: str = "Hello,\nplease find our invoice attached.\nRegards, Acme",
    html: str | None = None,
    attachments: Sequence[tuple[str, bytes, str]] = (),
    nested: EmailMessage | None = None,
) -> EmailMessage:
    """A realistic message: plain (+ optional HTML) body, files, and optionally a forwarded mail."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "Acme Billing <billing@acme.example>"
    msg["To"] = "ap@customer.example"
    msg["Date"] = "Tue, 02 Jan 2024 10:30:00 +0100"
    msg["Message-ID"] = "<inv-1001@acme.example>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, data, media_type in attachments:
        maintype, subtype = media_type.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    if nested is not None:
        msg.add_attachment(nested)
    return msg


def nest_emails(levels: int) -> bytes:
    """A chain of forwarded mails ``levels`` deep; the innermost carries a text file."""
    inner = make_email(subject="level 0", attachments=[("deepest.txt", b"the deepest note", "text/plain")])
    for level in range(1, levels):
        inner = make_email(subject=f"level {level}", nested=inner)
    return inner.as_bytes()
