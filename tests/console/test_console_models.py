"""Models page: versions, per-class figures, reliability, feedback counts, and the lead-only actions."""

from __future__ import annotations

import re

import pytest
from console_support import Seeded, enter, page_csrf
from fastapi.testclient import TestClient
from sqlalchemy import select

from deskpilot.adapters.registry import Registry
from deskpilot.config import Settings
from deskpilot.store import Database, list_adapter_records
from deskpilot.store.models import AuditEntry, JobRecord


def _new_feedback(html: str) -> int:
    found = re.search(r'data-testid="feedback-new-intent">(\d+)<', html)
    assert found, "no feedback count on the page"
    return int(found.group(1))


def test_models_page_shows_versions_classes_and_reliability(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    page = client.get("/console/models")
    assert page.status_code == 200
    text = page.text
    assert "serving v1" in text and "champion" in text and "v2" in text
    assert "0.860" in text  # v2's eval accuracy from its card
    # per class: training rows from card.json, per-class threshold, card precision, served coverage
    row = re.search(r"<tr><td>access</td>(.*?)</tr>", text, re.S)
    assert row is not None
    cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
    assert cells[:4] == ["40", "0.60", "90%", "80%"]
    assert cells[4:6] == ["1", "0%"]  # served once, abstained
    assert '<svg class="plot"' in text and "Reliability of intent" in text
    assert _new_feedback(text) == 0


def test_agents_see_no_buttons_and_get_403(client: TestClient, seeded: Seeded, settings: Settings) -> None:
    enter(client, "agent")
    page = client.get("/console/models")
    assert "Promote v2" not in page.text and "Roll back" not in page.text and "Retrain" not in page.text
    csrf = page_csrf(client, "/console/models")
    for action, data in (("promote", {"version": "v2"}), ("rollback", {}), ("retrain", {})):
        response = client.post(f"/console/models/intent/{action}", data={"csrf_token": csrf, **data})
        assert response.status_code == 403, action
        assert "your role (agent) cannot do this" in response.text
    assert Registry(settings.adapters_dir).champion_version("acme", "intent") == "v1"


def test_a_lead_promotes_and_rolls_back(
    client: TestClient, seeded: Seeded, settings: Settings, database: Database
) -> None:
    enter(client, "lead")
    page = client.get("/console/models")
    assert "Promote v2" in page.text
    csrf = page_csrf(client, "/console/models")
    response = client.post(
        "/console/models/intent/promote", data={"csrf_token": csrf, "version": "v2"}, follow_redirects=False
    )
    assert response.status_code == 303
    registry = Registry(settings.adapters_dir)
    assert registry.champion_version("acme", "intent") == "v2"
    with database.session() as session:
        statuses = {r.version: r.status for r in list_adapter_records(session, "acme", "intent")}
        assert statuses == {"v2": "champion"}
        entry = session.scalars(select(AuditEntry).where(AuditEntry.kind == "adapter.promoted")).one()
        assert entry.actor == "console:lead@acme.test"
        assert entry.data == {"task": "intent", "version": "v2", "previous": "v1"}
    promoted = client.get(response.headers["location"]).text
    assert "serving v2" in promoted
    # v2's card carries its validation reliability: the plot uses it (v1's had none)
    assert "Reliability from validation rows (card.json); ECE 0.038" in promoted
    assert promoted.count('class="bin"') == 2

    back = client.post("/console/models/intent/rollback", data={"csrf_token": csrf}, follow_redirects=False)
    assert back.status_code == 303
    assert registry.champion_version("acme", "intent") == "v1"
    with database.session() as session:
        statuses = {r.version: r.status for r in list_adapter_records(session, "acme", "intent")}
        assert statuses == {"v1": "champion", "v2": "retired"}


@pytest.mark.parametrize(("version", "status"), [("v9", 404), ("../v1", 422), ("", 404)])
def test_promoting_an_unknown_version_changes_nothing(
    client: TestClient, seeded: Seeded, settings: Settings, version: str, status: int
) -> None:
    enter(client, "admin")
    csrf = page_csrf(client, "/console/models")
    response = client.post("/console/models/intent/promote", data={"csrf_token": csrf, "version": version})
    assert response.status_code == status
    assert Registry(settings.adapters_dir).champion_version("acme", "intent") == "v1"


def test_another_tenant_cannot_touch_acmes_models(
    client: TestClient, seeded: Seeded, settings: Settings
) -> None:
    enter(client, "globex")  # an agent of globex; make it a lead to pass the role check
    from deskpilot.store.users import set_role

    database: Database = client.app.state.database  # type: ignore[attr-defined]
    with database.session() as session:
        set_role(session, "globex", "agent@globex.test", "lead")
    csrf = page_csrf(client, "/console/models")
    page = client.get("/console/models")
    assert "Promote v2" not in page.text  # acme's versions are not listed
    response = client.post("/console/models/intent/promote", data={"csrf_token": csrf, "version": "v2"})
    assert response.status_code == 404
    assert Registry(settings.adapters_dir).champion_version("acme", "intent") == "v1"
    assert client.post("/console/models/intent/retrain", data={"csrf_token": csrf}).status_code == 409


def test_retrain_queues_one_job_and_its_status_is_polled(
    client: TestClient, seeded: Seeded, database: Database
) -> None:
    enter(client, "lead")
    csrf = page_csrf(client, "/console/models")
    first = client.post("/console/models/intent/retrain", data={"csrf_token": csrf}, follow_redirects=False)
    second = client.post("/console/models/intent/retrain", data={"csrf_token": csrf}, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    with database.session() as session:
        jobs = session.scalars(select(JobRecord).where(JobRecord.kind == "retrain")).all()
        assert len(jobs) == 1  # a second click finds the queued job
        job = jobs[0]
        assert job.payload["reason"] == "console" and job.payload["requested_by"] == "lead@acme.test"
    page = client.get("/console/models")
    assert f'data-job-id="{job.id}"' in page.text and 'data-job-state="queued"' in page.text
    assert "/console/static/jobs.js" in page.text
    status = client.get(f"/console/api/jobs/{job.id}")
    assert status.status_code == 200
    assert status.json()["state"] == "queued" and status.json()["kind"] == "retrain"

    enter(client, "globex")
    other = client.get(f"/console/api/jobs/{job.id}")
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/json")


def test_job_status_needs_a_session(client: TestClient, seeded: Seeded) -> None:
    response = client.get("/console/api/jobs/1")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "sign_in_required"


def test_a_correction_counts_on_the_models_page(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    assert _new_feedback(client.get("/console/models").text) == 0
    ticket = seeded.tickets["Cannot log in"]
    client.post(
        f"/console/tickets/{ticket}/feedback",
        data={
            "csrf_token": page_csrf(client),
            "decision_id": str(seeded.decisions["Cannot log in"]),
            "action": "change",
            "label": "access",
        },
    )
    page = client.get("/console/models").text
    assert _new_feedback(page) == 1
    row = re.search(r"<tr><td>access</td>(.*?)</tr>", page, re.S)
    assert row is not None
    # judged once (abstained, so it does not count for precision): judged 0 answered
    assert re.findall(r"<td>([^<]*)</td>", row.group(1))[6:8] == ["0", "–"]
