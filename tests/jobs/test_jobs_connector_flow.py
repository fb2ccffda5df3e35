"""A connector plugged in through the entry point group drives the whole workflow: its signed
webhook becomes a ticket, the decision reaches its system, a person's change there becomes a
correction of the right task and label (mapped back through the policy)."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from support.helpdesk_standin import HelpdeskStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.connectors import base
from deskpilot.store.models import JobRecord

POLICY = """\
systems:
  desk: {{connector: fakedesk, url: "{url}", credentials: desk, options: {{bot: deskpilot}}}}
tasks:
  queue:
    destinations:
      billing: {{system: desk, group: g-billing}}
      shipping: {{system: desk, group: g-ship}}
triage: {{system: desk, group: g-triage}}
"""


# billing when the text says invoice, shipping otherwise; sure of it
QUEUE = Keywords({"invoice": "billing"}, "shipping", ("billing", "shipping"), hit=0.95, miss=0.95)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    entry = importlib.metadata.EntryPoint(
        "fakedesk", "support.fake_connector:register", base.ENTRY_POINT_GROUP
    )
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: str) -> object:
        if kwargs.get("group") == base.ENTRY_POINT_GROUP:
            return [entry]
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(base, "_plugins_loaded", False)
    yield
    for registry in (base._INBOUND, base._OUTBOUND, base._INFO):
        registry.pop("fakedesk", None)


def test_a_plugin_connector_routes_and_learns_from_a_change(
    plugin: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        HelpdeskStandin(token="t") as desk,
        run_workflow(
            tmp_path,
            monkeypatch,
            KeywordPredictor({"queue": QUEUE}),
            make=Workflow,
            policy=POLICY.format(url=desk.url),
            webhook_secrets={"acme/fakedesk": "tok"},
            connector_secrets={"desk": "t"},
        ) as flow,
    ):
        assert "fakedesk" in base.known_connectors()

        def post(payload: dict[str, object], token: str = "tok") -> object:
            return flow.http.post(
                "/webhooks/acme/fakedesk", content=json.dumps(payload), headers={"X-Fakedesk-Token": token}
            )

        ticket = {
            "id": "e1",
            "kind": "ticket",
            "ticket": "T-1",
            "subject": "Invoice 7",
            "body": "wrong total",
        }
        assert post(ticket, token="nope").status_code == 401
        first = post(ticket)
        assert first.status_code == 202, first.text
        assert first.json()["accepted"][0]["kind"] == "ticket"
        assert post(ticket).json()["accepted"][0]["duplicate"] is True
        flow.run_jobs()
        assert desk.ticket("T-1") == {"group": "g-billing"}

        change = {
            "id": "c1",
            "kind": "change",
            "ticket": "T-1",
            "field": "group",
            "value": "g-ship",
            "author": "ana",
        }
        assert post(change).json()["accepted"][0]["kind"] == "field_change"
        ours = post({**change, "id": "c2", "author": "deskpilot"})
        assert ours.json()["ignored"] == "our own change"
        post({**change, "id": "c3", "value": "g-nowhere"})
        flow.run_jobs()

        assert flow.feedback("task", "label", "previous_label", "author", "source") == [
            ("queue", "shipping", "billing", "ana", "fakedesk")
        ]
        assert flow.feedback("text") == [("Invoice 7\n\nwrong total",)]
        with flow.database.session() as session:
            jobs = session.scalars(select(JobRecord).where(JobRecord.kind == "apply_feedback"))
            results = [j.result for j in jobs]
        assert any("no label of the policy" in str(r.get("ignored")) for r in results), results
