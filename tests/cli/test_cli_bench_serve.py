"""`deskpilot bench serve` through the CLI on the tiny BERT: JSON contract, results file,
Markdown section, training an adapter when the task has none, and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapters_support import PEFT_GC_WARNING
from cli_support import Invoke, TrainedTemplate, assert_ok, error_line, last_json

pytestmark = [pytest.mark.filterwarnings(PEFT_GC_WARNING), pytest.mark.slow]

KEYS = (
    "pipeline_texts_per_s",
    "engine_texts_per_s",
    "latency_p50_ms",
    "latency_p95_ms",
    "rss_1_adapter_mb",
    "rss_50_adapters_mb",
    "single_adapter_texts_per_s",
    "mixed_adapters_texts_per_s",
    "accuracy_pipeline",
    "accuracy_engine",
)
SMALL = ("--adapters", "2", "--latency-texts", "5", "--repeats", "1")


def test_bench_serve_prints_and_writes_every_figure(
    cli: Invoke, trained_home: Path, trained_template: TrainedTemplate, tmp_path: Path
) -> None:
    out, md = tmp_path / "results", tmp_path / "RESULTS.md"
    result = cli(
        "bench", "serve", "--task", "intent", "--data", trained_template.test_csv, *SMALL,
        "--out", out, "--markdown", md, "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = last_json(result.stdout)
    assert summary["bench"] == "serve"
    for key in KEYS:
        assert isinstance(summary[key], float | int) and summary[key] > 0, key
    assert set(summary["requirements"]) == {
        "throughput_vs_pipeline",
        "accuracy_delta_points",
        "latency_p50_ms",
        "rss_50_over_1",
        "mixed_over_single",
        "onnx_int8_loss_points",
    }
    # the same merged model in fp32 as the pipeline's (a near tie may still fall the other way)
    assert abs(summary["accuracy_onnx_fp32"] - summary["accuracy_pipeline"]) <= 0.05
    assert summary["onnx_int8_texts_per_s"] > 0 and 0 <= summary["accuracy_onnx_int8"] <= 1
    saved = json.loads((out / "serve.json").read_text())
    assert {k: saved[k] for k in KEYS} == {k: summary[k] for k in KEYS}
    assert saved["command"].startswith("deskpilot ") and saved["machine"]["cpu"]
    assert saved["adapter"]["task"] == "intent" and saved["child"]["adapters_resident"] == 2
    text = md.read_text()
    assert "<!-- serve:start -->" in text and "## Serving" in text


def test_bench_serve_trains_an_adapter_when_the_task_has_none(
    cli: Invoke,
    home: Path,
    trained_template: TrainedTemplate,
    tiny_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DESKPILOT_BASE_MODEL", str(tiny_dir))
    result = cli(
        "bench", "serve", "--task", "fresh", "--data", trained_template.test_csv,
        "--train-data", trained_template.train_csv, "--train-minutes", "1", *SMALL,
        "--out", tmp_path, "--markdown", tmp_path / "RESULTS.md", "--json",
    )  # fmt: skip
    assert_ok(result)
    assert "no adapter for task 'fresh'" in result.stderr
    assert last_json(result.stdout)["engine_texts_per_s"] > 0
    assert (home / "adapters" / "default" / "fresh" / "champion.json").is_file()


def test_bench_serve_missing_data_file_is_a_user_error(
    cli: Invoke, trained_home: Path, tmp_path: Path
) -> None:
    result = cli("bench", "serve", "--task", "intent", "--data", tmp_path / "nope.csv", "--out", tmp_path)
    assert "nope.csv" in error_line(result)
