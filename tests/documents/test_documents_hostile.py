"""Hostile and broken input: each is refused with its reason code and a message a person can use,
and no byte string makes anything but DocumentRejected leave :func:`extract`."""

from __future__ import annotations

import contextlib
import io
import random
import time
import zipfile

import pytest
from doc_builders import (
    blank_pdf,
    encrypt_pdf,
    make_docx,
    make_email,
    make_pdf,
    make_png,
    nest_emails,
    png_header_only,
    replace_zip_member,
    xml_bomb_docx,
    zip_bomb_docx,
)

from deskpilot.documents.extract import extract
from deskpilot.documents.model import DocumentLimits, DocumentRejected, ExtractedDocument, RejectedPart

LINES = ["ACME GmbH", "Invoice INV-9", "Total 10.00 EUR"]


def rejected(data: bytes, filename: str, limits: DocumentLimits | None = None) -> DocumentRejected:
    with pytest.raises(DocumentRejected) as caught:
        extract(data, filename, limits)
    assert caught.value.hint, "every refusal says what to do next"
    return caught.value


def test_password_protected_pdf() -> None:
    exc = rejected(encrypt_pdf(make_pdf(LINES), user_password="s3cret"), "invoice.pdf")
    assert exc.reason == "encrypted"
    assert "password" in str(exc) and "invoice.pdf" in str(exc)


def test_password_protected_office_file() -> None:
    ole = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500) + "EncryptedPackage".encode("utf-16-le") + bytes(64)
    )
    exc = rejected(ole, "order.docx")
    assert exc.reason == "encrypted" and "without a password" in str(exc)


def test_page_limit_is_configurable() -> None:
    two_pages = make_pdf(LINES, pages=2)
    assert isinstance(extract(two_pages, "a.pdf", DocumentLimits(max_pages=2))[0], ExtractedDocument)
    exc = rejected(two_pages, "a.pdf", DocumentLimits(max_pages=1))
    assert exc.reason == "too_many_pages"
    assert "2 pages" in str(exc) and "at most 1" in str(exc)


def test_truncated_pdf_is_corrupt() -> None:
    data = make_pdf(LINES)
    exc = rejected(data[: len(data) // 2], "invoice.pdf")
    assert exc.reason == "corrupt"
    assert "damaged" in str(exc) and "resend" in str(exc)


def test_blank_pdf_has_no_text() -> None:
    exc = rejected(blank_pdf(2), "blank.pdf")
    assert exc.reason == "no_text" and "no text" in str(exc)


def test_size_limit() -> None:
    exc = rejected(make_pdf(LINES), "big.pdf", DocumentLimits(max_bytes=100))
    assert exc.reason == "too_large" and "DESKPILOT_DOC_MAX_BYTES" in str(exc)


@pytest.mark.parametrize(("data", "reason"), [(b"", "empty"), (b"  \r\n\t \n", "no_text")])
def test_empty_and_blank_files(data: bytes, reason: str) -> None:
    exc = rejected(data, "note.txt")
    assert exc.reason == reason and "note.txt" in str(exc)


def test_zip_bomb_docx() -> None:
    exc = rejected(zip_bomb_docx(50), "order.docx")
    assert exc.reason == "bomb"
    assert "zip bomb" in str(exc) and "word/media/padding.bin" in str(exc)


def test_docx_unpacked_size_limit_is_configurable() -> None:
    data = make_docx(["a normal order"])
    assert isinstance(extract(data, "o.docx")[0], ExtractedDocument)
    exc = rejected(data, "o.docx", DocumentLimits(max_unpacked_bytes=1024))
    assert exc.reason == "bomb" and "unpack" in str(exc)


def test_billion_laughs_docx() -> None:
    exc = rejected(xml_bomb_docx(), "order.docx")
    assert exc.reason == "bomb"
    assert "word/document.xml" in str(exc) and "DTD" in str(exc)


def test_external_entity_docx() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p></w:body></w:document>"
    )
    data = replace_zip_member(make_docx(["x"]), "word/document.xml", xxe)
    assert rejected(data, "order.docx").reason == "bomb"


@pytest.mark.parametrize(("width", "height"), [(100_000, 100_000), (9_000, 9_000)])
def test_pixel_bomb_png(width: int, height: int) -> None:
    """Refused from the header alone (no Tesseract needed): Pillow's own limit and ours."""
    exc = rejected(png_header_only(width, height), "scan.png")
    assert exc.reason == "bomb" and "pixels" in str(exc)


@pytest.mark.parametrize(
    ("data", "filename", "found"),
    [
        (make_png(["x"]), "invoice.pdf", "a PNG image"),
        (random.Random(7).randbytes(3000), "invoice.pdf", "binary data"),
        (make_pdf(LINES), "invoice.docx", "a PDF"),
        (b"just some notes\n", "invoice.pdf", "plain text"),
        (make_docx(["x"]), "mail.eml", "a Word document"),
    ],
    ids=["png-as-pdf", "random-as-pdf", "pdf-as-docx", "text-as-pdf", "docx-as-eml"],
)
def test_wrong_extension(data: bytes, filename: str, found: str) -> None:
    exc = rejected(data, filename)
    assert exc.reason == "wrong_extension"
    assert filename in str(exc) and found in str(exc)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "found"),
    [
        (_zip({"xl/workbook.xml": b"<workbook/>"}), "stock.xlsx", "Excel"),
        (_zip({"a.txt": b"hi"}), "bundle.zip", "zip archive"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", "setup.exe", "program"),
        (random.Random(8).randbytes(3000), "upload", "unknown"),
    ],
    ids=["xlsx", "zip", "exe", "random-no-extension"],
)
def test_unsupported_types(data: bytes, filename: str, found: str) -> None:
    exc = rejected(data, filename)
    assert exc.reason == "unsupported"
    assert found in str(exc) and "PDF, DOCX" in str(exc)


