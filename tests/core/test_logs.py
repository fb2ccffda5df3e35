"""Log lines: JSON shape, request context, one access line per request, and no secret in any of them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from deskpilot.config import Settings, get_settings
from deskpilot.connectors.generic import sign
from deskpilot.errors import ConfigError
from deskpilot.logs import (
    ACCESS_LOGGER,
    JsonFormatter,
    bind_request,
    bind_tenant,
    configure_logging,
    job_context,
    unbind,
)
from deskpilot.store import Database, create_api_key

SECRETS = {
    "secret_key": "app-secret-key-1f2e3d4c5b6a",
    "webhook": "whsec-acme-9a8b7c6d5e4f",
    "connector": "zendesk-api-token-0011223344",
    "metrics": "metrics-token-5566778899",
}
API_KEY_SHAPED = "dpk_NotARealKeyButShapedLikeOne_0123456789"
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = False


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    return Settings(
        env="test",
        home=tmp_path,
        workers=0,
        secret_key=SecretStr(SECRETS["secret_key"]),
        webhook_secrets={"acme": SecretStr(SECRETS["webhook"])},
        connector_secrets={"helpdesk": SecretStr(SECRETS["connector"])},
        metrics_token=SecretStr(SECRETS["metrics"]),
    )


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_time_level_logger_message_and_context(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=True, level="debug", stream=stream)
    log = logging.getLogger("deskpilot.test")
    log.info("outside a request", extra={"color_message": "\x1b[36moutside\x1b[0m"})  # as uvicorn does
    token = bind_request("rid-123")
    try:
        bind_tenant("acme")
        log.warning("inside %s", "a request", extra={"ticket_id": 7})
    finally:
        unbind(token)
    with job_context(42):
        log.error("in a job")
    first, second, third = lines(stream)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "info" and first["logger"] == "deskpilot.test"
    assert first["time"].endswith("+00:00")
    assert second == {
        "time": second["time"],
        "level": "warning",
        "logger": "deskpilot.test",
        "message": "inside a request",
        "request_id": "rid-123",
        "tenant": "acme",
        "ticket_id": 7,
    }
    assert third["job_id"] == 42 and "request_id" not in third


def test_exceptions_are_one_json_line_with_their_traceback(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=True, stream=stream)
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("deskpilot.test").exception("it failed")
    (entry,) = lines(stream)
    assert entry["message"] == "it failed"
    assert entry["exc_type"] == "ValueError"
    assert "Traceback" in entry["exception"] and "bad value" in entry["exception"]


def test_text_format_shows_the_request_id(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=False, stream=stream)
    token = bind_request("rid-text")
    try:
        logging.getLogger("deskpilot.test").warning("hello")
    finally:
        unbind(token)
    line = stream.getvalue().strip()
    assert line.startswith("WARNING ") and "deskpilot.test: hello" in line and "[request_id=rid-text]" in line


def test_log_format_comes_from_settings(settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(settings.model_copy(update={"log_format": "json"}), stream=stream)
    logging.getLogger("deskpilot.test").warning("x")
    assert lines(stream)[0]["message"] == "x"
    assert Settings(env="test", home=settings.home, log_format="JSON").log_format == "json"  # type: ignore[arg-type]


@pytest.mark.parametrize("json_format", [True, False])
def test_no_secret_reaches_a_log_line(settings: Settings, json_format: bool) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=json_format, stream=stream)
    log = logging.getLogger("deskpilot.test")
    for name, secret in SECRETS.items():
        log.warning("configured %s is %s", name, secret)
        log.warning(f"inline {secret} in an f-string")
        log.warning("as an extra", extra={"detail": f"value={secret}"})
    log.warning(
        "request headers %s",
        {"Authorization": f"Bearer {API_KEY_SHAPED}", "X-Slack-Signature": "v0=abc123def456"},
    )
    log.warning("slack said %s", SLACK_TOKEN)
    log.warning("GET /hook?token=%s", SECRETS["webhook"])
    try:
        raise RuntimeError(f"upstream refused the key {SECRETS['connector']} and {API_KEY_SHAPED}")
    except RuntimeError:
        log.exception("call failed")
    try:
        raise ConnectionError(f"redis://:{SECRETS['secret_key']}@broker:6379/0 unreachable")
    except ConnectionError as exc:
        log.error("broker down", exc_info=exc)
    output = stream.getvalue()
    for secret in [*SECRETS.values(), API_KEY_SHAPED, SLACK_TOKEN, "abc123def456"]:
        assert secret not in output, secret
    assert output.count("[redacted]") >= 12
    assert "call failed" in output and "RuntimeError" in output  # the line itself survives


def test_pii_in_logs_only_when_asked(settings: Settings) -> None:
    message = "customer jane.doe@example.com, +49 30 1234567, IBAN DE89 3704 0044 0532 0130 00"
    plain = io.StringIO()
    configure_logging(settings, json_format=True, stream=plain)
    logging.getLogger("deskpilot.test").warning(message)
    assert "jane.doe@example.com" in lines(plain)[0]["message"]
    redacted = io.StringIO()
    configure_logging(settings.model_copy(update={"redact_pii": True}), json_format=True, stream=redacted)
    logging.getLogger("deskpilot.test").warning(message)
    assert lines(redacted)[0]["message"] == "customer [email], [phone], IBAN [iban]"


def test_configure_logging_replaces_its_own_handler(settings: Settings) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(settings, json_format=True, stream=first)
    configure_logging(settings, json_format=True, stream=second)
    logging.getLogger("deskpilot.test").warning("once")
    assert first.getvalue() == "" and len(lines(second)) == 1


# --- the gateway ---------------------------------------------------------------------------


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.db_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    from support.workflow_harness import KeywordPredictor, Keywords

    from deskpilot.gateway import create_app

    predictor = KeywordPredictor({"intent": Keywords({"vpn": "network"}, "other", ("network", "other"))})
    application = create_app(settings, predictor=predictor, database=database)

    def boom() -> None:
        raise RuntimeError(f"lost connection using {SECRETS['connector']}")

    def misconfigured() -> None:
        secret, webhook = SECRETS["secret_key"], SECRETS["webhook"]
        raise ConfigError(f"cannot reach redis://:{secret}@broker:6379/0 with {webhook}")

    application.add_api_route("/boom", boom, include_in_schema=False)
    application.add_api_route("/misconfigured", misconfigured, include_in_schema=False)
    return application


def test_one_access_line_per_request_with_route_status_duration_and_ids(
    settings: Settings, app: FastAPI, database: Database
) -> None:
    with database.session() as session:
        _, key = create_api_key(session, "acme", "ci")
    stream = io.StringIO()
    configure_logging(settings, json_format=True, stream=stream)
    with TestClient(app) as client:
        ok = client.post(
            "/v1/classify", json={"task": "intent", "text": "vpn"}, headers={"Authorization": f"Bearer {key}"}
        )
        missing = client.get("/v1/tickets/12345", headers={"Authorization": f"Bearer {key}"})
        anonymous = client.get("/healthz", headers={"X-Request-ID": "probe-1"})
    access = [entry for entry in lines(stream) if entry["logger"] == ACCESS_LOGGER]
    assert len(access) == 3
    classify, ticket, health = access
    assert classify["method"] == "POST" and classify["route"] == "/v1/classify" and classify["status"] == 200
    assert classify["request_id"] == ok.headers["x-request-id"]
    assert classify["tenant"] == "acme"
    assert isinstance(classify["duration_ms"], float) and classify["duration_ms"] >= 0
    assert ticket["route"] == "/v1/tickets/{ticket_id}" and ticket["path"] == "/v1/tickets/12345"
    assert ticket["status"] == missing.status_code == 404
    assert health["request_id"] == "probe-1" == anonymous.headers["x-request-id"] and "tenant" not in health
    assert key not in stream.getvalue()


def test_a_crash_is_logged_with_its_request_id_and_without_the_secret(
    settings: Settings, app: FastAPI
) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=True, stream=stream)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert SECRETS["connector"] not in response.text
    rid = response.headers["x-request-id"]
    errors = [entry for entry in lines(stream) if entry["level"] == "error"]
    assert errors and rid in errors[0]["message"] and errors[0]["request_id"] == rid
    assert "RuntimeError" in errors[0]["exception"]
    assert SECRETS["connector"] not in stream.getvalue()
    (access,) = [entry for entry in lines(stream) if entry["logger"] == ACCESS_LOGGER]
    assert access["status"] == 500 and access["request_id"] == rid


def test_error_responses_never_echo_a_secret(settings: Settings, app: FastAPI, database: Database) -> None:
    stream = io.StringIO()
    configure_logging(settings, json_format=True, stream=stream)
    wrong_key = "dpk_" + "W" * 43
    body = json.dumps({"subject": "s", "body": "b"}).encode()
    forged = sign("not-the-secret", body)
    with TestClient(app, client=("203.0.113.7", 1)) as client:
        responses = [
            client.post(
                "/v1/classify",
                json={"task": "intent", "text": "x"},
                headers={"Authorization": f"Bearer {wrong_key}"},
            ),
            client.get("/metrics", headers={"Authorization": "Bearer guessed-metrics-token"}),
            client.post(
                "/webhooks/acme/generic/desk",
                content=body,
                headers=forged | {"Content-Type": "application/json"},
            ),
        ]
        responses.append(client.get("/misconfigured"))
    assert [r.status_code for r in responses] == [401, 401, 401, 500]
    assert "cannot reach redis://" in responses[-1].text  # the message survives, its secrets do not
    signature = forged["X-Deskpilot-Signature"].split("=", 1)[1]
    for response in responses:
        for secret in [*SECRETS.values(), wrong_key, "guessed-metrics-token", signature]:
            assert secret not in response.text, (secret, response.text)
    assert wrong_key not in stream.getvalue()
    webhook = next(
        e for e in lines(stream) if e["logger"] == ACCESS_LOGGER and e["route"].startswith("/webhooks")
    )
    assert webhook["tenant"] == "acme"  # named by the path it addressed


# --- the CLI -------------------------------------------------------------------------------


def test_serve_log_json_hands_uvicorn_our_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from deskpilot.cli import app as cli

    calls: list[dict[str, Any]] = []

    def run(application: object, **kwargs: Any) -> None:
        root = logging.getLogger()
        kwargs["json_handlers"] = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
        kwargs["root_level"] = root.level
        kwargs["uvicorn_access_disabled"] = logging.getLogger("uvicorn.access").disabled
        calls.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("DESKPILOT_ENV", "development")
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    before = list(logging.getLogger().handlers)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--log-json", "--log-level", "warning"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (kwargs,) = calls
    assert kwargs["log_config"] is None and kwargs["access_log"] is False and kwargs["log_level"] == "warning"
    assert len(kwargs["json_handlers"]) == 1 and kwargs["root_level"] == logging.WARNING
    assert kwargs["uvicorn_access_disabled"]
    # the command put the logging back as it found it (tests run commands in one process)
    assert logging.getLogger().handlers == before
    assert not logging.getLogger("uvicorn.access").disabled


# --- stored errors and the terminal ----------------------------------------------------------


def test_a_failed_jobs_stored_error_carries_no_secret(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deskpilot.jobs.context import WorkerContext
    from deskpilot.jobs.runner import HANDLERS, run_one
    from deskpilot.store import get_or_create_tenant
    from deskpilot.store import queue as store_queue
    from deskpilot.store.models import JobRecord

    def leaky(context: object, run: object) -> None:
        url = f"https://desk.example/api?api_key={SECRETS['connector']}"
        raise RuntimeError(f"HTTP 401 from {url} for jane@example.com")

    monkeypatch.setitem(HANDLERS, "leaky", leaky)
    configured = settings.model_copy(update={"redact_pii": True, "job_backoff_s": 0.0})
    stream = io.StringIO()
    configure_logging(configured, json_format=True, stream=stream)
    with database.session() as session:
        tenant = get_or_create_tenant(session, "acme")
        job_id = store_queue.enqueue(session, tenant.id, "leaky", {})
    context = WorkerContext.build(configured, database)
    try:
        assert run_one(context, "test-worker") == job_id
    finally:
        context.close()
    with database.session() as session:
        job = session.get(JobRecord, job_id)
        assert job is not None and job.last_error is not None
        stored = job.last_error
    assert SECRETS["connector"] not in stored and "jane@example.com" not in stored
    assert "HTTP 401" in stored and "[email]" in stored
    assert SECRETS["connector"] not in stream.getvalue()
    assert any(entry.get("job_id") == job_id for entry in lines(stream))


def test_cli_messages_mask_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    from deskpilot.cli import say

    say(f"could not reach the broker with {SLACK_TOKEN} and Authorization: Bearer {API_KEY_SHAPED}")
    err = capsys.readouterr().err
    assert SLACK_TOKEN not in err and API_KEY_SHAPED not in err and "could not reach" in err
