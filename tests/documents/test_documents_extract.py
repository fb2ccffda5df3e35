"""Each supported format gives its words back, with hashes, title lines and (for mail) its tree."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from pathlib import Path

import pytest
from doc_builders import make_docx, make_email, make_pdf

from deskpilot.documents.extract import extract, extract_one, title_lines
from deskpilot.documents.model import DocumentLimits, ExtractedDocument, RejectedPart
from deskpilot.documents.originals import OriginalStore

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
INVOICE_LINES = ["ACME Industrial GmbH", "INVOICE INV-2024-0042", "Total due: 1,234.50 EUR"]


def only(parts: list[ExtractedDocument | RejectedPart]) -> ExtractedDocument:
    assert len(parts) == 1
    assert isinstance(parts[0], ExtractedDocument)
    return parts[0]


def test_pdf_text_layer_pages_hash_and_title_lines() -> None:
    data = make_pdf(INVOICE_LINES, pages=3)
    doc = only(extract(data, "INV-2024-0042.pdf"))
    assert doc.media_type == "application/pdf"
    assert doc.method == "pdf-text"
    assert doc.pages == 3
    assert "INVOICE INV-2024-0042" in doc.text
    assert "Page 3" in doc.text
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    assert doc.size == len(data)
    assert doc.depth == 0 and doc.parent_sha256 is None
    # from the first page only: "Page 1", never "Page 2"
    assert doc.title_lines == (*INVOICE_LINES, "Page 1")


def test_pdf_with_owner_password_only_is_read() -> None:
    """Print/copy restrictions with an empty open password: any viewer opens it, so do we."""
    from doc_builders import encrypt_pdf

    data = encrypt_pdf(make_pdf(INVOICE_LINES), user_password="")
    doc = only(extract(data, "restricted.pdf"))
    assert "INV-2024-0042" in doc.text
    assert doc.metadata["encrypted"] == "opens without a password"


def test_docx_header_paragraphs_and_table_in_order() -> None:
    data = make_docx(
        ["PURCHASE ORDER PO-7781", "Supplier: Bolt & Nut Ltd"],
        table=[["Item", "Qty", "Price"], ["M8 bolts", "500", "0.12"]],
        header="Contoso Procurement",
    )
    doc = only(extract(data, "po.docx"))
    assert doc.media_type == DOCX_TYPE
    assert doc.method == "docx"
    text = doc.text
    assert text.index("Contoso Procurement") < text.index("PO-7781") < text.index("M8 bolts\t500\t0.12")
    assert text.index("M8 bolts") < text.index("End of document")
    assert doc.title_lines[:2] == ("Contoso Procurement", "PURCHASE ORDER PO-7781")


def test_html_drops_scripts_and_keeps_block_breaks() -> None:
    page = (
        b"<!DOCTYPE html><html><head><title>Shipping order</title><style>p{color:red}</style>"
        b"<script>alert('x')</script></head><body><h1>SHIPPING ORDER SO-19</h1>"
        b"<p>Ship to:<br>Dock 4 &amp; 5</p><table><tr><td>Pallets</td><td>12</td></tr></table>"
        b"<!-- internal note --><p>qty < 5 and weight > 2 kg</p></body></html>"
    )
    doc = only(extract(page, "so.html"))
    assert doc.method == "html"
    assert "alert" not in doc.text and "color" not in doc.text
    assert "Ship to:\nDock 4 & 5" in doc.text
    assert "Pallets\t12" in doc.text
    assert "qty < 5 and weight > 2 kg" in doc.text and "internal note" not in doc.text
    assert doc.title_lines[:2] == ("Shipping order", "SHIPPING ORDER SO-19")


@pytest.mark.parametrize(
    "raw",
    [
        "Rechnung Müller – 5 €".encode(),
        "Rechnung Müller – 5 €".encode("utf-8-sig"),
        "Rechnung Müller – 5 €".encode("utf-16"),
        "Rechnung Müller – 5 €".encode("cp1252"),
    ],
    ids=["utf-8", "utf-8-sig", "utf-16-bom", "cp1252"],
)
def test_text_encodings(raw: bytes) -> None:
    doc = only(extract(raw, "note.txt"))
    assert doc.method == "text"
    assert doc.text == "Rechnung Müller – 5 €"


def test_no_extension_trusts_the_content() -> None:
    assert only(extract(make_pdf(INVOICE_LINES), "upload")).method == "pdf-text"
    assert only(extract(make_pdf(INVOICE_LINES), "scan0001.bin")).method == "pdf-text"
    mail = make_email().as_bytes()
    assert only(extract(mail, "message.dat")).method == "email"
    # key: value lines are not an email without mail headers such as From or Received
    assert only(extract(b"Invoice: 42\nDate: 2024-01-02\n\nThanks", "upload")).method == "text"


def _mail_with_everything() -> tuple[EmailMessage, bytes, bytes]:
    pdf = make_pdf(INVOICE_LINES)
    docx = make_docx(["PURCHASE ORDER PO-7781"])
    forwarded = make_email(subject="Fwd: purchase order", attachments=[("po.docx", docx, DOCX_TYPE)])
    mail = make_email(
        html="<p>HTML version of the body</p>",
        attachments=[("INV-2024-0042.pdf", pdf, "application/pdf")],
        nested=forwarded,
    )
    return mail, pdf, docx


def test_email_body_attachments_and_nested_mail_depth_first() -> None:
    mail, pdf, docx = _mail_with_everything()
    data = mail.as_bytes()
    parts = extract(data, "inbox.eml")
    assert all(isinstance(part, ExtractedDocument) for part in parts)
    docs = [part for part in parts if isinstance(part, ExtractedDocument)]
    assert [(doc.filename, doc.method, doc.depth) for doc in docs] == [
        ("inbox.eml", "email", 0),
        ("INV-2024-0042.pdf", "pdf-text", 1),
        ("Fwd: purchase order.eml", "email", 1),
        ("po.docx", "docx", 2),
    ]
    top, invoice, forwarded, order = docs
    assert top.sha256 == hashlib.sha256(data).hexdigest()
    assert invoice.sha256 == hashlib.sha256(pdf).hexdigest()
    assert order.sha256 == hashlib.sha256(docx).hexdigest()
    assert invoice.parent_sha256 == top.sha256 and forwarded.parent_sha256 == top.sha256
    assert (top.content, invoice.content, order.content) == (data, pdf, docx)  # for the ERP upload
    assert order.parent_sha256 == forwarded.sha256
    # the plain body wins over the HTML alternative; the subject leads the text
    assert top.text.startswith("Invoice INV-1001\n\nHello,")
    assert "HTML version" not in top.text
    assert top.title_lines[0] == "Invoice INV-1001"
    assert top.metadata["subject"] == "Invoice INV-1001"
    assert top.metadata["from"] == "Acme Billing <billing@acme.example>"
    assert top.metadata["to"] == "ap@customer.example"
    assert top.metadata["date"] == "2024-01-02T10:30:00+01:00"
    assert top.metadata["message_id"] == "<inv-1001@acme.example>"
    assert top.metadata["attachments"] == 2
    assert "PO-7781" in order.text


def test_email_html_only_body_and_attached_eml_file() -> None:
    inner = make_email(subject="Original order", body="Order ORD-5 for 3 pallets").as_bytes()
    mail = EmailMessage()
    mail["From"] = "ops@example.com"
    mail["Subject"] = "see below"
    mail.set_content("<html><body><p>Hello <b>team</b></p><p>Second para</p></body></html>", subtype="html")
    mail.add_attachment(inner, maintype="application", subtype="octet-stream", filename="order.eml")
    docs = extract(mail.as_bytes(), "m.eml")
    assert isinstance(docs[0], ExtractedDocument) and isinstance(docs[1], ExtractedDocument)
    assert docs[0].text == "see below\n\nHello team\n\nSecond para"
    assert docs[1].filename == "order.eml" and docs[1].method == "email"
    assert "Order ORD-5 for 3 pallets" in docs[1].text


def test_email_with_only_attachments_is_kept() -> None:
    """A bare "see attached" mail with no body is normal, not an unreadable document."""
    mail = EmailMessage()
    mail["From"] = "scanner@example.com"
    mail["Message-ID"] = "<scan-1@example.com>"
    mail.add_attachment(make_pdf(INVOICE_LINES), maintype="application", subtype="pdf", filename="s.pdf")
    top, invoice = extract(mail.as_bytes(), "scan.eml")
    assert isinstance(top, ExtractedDocument) and top.text == ""
    assert isinstance(invoice, ExtractedDocument) and "INV-2024-0042" in invoice.text


def test_extract_one_gives_the_mail_itself_only() -> None:
    mail, _, _ = _mail_with_everything()
    doc = extract_one(mail.as_bytes(), "inbox.eml", depth=2, parent_sha256="ab" * 32)
    assert doc.method == "email" and doc.depth == 2 and doc.parent_sha256 == "ab" * 32
    assert "INV-2024-0042" not in doc.text


def test_text_is_truncated_to_the_limit() -> None:
    doc = only(extract(b"word " * 1000, "long.txt", DocumentLimits(max_text_chars=100)))
    assert len(doc.text) == 100
    assert doc.metadata["truncated"] is True


def test_title_lines_are_short_lines_near_the_top() -> None:
    text = "\n\n  ACME   GmbH \n" + "x" * 81 + "\nInvoice\n\nNo. 7\nDate 1.2.2024\nTotal 5\nSixth"
    assert title_lines(text) == ("ACME GmbH", "Invoice", "No. 7", "Date 1.2.2024", "Total 5")
    assert title_lines("\n".join(["y" * 100] * 20 + ["late short line"])) == ()


def test_every_original_is_kept_when_a_store_is_given(tmp_path: Path) -> None:
    mail, _, docx = _mail_with_everything()
    mail.add_attachment(b"\x00garbage", maintype="application", subtype="pdf", filename="broken.pdf")
    store = OriginalStore(tmp_path)
    parts = extract(mail.as_bytes(), "inbox.eml", originals=store)
    assert isinstance(parts[-1], RejectedPart) and parts[-1].filename == "broken.pdf"
    assert parts[-1].content == b"\x00garbage"
    for part in parts:
        assert store.get(part.sha256)  # the refused attachment too
    assert store.get(hashlib.sha256(docx).hexdigest()) == docx
