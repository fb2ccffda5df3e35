"""The workflow drafts a reply for the classes a tenant's policy names (issue 6): the draft is
stored with the decision and handed to the connector as part of the internal note, never
sent to a customer unless the policy allows it; a failing responder never fails routing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from jobs_support import POLICY
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from support.respond_fakes import HashEmbedder

from deskpilot.config import Settings
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.responders import ResponderService
from deskpilot.jobs.runner import run_one
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.knowledge import KnowledgeRepository
from deskpilot.store.models import JobRecord
from deskpilot.store.workflow import accept_ticket, decisions_for, outbox_for
from deskpilot.tasks.respond import KnowledgeIndex
from deskpilot.types import Alternative, Prediction, Ticket

REPLY = "We refunded the duplicate payment; it shows within 5 days."
RESPOND = """\
respond:
  responder: reply
  classes: [billing]
  send_to_customer: []
"""


def chat_model() -> FakeListChatModel:
    return FakeListChatModel(responses=[REPLY])


class Billing:
    def predict(self, tenant: str, task: str, texts: Sequence[str], **kwargs: Any) -> list[Prediction]:
        top = (Alternative("billing", 0.9), Alternative("sales", 0.1))
        return [Prediction("billing", 0.9, False, top, task, "v1", threshold=0.5) for _ in texts]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DESKPILOT_")]:
        monkeypatch.delenv(name)
    return Settings(
        home=tmp_path / "home", env="test", threads=1, responder_chat_model=f"{__name__}:chat_model"
    )


def _route(
    settings: Settings, db: Database, policy: str, *, broken: bool = False
) -> tuple[dict[str, Any], str]:
    """One billing ticket through process_ticket: its queue decision's explanation and its note."""
    PolicyStore(settings.policies_dir).put("acme", policy.format(url="http://127.0.0.1:9/desk"))
    service = ResponderService(settings, db)
    service._index = KnowledgeIndex(HashEmbedder(), KnowledgeRepository(db), refresh_interval_s=0)
    service.remember("acme", "I was charged twice for my subscription", REPLY, "kb:1", label="billing")
    if broken:
        service.respond = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("model file missing"))  # type: ignore[method-assign]
    ticket = Ticket(subject="Charged twice", body="charged twice for my subscription, please refund one")
    with db.session() as session:
        accepted = accept_ticket(session, "acme", ticket, delivery_id="d-1", actor="test")
    context = WorkerContext.build(settings, db, predictor=Billing())  # type: ignore[arg-type]
    context.set_responders(service)
    assert run_one(context, "test-worker", job_id=accepted.job_id) == accepted.job_id
    with db.session() as session:
        job = session.get(JobRecord, accepted.job_id)
        assert job is not None and job.state == "done", job and job.last_error
        (decision,) = decisions_for(session, accepted.ticket_id)
        (action,) = outbox_for(session, accepted.ticket_id)
        return dict(decision.explanation), str(action.payload["context"]["note"])


def test_a_policy_class_gets_a_draft_in_the_decision_and_the_note(settings: Settings, db: Database) -> None:
    explanation, note = _route(settings, db, POLICY + RESPOND)
    draft = explanation["draft"]
    assert draft["text"] == REPLY and draft["mode"] == "generated" and draft["sources"] == ["kb:1"]
    assert draft["send_to_customer"] is False
    assert "Suggested reply" in note and REPLY in note


def test_other_classes_and_policies_without_respond_get_none(settings: Settings, db: Database) -> None:
    explanation, note = _route(settings, db, POLICY + RESPOND.replace("[billing]", "[sales]"))
    assert "draft" not in explanation and "Suggested reply" not in note


def test_a_failing_responder_never_fails_routing(settings: Settings, db: Database) -> None:
    explanation, note = _route(settings, db, POLICY + RESPOND, broken=True)
    assert explanation["draft"]["text"] is None and "model file missing" in explanation["draft"]["reason"]
    assert "Suggested reply" not in note
