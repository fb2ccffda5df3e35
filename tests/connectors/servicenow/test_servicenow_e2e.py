"""End to end: a signed Business Rule delivery through the gateway and the job queue to the Table API.

Real pieces throughout: the FastAPI app, SQLite, the job runner, the ServiceNow client, and a
stand-in instance on a loopback port that records every REST call and plays the Business
Rule (its ``webhooks`` are the bodies the rule would post). Only the classifier is a
deterministic fake (keywords): the test is about the plumbing, not the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support.servicenow_standin import ServiceNowStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.connectors.servicenow import sign
from deskpilot.connectors.servicenow.verify import TOKEN_HEADER
from deskpilot.store.models import InboxEvent

SECRET = "servicenow-webhook-secret-acme"
USER, PASSWORD = "deskpilot.integration", "integration-pw"
NETWORK = "287ebd7da9fe198100f92cc8d1d2154e"
BILLING = "b85d44954a3623120004689b2d5dd60a"
TRIAGE = "d625dccec0a8016700a222a0f7900d06"
POLICY = f"""\
version: 1
systems:
  itsm:
    connector: servicenow
    url: {{url}}
    credentials: servicenow-acme
    options:
      integration_user: {USER}
      priority_map: "urgent=1/1, high=1/2, medium=2/2, low=2/3"
tasks:
  intent:
    min_score: 0.6
    destinations:
      network: {{{{system: itsm, group: {NETWORK}, fields: {{{{category: network}}}}}}}}
      billing: {{{{system: itsm, group: {BILLING}, fields: {{{{category: inquiry}}}}}}}}
  priority:
    field: priority
    min_score: 0.5
    abstain_to_triage: false
triage:
  system: itsm
  group: {TRIAGE}
