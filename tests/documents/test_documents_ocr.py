"""Scans and photos through the real Tesseract, and a clear refusal where it is not installed.

The real-OCR tests skip without ``tesseract`` (fail under DESKPILOT_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator

import pytest
from doc_builders import (
    join_pdfs,
    make_jpeg,
    make_pdf,
    make_png,
    make_scanned_pdf,
    render_text_image,
    require_tesseract,
)

from deskpilot.documents import ocr
from deskpilot.documents.extract import extract
from deskpilot.documents.model import DocumentLimits, DocumentRejected, ExtractedDocument

SCAN_LINES = ["INVOICE 4711", "Total due 99.00 EUR"]


@pytest.fixture
def tesseract() -> Iterator[None]:
    require_tesseract()
    ocr.tesseract_path.cache_clear()
    yield
    ocr.tesseract_path.cache_clear()


@pytest.fixture
def no_tesseract(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A server without Tesseract, whatever this machine has."""
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "tesseract" else real_which(name)
    )
    ocr.tesseract_path.cache_clear()
    yield
    ocr.tesseract_path.cache_clear()


def only_doc(data: bytes, filename: str) -> ExtractedDocument:
    parts = extract(data, filename)
    assert len(parts) == 1 and isinstance(parts[0], ExtractedDocument)
    return parts[0]


@pytest.mark.usefixtures("tesseract")
@pytest.mark.parametrize(("build", "filename"), [(make_png, "scan.png"), (make_jpeg, "photo.jpg")])
def test_image_ocr_finds_the_words(build: Callable[[list[str]], bytes], filename: str) -> None:
    doc = only_doc(build(SCAN_LINES), filename)
    assert doc.method == "image-ocr"
    assert "INVOICE 4711" in doc.text and "99.00" in doc.text
    assert doc.title_lines[0] == "INVOICE 4711"
    assert doc.metadata["width"] == 1400


@pytest.mark.usefixtures("tesseract")
def test_png_named_jpg_is_tolerated() -> None:
    doc = only_doc(make_png(SCAN_LINES), "photo.jpg")
    assert doc.media_type == "image/png" and "4711" in doc.text


@pytest.mark.usefixtures("tesseract")
def test_scanned_pdf_is_ocrd_page_by_page() -> None:
    data = join_pdfs(make_pdf(["Cover letter from ACME"]), make_scanned_pdf(SCAN_LINES))
    doc = only_doc(data, "scan.pdf")
    assert doc.method == "pdf-ocr"
    assert doc.pages == 2 and doc.metadata["ocr_pages"] == [2]
    assert doc.text.index("Cover letter") < doc.text.index("INVOICE 4711")
    assert doc.title_lines[0] == "Cover letter from ACME"


@pytest.mark.usefixtures("tesseract")
def test_ocr_image_accepts_a_pillow_image_and_times_out() -> None:
    assert "4711" in ocr.ocr_image(render_text_image(SCAN_LINES), timeout_s=30)
    with pytest.raises(DocumentRejected) as caught:
        ocr.ocr_image(make_png(SCAN_LINES), timeout_s=0.001)
    assert caught.value.reason == "too_large" and "longer than" in str(caught.value)


@pytest.mark.usefixtures("tesseract")
def test_a_blank_picture_has_no_text() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (600, 400), color=255).save(out, format="PNG")
    with pytest.raises(DocumentRejected) as caught:
        extract(out.getvalue(), "blank.png")
    assert caught.value.reason == "no_text"


@pytest.mark.usefixtures("no_tesseract")
@pytest.mark.parametrize(
    ("build", "filename"),
    [(make_png, "scan.png"), (make_scanned_pdf, "scan.pdf")],
    ids=["png", "scanned-pdf"],
)
def test_without_tesseract_the_reason_says_what_to_install(
    build: Callable[[list[str]], bytes], filename: str
) -> None:
    assert not ocr.tesseract_available()
    with pytest.raises(DocumentRejected) as caught:
        extract(build(SCAN_LINES), filename)
    assert caught.value.reason == "ocr_unavailable"
    assert "apt-get install tesseract-ocr" in str(caught.value)
    assert filename in str(caught.value)


@pytest.mark.usefixtures("no_tesseract")
def test_without_tesseract_text_pages_still_come_through() -> None:
    """Half a document beats none: the scanned page is named in the metadata instead."""
    data = join_pdfs(make_pdf(["Cover letter from ACME"]), make_scanned_pdf(SCAN_LINES))
    doc = only_doc(data, "mixed.pdf")
    assert doc.method == "pdf-text" and "Cover letter" in doc.text
    assert doc.metadata["pages_without_text"] == [2]
    assert "tesseract-ocr" in doc.metadata["warning"]


@pytest.mark.usefixtures("no_tesseract")
def test_pixel_bomb_is_caught_before_asking_for_ocr() -> None:
    from doc_builders import png_header_only

    with pytest.raises(DocumentRejected) as caught:
        extract(png_header_only(9000, 9000), "scan.png", DocumentLimits())
    assert caught.value.reason == "bomb"
