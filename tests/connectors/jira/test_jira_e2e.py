"""End to end: a signed Jira webhook through the gateway and the job queue to Jira's REST API.

Real pieces throughout: the FastAPI app, SQLite, the job runner, the Jira client, and a
stand-in Jira site on a loopback port that records every REST call. Only the classifier is
a deterministic fake (keywords), so the test is about the plumbing, not the model.
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
from support.jira_standin import JiraStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.connectors.jira import adf, sign

SECRET = "jira-webhook-secret-acme"
BOT = "5b10ac8d82e05b22cc7d4ef5"
ANA = "557058:ana-0001"
# a keyword gives its label at 0.9, otherwise "other" at 0.3
INTENT = Keywords(
    {"vpn": "network", "invoice": "billing", "password": "access"},
    "other",
    ("network", "billing", "access", "other"),
    runner_up=0.03,
)
POLICY = """\
version: 1
systems:
  jira:
    connector: jira
    url: {url}
    credentials: jira-acme
    options:
      bot_account_id: {bot}
      custom_field: customfield_10050
tasks:
  intent:
    min_score: 0.6
    destinations:
      network: {{system: jira, queue: Network team, fields: {{components: Network, priority: High}}}}
      billing: {{system: jira, queue: Billing team, fields: {{components: Billing}}}}
      access: {{system: jira, queue: Network team, fields: {{components: Access}}}}
triage:
  system: jira
  queue: Triage
"""


@dataclass
class World(Workflow):
    feedback_columns = ("task", "label", "previous_label", "author", "source")

    site: JiraStandin

    def deliver(self, payload: dict[str, Any], identifier: str, *, secret: str = SECRET) -> Any:
        raw = json.dumps(payload).encode()
        return self.http.post(
            "/webhooks/acme/jira", content=raw, headers=sign(secret, raw, identifier=identifier)
        )


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with (
        JiraStandin() as site,
        run_workflow(
            tmp_path,
            monkeypatch,
            KeywordPredictor({"intent": INTENT}),
            policy=POLICY.format(url=site.url, bot=BOT),
            make=partial(World, site=site),
            webhook_secrets={"acme/jira": SecretStr(SECRET)},
            connector_secrets={"jira-acme": SecretStr(site.credentials)},
        ) as world,
    ):
        yield world


def test_issue_created_is_routed_in_jira_and_a_correction_becomes_feedback(world: World) -> None:
    site = world.site
    site.add_issue("SUP-17", "VPN drops every few minutes", "Since 9am the VPN disconnects.")
    created = site.created_payload("SUP-17")

    answer = world.deliver(created, "wh-created-1")
    assert answer.status_code == 202
    [accepted] = answer.json()["accepted"]
    assert (accepted["kind"], accepted["duplicate"]) == ("ticket", False)
    retry = world.deliver(created, "wh-created-1")  # Jira retries with the same identifier
    assert retry.status_code == 202 and retry.json()["accepted"][0]["duplicate"] is True

    assert world.run_jobs() == 2  # process the ticket, deliver the one Jira action
    assert site.calls() == [
        ("PUT", "/rest/api/3/issue/SUP-17", 204),
        ("GET", "/rest/api/3/issue/SUP-17/comment", 200),
        ("POST", "/rest/api/3/issue/SUP-17/comment", 201),
    ]
    assert site.requests[0].json() == {
        "fields": {
            "customfield_10050": {"value": "Network team"},
            "components": [{"name": "Network"}],
            "priority": {"name": "High"},
        }
    }
    issue = site.issue("SUP-17")
    assert (issue["customfield_10050"]["value"], issue["priority"]["name"]) == ("Network team", "High")
    assert [c["name"] for c in issue["components"]] == ["Network"]
    [comment] = site.comments("SUP-17")
    text = adf.to_text(comment["body"])
    assert text.startswith("deskpilot routed this issue: queue = Network team; components = Network")
    assert "network" in text.splitlines()[1]  # the decision explained
    assert text.splitlines()[-1].startswith("[deskpilot:acme:ticket:") and comment["jsdPublic"] is False

    # Jira echoes deskpilot's own edit back: acknowledged, not a correction
    echo = world.deliver(site.updated_payload("SUP-17"), "wh-echo-1")
    assert echo.status_code == 202
    assert echo.json() == {
        "accepted": [],
        "ignored": "changed by deskpilot's own account (options.bot_account_id)",
    }

    # a person moves it to billing: component and queue changed in one edit
    changed = site.person_changes("SUP-17", ANA, components=["Billing"], customfield_10050="Billing team")
    answer = world.deliver(changed, "wh-updated-2")
    assert answer.status_code == 202
    assert [a["kind"] for a in answer.json()["accepted"]] == ["field_change", "field_change"]
    world.run_jobs()
    rows = world.feedback()
    # both changed fields stand for the same correction (the engine records one row per event)
    assert rows and set(rows) == {("intent", "billing", "network", ANA, "jira")}
    assert len(site.comments("SUP-17")) == 1 and len(site.calls("PUT")) == 1  # nothing sent back


def test_unsure_ticket_goes_to_the_triage_queue(world: World) -> None:
    world.site.add_issue("SUP-21", "Question about the office plants")
    assert world.deliver(world.site.created_payload("SUP-21"), "wh-created-21").status_code == 202
    world.run_jobs()
    issue = world.site.issue("SUP-21")
    assert issue["customfield_10050"]["value"] == "Triage" and issue["components"] == []
    [comment] = world.site.comments("SUP-21")
    assert adf.to_text(comment["body"]).startswith("deskpilot sent this issue to triage: queue = Triage")


def test_forged_and_stale_deliveries_are_refused_before_anything_is_stored(world: World) -> None:
    world.site.add_issue("SUP-30", "VPN down")
    payload = world.site.created_payload("SUP-30")
    forged = world.deliver(payload, "wh-forged", secret="not-the-secret")
    assert forged.status_code == 401
    assert "X-Hub-Signature does not match the body" in json.dumps(forged.json())
    payload["timestamp"] -= 3_600_000  # an hour old: outside the 300 s window
    stale = world.deliver(payload, "wh-stale")
    assert stale.status_code == 401 and "replay window" in json.dumps(stale.json())
    assert world.run_jobs() == 0 and world.site.requests == []
