"""``bench ingress``: its parts (the lean HTTP client, the stand-in helpdesk, the rules policy,
the requirement checks, the Markdown section), then one short real run against
``deskpilot serve`` with the rules-only policy (no model training)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deskpilot.errors import InputDataError
from deskpilot.evaluation import bench_ingress
from deskpilot.evaluation.bench_ingress import (
    KEYS,
    TARGETS,
    Http1Pool,
    IngressConfig,
    checks,
    render_ingress,
    run_ingress,
    summary,
    wait_until_processed,
)
from deskpilot.evaluation.report import update_section
from deskpilot.evaluation.standin import StandinHelpdesk
from deskpilot.policy import parse_policy
from deskpilot.tasks.route import matching_overrides
from deskpilot.types import Ticket

FIGURES = {
    "sent": 1000,
    "accepted": 1000,
    "errors": 0,
    "rps": 199.6,
    "ack_p50_ms": 8.0,
    "ack_p95_ms": 20.0,
    "ack_p99_ms": 40.0,
    "ack_max_ms": 90.0,
    "processed": 1000,
    "duplicates": 0,
}


def test_config_refuses_nonsense() -> None:
    for bad in (
        {"model": "gpt"},
        {"rate": 0},
        {"duration_s": -1},
        {"workers": 0},
        {"rate": 0.1, "duration_s": 1},
    ):
        with pytest.raises(InputDataError):
            IngressConfig(**bad)  # type: ignore[arg-type]
    assert IngressConfig(rate=200, duration_s=60).requests == 12_000


def test_checks_read_the_targets_right() -> None:
    got = checks(FIGURES, rate=200)
    assert set(got) == set(TARGETS) and all(v["met"] for v in got.values())
    assert got["rps_vs_rate"]["value"] == 0.998
    worse = checks({**FIGURES, "errors": 3, "processed": 990, "ack_p99_ms": 700.0, "rps": 150.0}, rate=200)
    assert {k for k, v in worse.items() if not v["met"]} == {
        "errors",
        "unprocessed",
        "ack_p99_ms",
        "rps_vs_rate",
    }
    assert worse["unprocessed"]["value"] == 10


def test_the_rules_policy_decides_every_demo_ticket_without_a_model() -> None:
    policy = parse_policy(bench_ingress.policy_text("rules", "http://127.0.0.1:1/api"))
    rows = bench_ingress.demo_tickets(300, seed=3)
    for row in rows:
        ticket = Ticket(subject=row["subject"], body=row["body"], requester=row["requester"])
        assert set(matching_overrides(policy, ticket)) == set(policy.tasks)
    # deliveries: distinct external ids, the demo texts, valid webhook bodies
    bodies = [json.loads(b) for b in bench_ingress.delivery_bodies(rows[:5], "run")]
    assert [b["ticket"]["external_id"] for b in bodies] == [f"run-{i}" for i in range(5)]
    assert all(b["type"] == "ticket" and b["ticket"]["subject"] for b in bodies)


def test_the_trained_policy_is_the_demo_policy_pointed_at_the_standin() -> None:
    text = bench_ingress.policy_text("trained", "http://127.0.0.1:4321/api")
    policy = parse_policy(text)
    assert set(policy.tasks) == {"queue", "priority"}
    assert policy.systems["helpdesk"].url == "http://127.0.0.1:4321/api"


def test_the_lean_client_posts_reuses_and_reconnects() -> None:
    with_token = {"Authorization": "Bearer t", "Content-Type": "application/json"}

    async def scenario(desk: StandinHelpdesk) -> list[tuple[int, bytes]]:
        pool = Http1Pool("127.0.0.1", desk.port, size=2, timeout_s=5)
        try:
            answers = await asyncio.gather(
                *(
                    pool.post(
                        f"/api/tickets/t{i}/actions", b"{}", {**with_token, "Idempotency-Key": f"k{i % 3}"}
                    )
                    for i in range(6)
                )
            )
            assert len(pool._open) <= 2  # never more connections than the pool's size
            for writer in list(pool._open):  # the server side goes away: keep-alive expired
                writer.transport.abort()
            pool._open.clear()
            answers.append(
                await pool.post("/api/tickets/x/actions", b"{}", {**with_token, "Idempotency-Key": "z"})
            )
            answers.append(await pool.post("/api/tickets/x/actions", b"{}", {"Idempotency-Key": "y"}))
        finally:
            await pool.aclose()
        return answers

    desk = StandinHelpdesk(token="t").start()
    try:
        answers = asyncio.run(scenario(desk))
        stats = desk.stats()
    finally:
        desk.stop()
    assert [status for status, _ in answers] == [200] * 7 + [401]
    # t0 and t3 share key k0 and race: whichever came first was applied, the other replays it
    assert json.loads(answers[0][1])["ticket"] in ({"id": "t0"}, {"id": "t3"})
    assert answers[0] == answers[3]
    # each idempotency key is applied once; repeats are replays
    assert stats == {"applied": 4, "requests": 7, "replays": 3, "unauthorised": 1}


def test_waiting_stops_when_done_when_stuck_and_at_the_timeout() -> None:
    def counts(processed: int, jobs_open: int = 0) -> dict[str, int]:
        return {"processed": processed, "tickets": 5, "jobs_open": jobs_open, "outbox_pending": 0}

    seen: list[tuple[str, int, int]] = []
    series = iter([counts(1, 4), counts(3, 2), counts(5)])
    final, _, complete = wait_until_processed(lambda: next(series), 5, 30, lambda *a: seen.append(a))
    assert complete and final["processed"] == 5 and seen[-1] == ("processing", 5, 5)
    final, _, complete = wait_until_processed(lambda: counts(4), 5, 30, lambda *a: None)
    assert not complete and final["processed"] == 4  # nothing left to run: one ticket failed
    _, waited, complete = wait_until_processed(lambda: counts(4, jobs_open=1), 5, 0.3, lambda *a: None)
    assert not complete and waited >= 0.3


def test_the_section_is_rewritten_in_place(tmp_path: Path) -> None:
    results = {
        **FIGURES,
        "date": "2026-01-01T00:00:00+00:00",
        "command": "deskpilot bench ingress",
        "processed_at_end_of_send": 800,
        "drain_seconds": 1.5,
        "processing_rate": 190.0,
        "actions_delivered": 1000,
        "action_replays": 0,
        "requirements": checks(FIGURES, rate=200),
        "model": {"kind": "rules"},
        "store": {"tickets_routed": 1000},
        "cpu": {"server_send_cores": 0.8, "client_send_cores": 0.1, "standin_send_cores": 0.0},
        "settings": {"rate": 200.0, "duration_s": 5.0, "workers": 2, "connections": 64},
        "machine": {"cpu": "Test CPU", "usable_cores": 2},
    }
    md = tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- serve:start -->\nkept\n<!-- serve:end -->\n")
    update_section(md, "ingress", render_ingress(results))
    update_section(md, "ingress", render_ingress({**results, "date": "2026-02-02T00:00:00+00:00"}))
    text = md.read_text()
    assert text.count("<!-- ingress:start -->") == 1 and "kept" in text
    assert "## Ingress" in text and "2026-02-02" in text and "2026-01-01" not in text
    assert "8.0 / 20.0 / 40.0 / 90.0 ms" in text and "rules-only policy" in text


@pytest.mark.slow
def test_a_short_run_against_deskpilot_serve(tmp_path: Path) -> None:
    """20 signed webhooks a second for 2 s, rules-only policy: every one acked and processed."""
    md = tmp_path / "RESULTS.md"
    stages: set[str] = set()
    results = run_ingress(
        IngressConfig(rate=20, duration_s=2, workers=2, model="rules", connections=8, drain_timeout_s=60),
        out_dir=tmp_path / "results",
        markdown=md,
        command="deskpilot bench ingress --test",
        progress=lambda stage, done, total: stages.add(stage),
    )
    assert results["sent"] == results["accepted"] == 40
    assert results["errors"] == 0 and results["duplicates"] == 0 and results["duplicate_answers"] == 0
    assert results["processed"] == results["sent"] and results["all_processed"]
    assert results["actions_delivered"] == 40  # one action per ticket, each key applied once
    assert (
        0 < results["ack_p50_ms"] <= results["ack_p95_ms"] <= results["ack_p99_ms"] <= results["ack_max_ms"]
    )
    assert results["rps"] == pytest.approx(20, rel=0.05)
    assert results["store"]["tickets_failed"] == results["store"]["actions_dead"] == 0
    assert results["server_log"]["errors"] == 0
    assert stages == {"sending", "processing"}
    saved = json.loads((tmp_path / "results" / "ingress.json").read_text())
    assert {k: saved[k] for k in KEYS} == {k: results[k] for k in KEYS}
    assert saved["command"] == "deskpilot bench ingress --test" and saved["machine"]["cpu"]
    assert saved["settings"]["db"] == "sqlite" and saved["settings"]["model"] == "rules"
    assert summary(results)["requirements"]["errors"] is True
    text = md.read_text()
    assert "<!-- ingress:start -->" in text and "## Ingress" in text and results["date"] in text
