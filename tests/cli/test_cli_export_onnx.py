"""`deskpilot adapters export-onnx` on the tiny BERT: files beside the adapter, the int8 check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapters_support import PEFT_GC_WARNING
from cli_support import Invoke, TrainedTemplate, assert_ok, last_json

pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.filterwarnings(PEFT_GC_WARNING), pytest.mark.slow]


def test_export_checks_int8_on_the_given_data(
    cli: Invoke, trained_home: Path, trained_template: TrainedTemplate
) -> None:
    result = cli(
        "adapters", "export-onnx", "--task", "intent", "--check-data", trained_template.test_csv, "--json"
    )  # fmt: skip
    assert_ok(result)
    report = last_json(result.stdout)
    assert (report["task"], report["version"]) == ("intent", "v1")
    assert Path(report["fp32_file"]).is_file() and Path(report["int8_file"]).is_file()
    assert report["checked_texts"] > 0 and report["int8_ok"] == (report["int8_loss_points"] <= 0.5)
    saved = json.loads((Path(report["fp32_file"]).parent / "export.json").read_text())
    assert saved == report


def test_export_without_int8_writes_fp32_only(cli: Invoke, trained_home: Path) -> None:
    result = cli("adapters", "export-onnx", "--task", "intent", "--no-int8", "--json")
    assert_ok(result)
    report = last_json(result.stdout)
    assert report["int8_file"] is None and report["int8_ok"] is None and report["checked_texts"] == 0
