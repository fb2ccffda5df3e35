"""``bench load``: its parts (config, figures, the lost-ticket count, the Markdown), then a 3-second
real run against ``deskpilot serve`` with the packaged encoder and a quickly trained adapter."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from deskpilot.errors import InputDataError
from deskpilot.evaluation.bench_load import (
    KEYS,
    Endpoint,
    LoadConfig,
    LoadResult,
    figures,
    missing_tickets,
    render_load,
    run_load,
    summary,
)
from deskpilot.evaluation.report import markers
from deskpilot.store import Database
from deskpilot.store.workflow import accept_ticket
from deskpilot.types import Ticket


def test_config_refuses_nonsense() -> None:
    for bad in (
        {"seconds": 0},
        {"concurrency": 0},
        {"concurrency": 10_000},
        {"workers": -1},
        {"train_rows": 5},
    ):
        with pytest.raises(InputDataError):
            LoadConfig(**bad)  # type: ignore[arg-type]


def test_figures_count_errors_of_both_endpoints_and_rates_over_the_window() -> None:
    classify = Endpoint(latencies_ms=[10.0] * 98 + [50.0, 90.0], ok=99, errors=Counter({"HTTP 503": 1}))
    ingress = Endpoint(latencies_ms=[5.0] * 200, ok=198, errors=Counter({"ReadTimeout": 2}))
    got = figures(LoadResult(classify, ingress, list(range(198)), window_s=2.0), lost=3)
    assert got["classify_requests"] == 100 and got["ingress_requests"] == 200
    assert got["classify_rps"] == 49.5 and got["ingress_rps"] == 99.0
    assert got["classify_p50_ms"] == 10.0 and 50.0 < got["classify_p99_ms"] <= 90.0
    assert got["ingress_p99_ms"] == 5.0
    assert got["errors"] == 3 and got["lost"] == 3
    assert set(KEYS) <= set(got)


def test_missing_tickets_finds_accepted_ids_without_a_row(tmp_path: Path) -> None:
    db_file = tmp_path / "deskpilot.db"
    database = Database(f"sqlite:///{db_file}")
    database.migrate()
    try:
        with database.session() as session:
            ids = [
                accept_ticket(
                    session, "bench", Ticket(subject="s", body=f"body {i}"), delivery_id=f"d{i}", actor="t"
                ).ticket_id
                for i in range(3)
            ]
    finally:
        database.dispose()
    assert missing_tickets(db_file, ids) == 0
    assert missing_tickets(db_file, [*ids, 999_999]) == 1
    assert missing_tickets(db_file, [ids[0], ids[0]]) == 1  # one row cannot stand for two deliveries


@pytest.mark.slow
@pytest.mark.integration
def test_a_short_real_run_serves_both_endpoints_without_errors_or_losses(tmp_path: Path) -> None:
    results = run_load(
        LoadConfig(seconds=3, concurrency=2, train_rows=120),
        out_dir=tmp_path,
        markdown=tmp_path / "RESULTS.md",
        command="pytest",
    )
    assert results["errors"] == 0, results["error_samples"]
    assert results["lost"] == 0
    assert results["classify_rps"] > 0 and results["ingress_rps"] > 0
    assert 0 < results["classify_p50_ms"] <= results["classify_p99_ms"]
    assert 0 < results["ingress_p50_ms"] <= results["ingress_p99_ms"]
    assert results["accepted_deliveries"] == results["ingress_requests"]
    saved = json.loads((tmp_path / "load.json").read_text())
    assert {k: saved[k] for k in KEYS} == {k: results[k] for k in KEYS}
    assert saved["machine"] and saved["date"] and saved["command"] == "pytest"
    assert summary(saved)["requirements"] == {"errors": True, "lost": True}
    start, end = markers("load")
    text = (tmp_path / "RESULTS.md").read_text()
    assert start in text and end in text and render_load(saved).strip() in text
