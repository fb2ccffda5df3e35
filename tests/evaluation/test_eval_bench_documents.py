"""``deskpilot bench documents`` end to end on a tiny generated sample (the real run is not CI's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskpilot.config import Settings
from deskpilot.evaluation import bench_documents

pytestmark = pytest.mark.integration  # the packaged encoder trains the doctype model


def test_the_harness_runs_and_writes_its_figures(tmp_path: Path) -> None:
    cfg = bench_documents.DocumentsBenchConfig(
        generated_train=24, generated_test=12, max_minutes=0.5, threads=1, company_documents=False
    )
    lines: list[str] = []
    figures = bench_documents.run(
        cfg,
        Settings(env="test", home=tmp_path / "home"),
        log=lines.append,
        out_dir=tmp_path,
        markdown=tmp_path / "RESULTS.md",
    )
    written = json.loads((tmp_path / "documents.json").read_text())
    assert written["generated_classification_accuracy"] == figures["generated_classification_accuracy"]
    assert 0.0 <= figures["generated_classification_accuracy"] <= 1.0
    assert figures["company_documents_accuracy"] is None  # not asked for
    assert figures["docs_per_s"] > 0
    fields = figures["field_exact_match"]
    assert {"number", "date", "total"} <= set(fields)
    assert all(0 <= f["exact"] <= f["n"] for f in fields.values())
    assert sum(f["n"] for f in fields.values()) > 12  # every test document has fields to check
    assert set(figures["requirements"]) >= {"number_exact_match_ge_0.90", "generated_classification_ge_0.95"}
    markdown = (tmp_path / "RESULTS.md").read_text()
    assert "## Documents (`deskpilot bench documents`)" in markdown and "| total |" in markdown
    assert any("generated: 24 training and 12 test documents" in line for line in lines)
