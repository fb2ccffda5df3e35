"""GET /metrics: who may read it, and that each figure moves when the thing it counts happens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, assert_error, auth
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import update
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database, create_api_key, get_or_create_tenant
from deskpilot.store import queue as store_queue
from deskpilot.store.models import JobRecord, utcnow
from deskpilot.store.workflow import PROCESS_TICKET, RETRAIN
from deskpilot.telemetry import count_decisions
from deskpilot.types import Prediction, RouteDecision

LOOPBACK = ("127.0.0.1", 50000)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


@pytest.fixture
def local(app: FastAPI, client: TestClient) -> TestClient:
    """A client that looks like it connects from this machine (the app is already started)."""
    return TestClient(app, client=LOOPBACK)


# --- access --------------------------------------------------------------------------------


def test_loopback_may_scrape_without_a_token(local: TestClient) -> None:
    samples = scrape(local)
    assert value(samples, "deskpilot_store_up") == 1
    assert value(samples, "deskpilot_models_ready") == 1
    assert value(samples, "deskpilot_build_info", version=__import__("deskpilot").__version__) == 1


@pytest.mark.parametrize(
    ("client_host", "headers"),
    [
        ("testclient", {}),
        ("203.0.113.9", {}),
        ("10.1.2.3", {}),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),
        ("::1", {"Forwarded": "for=203.0.113.9"}),
    ],
)
def test_other_clients_get_403_with_a_hint(
    app: FastAPI, client: TestClient, client_host: str, headers: dict[str, str]
) -> None:
    remote = TestClient(app, client=(client_host, 40000))
    error = assert_error(remote.get("/metrics", headers=headers), 403, "forbidden")
    assert "DESKPILOT_METRICS_TOKEN" in str(error["hint"])


def test_ipv6_loopback_is_local(app: FastAPI, client: TestClient) -> None:
    assert TestClient(app, client=("::1", 1)).get("/metrics").status_code == 200


@pytest.fixture
def token_app(settings: Settings, predictor: FakePredictor, database: Database) -> Iterator[FastAPI]:
    configured = settings.model_copy(update={"metrics_token": SecretStr("metrics-token-0123456789")})
    app = create_app(configured, predictor=predictor, database=database)
    with TestClient(app):
        yield app


def test_with_a_token_only_the_token_opens_it(token_app: FastAPI) -> None:
    remote = TestClient(token_app, client=("203.0.113.9", 40000))
    assert scrape(remote, Authorization="Bearer metrics-token-0123456789")
    assert_error(remote.get("/metrics"), 401, "unauthorized")
    wrong = remote.get("/metrics", headers={"Authorization": "Bearer guessed-token-value"})
    assert_error(wrong, 401, "unauthorized")
    assert "guessed-token-value" not in wrong.text
    assert "metrics-token-0123456789" not in wrong.text
    # with a token set, loopback is no excuse
    local = TestClient(token_app, client=LOOPBACK)
    assert_error(local.get("/metrics"), 401, "unauthorized")


def test_metrics_is_not_in_the_openapi_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_openmetrics_is_offered_on_request(local: TestClient) -> None:
    response = local.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


# --- request latency -----------------------------------------------------------------------


def test_latency_is_labelled_by_route_template_not_path(
    local: TestClient, client: TestClient, keys: Keys
) -> None:
    for ticket_id in (101, 202, 303):
        client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme))
    client.get("/no/such/path/12345")
    client.get("/healthz")
    samples = scrape(local)
    name = "deskpilot_http_request_duration_seconds_count"
    routes = {labels["route"] for labels in series(samples, name)}
    assert "/v1/tickets/{ticket_id}" in routes
    assert "<unmatched>" in routes
    assert not any(raw in route for route in routes for raw in ("101", "202", "303", "12345")), routes
    assert value(samples, name, method="GET", route="/v1/tickets/{ticket_id}", status="4xx") == 3
    assert value(samples, name, method="GET", route="<unmatched>", status="4xx") == 1
    assert value(samples, name, method="GET", route="/healthz", status="2xx") == 1
    bucket = value(
        samples,
        "deskpilot_http_request_duration_seconds_bucket",
        method="GET",
        route="/healthz",
        status="2xx",
        le="+Inf",
    )
    assert bucket == 1


def test_an_oversize_body_is_measured_too(local: TestClient, client: TestClient, keys: Keys) -> None:
    client.post(
        "/v1/classify", content=b"x" * 20_000, headers=auth(keys.acme) | {"content-type": "application/json"}
    )
    samples = scrape(local)
    statuses = {
        labels["status"]
        for labels in series(samples, "deskpilot_http_request_duration_seconds_count")
        if labels["method"] == "POST"
    }
    assert statuses == {"4xx"}


# --- predictions and abstentions ------------------------------------------------------------


def test_classify_counts_predictions_by_task_and_label(
    local: TestClient, client: TestClient, keys: Keys
) -> None:
    before = scrape(local)
    body = {"task": "intent", "texts": ["vpn is down", "vpn again", "invoice wrong", "hello there"]}
    response = client.post("/v1/classify", json=body, headers=auth(keys.acme))
    assert response.status_code == 200, response.text
    after = scrape(local)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    predictions = "deskpilot_predictions_total"
    assert delta(predictions, source="api", task="intent", label="network") == 2
    assert delta(predictions, source="api", task="intent", label="billing") == 1
    assert delta(predictions, source="api", task="intent", label="other") == 1  # the abstained best guess
    assert delta("deskpilot_abstentions_total", source="api", task="intent") == 1


def test_failed_classify_counts_nothing(local: TestClient, client: TestClient, keys: Keys) -> None:
    before = scrape(local)
    client.post("/v1/classify", json={"task": "nope", "text": "vpn"}, headers=auth(keys.acme))
    after = scrape(local)
    changed = {
        key
        for key, v in after.items()
        if key[0] == "deskpilot_predictions_total" and before.get(key, 0.0) != v
    }
    assert changed == set()


def test_count_decisions_uses_the_routed_label_and_skips_rule_decisions() -> None:
    from deskpilot.telemetry import ABSTENTIONS, PREDICTIONS

    def now(label: str) -> float:
        return PREDICTIONS.labels("unit", "queue", label)._value.get()

    guess = Prediction("billing", 0.3, True, (), "queue", "v1", threshold=0.5)
    sure = Prediction("shipping", 0.9, False, (), "prio", "v1", threshold=0.5)
    before = now("billing"), ABSTENTIONS.labels("unit", "queue")._value.get()
    count_decisions(
        "unit",
        [
            RouteDecision("queue", None, "triage", True),
            RouteDecision("prio", "shipping", "x", False),
            RouteDecision("rule_task", "vip", "y", False, overrides=("vip",)),
        ],
        {"queue": guess, "prio": sure},
    )
    assert now("billing") - before[0] == 1
    assert ABSTENTIONS.labels("unit", "queue")._value.get() - before[1] == 1
    assert PREDICTIONS.labels("unit", "prio", "shipping")._value.get() >= 1
    assert PREDICTIONS.labels("unit", "rule_task", "vip")._value.get() == 0


POLICY = """\
version: 1
systems:
  helpdesk: {connector: generic, url: "http://127.0.0.1:9/", credentials: helpdesk}
