"""End to end: Odoo's webhook through the gateway and the job queue back to Odoo's API.

Real pieces throughout: the FastAPI app, SQLite, the job runner, the Odoo client, and a
stand-in Odoo on a loopback port (Odoo 19 with JSON-2, Odoo 17 with JSON-RPC) that builds
the webhook bodies exactly as Odoo's *Send Webhook Notification* action does. Only the
classifier is a deterministic fake (keywords): the test is about the plumbing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from support.odoo_standin import OdooStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.store.models import JobRecord

TOKEN = "kW3n9Qx2Lr7Tz5Vb8Hd1Fs4Jm6Pc0Ga"
API_KEY = "6578616d706c65206a736f6e20617069206b6579"
BOT = 7  # the Odoo user that owns the API key
MODEL = "helpdesk.ticket"
# the Fields the setup page asks for on the Send Webhook Notification action
SENT = ["name", "description", "partner_email", "team_id", "user_id", "priority"]
SENT += ["create_date", "write_date", "write_uid"]
POLICY = """\
version: 1
systems:
  helpdesk:
    connector: odoo
    url: {url}
    credentials: odoo-acme
    options:
      api: {api}
      database: acme
      api_user_id: {bot}
tasks:
  intent:
    min_score: 0.6
    destinations:
      network: {{system: helpdesk, queue: 3, fields: {{tags: 5}}}}
      billing: {{system: helpdesk, queue: 4, fields: {{tags: 6}}}}
      access: {{system: helpdesk, queue: 3}}
  urgency:
    system: helpdesk
    field: priority
triage:
  system: helpdesk
  queue: 1
"""


# intent: a keyword's label at 0.9, else "other" at 0.3; urgency: "3" when urgent, else "1"
PREDICTOR = KeywordPredictor(
    {
        "intent": Keywords(
            {"vpn": "network", "invoice": "billing", "password": "access"},
            "other",
            ("network", "billing", "access", "other"),
            runner_up=0.03,
        ),
        "urgency": Keywords({"urgent": "3"}, "1", ("2",), miss=0.9),
    }
)


@dataclass
class World(Workflow):
    feedback_columns = ("task", "label", "previous_label", "author", "source")

    odoo: OdooStandin

    def notify(self, record_id: int, fields: list[str] = SENT, *, token: str = TOKEN) -> Any:
        """What Odoo's automation rule does after a save: POST the record to the URL."""
        body = self.odoo.webhook_payload(MODEL, record_id, fields, action="deskpilot: tickets")
        return self.http.post(
            f"/webhooks/acme/odoo/{token}",
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": "python-requests/2.31.0"},
        )


@pytest.fixture(params=[("json2", 19), ("jsonrpc", 17)], ids=["odoo19-json2", "odoo17-jsonrpc"])
def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    api, version = request.param
    with OdooStandin(api_key=API_KEY, uid=BOT, database="acme", version=version) as odoo:
        for team, name in ((1, "Triage"), (3, "Network"), (4, "Billing")):
            odoo.add("helpdesk.team", team, name=name)
        odoo.add("helpdesk.tag", 5, name="vpn")
        odoo.add("helpdesk.tag", 6, name="invoice")
        with run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=POLICY.format(url=odoo.url, api=api, bot=BOT),
            make=partial(World, odoo=odoo),
            webhook_secrets={"acme/odoo": SecretStr(TOKEN)},
            connector_secrets={"odoo-acme": SecretStr(API_KEY)},
        ) as world:
            yield world