def test_damaged_docx_is_corrupt() -> None:
    data = make_docx(["x"])
    assert rejected(data[:200], "order.docx").reason == "corrupt"


def test_deeply_nested_mail_stops_at_max_depth() -> None:
    parts = extract(nest_emails(6), "deep.eml")
    assert [part.depth for part in parts] == [0, 1, 2, 3, 4]
    assert all(isinstance(part, ExtractedDocument) for part in parts[:4])
    last = parts[-1]
    assert isinstance(last, RejectedPart) and last.reason == "too_deep"
    assert "4 levels deep" in last.message and "at most 3" in last.message
    assert last.parent_sha256 == parts[3].sha256
    shallow = extract(nest_emails(6), "deep.eml", DocumentLimits(max_depth=1))
    assert [(part.depth, isinstance(part, RejectedPart)) for part in shallow] == [
        (0, False),
        (1, False),
        (2, True),
    ]


def test_mime_nesting_bomb_is_refused() -> None:
    head = b"From: a@example.com\nTo: b@example.com\nSubject: deep\nMIME-Version: 1.0\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(200)
    )
    closing = b"".join(b"--b%d--\n" % i for i in reversed(range(200)))
    exc = rejected(head + opening + b"Content-Type: text/plain\n\nhello\n" + closing, "deep.eml")
    assert exc.reason in ("too_deep", "bomb") and "deep" in str(exc)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"<html><body>" + b"<a" * 200_000, "trap.html"),  # ~minutes in 3.11.7's html.parser
        (b"<html><body>" + b"<" * 1_000_000 + b"<!--" * 100_000, "trap2.html"),
        # the modern email policy parses this header in quadratic time (~25 s for 16 KB)
        (
            b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: text/plain; name="
            + b'"a";' * 100_000
            + b"\n\nbody",
            "trap.eml",
        ),
        (
            b"From: a@example.com\nMessage-ID: <x@y>\nSubject: " + b"=?utf-8?q?a?= " * 100_000 + b"\n\nbody",
            "trap2.eml",
        ),
    ],
    ids=["html-open-tags", "html-bare-lt", "mail-params", "mail-encoded-words"],
)
def test_parser_traps_stay_linear(data: bytes, filename: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(DocumentRejected):
        extract(data, filename)
    assert time.perf_counter() - started < 5.0


def test_mail_split_into_a_flood_of_parts_is_refused_before_parsing() -> None:
    head = b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n"
    exc = rejected(head + b"--zz\n\nx\n" * 30_000 + b"--zz--\n", "flood.eml")
    assert exc.reason == "too_many_attachments" and "MIME parts" in str(exc)


def test_attachment_limit_counts_the_whole_upload() -> None:
    files = [(f"note{n}.txt", f"note number {n}".encode(), "text/plain") for n in range(5)]
    parts = extract(make_email(attachments=files).as_bytes(), "m.eml", DocumentLimits(max_attachments=3))
    assert [part.filename for part in parts] == ["m.eml", "note0.txt", "note1.txt", "note2.txt", "note3.txt"]
    last = parts[-1]
    assert isinstance(last, RejectedPart) and last.reason == "too_many_attachments"
    assert "more than 3 files" in last.message and "1 more" in last.message


def test_a_bad_attachment_does_not_stop_its_siblings() -> None:
    mail = make_email(
        attachments=[
            ("first.pdf", b"%PDF-1.7\n garbage", "application/pdf"),
            ("locked.pdf", encrypt_pdf(make_pdf(LINES), user_password="pw"), "application/pdf"),
            ("empty.txt", b"", "text/plain"),
            ("good.pdf", make_pdf(LINES), "application/pdf"),
        ]
    )
    parts = extract(mail.as_bytes(), "m.eml")
    summary = [(part.filename, getattr(part, "reason", None)) for part in parts]
    assert summary == [
        ("m.eml", None),
        ("first.pdf", "corrupt"),
        ("locked.pdf", "encrypted"),
        ("empty.txt", "empty"),
        ("good.pdf", None),
    ]
    assert isinstance(parts[-1], ExtractedDocument) and "INV-9" in parts[-1].text


def test_fuzz_only_document_rejected_escapes() -> None:
    """Random and mutated bytes under every name: a result or a refusal, never a crash."""
    rng = random.Random(20240611)
    seeds = {
        ".pdf": make_pdf(LINES, pages=2),
        ".docx": make_docx(["PO-1"], table=[["a", "b"], ["c", "d"]], header="H"),
        ".eml": make_email(attachments=[("i.pdf", make_pdf(LINES), "application/pdf")]).as_bytes(),
        ".txt": b"Invoice 42\nTotal 5 EUR\n",
    }
    names = list(seeds)
    reasons: set[str] = set()
    for _ in range(300):
        suffix = rng.choice(names)
        data = bytearray(
            seeds[rng.choice(names)] if rng.random() < 0.8 else rng.randbytes(rng.randrange(2000))
        )
        for _ in range(rng.randrange(4)):
            at = rng.randrange(len(data) + 1)
            match rng.randrange(3):
                case 0:  # flip bytes
                    data[at : at + 8] = rng.randbytes(8)
                case 1:  # cut
                    del data[at : at + rng.randrange(400)]
                case _:  # truncate
                    del data[at:]
        try:
            parts = extract(bytes(data), f"doc{suffix}")
        except DocumentRejected as exc:
            reasons.add(exc.reason)
            assert str(exc)
        else:
            assert isinstance(parts[0], ExtractedDocument)
    assert {"corrupt", "wrong_extension"} <= reasons