tasks:
  queue:
    destinations:
      billing: {system: helpdesk, queue: billing-team}
triage: {system: helpdesk, queue: triage}
"""


def test_workflow_decisions_are_counted_once_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = KeywordPredictor({"queue": Keywords({"invoice": "billing"}, "other", ("billing", "other"))})
    with run_workflow(
        tmp_path, monkeypatch, predictor, make=Workflow, policy=POLICY, connector_secrets={"helpdesk": "t"}
    ) as flow:
        with flow.database.session() as session:
            _, key = create_api_key(session, "acme", "ingest", scopes=("write",))
        local = TestClient(flow.http.app, client=LOOPBACK)
        before = scrape(local)
        for text in ("invoice is wrong", "invoice twice", "what is this"):
            response = flow.http.post("/v1/tickets", json={"subject": "s", "body": text}, headers=auth(key))
            assert response.status_code == 202, response.text
        flow.run_jobs()
        after = scrape(local)
    labels = {"source": "tickets", "task": "queue"}
    assert (
        value(after, "deskpilot_predictions_total", **labels, label="billing")
        - value(before, "deskpilot_predictions_total", **labels, label="billing")
        == 2
    )
    assert (
        value(after, "deskpilot_predictions_total", **labels, label="other")
        - value(before, "deskpilot_predictions_total", **labels, label="other")
        == 1
    )
    assert (
        value(after, "deskpilot_abstentions_total", **labels)
        - value(before, "deskpilot_abstentions_total", **labels)
        == 1
    )
    # the deliveries to the unreachable helpdesk failed and wait for their retry: read from the store
    assert value(after, "deskpilot_jobs", state="done", kind=PROCESS_TICKET) == 3
    assert value(after, "deskpilot_jobs_retrying", kind="deliver_action") >= 1


# --- figures read from the store -------------------------------------------------------------


def _job(database: Database, kind: str, **values: object) -> int:
    with database.session() as session:
        tenant = get_or_create_tenant(session, "acme")
        job_id = store_queue.enqueue(session, tenant.id, kind, {})
        if values:
            session.execute(update(JobRecord).where(JobRecord.id == job_id).values(**values))
    return job_id


def test_jobs_failures_and_training_runs_come_from_the_store(local: TestClient, database: Database) -> None:
    _job(database, PROCESS_TICKET, run_after=utcnow() - timedelta(seconds=90))
    _job(database, PROCESS_TICKET)
    _job(
        database,
        PROCESS_TICKET,
        state="running",
        lease_owner="w",
        lease_expires_at=utcnow() + timedelta(minutes=1),
    )
    _job(
        database,
        PROCESS_TICKET,
        state="queued",
        attempts=1,
        last_error="timeout",
        run_after=utcnow() + timedelta(hours=1),
    )
    _job(database, "deliver_action", state="dead", attempts=5, last_error="HTTP 500")
    _job(database, RETRAIN, state="done", result={"promoted": True, "challenger": "v2"})
    _job(database, RETRAIN, state="done", result={"promoted": False, "challenger": "v3"})
    _job(database, RETRAIN, state="done", result={"promoted": False})
    _job(database, RETRAIN, state="dead", last_error="out of memory")
    samples = scrape(local)
    assert value(samples, "deskpilot_jobs", state="queued", kind=PROCESS_TICKET) == 3
    assert value(samples, "deskpilot_jobs", state="running", kind=PROCESS_TICKET) == 1
    assert value(samples, "deskpilot_jobs", state="dead", kind="deliver_action") == 1
    assert ("deskpilot_jobs", (("kind", "apply_feedback"), ("state", "dead"))) in samples  # zeros are shown
    assert value(samples, "deskpilot_jobs_retrying", kind=PROCESS_TICKET) == 1
    assert 80 <= value(samples, "deskpilot_queue_oldest_due_seconds") < 600
    assert value(samples, "deskpilot_training_runs_total", outcome="promoted") == 1
    assert value(samples, "deskpilot_training_runs_total", outcome="kept_champion") == 2
    assert value(samples, "deskpilot_training_runs_total", outcome="failed") == 1


def test_a_broken_store_leaves_the_scrape_answering(
    local: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> object:
        raise OSError("connection refused")

    local.get("/healthz")
    monkeypatch.setattr(database, "session", broken)
    samples = scrape(local)
    assert value(samples, "deskpilot_store_up") == 0
    assert not series(samples, "deskpilot_jobs")
    assert series(samples, "deskpilot_http_request_duration_seconds_count")


def test_two_apps_in_one_process_keep_their_own_registries(
    settings: Settings, database: Database, client: TestClient, local: TestClient
) -> None:
    other = create_app(settings, predictor=FakePredictor(ready=False), database=database)
    with TestClient(other) as started:
        started.get("/healthz")
        mine, theirs = scrape(local), scrape(TestClient(other, client=LOOPBACK))
    assert value(mine, "deskpilot_models_ready") == 1
    assert value(theirs, "deskpilot_models_ready") == 0
    healthz = (
        "deskpilot_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/healthz"), ("status", "2xx")),
    )
    assert theirs.get(healthz) == 1 and healthz not in mine


# --- a worker process's own counters -----------------------------------------------------------


def test_a_worker_serves_the_predictions_it_made() -> None:
    import socket

    import httpx

    from deskpilot.telemetry import count_predictions, serve_metrics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    stop = serve_metrics(port)
    try:
        guess = Prediction("low", 0.2, True, (), "worker_task", "v1", threshold=0.5)
        count_predictions("tickets", "worker_task", [guess, guess])
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert (
        value(samples, "deskpilot_predictions_total", source="tickets", task="worker_task", label="low") == 2
    )
    assert value(samples, "deskpilot_abstentions_total", source="tickets", task="worker_task") == 2
    assert series(samples, "process_cpu_seconds_total") == [{}]


def test_worker_metrics_port_is_refused_for_prefork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from deskpilot.cli import app as cli
    from deskpilot.config import get_settings

    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["worker", "--backend", "celery", "--metrics-port", "9101"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "--pool threads or solo" in result.output
