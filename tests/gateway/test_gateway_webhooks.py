"""POST /webhooks/{tenant}/generic/{source}: signed deliveries in, once; everything else out, unstored.

Requests are signed with the connector's own ``sign``, as a sender would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth
from pydantic import SecretStr
from sqlalchemy import func, select

from deskpilot.config import Settings
from deskpilot.connectors.generic.verify import sign
from deskpilot.store import Database, Tenant
from deskpilot.store.models import AuditEntry, FeedbackRecord, InboxEvent, JobRecord, TicketRecord

ACME_SECRET = "acme-webhook-secret-0123456789"
GLOBEX_SHOP_SECRET = "globex-shop-secret-9876543210"
URL = "/webhooks/acme/generic/shop"
TICKET = {
    "type": "ticket",
    "ticket": {
        "subject": "Invoice 4411 is wrong",
        "body": "We were billed twice.",
        "requester": "ana@example.com",
        "external_id": "S-77",
        "metadata": {"order": 4411},
    },
}
TABLES = (Tenant, TicketRecord, InboxEvent, JobRecord, AuditEntry, FeedbackRecord)


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def notify(self, job_ids: Sequence[int]) -> None:
        self.calls.append(list(job_ids))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    secrets = {"acme": SecretStr(ACME_SECRET), "globex/shop": SecretStr(GLOBEX_SHOP_SECRET)}
    return settings.model_copy(update={"webhook_secrets": secrets, "workers": 0})


@pytest.fixture
def notifier(app: FastAPI) -> RecordingNotifier:
    recorder = RecordingNotifier()
    app.state.job_notifier = recorder
    return recorder


def counts(database: Database) -> dict[str, int]:
    with database.session() as s:
        return {
            model.__tablename__: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for model in TABLES
        }


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def deliver(
    client: TestClient,
    raw: bytes,
    *,
    url: str = URL,
    secret: str = ACME_SECRET,
    delivery_id: str | None = "dlv-1",
    timestamp: int | None = None,
    drop: Sequence[str] = (),
    extra: dict[str, str] | None = None,
) -> Any:
    headers = {
        "Content-Type": "application/json",
        **sign(secret, raw, timestamp=timestamp, delivery_id=delivery_id),
    }
    for name in drop:
        headers.pop(name)
    headers.update(extra or {})
    return client.post(url, content=raw, headers=headers)


# accepted --------------------------------------------------------------------------------


def test_signed_ticket_is_202_and_stored(
    client: TestClient, database: Database, notifier: RecordingNotifier
) -> None:
    response = deliver(client, encode(TICKET))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {
        "ticket_id": body["ticket_id"],
        "job_id": body["job_id"],
        "state": "received",
        "duplicate": False,
    }
    assert response.headers["location"] == f"/v1/tickets/{body['ticket_id']}"
    assert notifier.calls == [[body["job_id"]]]
    with database.session() as s:
        ticket = s.get(TicketRecord, body["ticket_id"])
        assert ticket is not None
        assert (ticket.source, ticket.external_id, ticket.subject) == (
            "shop",
            "S-77",
            "Invoice 4411 is wrong",
        )
        assert ticket.meta == {"order": 4411}
        inbox = s.scalars(select(InboxEvent)).one()
        assert (inbox.source, inbox.delivery_id, inbox.ticket_id) == ("shop", "dlv-1", ticket.id)
        entry = s.scalars(select(AuditEntry)).one()
        assert entry.actor == "webhook:generic/shop" and entry.ticket_id == ticket.id


def test_readable_with_an_api_key_of_the_tenant(client: TestClient, keys: Keys) -> None:
    ticket_id = deliver(client, encode(TICKET)).json()["ticket_id"]
    assert client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme_read)).json()["source"] == "shop"
    assert_error(client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.globex)), 404)


def test_retried_delivery_answers_the_original_and_creates_nothing(
    client: TestClient, database: Database, notifier: RecordingNotifier
) -> None:
    raw = encode(TICKET)
    first = deliver(client, raw)
    resigned = deliver(client, raw, timestamp=int(time.time()) + 5)  # a sender's retry, signed anew
    assert first.status_code == resigned.status_code == 202, resigned.text
    assert resigned.json() == {**first.json(), "duplicate": True}
    assert resigned.headers["idempotent-replayed"] == "true"
    before = counts(database)
    assert before["tickets"] == before["inbox_events"] == before["jobs"] == before["audit_log"] == 1
    assert notifier.calls == [[first.json()["job_id"]]]


def test_replayed_request_within_the_window_creates_nothing(client: TestClient, database: Database) -> None:
    raw = encode(TICKET)
    headers = {"Content-Type": "application/json", **sign(ACME_SECRET, raw, delivery_id="dlv-9")}
    first = client.post(URL, content=raw, headers=headers)
    replay = client.post(URL, content=raw, headers=headers)  # byte for byte, as an attacker would
    assert replay.status_code == 202 and replay.json()["duplicate"] is True
    assert replay.json()["ticket_id"] == first.json()["ticket_id"]
    assert counts(database)["tickets"] == 1


def test_a_captured_request_replayed_under_a_new_delivery_id_is_409_and_stores_nothing(
    client: TestClient, database: Database
) -> None:
    raw = encode(TICKET)
    headers = {"Content-Type": "application/json", **sign(ACME_SECRET, raw, delivery_id="dlv-9")}
    assert client.post(URL, content=raw, headers=headers).status_code == 202
    before = counts(database)
    replay = client.post(URL, content=raw, headers={**headers, "X-Deskpilot-Delivery": "dlv-10"})
    error = assert_error(replay, 409, "conflict")
    assert "already delivered under another delivery id" in str(error["message"])
    assert counts(database) == before


def test_a_new_delivery_id_is_a_new_ticket_and_sources_are_separate(
    client: TestClient, database: Database
) -> None:
    raw = encode(TICKET)
    a = deliver(client, raw, delivery_id="dlv-1").json()
    b = deliver(client, raw, delivery_id="dlv-2", timestamp=int(time.time()) + 1).json()
    c = deliver(client, raw, delivery_id="dlv-1", url="/webhooks/acme/generic/crm").json()
    assert len({a["ticket_id"], b["ticket_id"], c["ticket_id"]}) == 3
    assert not any(x["duplicate"] for x in (a, b, c))
    assert counts(database)["tickets"] == 3


def test_secret_per_tenant_and_source(client: TestClient, database: Database) -> None:
    raw = encode(TICKET)
    ok = deliver(client, raw, url="/webhooks/globex/generic/shop", secret=GLOBEX_SHOP_SECRET)
    assert ok.status_code == 202, ok.text
    error = assert_error(
        deliver(client, raw, url="/webhooks/globex/generic/crm", secret=GLOBEX_SHOP_SECRET),
        401,
        "unauthorized",
    )
    assert "DESKPILOT_WEBHOOK_SECRETS" in str(error["hint"])
    # acme's secret does not open globex's door
    assert_error(deliver(client, raw, url="/webhooks/globex/generic/shop", secret=ACME_SECRET), 401)
    assert counts(database)["tickets"] == 1


# rejected: nothing stored ----------------------------------------------------------------


def _forged(raw: bytes) -> dict[str, str]:
    headers = sign(ACME_SECRET, raw, delivery_id="dlv-f")
    digest = headers["X-Deskpilot-Signature"].removeprefix("v1=")
    headers["X-Deskpilot-Signature"] = "v1=" + ("0" if digest[0] != "0" else "1") + digest[1:]
    return headers


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("forged", "does not match"),
        ("wrong_secret", "does not match"),
        ("tampered_body", "does not match"),
        ("expired", "replay window"),
        ("future", "in the future"),
        ("no_signature", "missing X-Deskpilot-Signature"),
        ("no_timestamp", "missing X-Deskpilot-Timestamp"),
        ("no_headers", "missing"),
        ("bad_timestamp", "unix seconds"),
        ("bearer_instead", "missing"),
    ],
)
def test_unauthentic_deliveries_are_401_and_store_nothing(
    client: TestClient, database: Database, keys: Keys, case: str, message: str
) -> None:
    raw = encode(TICKET)
    before = counts(database)
    now = int(time.time())
    headers: dict[str, str] = {"Content-Type": "application/json"}
    body = raw
    if case == "forged":
        headers.update(_forged(raw))
    elif case == "wrong_secret":
        headers.update(sign("not-the-secret", raw))
    elif case == "tampered_body":
        headers.update(sign(ACME_SECRET, raw))
        body = raw.replace(b"twice", b"thrice")
    elif case == "expired":
        headers.update(sign(ACME_SECRET, raw, timestamp=now - 301 - 5))
    elif case == "future":
        headers.update(sign(ACME_SECRET, raw, timestamp=now + 600))
    elif case == "no_signature":
        headers.update(sign(ACME_SECRET, raw))
        del headers["X-Deskpilot-Signature"]
    elif case == "no_timestamp":
        headers.update(sign(ACME_SECRET, raw))
        del headers["X-Deskpilot-Timestamp"]
    elif case == "bad_timestamp":
        headers.update(sign(ACME_SECRET, raw, timestamp=now))
        headers["X-Deskpilot-Timestamp"] = "yesterday"
    elif case == "bearer_instead":
        headers.update(auth(keys.acme))
    response = client.post(URL, content=body, headers=headers)
    error = assert_error(response, 401, "unauthorized")
    assert message in str(error["message"]), error
    assert ACME_SECRET not in response.text
    assert counts(database) == before


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"type": "ticket", "ticket": {"subject": ', "not JSON"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b'["a", "list"]', "not an object"),
        (encode({"ticket": TICKET["ticket"]}), "type: missing"),
        (encode({"type": "incident", "incident": {}}), "is not known"),
        (encode({"type": "ticket"}), "ticket: missing"),
        (encode({"type": "ticket", "ticket": {"subjet": "typo", "body": "x"}}), "ticket.subjet"),
        (encode({"type": "ticket", "ticket": {"subject": " ", "body": ""}}), "both are empty"),
        (encode({"type": "ticket", "ticket": {"subject": 42}}), "ticket.subject"),
        (encode({"type": "ticket", "ticket": {"body": "x" * 501}}), "at most 500"),
    ],
)
def test_malformed_bodies_are_422_and_store_nothing(
    client: TestClient, database: Database, raw: bytes, message: str
) -> None:
    before = counts(database)
    error = assert_error(deliver(client, raw), 422, "invalid_input")
    assert message in str(error["message"]), error
    assert counts(database) == before


def test_missing_delivery_id_is_422(client: TestClient, database: Database) -> None:
    error = assert_error(
        deliver(client, encode(TICKET), delivery_id=None, drop=["X-Deskpilot-Delivery"]), 422
    )
    assert "X-Deskpilot-Delivery" in str(error["message"])
    assert counts(database)["tickets"] == 0


def test_feedback_deliveries_are_refused_pointing_to_the_feedback_api(
    client: TestClient, database: Database
) -> None:
    before = counts(database)
    feedback = {
        "type": "feedback",
        "feedback": {"ticket_id": 1, "task": "intent", "label": "x", "author": "bo"},
    }
    error = assert_error(deliver(client, encode(feedback)), 422, "invalid_input")
    assert "POST /v1/feedback" in str(error["hint"])
    assert counts(database) == before


def test_signed_but_not_json_content_type_is_415(client: TestClient, database: Database) -> None:
    response = deliver(client, encode(TICKET), extra={"Content-Type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")
    assert counts(database)["tickets"] == 0


def test_tenant_without_a_secret_is_401_and_names_the_setting(client: TestClient, database: Database) -> None:
    before = counts(database)
    raw = encode(TICKET)
    response = deliver(client, raw, url="/webhooks/initech/generic/shop", secret="anything-at-all")
    error = assert_error(response, 401, "unauthorized")
    assert "DESKPILOT_WEBHOOK_SECRETS" in str(error["hint"]) and '"initech"' in str(error["hint"])
    assert counts(database) == before  # not even a tenant row


@pytest.mark.parametrize(
    "url", ["/webhooks/ACME/generic/shop", "/webhooks/acme/generic/Shop", "/webhooks/acme/generic/s.p"]
)
def test_malformed_tenant_or_source_is_404(client: TestClient, database: Database, url: str) -> None:
    assert_error(deliver(client, encode(TICKET), url=url), 404, "not_found")
    assert counts(database)["tickets"] == 0


def test_oversized_body_is_413(client: TestClient, database: Database) -> None:
    raw = encode({"type": "ticket", "ticket": {"subject": "x", "body": "y" * 20_000}})
    assert_error(deliver(client, raw), 413, "payload_too_large")
    assert counts(database)["tickets"] == 0


def test_openapi_documents_the_signature_not_a_bearer_key(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/webhooks/{tenant}/generic/{source}"]["post"]
    assert "security" not in operation
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"X-Deskpilot-Timestamp", "X-Deskpilot-Signature", "X-Deskpilot-Delivery"}
    assert "signature" in operation["responses"]["401"]["description"]
    assert "202" in operation["responses"]