def test_a_new_ticket_is_routed_in_odoo_and_a_persons_change_becomes_feedback(world: World) -> None:
    odoo = world.odoo
    ticket = odoo.create_ticket(
        "VPN keeps disconnecting", "<p>Since this morning the VPN drops.</p><p>Ana</p>", "ana@example.com"
    )

    # a stranger without the token stores nothing
    refused = world.notify(ticket, token="not-the-token")
    assert refused.status_code == 401
    assert TOKEN not in refused.text and "not-the-token" not in refused.text
    bare = world.http.post("/webhooks/acme/odoo", content=b"{}", headers={"Content-Type": "application/json"})
    assert bare.status_code == 401 and "missing token" in bare.text
    assert world.run_jobs() == 0

    answer = world.notify(ticket)
    assert answer.status_code == 202
    [accepted] = answer.json()["accepted"]
    assert (accepted["kind"], accepted["duplicate"]) == ("ticket", False)
    replay = world.notify(ticket)  # the same notice again (a second rule, a replay): stored once
    assert replay.status_code == 202 and replay.json()["accepted"][0]["duplicate"] is True

    assert world.run_jobs() == 2  # classify and route the ticket; deliver the one Odoo action
    assert odoo.call_names() == [f"{MODEL}.write", "mail.message.search_read", f"{MODEL}.message_post"]
    write = odoo.calls[0]
    assert (write.ids, write.params, write.uid) == (
        (ticket,),
        {"vals": {"team_id": 3, "tag_ids": [[4, 5]], "priority": "1"}},
        BOT,
    )
    record = odoo.ticket(ticket)
    assert record is not None
    assert (record["team_id"], record["priority"], record["tag_ids"], record["write_uid"]) == (
        3,
        "1",
        [5],
        BOT,
    )
    [note] = odoo.notes(MODEL, ticket)
    assert note.startswith(
        "<p>deskpilot routed this ticket. intent: network at 0.90, model v1; urgency: 1 at 0.90"
    )
    assert note.endswith("[deskpilot:acme:ticket:1:helpdesk]</p>")

    # Odoo's rule fires on deskpilot's own write too: acknowledged, not a correction
    echo = world.notify(ticket)
    assert echo.status_code == 202
    assert echo.json() == {"accepted": [], "ignored": f"update by deskpilot's own API user {BOT}"}

    # a person moves the ticket to Billing and raises its priority, in one save
    odoo.human_write(MODEL, ticket, uid=2, team_id=4, priority="3")
    changed = world.notify(ticket)
    assert changed.status_code == 202
    assert [a["kind"] for a in changed.json()["accepted"]] == ["field_change", "field_change"]
    world.run_jobs()
    assert world.feedback() == [
        ("intent", "billing", "network", "odoo:user:2", "odoo"),
        ("urgency", "3", "1", "odoo:user:2", "odoo"),
    ]
    # a save that leaves the routed fields as deskpilot set them is not a correction
    odoo.human_write(MODEL, ticket, uid=2, name="VPN keeps disconnecting (home office)")
    again = world.notify(ticket)  # re-reports team 4 and priority 3: the same corrections
    assert [a["duplicate"] for a in again.json()["accepted"]] == [True, True]
    world.run_jobs()
    assert len(world.feedback()) == 2
    assert len(odoo.notes(MODEL, ticket)) == 1 and odoo.call_names().count(f"{MODEL}.write") == 1


def test_an_unsure_ticket_goes_to_the_triage_team(world: World) -> None:
    ticket = world.odoo.create_ticket("Question about the office plants", False, "bob@example.com")
    assert world.notify(ticket).status_code == 202
    world.run_jobs()
    record = world.odoo.ticket(ticket)
    assert record is not None and (record["team_id"], record["tag_ids"]) == (1, [])
    [note] = world.odoo.notes(MODEL, ticket)
    assert "intent: not sure, sent to triage; best guess other at 0.30" in note


def test_a_transient_odoo_failure_is_retried_and_the_note_posted_once(world: World) -> None:
    ticket = world.odoo.create_ticket("Invoice 2024-113 is wrong", "<p>VAT missing</p>", "carl@example.com")
    assert world.notify(ticket).status_code == 202
    world.odoo.fail_next(1, status=503)
    assert world.run_jobs() == 2  # the ticket is routed; its delivery fails and waits for a retry
    with world.database.session() as session:
        [job] = session.scalars(select(JobRecord).where(JobRecord.state == "queued")).all()
        assert job.kind == "deliver_action" and job.attempts == 1 and "answered 503" in (job.last_error or "")
        job.run_after = job.created_at  # retry now instead of after the backoff
    assert world.run_jobs() == 1
    record = world.odoo.ticket(ticket)
    assert record is not None and (record["team_id"], record["tag_ids"]) == (4, [6])
    assert len(world.odoo.notes(MODEL, ticket)) == 1