"""


# intent: a keyword gives its label at 0.9, else "other" at 0.3; priority: "high" at 0.8
PREDICTOR = KeywordPredictor(
    {
        "intent": Keywords(
            {"vpn": "network", "invoice": "billing"}, "other", ("network", "billing", "other"), runner_up=0.03
        ),
        "priority": Keywords({}, "high", ("low",), miss=0.8, runner_up=0.1),
    }
)


@dataclass
class World(Workflow):
    sn: ServiceNowStandin

    def deliver(self, body: bytes, *, headers: dict[str, str] | None = None) -> Any:
        sent = {
            "Content-Type": "application/json",
            **(headers if headers is not None else sign(SECRET, body)),
        }
        return self.http.post("/webhooks/acme/servicenow", content=body, headers=sent)

    def inbox_size(self) -> int:
        with self.database.session() as session:
            return len(session.scalars(select(InboxEvent)).all())

    def calls(self) -> list[tuple[str, str, int]]:
        return [(r.method, r.path, r.status) for r in self.sn.seen()]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with (
        ServiceNowStandin(users={USER: PASSWORD}) as sn,
        run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=POLICY.format(url=sn.url),
            make=partial(World, sn=sn),
            webhook_secrets={"acme/servicenow": SECRET},
            connector_secrets={"servicenow-acme": f"{USER}:{PASSWORD}"},
        ) as world,
    ):
        yield world


def test_an_incident_is_routed_and_a_reassignment_becomes_feedback(world: World) -> None:
    sn = world.sn
    sys_id = sn.add_record(
        short_description="VPN drops every few minutes",
        description="Since 9am the VPN client disconnects.",
        caller_id="ann.lee@example.com",
    )
    inserted = sn.webhooks[-1]
    answer = world.deliver(inserted)
    assert answer.status_code == 202
    [accepted] = answer.json()["accepted"]
    assert (accepted["kind"], accepted["duplicate"]) == ("ticket", False)
    # the same bytes again (an ECC retry, or a replay inside the window): stored once
    again = world.deliver(inserted)
    assert again.status_code == 202 and again.json()["accepted"][0]["duplicate"] is True

    assert world.run_jobs() == 2  # classify and route the ticket; deliver the one ServiceNow action
    assert world.calls() == [
        ("GET", "/api/now/table/sys_journal_field", 200),
        ("PATCH", f"/api/now/table/incident/{sys_id}", 200),
    ]
    patch = sn.seen("PATCH")[0]
    body = patch.json()
    note = body.pop("work_notes")
    assert body == {"assignment_group": NETWORK, "category": "network", "impact": "1", "urgency": "2"}
    assert note.startswith("deskpilot routed this ticket. intent: network at 0.90, model v1; priority: high")
    assert note.endswith(f"\n\n[deskpilot:acme:ticket:{accepted['ticket_id']}:itsm]")
    record = sn.record(sys_id)
    assert (record["assignment_group"], record["category"], record["priority"]) == (NETWORK, "network", "2")
    assert sn.work_notes(sys_id) == [note]

    # the Business Rule fires for deskpilot's own PATCH: acknowledged, not a correction
    echo = json.loads(sn.webhooks[-1])
    assert (echo["sys_updated_by"], echo["changed"]) == (
        USER,
        ["assignment_group", "priority", "impact", "urgency", "category"],
    )
    answer = world.deliver(sn.webhooks[-1])
    assert answer.status_code == 202
    assert answer.json() == {
        "accepted": [],
        "ignored": f"{record['number']} was updated by deskpilot's own user {USER}",
    }

    # an agent moves it to billing and raises it to critical, in one save
    changed = sn.update_as("beth.anglin", sys_id, assignment_group=BILLING, impact="1", urgency="1")
    answer = world.deliver(changed)
    assert answer.status_code == 202
    assert [a["kind"] for a in answer.json()["accepted"]] == ["field_change", "field_change"]
    assert world.run_jobs() == 2
    assert world.feedback() == [
        ("intent", "billing", "beth.anglin", "servicenow"),
        ("priority", "urgent", "beth.anglin", "servicenow"),
    ]
    assert len(sn.seen("PATCH")) == 1 and len(sn.work_notes(sys_id)) == 1  # nothing sent back


def test_an_unsure_incident_goes_to_the_triage_group_by_token(world: World) -> None:
    sys_id = world.sn.add_record(short_description="Question about the office plants")
    answer = world.deliver(world.sn.webhooks[-1], headers={TOKEN_HEADER: SECRET})
    assert answer.status_code == 202
    world.run_jobs()
    record = world.sn.record(sys_id)
    assert (record["assignment_group"], record["category"]) == (TRIAGE, "")
    assert (record["impact"], record["urgency"]) == ("1", "2")  # the priority task was sure
    [note] = world.sn.work_notes(sys_id)
    assert "intent: not sure, sent to triage; best guess other at 0.30" in note


def test_forged_and_stale_deliveries_store_nothing(world: World) -> None:
    world.sn.add_record(short_description="VPN down")
    body = world.sn.webhooks[-1]
    forged = world.deliver(body, headers=sign("not-the-secret", body))
    assert forged.status_code == 401
    assert "X-Deskpilot-Signature does not match the body" in forged.text
    stale = world.deliver(body, headers=sign(SECRET, body, timestamp=1_000_000_000))
    assert stale.status_code == 401 and "replay window" in stale.text
    wrong_token = world.deliver(body, headers={TOKEN_HEADER: "guess"})
    assert wrong_token.status_code == 401
    tampered = world.deliver(body.replace(b"VPN down", b"VPN up"), headers=sign(SECRET, body))
    assert tampered.status_code == 401
    assert world.inbox_size() == 0 and world.run_jobs() == 0 and world.sn.seen() == []


def test_a_malformed_delivery_is_422(world: World) -> None:
    body = json.dumps({"event": "insert", "sys_id": "nope", "sys_updated_on": "x"}).encode()
    answer = world.deliver(body)
    assert answer.status_code == 422
    assert "sys_id: 'nope' is not a ServiceNow sys_id" in answer.text
    assert world.inbox_size() == 0
