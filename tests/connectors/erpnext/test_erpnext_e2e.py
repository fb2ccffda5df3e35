"""ERPNext end to end through the workflow engine.

Signed Frappe webhook -> gateway -> inbox -> worker (fake model, real policy) -> ERPNext REST
calls seen by the stand-in site; then people's changes in ERPNext (an Issue saved with another
Issue Type, an Issue reassigned from the sidebar) -> webhooks -> feedback recorded.
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
from support.erpnext_standin import ErpnextStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.connectors.erpnext import sign
from deskpilot.store.models import InboxEvent, TicketRecord

SECRET = "erpnext-webhook-secret-for-acme"
URL = "/webhooks/acme/erpnext"
API_USER = "deskpilot@example.com"
# keyword labels at 0.9, else the task's fallback at 0.6 (sure enough for the policy)
PREDICTOR = KeywordPredictor(
    {
        "intent": Keywords(
            {"vpn": "network", "invoice": "billing"}, "other", ("network", "billing", "other"), miss=0.6
        ),
        "urgency": Keywords({"vpn": "High"}, "Medium", ("High", "Medium", "Low"), miss=0.6),
    }
)

POLICY = """\
systems:
  erp:
    connector: erpnext
    url: {url}
    credentials: erpnext-acme
    options:
      api_user: {api_user}
      queue_field: custom_team
tasks:
  intent:
    min_score: 0.5
    destinations:
      network:
        system: erp
        queue: Network Team
        assignee: agent@example.com
        fields: {{issue_type: Network}}
      billing:
        system: erp
        queue: Billing Team
        assignee: bob@example.com
        fields: {{issue_type: Billing}}
  urgency:
    field: priority
    system: erp
triage:
  system: erp
  assignee: triage@example.com
  fields: {{issue_type: Triage}}
