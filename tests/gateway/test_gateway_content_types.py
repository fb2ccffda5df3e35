"""Strict content types on every route that takes a body: the wrong media type is a 415.

Routes are read from the app, so a new POST/PUT/PATCH/DELETE route without a case here fails
:func:`test_every_body_route_has_a_content_type_case`. Webhooks check the signature first
(strangers learn nothing but 401), so their cases are signed with the tenant's secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import assert_error, auth
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from test_gateway_tenancy import app_routes

from deskpilot.config import Settings
from deskpilot.connectors.erpnext.verify import sign as sign_erpnext
from deskpilot.connectors.generic.verify import sign as sign_generic
from deskpilot.connectors.jira.verify import sign as sign_jira
from deskpilot.store import Database, create_api_key

SECRET = "acme-webhook-secret-0123456789"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The console's forms are the console's own (tests/console); everything else is listed here.
OTHER_OWNERS = ("/console",)

JSON = "application/json"
MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"
WRONG_FOR_JSON = [
    ("text/plain", b'{"a": 1}'),
    (FORM, b"a=1"),
    ("application/xml", b"<a/>"),
    (MULTIPART + "; boundary=x", b"--x--\r\n"),
    (None, b'{"a": 1}'),
]
WRONG_FOR_MULTIPART = [(JSON, b"{}"), ("text/plain", b"x"), (FORM, b"a=1"), (None, b"x")]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_secrets": {"acme": SecretStr(SECRET)}})


@pytest.fixture
def admin(database: Database) -> str:
    with database.session() as s:
        return create_api_key(s, "acme", "ops", scopes=("admin",))[1]


Send = Callable[[TestClient, str, str | None, bytes], Any]


def with_key(method: str, path: str) -> Send:
    def send(client: TestClient, key: str, content_type: str | None, body: bytes) -> Any:
        headers = auth(key)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return client.request(method, path, headers=headers, content=body)

    return send


def generic_signed(path: str) -> Send:
    def send(client: TestClient, key: str, content_type: str | None, body: bytes) -> Any:
        headers = sign_generic(SECRET, body)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return client.post(path, headers=headers, content=body)

    return send


def jira_signed(client: TestClient, key: str, content_type: str | None, body: bytes) -> Any:
    """Jira's signature check reads the payload's timestamp, so the body is always a real one."""
    body = json.dumps({"webhookEvent": "jira:issue_created", "timestamp": int(time.time() * 1000)}).encode()
    headers = sign_jira(SECRET, body)
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post("/webhooks/acme/jira", headers=headers, content=body)


def slack_signed(route: str) -> Send:
    def send(client: TestClient, key: str, content_type: str | None, body: bytes) -> Any:
        ts = str(int(time.time()))
        signature = SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body)
        headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": str(signature)}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return client.post(f"/webhooks/acme/slack/{route}", headers=headers, content=body)

    return send


# (method, path template) -> (how to send, wrong media types); each must answer 415
CASES: dict[tuple[str, str], tuple[Send, list[tuple[str | None, bytes]]]] = {
    ("POST", "/v1/classify"): (with_key("POST", "/v1/classify"), WRONG_FOR_JSON),
    ("POST", "/v1/tickets"): (with_key("POST", "/v1/tickets"), WRONG_FOR_JSON),
    ("POST", "/v1/feedback"): (with_key("POST", "/v1/feedback"), WRONG_FOR_JSON),
    ("POST", "/v1/respond"): (with_key("POST", "/v1/respond"), WRONG_FOR_JSON),
    ("POST", "/v1/knowledge"): (with_key("POST", "/v1/knowledge"), WRONG_FOR_JSON),
    ("POST", "/v1/jobs/{job_id}/retry"): (with_key("POST", "/v1/jobs/1/retry"), WRONG_FOR_JSON),
    ("POST", "/v1/keys/{key_id}/rotate"): (with_key("POST", "/v1/keys/1/rotate"), WRONG_FOR_JSON),
    ("DELETE", "/v1/keys/{key_id}"): (with_key("DELETE", "/v1/keys/1"), WRONG_FOR_JSON),
    ("POST", "/v1/documents"): (with_key("POST", "/v1/documents"), WRONG_FOR_MULTIPART),
    ("POST", "/v1/adapters/{task}"): (with_key("POST", "/v1/adapters/intent"), WRONG_FOR_MULTIPART),
    ("POST", "/webhooks/{tenant}/generic/{source}"): (
        generic_signed("/webhooks/acme/generic/shop"),
        WRONG_FOR_JSON,
    ),
    ("POST", "/webhooks/{tenant}/email"): (
        generic_signed("/webhooks/acme/email"),
        [(JSON, b"{}"), ("image/png", b"\x89PNG"), (FORM, b"a=1"), (None, b"From: a\r\n\r\nhi")],
    ),
    ("POST", "/webhooks/{tenant}/{system}"): (jira_signed, WRONG_FOR_JSON),
    ("POST", "/webhooks/{tenant}/{system}/{route:path}"): (
        slack_signed("commands"),
        [(JSON, b'{"command": "/x"}'), ("text/plain", b"command=/x"), (None, b"command=/x")],
    ),
}


def test_every_body_route_has_a_content_type_case(app: FastAPI) -> None:
    body_routes = {r for r in app_routes(app) if r[0] in BODY_METHODS and not r[1].startswith(OTHER_OWNERS)}
    assert sorted(body_routes - set(CASES)) == [], "add a content-type case for these routes"
    assert sorted(set(CASES) - body_routes) == [], "cases for routes that no longer exist"


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_wrong_media_type_is_415(client: TestClient, admin: str, route: tuple[str, str]) -> None:
    send, wrong = CASES[route]
    for content_type, body in wrong:
        response = send(client, admin, content_type, body)
        assert response.status_code == 415, (content_type, response.status_code, response.text)
        assert_error(response, 415, "unsupported_media_type")


def test_slack_events_take_json_and_commands_take_forms(client: TestClient) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c1", "token": "t"}).encode()
    assert slack_signed("events")(client, "", JSON, body).status_code == 200
    assert_error(slack_signed("events")(client, "", FORM, body), 415)
    assert_error(slack_signed("interactivity")(client, "", JSON, b"{}"), 415)


def test_the_right_media_types_pass(client: TestClient, admin: str) -> None:
    """Controls: with the right type (parameters and +json included) the same routes get past the check."""
    h = auth(admin)
    ok = client.post(
        "/v1/classify", headers={**h, "Content-Type": "application/json; charset=utf-8"}, content=b"{}"
    )
    assert ok.status_code == 422  # validated, not refused
    vendor = client.post(
        "/v1/tickets", headers={**h, "Content-Type": "application/vnd.api+json"}, content=b"{}"
    )
    assert vendor.status_code == 422
    assert client.delete("/v1/keys/999", headers=h).status_code == 404  # no body: fine
    assert client.post("/v1/jobs/999/retry", headers=h).status_code == 404
    raw = json.dumps({"doctype": "Issue"}).encode()
    erp = client.post("/webhooks/acme/erpnext", headers=sign_erpnext(SECRET, raw), content=raw)
    assert erp.status_code != 415 and erp.status_code < 500, erp.text
