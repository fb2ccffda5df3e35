"""`deskpilot bench quality` through the CLI: JSON contract, results file and Markdown section."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import Invoke, assert_ok, last_json


def test_bench_quality_smoke_writes_json_and_markdown(cli: Invoke, tmp_path: Path, data_root: Path) -> None:
    out, md = tmp_path / "results", tmp_path / "RESULTS.md"
    result = cli(
        "bench", "quality", "--datasets", "banking77", "--sample", "160", "--methods", "tfidf_svc",
        "--out", str(out), "--markdown", str(md), "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = last_json(result.stdout)
    assert summary["bench"] == "quality" and summary["machine"]
    figures = summary["results"]["banking77"]["tfidf_svc"]
    assert 0.05 < figures["accuracy"] <= 1.0  # 77 classes: chance is 0.013
    saved = json.loads((out / "quality.json").read_text())
    assert saved["command"].startswith("deskpilot ") and saved["date"]  # in-process: pytest argv
    text = md.read_text()
    assert "<!-- quality:start -->" in text and "<!-- quality:end -->" in text


def test_bench_quality_unknown_dataset_is_a_user_error(cli: Invoke, tmp_path: Path, data_root: Path) -> None:
    result = cli("bench", "quality", "--datasets", "nope", "--out", str(tmp_path))
    assert result.exit_code == 2 and "nope" in result.stderr