"""


@dataclass
class World(Workflow):
    feedback_columns = ("task", "label", "author", "source", "ticket_id")

    site: ErpnextStandin

    def post(self, body: bytes, *, secret: str = SECRET) -> Any:
        return self.http.post(URL, content=body, headers=sign(secret, body))

    def inbox(self) -> int:
        with self.database.session() as session:
            return len(session.scalars(select(InboxEvent)).all())

    def ticket_ids(self) -> list[int]:
        with self.database.session() as session:
            return [t.id for t in session.scalars(select(TicketRecord).order_by(TicketRecord.id)).all()]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    links = {"custom_team": ("Network Team", "Billing Team")}
    with (
        ErpnextStandin(api_user=API_USER, custom_links=links) as site,
        run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=POLICY.format(url=site.url, api_user=API_USER),
            make=partial(World, site=site),
            webhook_secrets={"acme/erpnext": SecretStr(SECRET)},
            connector_secrets={"erpnext-acme": SecretStr(site.credential)},
        ) as world,
    ):
        yield world


def accepted(response: Any) -> list[tuple[str, bool]]:
    assert response.status_code == 202, response.text
    return [(a["kind"], a["duplicate"]) for a in response.json()["accepted"]]


def test_new_issue_is_routed_in_erpnext_and_a_correction_becomes_feedback(world: World) -> None:
    site = world.site
    name = site.add_issue(
        "VPN drops every few minutes", "<p>Since 9am the <b>VPN</b> drops &amp; reconnects.</p>"
    )["name"]
    after_insert = site.webhook_body(name, "after_insert")
    assert accepted(world.post(after_insert)) == [("ticket", False)]
    # Frappe's on_update inside insert(), one of its own retries and a replay: all the same delivery
    assert accepted(world.post(site.webhook_body(name, "on_update"))) == [("ticket", True)]
    assert accepted(world.post(after_insert)) == [("ticket", True)]
    [ticket_id] = world.ticket_ids()

    assert world.run_jobs() == 2  # process the ticket, deliver its action
    doc = site.issue(name)
    assert doc is not None
    assert (doc["custom_team"], doc["issue_type"], doc["priority"]) == ("Network Team", "Network", "High")
    assert site.open_assignees(name) == ["agent@example.com"]
    put, add, find, post = site.requests
    assert (put.method, put.path) == ("PUT", f"/api/resource/Issue/{name}")
    assert put.json() == {"custom_team": "Network Team", "issue_type": "Network", "priority": "High"}
    assert put.headers["authorization"] == f"token {site.credential}"
    assert add.json() == {"doctype": "Issue", "name": name, "assign_to": ["agent@example.com"]}
    assert (find.method, post.method) == ("GET", "POST")
    [comment] = site.comments_on(name)
    assert comment["content"].endswith(f"<p>deskpilot:acme:ticket:{ticket_id}:erp</p>")
    assert "network" in comment["content"]

    # deskpilot's own save comes back as an on_update: acknowledged, nothing stored
    ours = world.post(site.webhook_body(name, "on_update"))
    assert ours.status_code == 202
    assert ours.json() == {
        "accepted": [],
        "ignored": f"Issue {name} was last changed by deskpilot's API user",
    }
    inbox = world.inbox()

    # a person changes the Issue Type: every routed field is reported, only the change is feedback
    site.human_update(name, "carol@example.com", issue_type="Billing")
    change = site.webhook_body(name, "on_update")
    assert accepted(world.post(change)) == [("field_change", False)] * 4
    assert accepted(world.post(change)) == [("field_change", True)] * 4  # Frappe's retry
    assert world.run_jobs() == 4
    assert world.feedback() == [("intent", "billing", "carol@example.com", "erpnext", ticket_id)]
    assert world.inbox() == inbox + 4
    assert len(site.requests) == 4  # feedback makes no calls to ERPNext


def test_a_reassignment_in_erpnext_becomes_feedback_and_triage_goes_to_the_triage_user(world: World) -> None:
    site = world.site
    invoice = site.add_issue("Invoice 2025-118 charged twice", "<p>Please refund one.</p>", priority="Low")[
        "name"
    ]
    printer = site.add_issue("Printer on fire", "<p>Third floor.</p>")["name"]
    assert accepted(world.post(site.webhook_body(invoice, "after_insert"))) == [("ticket", False)]
    assert accepted(world.post(site.webhook_body(printer, "after_insert"))) == [("ticket", False)]
    assert world.run_jobs() == 4
    invoice_id, printer_id = world.ticket_ids()

    billed = site.issue(invoice)
    assert billed is not None
    assert (billed["custom_team"], billed["issue_type"], billed["priority"]) == (
        "Billing Team",
        "Billing",
        "Medium",
    )
    assert site.open_assignees(invoice) == ["bob@example.com"]
    triaged = site.issue(printer)
    assert triaged is not None
    assert (triaged["issue_type"], triaged["priority"], triaged.get("custom_team")) == (
        "Triage",
        "Medium",
        None,
    )
    assert site.open_assignees(printer) == ["triage@example.com"]
    puts = [r.json() for r in site.requests if r.method == "PUT"]
    assert puts == [
        {"custom_team": "Billing Team", "issue_type": "Billing", "priority": "Medium"},
        {"issue_type": "Triage", "priority": "Medium"},
    ]
    assert len(site.comments) == 2

    # deskpilot's own assignment (a ToDo by the API user) and an Assignment Rule's are no corrections
    [own] = [t for t in site.todos if t["reference_name"] == invoice]
    assert (
        world.post(site.todo_webhook_body(own)).json()["ignored"].endswith("assigned by deskpilot's API user")
    )
    rule = site.human_assign(printer, "agent@example.com", by="Administrator", assignment_rule="Rotation")
    assert world.post(site.todo_webhook_body(rule)).json()["accepted"] == []

    # a person reassigns the invoice to the network agent from the sidebar
    todo = site.human_assign(invoice, "agent@example.com", by="carol@example.com")
    assert accepted(world.post(site.todo_webhook_body(todo))) == [("field_change", False)]
    # and the triage ticket's Priority is confirmed while its Issue Type is fixed
    site.human_update(printer, "carol@example.com", issue_type="Network")
    # (two users are assigned now, the rule's and triage's: no assignee is reported)
    assert len(accepted(world.post(site.webhook_body(printer, "on_update")))) == 2
    world.run_jobs()
    assert world.feedback() == [
        ("intent", "network", "carol@example.com", "erpnext", invoice_id),
        ("intent", "network", "carol@example.com", "erpnext", printer_id),
    ]


def test_forged_and_unsigned_deliveries_store_nothing(world: World) -> None:
    name = world.site.add_issue("VPN down", "<p>x</p>")["name"]
    raw = world.site.webhook_body(name, "after_insert")
    forged = world.post(raw, secret="not-the-secret")
    assert forged.status_code == 401
    assert f"{'X-Frappe-Webhook-Signature'} does not match the body" in json.dumps(forged.json())
    assert world.http.post(URL, content=raw, headers={"Content-Type": "application/json"}).status_code == 401
    bad = world.post(b'{"doctype": "Issue", "event": "after_insert"}')
    assert bad.status_code == 422
    assert world.inbox() == 0 and world.ticket_ids() == []
