"""Zendesk end to end through the workflow engine.

Signed webhook -> gateway -> inbox -> worker (fake model, real policy) -> Zendesk REST calls
seen by the stand-in; then an agent's change in Zendesk -> webhook -> feedback recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow
from support.zendesk_standin import ZendeskStandin

from deskpilot.connectors.zendesk import sign
from deskpilot.store.models import JobRecord

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "zendesk-webhook-signing-secret-for-acme"
URL = "/webhooks/acme/zendesk"
# keyword labels at 0.9, else the task's fallback at 0.6 (sure enough for the policy)
PREDICTOR = KeywordPredictor(
    {
        "intent": Keywords(
            {"vpn": "network", "invoice": "billing"}, "other", ("network", "billing", "other"), miss=0.6
        ),
        "urgency": Keywords({"vpn": "high"}, "normal", ("high", "normal", "low", "urgent"), miss=0.6),
    }
)

POLICY = """\
systems:
  zendesk:
    connector: zendesk
    url: {url}
    credentials: zendesk-acme
    options:
      bot_user_id: "9001"
tasks:
  intent:
    min_score: 0.5
    destinations:
      network: {{system: zendesk, group: 360001, fields: {{tags: "vpn network"}}}}
      billing: {{system: zendesk, group: 360002}}
  urgency:
    field: priority
    system: zendesk
triage:
  system: zendesk
  group: 360003
"""


@dataclass
class World(Workflow):
    zd: ZendeskStandin

    def post(self, name: str, *, secret: str = SECRET, **edits: Any) -> Any:
        body = (FIXTURES / name).read_bytes()
        if edits:
            data = json.loads(body)
            for key, value in edits.items():
                outer, _, inner = key.partition("__")
                data[outer][inner] = value
            body = json.dumps(data).encode()
        headers = {**sign(secret, body), "Content-Type": "application/json"}
        return self.http.post(URL, content=body, headers=headers)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with ZendeskStandin(email="deskpilot@acme.test", api_token="zd-api-token", bot_user_id=9001) as zd:
        zd.add_ticket(35436, subject="VPN keeps disconnecting", description="VPN drops every few minutes.")
        zd.add_ticket(35437, subject="Invoice 2024-118 charged twice", description="Refund one, please.")
        with run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=POLICY.format(url=zd.url),
            make=partial(World, zd=zd),
            webhook_secrets={"acme/zendesk": SecretStr(SECRET)},
            connector_secrets={"zendesk-acme": SecretStr(zd.credential)},
            job_backoff_s=0.0,
        ) as world:
            yield world


def test_event_subscription_ticket_is_routed_and_a_group_correction_is_learned(world: World) -> None:
    response = world.post("event_ticket_created.json")
    assert response.status_code == 202, response.text
    (accepted,) = response.json()["accepted"]
    assert accepted["kind"] == "ticket" and accepted["duplicate"] is False

    assert world.run_jobs() == 2  # process_ticket, then deliver_action
    (put,) = world.zd.seen("PUT")
    assert put.path == "/api/v2/tickets/35436.json"
    body = put.body["ticket"]
    assert (body["group_id"], body["priority"], body["additional_tags"]) == (
        360001,
        "high",
        ["network", "vpn"],
    )
    assert body["comment"]["public"] is False and body["safe_update"] is True
    assert body["comment"]["body"].endswith("[deskpilot:acme:ticket:1:zendesk]")
    assert "network" in body["comment"]["body"]  # the decision's explanation
    ticket = world.zd.ticket(35436)
    assert ticket is not None and (ticket["group_id"], ticket["priority"]) == (360001, "high")

    # Zendesk retries the same delivery: stored once, nothing runs again
    again = world.post("event_ticket_created.json")
    assert again.status_code == 202 and again.json()["accepted"][0]["duplicate"] is True
    assert world.run_jobs() == 0 and len(world.zd.seen("PUT")) == 1

    # deskpilot's own update echoed back by Zendesk: not a correction
    ours = world.post("event_group_assignment_changed.json", detail__actor_id="9001")
    assert ours.status_code == 202
    assert ours.json() == {"accepted": [], "ignored": "change made by deskpilot's own Zendesk user 9001"}

    # an agent moves it to Billing and raises the priority: two corrections
    assert world.post("event_group_assignment_changed.json").status_code == 202
    assert world.post("event_priority_changed.json").status_code == 202
    assert world.run_jobs() == 2
    assert world.feedback() == [
        ("intent", "billing", "zendesk-user:7001", "zendesk"),
        ("urgency", "urgent", "zendesk-user:7002", "zendesk"),
    ]
    assert len(world.zd.seen("PUT")) == 1  # feedback never writes back to Zendesk


def test_trigger_template_ticket_is_routed_and_only_real_changes_become_feedback(world: World) -> None:
    assert world.post("trigger_ticket_created.json").status_code == 202
    assert world.run_jobs() == 2
    (put,) = world.zd.seen("PUT")
    assert put.path == "/api/v2/tickets/35437.json"
    assert {k: v for k, v in put.body["ticket"].items() if k in ("group_id", "priority")} == {
        "group_id": 360002,
        "priority": "normal",
    }
    # the trigger reports group (unchanged: Billing, as decided) and priority High (a correction)
    response = world.post("trigger_ticket_updated.json")
    assert [a["kind"] for a in response.json()["accepted"]] == ["field_change", "field_change"]
    assert world.run_jobs() == 2
    assert world.feedback() == [("urgency", "high", "zendesk-user:7001", "zendesk")]


def test_a_zendesk_outage_is_retried_and_a_forged_delivery_stores_nothing(world: World) -> None:
    forged = world.post("event_ticket_created.json", secret="not-the-secret")
    assert forged.status_code == 401
    assert world.run_jobs() == 0 and world.zd.requests == []

    world.zd.fail_next(1, 503, retry_after=0, method="GET")  # Zendesk down at the first read
    world.zd.fail_next(1, 429, retry_after=0, method="PUT")  # then rate-limited at the write
    assert world.post("event_ticket_created.json").status_code == 202
    assert world.run_jobs() == 4  # process_ticket, deliver (503), deliver (429), deliver (done)
    assert [(r.method, r.status) for r in world.zd.requests] == [
        ("GET", 503),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 429),
        ("GET", 200),
        ("GET", 200),
        ("PUT", 200),
    ]
    assert len([c for c in world.zd.comments_of(35436) if not c["public"]]) == 1


def test_a_write_zendesk_refuses_goes_to_the_dead_letters(world: World) -> None:
    world.zd.groups.pop(360001)  # the policy names a group that was deleted in Zendesk
    assert world.post("event_ticket_created.json").status_code == 202
    assert world.run_jobs() == 2
    assert [(r.method, r.status) for r in world.zd.requests][-1] == ("PUT", 422)
    with world.database.session() as session:
        jobs = session.execute(
            select(JobRecord.kind, JobRecord.state, JobRecord.last_error).order_by(JobRecord.id)
        ).all()
    assert [(kind, state) for kind, state, _ in jobs] == [
        ("process_ticket", "done"),
        ("deliver_action", "dead"),
    ]
    assert "group_id: Group: is invalid" in str(jobs[-1][2])
