"""`deskpilot bench ingress` through the CLI: options reach the bench, the JSON contract, and
user errors. The bench itself is stood in for (tests/evaluation runs a real short one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_support import Invoke, assert_ok, error_line, last_json

from deskpilot.evaluation import bench_ingress
from deskpilot.evaluation.bench_ingress import KEYS, IngressConfig, checks


def _fake_results(cfg: IngressConfig) -> dict[str, Any]:
    figures = {
        "sent": cfg.requests,
        "accepted": cfg.requests,
        "errors": 0,
        "rps": cfg.rate,
        "ack_p50_ms": 5.0,
        "ack_p95_ms": 9.0,
        "ack_p99_ms": 12.0,
        "ack_max_ms": 30.0,
        "processed": cfg.requests,
        "drain_seconds": 0.4,
        "processing_rate": cfg.rate,
        "actions_delivered": cfg.requests,
        "duplicates": 0,
    }
    return {
        "bench": "ingress",
        "date": "2026-01-01T00:00:00+00:00",
        **figures,
        "requirements": checks(figures, cfg.rate),
        "settings": {
            "rate": cfg.rate,
            "duration_s": cfg.duration_s,
            "workers": cfg.workers,
            "model": cfg.model,
            "connections": cfg.connections,
            "db": "sqlite",
        },
        "machine": {"cpu": "Test CPU", "usable_cores": 2},
    }


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_run(config: IngressConfig, **kwargs: Any) -> dict[str, Any]:
        seen.append({"config": config, **kwargs})
        kwargs["progress"]("sending", 1, 2)
        return _fake_results(config)

    monkeypatch.setattr(bench_ingress, "run_ingress", fake_run)
    return seen


def test_options_reach_the_bench_and_json_is_the_last_line(
    cli: Invoke, calls: list[dict[str, Any]], tmp_path: Path
) -> None:
    result = cli(
        "bench", "ingress", "--rate", "50", "--duration", "4", "--workers", "3", "--model", "rules",
        "--connections", "16", "--drain-timeout", "30", "--out", tmp_path, "--markdown",
        tmp_path / "R.md", "--json",
    )  # fmt: skip
    assert_ok(result)
    (call,) = calls
    cfg = call["config"]
    assert (cfg.rate, cfg.duration_s, cfg.workers, cfg.model) == (50, 4, 3, "rules")
    assert (cfg.connections, cfg.drain_timeout_s) == (16, 30)
    assert call["out_dir"] == tmp_path and call["markdown"] == tmp_path / "R.md"
    assert call["command"].startswith("deskpilot ")  # sys.argv: pytest's here, in-process
    summary = last_json(result.stdout)
    assert summary["bench"] == "ingress" and {k: summary[k] for k in KEYS}["sent"] == 200
    assert set(KEYS) <= set(summary) and all(summary["requirements"].values())
    assert summary["settings"]["model"] == "rules" and summary["settings"]["db"] == "sqlite"


def test_defaults_are_the_issue_s_run(cli: Invoke, calls: list[dict[str, Any]]) -> None:
    result = cli("bench", "ingress")
    assert_ok(result)
    cfg = calls[0]["config"]
    assert (cfg.rate, cfg.duration_s, cfg.workers, cfg.model) == (200, 60, 2, "trained")
    assert (
        calls[0]["out_dir"] == bench_ingress.RESULTS_DIR and calls[0]["markdown"] == bench_ingress.RESULTS_MD
    )
    assert "ack_p99_ms" in result.stdout and "requirement errors" in result.stdout


def test_an_unknown_model_is_a_user_error(cli: Invoke, calls: list[dict[str, Any]]) -> None:
    result = cli("bench", "ingress", "--model", "gpt")
    assert result.exit_code == 2 and not calls


def test_a_rate_too_small_for_one_request_is_a_user_error(cli: Invoke, calls: list[dict[str, Any]]) -> None:
    result = cli("bench", "ingress", "--rate", "0.1", "--duration", "1")
    assert "at least one request" in error_line(result) and not calls  # refused before running
