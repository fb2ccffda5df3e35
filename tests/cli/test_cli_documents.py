"""``deskpilot classify-docs``: files and folders on disk -> type, fields, or the reason refused."""

from __future__ import annotations

import io
from pathlib import Path

from cli_support import Invoke, assert_ok, last_json


def _pdf(lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, invariant=True)
    for i, line in enumerate(lines):
        pdf.drawString(72, 800 - 18 * i, line)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


INVOICE = [
    "INVOICE",
    "Northwind Traders GmbH",
    "Invoice No.: INV-77",
    "Invoice Date: 14.03.2026",
    "Total: EUR 1.234,50",
]


def test_a_folder_is_walked_fields_are_read_and_bad_files_refused(cli: Invoke, tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "inv.pdf").write_bytes(_pdf(INVOICE))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage")
    (folder / "empty.txt").write_bytes(b"")
    (folder / ".hidden.pdf").write_bytes(_pdf(INVOICE))  # skipped: hidden
    result = cli("classify-docs", str(folder), "--no-classify", "--json")
    assert_ok(result)
    rows = {Path(r["file"]).name: r for r in last_json(result.stdout)["documents"]}
    assert set(rows) == {"inv.pdf", "broken.pdf", "empty.txt"}
    assert (rows["broken.pdf"]["state"], rows["broken.pdf"]["reason"]) == ("rejected", "corrupt")
    assert rows["empty.txt"]["reason"] == "empty"
    fields = {name: item["value"] for name, item in rows["inv.pdf"]["fields"].items()}
    assert fields["number"] == "INV-77"
    assert fields["date"] == "2026-03-14"
    assert fields["total"] == "1234.50"
    assert fields["currency"] == "EUR"
    assert "doctype" not in rows["inv.pdf"]


def test_without_a_doctype_model_it_says_so_and_still_reads_fields(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "inv.pdf"
    path.write_bytes(_pdf(INVOICE))
    result = cli("classify-docs", str(path), "--json")
    assert_ok(result)
    assert "deskpilot train classifier --task doctype" in result.stderr
    [row] = last_json(result.stdout)["documents"]
    assert row["fields"]["number"]["value"] == "INV-77"


def test_a_missing_path_is_one_error_line(cli: Invoke, tmp_path: Path) -> None:
    result = cli("classify-docs", str(tmp_path / "nope"), "--no-classify")
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr
    assert "Traceback" not in result.output
