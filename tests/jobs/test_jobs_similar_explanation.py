"""A routing decision's explanation names the most similar training tickets (issue 4), when
the predictor can find them; a predictor that cannot, or fails to, never fails the ticket."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from jobs_support import POLICY

from deskpilot.config import Settings
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.runner import run_one
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.models import JobRecord
from deskpilot.store.workflow import accept_ticket, decisions_for
from deskpilot.types import Alternative, Prediction, Ticket

SIMILAR = [
    {"text": "I was charged twice for my subscription", "label": "billing", "score": 0.9132},
    {"text": "Refund the duplicate charge", "label": "billing", "score": 0.8871},
]


class Predictor:
    """``predict`` says billing; ``similar`` answers what it was given (or raises it)."""

    def __init__(self, similar: list[dict[str, Any]] | Exception) -> None:
        self.found = similar
        self.similar_calls: list[tuple[str, str, str, int]] = []

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        top = (Alternative("billing", 0.9), Alternative("sales", 0.1))
        return [Prediction("billing", 0.9, False, top, task, "v1", threshold=0.5) for _ in texts]

    def similar(self, tenant: str, task: str, text: str, *, k: int = 3) -> list[dict[str, Any]]:
        self.similar_calls.append((tenant, task, text, k))
        if isinstance(self.found, Exception):
            raise self.found
        return self.found


class PredictOnly:
    def __init__(self) -> None:
        self.inner = Predictor([])

    def predict(self, tenant: str, task: str, texts: Sequence[str], **kwargs: Any) -> list[Prediction]:
        return self.inner.predict(tenant, task, texts, **kwargs)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no deskpilot.toml from the working directory
    for name in [n for n in os.environ if n.startswith("DESKPILOT_")]:
        monkeypatch.delenv(name)
    settings = Settings(home=tmp_path / "home", env="test", threads=1)
    PolicyStore(settings.policies_dir).put("acme", POLICY.format(url="http://127.0.0.1:9/desk"))
    return settings


def _decide(settings: Settings, db: Database, predictor: Any) -> dict[str, Any]:
    """Accept one ticket, run its process_ticket job, return the queue decision's explanation."""
    ticket = Ticket(subject="Charged twice", body="please refund one", external_id="T-1")
    with db.session() as session:
        accepted = accept_ticket(session, "acme", ticket, delivery_id="d-1", actor="test")
    context = WorkerContext.build(settings, db, predictor=predictor)
    assert run_one(context, "test-worker", job_id=accepted.job_id) == accepted.job_id
    with db.session() as session:
        job = session.get(JobRecord, accepted.job_id)
        assert job is not None and job.state == "done", job and job.last_error
        (decision,) = decisions_for(session, accepted.ticket_id)
        assert decision.task == "queue" and decision.predicted_label == "billing"
        explanation: dict[str, Any] = decision.explanation
    return explanation


def test_the_explanation_stores_the_similar_training_tickets(settings: Settings, db: Database) -> None:
    predictor = Predictor(SIMILAR)
    explanation = _decide(settings, db, predictor)
    assert explanation["similar"] == SIMILAR
    assert explanation["alternatives"] == [
        {"label": "billing", "score": 0.9},
        {"label": "sales", "score": 0.1},
    ]
    assert predictor.similar_calls == [
        ("acme", "queue", Ticket("Charged twice", "please refund one").text, 3)
    ]


@pytest.mark.parametrize(
    "predictor", [PredictOnly(), Predictor(RuntimeError("index broken"))], ids=["absent", "fails"]
)
def test_without_a_working_similar_the_ticket_is_still_decided(
    settings: Settings, db: Database, predictor: Any
) -> None:
    assert _decide(settings, db, predictor)["similar"] == []
