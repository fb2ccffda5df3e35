"""POST /v1/tickets, GET /v1/tickets/{id} and the audit log: 202 fast, once per key, per tenant."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth
from sqlalchemy import func, select

from deskpilot.config import Settings
from deskpilot.store import Database, create_api_key, get_tenant
from deskpilot.store.models import (
    AuditEntry,
    DecisionRecord,
    InboxEvent,
    JobRecord,
    OutboxAction,
    TicketRecord,
)

TICKET = {
    "subject": "VPN drops every hour",
    "body": "Since this morning the VPN disconnects every hour.",
    "requester": "ana@example.com",
    "source": "email",
    "external_id": "T-1042",
    "metadata": {"channel": "email", "priority": 2},
}
TABLES = (TicketRecord, InboxEvent, JobRecord, AuditEntry)


class RecordingNotifier:
    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    def notify(self, job_ids: Sequence[int]) -> None:
        self.calls.append(list(job_ids))
        if self.fail:
            raise ConnectionError("broker down")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No worker may pick the jobs up behind the tests' backs, whatever the app starts.
    return settings.model_copy(update={"workers": 0})


@pytest.fixture
def notifier(app: FastAPI) -> RecordingNotifier:
    recorder = RecordingNotifier()
    app.state.job_notifier = recorder
    return recorder


@pytest.fixture
def admin_key(database: Database) -> str:
    with database.session() as s:
        _, key = create_api_key(s, "acme", "auditor", scopes=("admin",))
    return key


def counts(database: Database) -> dict[str, int]:
    with database.session() as s:
        return {
            model.__tablename__: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for model in TABLES
        }


def post(client: TestClient, key: str, body: Any = None, idempotency_key: str | None = None) -> Any:
    headers = auth(key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/v1/tickets", json=TICKET if body is None else body, headers=headers)


def utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset() == UTC.utcoffset(None), value
    return parsed


# POST ------------------------------------------------------------------------------------


def test_accepted_202_with_location_and_stored_once(
    client: TestClient, keys: Keys, database: Database, notifier: RecordingNotifier
) -> None:
    response = post(client, keys.acme_write)
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"ticket_id", "job_id", "state", "duplicate"}
    assert body["state"] == "received" and body["duplicate"] is False
    assert isinstance(body["ticket_id"], int) and isinstance(body["job_id"], int)
    assert response.headers["location"] == f"/v1/tickets/{body['ticket_id']}"
    assert "idempotent-replayed" not in response.headers
    assert counts(database) == {"tickets": 1, "inbox_events": 1, "jobs": 1, "audit_log": 1}
    assert notifier.calls == [[body["job_id"]]]
    with database.session() as s:
        ticket = s.get(TicketRecord, body["ticket_id"])
        job = s.get(JobRecord, body["job_id"])
        acme = get_tenant(s, "acme")
        assert ticket is not None and job is not None and acme is not None
        assert ticket.tenant_id == acme.id and job.tenant_id == acme.id
        assert (ticket.subject, ticket.source, ticket.external_id) == (TICKET["subject"], "email", "T-1042")
        assert ticket.meta == TICKET["metadata"] and ticket.requester == "ana@example.com"
        assert (job.kind, job.state, job.payload) == ("process_ticket", "queued", {"ticket_id": ticket.id})


def test_same_idempotency_key_answers_the_original_and_creates_nothing(
    client: TestClient, keys: Keys, database: Database, notifier: RecordingNotifier
) -> None:
    first = post(client, keys.acme_write, idempotency_key="order-77")
    again = post(client, keys.acme, idempotency_key="order-77")  # another key of the same tenant
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert counts(database) == {"tickets": 1, "inbox_events": 1, "jobs": 1, "audit_log": 1}
    assert notifier.calls == [[first.json()["job_id"]]]  # nothing new to run, nobody woken

    other = post(client, keys.acme_write, idempotency_key="order-78")
    assert other.status_code == 202 and other.json()["ticket_id"] != first.json()["ticket_id"]
    assert counts(database)["tickets"] == 2


def test_a_key_reused_for_a_different_ticket_is_409_and_stores_nothing(
    client: TestClient, keys: Keys, database: Database
) -> None:
    assert post(client, keys.acme_write, idempotency_key="order-90").status_code == 202
    changed = {**TICKET, "subject": "another problem"}
    other = post(client, keys.acme_write, changed, idempotency_key="order-90")
    assert_error(other, 409, "conflict")
    assert "order-90" in other.json()["error"]["message"]
    assert counts(database) == {"tickets": 1, "inbox_events": 1, "jobs": 1, "audit_log": 1}


def test_without_a_key_every_request_is_a_new_ticket(
    client: TestClient, keys: Keys, database: Database
) -> None:
    ids = {post(client, keys.acme_write).json()["ticket_id"] for _ in range(2)}
    assert len(ids) == 2
    assert counts(database)["inbox_events"] == 2


def test_same_key_in_two_tenants_makes_two_tickets(
    client: TestClient, keys: Keys, database: Database
) -> None:
    acme = post(client, keys.acme_write, idempotency_key="shared-key").json()
    globex = post(client, keys.globex, idempotency_key="shared-key").json()
    assert acme["duplicate"] is False and globex["duplicate"] is False
    assert acme["ticket_id"] != globex["ticket_id"]
    assert counts(database)["tickets"] == 2
    # globex's repeat is globex's duplicate, not acme's ticket
    assert post(client, keys.globex, idempotency_key="shared-key").json()["ticket_id"] == globex["ticket_id"]


def test_a_slow_or_broken_bell_does_not_fail_the_request(
    app: FastAPI, client: TestClient, keys: Keys, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    app.state.job_notifier = RecordingNotifier(fail=True)
    with caplog.at_level(logging.ERROR, logger="deskpilot.gateway"):
        response = post(client, keys.acme_write)
    assert response.status_code == 202, response.text
    assert counts(database)["jobs"] == 1
    assert "could not notify workers" in caplog.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "subject and body are both empty"),
        ({"subject": "  ", "body": "\n"}, "subject and body are both empty"),
        ({**TICKET, "subjet": "typo"}, "subjet"),
        ({**TICKET, "body": "x" * 501}, "body.body"),
        ({**TICKET, "subject": "x" * 1001}, "body.subject"),
        ({**TICKET, "source": "Bad Source"}, "body.source"),
        ({**TICKET, "source": ""}, "body.source"),
        ({**TICKET, "requester": "x" * 321}, "body.requester"),
        ({**TICKET, "external_id": ""}, "body.external_id"),
        ({**TICKET, "metadata": ["not", "an", "object"]}, "body.metadata"),
        ({**TICKET, "subject": 42}, "body.subject"),
        ({**TICKET, "body": "nul \x00 inside"}, "body.body"),
        (["a", "list"], "body"),
    ],
)
def test_invalid_tickets_are_422_naming_the_field_and_store_nothing(
    client: TestClient, keys: Keys, database: Database, body: Any, field: str
) -> None:
    before = counts(database)
    error = assert_error(post(client, keys.acme_write, body, idempotency_key="k-1"), 422, "validation_error")
    assert field in str(error["message"]), error
    assert counts(database) == before == {"tickets": 0, "inbox_events": 0, "jobs": 0, "audit_log": 0}
    # the key was not used up by the failed request
    assert post(client, keys.acme_write, idempotency_key="k-1").json()["duplicate"] is False


@pytest.mark.parametrize("key", ["x" * 201, "tab\there"])
def test_bad_idempotency_key_is_422(client: TestClient, keys: Keys, database: Database, key: str) -> None:
    error = assert_error(post(client, keys.acme_write, idempotency_key=key), 422, "validation_error")
    assert "Idempotency-Key" in str(error["message"])
    assert counts(database)["tickets"] == 0


def test_not_json_is_415_and_broken_json_is_400(client: TestClient, keys: Keys, database: Database) -> None:
    headers = {**auth(keys.acme_write), "Content-Type": "text/plain"}
    assert_error(client.post("/v1/tickets", content=b"subject=x", headers=headers), 415)
    headers["Content-Type"] = "application/json"
    assert_error(client.post("/v1/tickets", content=b'{"subject": ', headers=headers), 400, "invalid_json")
    assert counts(database)["tickets"] == 0


def test_read_only_key_cannot_post_but_can_read(client: TestClient, keys: Keys, database: Database) -> None:
    error = assert_error(post(client, keys.acme_read), 403, "forbidden")
    assert "write" in str(error["message"])
    assert counts(database)["tickets"] == 0
    ticket_id = post(client, keys.acme_write).json()["ticket_id"]
    assert client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme_read)).status_code == 200


def test_no_key_is_401(client: TestClient, database: Database) -> None:
    assert_error(client.post("/v1/tickets", json=TICKET), 401, "unauthorized")
    assert counts(database)["tickets"] == 0


# GET -------------------------------------------------------------------------------------


def _decide(database: Database, ticket_id: int) -> tuple[int, int]:
    """What a worker would write: a decision, an outbox action that died, their audit entries."""
    with database.session() as s:
        ticket = s.get(TicketRecord, ticket_id)
        assert ticket is not None
        decision = DecisionRecord(
            tenant_id=ticket.tenant_id,
            ticket_id=ticket_id,
            task="intent",
            label="network",
            predicted_label="network",
            score=0.93,
            threshold=0.5,
            abstained=False,
            adapter_version="v1",
            destination="network-team",
            overrides={"rules": []},
            explanation={"summary": "intent=network (0.93 >= 0.50)"},
        )
        action = OutboxAction(
            tenant_id=ticket.tenant_id,
            ticket_id=ticket_id,
            system="desk",
            connector="generic",
            kind="set_queue",
            payload={"fields": {"queue": "network-team"}, "external_id": "T-1042"},
            idempotency_key=f"t{ticket_id}-set_queue",
            state="dead",
            attempts=5,
            last_error="POST http://desk/tickets/T-1042/actions answered 500: boom",
        )
        s.add_all([decision, action])
        s.flush()
        s.add(AuditEntry(tenant_id=ticket.tenant_id, ticket_id=ticket_id, kind="decision", actor="worker"))
        ticket.state = "routed"
        return decision.id, action.id


def test_ticket_shows_state_decisions_actions_and_history(
    client: TestClient, keys: Keys, database: Database
) -> None:
    ticket_id = post(client, keys.acme_write, idempotency_key="d-1").json()["ticket_id"]
    fresh = client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme_read)).json()
    assert fresh["state"] == "received" and fresh["decisions"] == [] and fresh["actions"] == []
    assert [e["kind"] for e in fresh["history"]] == ["ticket.received"]
    received = fresh["history"][0]
    assert received["data"] == {"source": "email", "delivery_id": "d-1", "external_id": "T-1042"}
    assert received["actor"].startswith("api-key:ingest")

    decision_id, action_id = _decide(database, ticket_id)
    response = client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme_read))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == ticket_id and body["state"] == "routed"
    for name in ("subject", "body", "requester", "source", "external_id", "metadata"):
        assert body[name] == TICKET[name], name
    assert utc(body["created_at"]) <= utc(body["updated_at"])
    [decision] = body["decisions"]
    assert decision["id"] == decision_id
    assert {
        k: decision[k] for k in ("task", "label", "score", "abstained", "destination", "adapter_version")
    } == {
        "task": "intent",
        "label": "network",
        "score": 0.93,
        "abstained": False,
        "destination": "network-team",
        "adapter_version": "v1",
    }
    assert decision["explanation"]["summary"].startswith("intent=network")
    utc(decision["created_at"])
    [action] = body["actions"]
    assert action["id"] == action_id and action["state"] == "dead" and action["attempts"] == 5
    assert action["fields"] == {"queue": "network-team"} and "answered 500" in action["last_error"]
    assert action["done_at"] is None
    assert [e["kind"] for e in body["history"]] == ["ticket.received", "decision"]

    audit = client.get(f"/v1/tickets/{ticket_id}/audit", headers=auth(keys.acme_read)).json()
    assert audit["entries"] == body["history"]


def test_other_tenants_ticket_is_404(client: TestClient, keys: Keys) -> None:
    ticket_id = post(client, keys.acme_write).json()["ticket_id"]
    for path in (f"/v1/tickets/{ticket_id}", f"/v1/tickets/{ticket_id}/audit"):
        error = assert_error(client.get(path, headers=auth(keys.globex)), 404, "not_found")
        assert str(ticket_id) in str(error["message"])
        assert "VPN drops" not in str(error)
    assert_error(client.get(f"/v1/tickets/{ticket_id + 1}", headers=auth(keys.acme)), 404, "not_found")


@pytest.mark.parametrize("bad", ["0", "-1", "abc", str(2**64)])
def test_impossible_ticket_ids_are_422(client: TestClient, keys: Keys, bad: str) -> None:
    assert_error(client.get(f"/v1/tickets/{bad}", headers=auth(keys.acme)), 422, "validation_error")


def test_tenant_audit_log_needs_admin_and_is_tenant_scoped(
    client: TestClient, keys: Keys, admin_key: str
) -> None:
    mine = post(client, keys.acme_write).json()["ticket_id"]
    post(client, keys.globex)
    assert_error(client.get("/v1/audit", headers=auth(keys.acme)), 403, "forbidden")
    response = client.get("/v1/audit", params={"limit": 10}, headers=auth(admin_key))
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    assert [(e["kind"], e["ticket_id"]) for e in entries] == [("ticket.received", mine)]
    assert_error(client.get("/v1/audit", params={"limit": 0}, headers=auth(admin_key)), 422)
