"""A connector plugged in through the entry point group drives the whole workflow: its signed
webhook becomes a ticket, the decision reaches its system, a person's change there becomes a
correction of the right task and label (mapped back through the policy)."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support.helpdesk_standin import HelpdeskStandin

from deskpilot.config import Settings
from deskpilot.connectors import base
from deskpilot.gateway.app import create_app
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.runner import run_one
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.models import FeedbackRecord, JobRecord
from deskpilot.types import AdapterSummary, Alternative, Prediction

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


class Keyword:
    """Billing when the text says invoice, shipping otherwise; sure of it."""

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
            label = "billing" if "invoice" in text.lower() else "shipping"
            other = "shipping" if label == "billing" else "billing"
            out.append(Prediction(label, 0.95, False, (Alternative(other, 0.05),), task, "v1", 0.5))
        return out

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        return []

    def ready(self) -> bool:
        return True


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


def test_a_plugin_connector_routes_and_learns_from_a_change(plugin: None, tmp_path: Path) -> None:
    settings = Settings(
        env="test",
        home=tmp_path,
        workers=0,
        webhook_secrets={"acme/fakedesk": "tok"},  # type: ignore[dict-item]
        connector_secrets={"desk": "t"},  # type: ignore[dict-item]
    )
    database = Database(settings.db_url)
    database.migrate()
    predictor = Keyword()
    context = WorkerContext.build(settings, database, predictor=predictor)
    assert "fakedesk" in base.known_connectors()

    def run_jobs() -> None:
        while run_one(context, "test-worker") is not None:
            pass

    with (
        HelpdeskStandin(token="t") as desk,
        TestClient(create_app(settings, predictor=predictor, database=database)) as client,
    ):
        PolicyStore(settings.policies_dir).put("acme", POLICY.format(url=desk.url))

        def post(payload: dict[str, object], token: str = "tok") -> object:
            return client.post(
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
        run_jobs()
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
        run_jobs()

    with database.session() as session:
        rows = session.scalars(select(FeedbackRecord)).all()
        results = [
            j.result for j in session.scalars(select(JobRecord).where(JobRecord.kind == "apply_feedback"))
        ]
    assert [(r.task, r.label, r.previous_label, r.author, r.source) for r in rows] == [
        ("queue", "shipping", "billing", "ana", "fakedesk")
    ]
    assert rows[0].text == "Invoice 7\n\nwrong total"
    assert any("no label of the policy" in str(r.get("ignored")) for r in results), results
    context.close()
    database.dispose()
