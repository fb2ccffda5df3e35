"""POST /v1/feedback and /v1/jobs: corrections stored with their text, dead letters visible and retried."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth
from sqlalchemy import func, select

from deskpilot.config import Settings
from deskpilot.store import Database, create_api_key, get_tenant
from deskpilot.store.models import AuditEntry, DecisionRecord, FeedbackRecord, JobRecord, utcnow

TICKET = {"subject": "Cannot log in", "body": "My password expired this morning."}


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def notify(self, job_ids: Sequence[int]) -> None:
        self.calls.append(list(job_ids))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"workers": 0})


@pytest.fixture
def notifier(app: FastAPI) -> RecordingNotifier:
    recorder = RecordingNotifier()
    app.state.job_notifier = recorder
    return recorder


@pytest.fixture
def admin_key(database: Database) -> str:
    with database.session() as s:
        _, key = create_api_key(s, "acme", "ops", scopes=("admin",))
    return key


def new_ticket(client: TestClient, key: str) -> dict[str, Any]:
    response = client.post("/v1/tickets", json=TICKET, headers=auth(key))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def add_decision(database: Database, ticket_id: int, label: str = "access") -> int:
    with database.session() as s:
        tenant = get_tenant(s, "acme")
        assert tenant is not None
        row = DecisionRecord(
            tenant_id=tenant.id,
            ticket_id=ticket_id,
            task="intent",
            label=label,
            predicted_label=label,
            score=0.8,
            threshold=0.5,
            abstained=False,
            adapter_version="v1",
            destination="identity-team",
        )
        s.add(row)
        s.flush()
        return row.id


def feedback_count(database: Database) -> int:
    with database.session() as s:
        return int(s.scalar(select(func.count()).select_from(FeedbackRecord)) or 0)


def send(client: TestClient, key: str, body: dict[str, Any]) -> Any:
    return client.post("/v1/feedback", json=body, headers=auth(key))


# feedback --------------------------------------------------------------------------------


def test_feedback_on_a_ticket_stores_its_text_and_previous_label(
    client: TestClient, keys: Keys, database: Database
) -> None:
    ticket_id = new_ticket(client, keys.acme)["ticket_id"]
    decision_id = add_decision(database, ticket_id, "access")
    body = {"ticket_id": ticket_id, "task": "intent", "label": "password_reset", "author": "ana@example.com"}
    response = send(client, keys.acme_write, body)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out == {
        "feedback_id": out["feedback_id"],
        "task": "intent",
        "label": "password_reset",  # a label the adapter does not know yet: allowed
        "previous_label": "access",
        "ticket_id": ticket_id,
        "decision_id": None,
    }
    with database.session() as s:
        row = s.get(FeedbackRecord, out["feedback_id"])
        assert row is not None
        assert row.text == "Cannot log in\n\nMy password expired this morning."
        assert (row.author, row.source, row.previous_label) == ("ana@example.com", "api", "access")
        entry = s.scalars(select(AuditEntry).where(AuditEntry.kind == "feedback")).one()
        assert entry.ticket_id == ticket_id and entry.actor == "ana@example.com"
    history = client.get(f"/v1/tickets/{ticket_id}", headers=auth(keys.acme)).json()["history"]
    assert [e["kind"] for e in history] == ["ticket.received", "feedback"]

    by_decision = send(
        client, keys.acme_write, {"decision_id": decision_id, "label": "network", "author": "bo"}
    )
    assert by_decision.status_code == 201, by_decision.text
    assert by_decision.json()["ticket_id"] == ticket_id and by_decision.json()["task"] == "intent"
    assert by_decision.json()["decision_id"] == decision_id
    assert feedback_count(database) == 2


def test_feedback_on_a_classified_text(client: TestClient, keys: Keys, database: Database) -> None:
    text = "my vpn is down"
    classified = client.post("/v1/classify", json={"task": "intent", "text": text}, headers=auth(keys.acme))
    prediction_id = classified.json()["results"][0]["prediction_id"]
    body = {"prediction_id": prediction_id, "text": text, "task": "intent", "label": "vpn", "author": "bo"}
    response = send(client, keys.acme_write, body)
    assert response.status_code == 201, response.text
    assert response.json()["ticket_id"] is None
    error = assert_error(
        send(client, keys.acme_write, {**body, "text": "something else"}), 422, "invalid_input"
    )
    assert "not the text" in str(error["message"])
    assert_error(send(client, keys.acme_write, {**body, "task": "priority"}), 422)
    assert_error(send(client, keys.globex, body), 404, "not_found")  # not globex's prediction
    assert feedback_count(database) == 1


def test_feedback_on_unknown_or_foreign_ticket_is_404(
    client: TestClient, keys: Keys, database: Database
) -> None:
    ticket_id = new_ticket(client, keys.acme)["ticket_id"]
    body = {"ticket_id": ticket_id, "task": "intent", "label": "x", "author": "bo"}
    error = assert_error(send(client, keys.globex, body), 404, "not_found")
    assert f"no ticket {ticket_id}" in str(error["message"]) and error["hint"]
    assert_error(send(client, keys.acme, {**body, "ticket_id": ticket_id + 100}), 404, "not_found")
    assert_error(send(client, keys.acme, {"decision_id": 999, "label": "x", "author": "bo"}), 404)
    assert feedback_count(database) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"author": None}, "author"),
        ({"author": "  "}, "author"),
        ({"label": ""}, "label"),
        ({"task": None}, "task"),
        ({"task": "no/slashes"}, "task"),
        ({"ticket_id": None}, "say what is corrected"),
        ({"text": "the ticket's own text is used"}, "text"),
        ({"prediction_id": 3}, "prediction_id"),
        ({"ticket_id": 0}, "ticket_id"),
        ({"who": "bo"}, "who"),
    ],
)
def test_invalid_feedback_is_422_naming_the_problem(
    client: TestClient, keys: Keys, database: Database, change: dict[str, Any], field: str
) -> None:
    ticket_id = new_ticket(client, keys.acme)["ticket_id"]
    body: dict[str, Any] = {"ticket_id": ticket_id, "task": "intent", "label": "x", "author": "bo", **change}
    body = {k: v for k, v in body.items() if v is not None}
    error = assert_error(send(client, keys.acme, body), 422)
    assert field in str(error["message"]), error
    assert feedback_count(database) == 0


def test_feedback_needs_the_write_scope(client: TestClient, keys: Keys, database: Database) -> None:
    ticket_id = new_ticket(client, keys.acme)["ticket_id"]
    body = {"ticket_id": ticket_id, "task": "intent", "label": "x", "author": "bo"}
    assert_error(send(client, keys.acme_read, body), 403, "forbidden")
    assert feedback_count(database) == 0


# jobs ------------------------------------------------------------------------------------


def kill(database: Database, job_id: int, error: str = "predictor exploded") -> None:
    with database.session() as s:
        job = s.get(JobRecord, job_id)
        assert job is not None
        job.state, job.attempts, job.last_error, job.finished_at = "dead", job.max_attempts, error, utcnow()


def test_jobs_list_and_detail_are_tenant_scoped(client: TestClient, keys: Keys) -> None:
    mine = new_ticket(client, keys.acme)
    theirs = new_ticket(client, keys.globex)
    response = client.get("/v1/jobs", headers=auth(keys.acme_read))
    assert response.status_code == 200, response.text
    [job] = response.json()["jobs"]
    assert job["id"] == mine["job_id"] and job["kind"] == "process_ticket" and job["state"] == "queued"
    assert job["payload"] == {"ticket_id": mine["ticket_id"]}
    assert set(job) >= {
        "attempts",
        "max_attempts",
        "run_after",
        "last_error",
        "progress",
        "result",
        "created_at",
        "updated_at",
        "finished_at",
    }
    assert job["attempts"] == 0 and job["max_attempts"] == 5 and job["finished_at"] is None
    detail = client.get(f"/v1/jobs/{mine['job_id']}", headers=auth(keys.acme_read))
    assert detail.json() == job
    assert_error(client.get(f"/v1/jobs/{theirs['job_id']}", headers=auth(keys.acme)), 404, "not_found")
    filtered = client.get("/v1/jobs", params={"kind": "retrain"}, headers=auth(keys.acme)).json()
    assert filtered["jobs"] == []
    assert_error(client.get("/v1/jobs", params={"state": "zombie"}, headers=auth(keys.acme)), 422)
    assert_error(client.get("/v1/jobs", params={"limit": 501}, headers=auth(keys.acme)), 422)


def test_dead_letters_are_listed_with_their_error_and_can_be_retried(
    client: TestClient, keys: Keys, database: Database, admin_key: str, notifier: RecordingNotifier
) -> None:
    accepted = new_ticket(client, keys.acme)
    job_id = accepted["job_id"]
    notifier.calls.clear()
    assert client.get("/v1/jobs", params={"state": "dead"}, headers=auth(keys.acme)).json()["jobs"] == []
    kill(database, job_id)
    [dead] = client.get("/v1/jobs", params={"state": "dead"}, headers=auth(keys.acme)).json()["jobs"]
    assert dead["id"] == job_id and dead["last_error"] == "predictor exploded" and dead["finished_at"]

    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(keys.acme_write)), 403, "forbidden")
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(keys.globex)), 403)
    response = client.post(f"/v1/jobs/{job_id}/retry", headers=auth(admin_key))
    assert response.status_code == 202, response.text
    retried = response.json()
    assert (retried["id"], retried["state"], retried["attempts"]) == (job_id, "queued", 0)
    assert retried["finished_at"] is None
    assert notifier.calls == [[job_id]]
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(keys.acme)).json()["state"] == "queued"
    history = client.get(f"/v1/tickets/{accepted['ticket_id']}", headers=auth(keys.acme)).json()["history"]
    assert history[-1]["kind"] == "job.retried" and history[-1]["data"]["job_id"] == job_id

    error = assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(admin_key)), 409, "conflict")
    assert "queued" in str(error["message"]) and "state=dead" in str(error["hint"])


def test_retry_of_another_tenants_job_is_404(client: TestClient, keys: Keys, database: Database) -> None:
    theirs = new_ticket(client, keys.globex)["job_id"]
    kill(database, theirs)
    with database.session() as s:
        _, admin = create_api_key(s, "acme", "ops", scopes=("admin",))
    assert_error(client.post(f"/v1/jobs/{theirs}/retry", headers=auth(admin)), 404, "not_found")
    with database.session() as s:
        job = s.get(JobRecord, theirs)
        assert job is not None and job.state == "dead"
