"""Tests for examples/generate_documents.py, the seeded set of business documents with known fields.

The set is the ground truth of ``deskpilot bench documents``, so it has to be stable (same seed, same
bytes), balanced across the four classes and both formats, readable by the real parsers, and its
expected values have to be valid in their own right (IBAN check digits, VAT formats, ISO dates).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from deskpilot.documents import validators as v
from deskpilot.documents.model import DOCTYPE_FIELDS, DOCTYPES, FIELD_NAMES

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "generate_documents.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deskpilot_demo_generate_documents", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


gd = _load()
N = 40


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    out: list[Any] = gd.generate_documents(tmp_path_factory.mktemp("set"), N, seed=3)
    return out


def _manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def test_generator_agrees_with_the_model() -> None:
    assert gd.DOCTYPES == DOCTYPES
    assert gd.SCORED == DOCTYPE_FIELDS
    assert all(set(fields) <= set(FIELD_NAMES) for fields in DOCTYPE_FIELDS.values())


def test_same_seed_same_bytes_other_seed_other_documents(tmp_path: Path) -> None:
    first = gd.generate_documents(tmp_path / "a", 8, seed=11)
    second = gd.generate_documents(tmp_path / "b", 8, seed=11)
    assert [d.fields for d in first] == [d.fields for d in second]
    for a, b in zip(first, second, strict=True):
        assert a.path.name == b.path.name
        assert a.path.read_bytes() == b.path.read_bytes(), a.path.name  # PDFs and DOCX alike
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (
        tmp_path / "b" / "manifest.jsonl"
    ).read_bytes()
    other = gd.generate_documents(tmp_path / "c", 8, seed=12)
    assert [d.fields for d in other] != [d.fields for d in first]


def test_manifest_shape(docs: list[Any]) -> None:
    folder = docs[0].path.parent
    rows = _manifest(folder)
    assert len(rows) == N == len(docs)
    for row, doc in zip(rows, docs, strict=True):
        assert set(row) == {"path", "doctype", "format", "fields", "layout"}
        assert (folder / row["path"]) == doc.path and doc.path.is_file()
        assert row["doctype"] == doc.doctype in DOCTYPES
        assert row["format"] == doc.format == doc.path.suffix[1:]
        assert row["fields"] == doc.fields
        assert list(doc.fields) == [f for f in DOCTYPE_FIELDS[doc.doctype] if f in doc.fields]
        assert doc.doctype not in doc.path.name  # the file name gives the class away to no one


def test_class_balance_and_formats(docs: list[Any]) -> None:
    assert Counter(d.doctype for d in docs) == {t: N // 4 for t in DOCTYPES}
    by_class = Counter((d.doctype, d.format) for d in docs)
    assert all(by_class[t, "pdf"] == by_class[t, "docx"] == N // 8 for t in DOCTYPES)
    only_pdf = gd.generate_documents(docs[0].path.parent.parent / "pdf_only", 5, seed=3, formats=("pdf",))
    assert {d.format for d in only_pdf} == {"pdf"}
    assert sorted(Counter(d.doctype for d in only_pdf).values()) == [1, 1, 1, 2]


def test_expected_values_are_valid_and_normalised(docs: list[Any]) -> None:
    seen: Counter[str] = Counter()
    for doc in docs:
        fields = doc.fields
        seen.update(fields.keys())
        assert {"number", "date"} <= set(fields) or doc.doctype == "inventory_report"
        assert "date" in fields
        for name in ("date", "due_date"):
            if name in fields:
                assert re.fullmatch(r"20\d\d-\d\d-\d\d", fields[name])
        if "total" in fields:
            assert re.fullmatch(r"\d+\.\d\d", fields["total"])
            assert fields["currency"] in {"EUR", "USD", "GBP", "CHF"}
        if "iban" in fields:
            assert v.normalise_iban(fields["iban"]) == fields["iban"]  # checked by the other implementation
        if "vat_id" in fields:
            assert v.normalise_vat_id(fields["vat_id"]) == fields["vat_id"]
        if "due_date" in fields:
            assert fields["due_date"] > fields["date"]
    # the invoices carry the optional fields often enough to be scored
    assert (
        seen["iban"] >= 4 and seen["vat_id"] >= 4 and seen["order_reference"] >= 3 and seen["due_date"] >= 3
    )


def test_files_open_and_show_their_values(docs: list[Any]) -> None:
    import docx
    from pypdf import PdfReader

    for doc in docs:
        if doc.format == "pdf":
            text = "\n".join(page.extract_text() for page in PdfReader(doc.path).pages)
        else:
            document = docx.Document(str(doc.path))
            text = "\n".join(p.text for p in document.paragraphs)
            text += "\n".join(c.text for t in document.tables for row in t.rows for c in row.cells)
        assert len(text) > 200
        for name in ("number", "supplier", "customer", "order_reference"):
            if name in doc.fields:
                assert doc.fields[name] in text, (doc.path.name, name)


def test_layouts_and_formats_vary(docs: list[Any]) -> None:
    layouts = [d.layout for d in docs]
    assert len({la["header"] for la in layouts}) >= 4
    assert len({la["meta"] for la in layouts}) == 3
    assert len({la["dates"] for la in layouts}) >= 5
    assert len({la["numbers"] for la in layouts if "numbers" in la}) >= 6
    assert len({la["country"] for la in layouts}) >= 6


def test_check_digits_match_iso_13616() -> None:
    assert gd.iban_check_digits("DE", "370400440532013000") == "89"
    assert gd.iban_check_digits("GB", "WEST12345698765432") == "82"


def test_cli_writes_the_set(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "cli"), "--n", "4", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "wrote 4 documents" in out.stdout
    assert len(_manifest(tmp_path / "cli")) == 4
    with pytest.raises(ValueError, match="formats"):
        gd.generate_documents(tmp_path / "x", 1, formats=("odt",))
    with pytest.raises(ValueError, match="n must"):
        gd.generate_documents(tmp_path / "x", -1)
