"""`deskpilot bench quality` through the CLI: JSON contract, results file and Markdown section."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_support import Invoke, assert_ok, last_json

from deskpilot.config import Settings


def _data_root() -> Path:
    root = Settings().evaluation_data_dir()
    if root is None or not (root / "banking77" / "train.csv").is_file():
        if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
            pytest.fail("../shared/data/banking77 is missing (DESKPILOT_REQUIRE_SERVICES=1)")
        pytest.skip("../shared/data/banking77 is not present")
    return root


def test_bench_quality_smoke_writes_json_and_markdown(cli: Invoke, tmp_path: Path) -> None:
    _data_root()
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


def test_bench_quality_unknown_dataset_is_a_user_error(cli: Invoke, tmp_path: Path) -> None:
    _data_root()
    result = cli("bench", "quality", "--datasets", "nope", "--out", str(tmp_path))
    assert result.exit_code == 2 and "nope" in result.stderr
