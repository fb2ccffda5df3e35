"""ERPNext end to end through the workflow engine.

Signed Frappe webhook -> gateway -> inbox -> worker (fake model, real policy) -> ERPNext REST
calls seen by the stand-in site; then people's changes in ERPNext (an Issue saved with another
Issue Type, an Issue reassigned from the sidebar) -> webhooks -> feedback recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from support.erpnext_standin import ErpnextStandin

from deskpilot.config import Settings
from deskpilot.connectors.erpnext import sign
from deskpilot.gateway import create_app
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.runner import run_one
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.models import FeedbackRecord, InboxEvent, TicketRecord
from deskpilot.types import AdapterSummary, Alternative, Prediction

SECRET = "erpnext-webhook-secret-for-acme"
URL = "/webhooks/acme/erpnext"
API_USER = "deskpilot@example.com"
LABELS = {"intent": ("network", "billing", "other"), "urgency": ("High", "Medium", "Low")}
KEYWORDS = {("intent", "vpn"): "network", ("intent", "invoice"): "billing", ("urgency", "vpn"): "High"}

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
class FakePredictor:
    """Keyword labels at 0.9, else the task's fallback at 0.6 (sure enough for the policy)."""

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        out = []
        for text in texts:
            hit = next(
                (lab for (t, word), lab in KEYWORDS.items() if t == task and word in text.lower()), None
            )
            label = hit or ("Medium" if task == "urgency" else "other")
            rest = tuple(Alternative(lab, 0.05) for lab in LABELS[task] if lab != label)
            out.append(Prediction(label, 0.9 if hit else 0.6, False, rest, task, "v1", threshold=0.5))
        return out

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        return []

    def ready(self) -> bool:
        return True


@dataclass
class World:
    site: ErpnextStandin
    http: TestClient
    settings: Settings
    database: Database
    predictor: FakePredictor

    def post(self, body: bytes, *, secret: str = SECRET) -> Any:
        return self.http.post(URL, content=body, headers=sign(secret, body))

    def work(self) -> int:
        context = WorkerContext.build(self.settings, self.database, predictor=self.predictor)
        ran = 0
        try:
            while run_one(context, "test-worker") is not None:
                ran += 1
                if ran > 50:
                    raise AssertionError("jobs keep coming")
        finally:
            context.close()
        return ran

    def feedback(self) -> list[tuple[str, str, str, str, int | None]]:
        with self.database.session() as session:
            rows = session.scalars(select(FeedbackRecord).order_by(FeedbackRecord.id)).all()
            return [(r.task, r.label, r.author, r.source, r.ticket_id) for r in rows]

    def inbox(self) -> int:
        with self.database.session() as session:
            return len(session.scalars(select(InboxEvent)).all())

    def ticket_ids(self) -> list[int]:
        with self.database.session() as session:
            return [t.id for t in session.scalars(select(TicketRecord).order_by(TicketRecord.id)).all()]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    links = {"custom_team": ("Network Team", "Billing Team")}
    with ErpnextStandin(api_user=API_USER, custom_links=links) as site:
        settings = Settings(
            env="test",
            home=tmp_path,
            workers=0,
            webhook_secrets={"acme/erpnext": SecretStr(SECRET)},
            connector_secrets={"erpnext-acme": SecretStr(site.credential)},
        )
        PolicyStore(settings.policies_dir).put("acme", POLICY.format(url=site.url, api_user=API_USER))
        database = Database(settings.db_url)
        database.migrate()
        predictor = FakePredictor()
        app = create_app(settings, predictor=predictor, database=database)
        try:
            with TestClient(app) as http:
                yield World(site, http, settings, database, predictor)
        finally:
            database.dispose()


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

    assert world.work() == 2  # process the ticket, deliver its action
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
    assert world.work() == 4
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
    assert world.work() == 4
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
    world.work()
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
