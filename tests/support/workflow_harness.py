"""The workflow engine wired up for end-to-end tests: real gateway app, SQLite, job runner.

Only the classifier is a fake (:class:`KeywordPredictor`), so a test is about the plumbing, not
the model. A connector's e2e test starts its stand-in system, then::

    with run_workflow(tmp_path, monkeypatch, predictor, make=Workflow, policy=POLICY.format(url=desk.url),
                      webhook_secrets={"acme/desk": SECRET}, connector_secrets={...}) as flow:
        flow.http.post("/webhooks/acme/desk", ...)
        assert flow.run_jobs() == 2
        assert flow.feedback() == [("intent", "billing", "ana", "desk")]

or ``make=functools.partial(World, desk=desk)`` for a :class:`Workflow` subclass that adds the
system's stand-in and its helpers (``World(Workflow)``, a dataclass with a ``desk`` field).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from deskpilot.config import Settings
from deskpilot.gateway.app import create_app
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.runner import run_one
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.models import FeedbackRecord, JobRecord
from deskpilot.types import AdapterSummary, Alternative, Prediction

MAX_JOBS = 50  # more than this from one run_jobs() is a loop, not a workflow
THRESHOLD = 0.5


@dataclass(frozen=True)
class Keywords:
    """How the fake model labels one task's texts.

    The first of ``keywords`` (word -> label) found in the lower-cased text gives its label at
    ``hit``; none gives ``fallback`` at ``miss``. The prediction abstains (when asked to) below
    0.5, and lists the other ``alternatives`` at ``runner_up`` each.
    """

    keywords: Mapping[str, str]
    fallback: str
    alternatives: Sequence[str]
    hit: float = 0.9
    miss: float = 0.3
    runner_up: float = 0.05

    def predict(self, task: str, text: str, abstain: bool) -> Prediction:
        lowered = text.lower()
        found = next((label for word, label in self.keywords.items() if word in lowered), None)
        label, score = (found, self.hit) if found is not None else (self.fallback, self.miss)
        rest = tuple(Alternative(other, self.runner_up) for other in self.alternatives if other != label)
        return Prediction(label, score, abstain and score < THRESHOLD, rest, task, "v1", threshold=THRESHOLD)


class KeywordPredictor:
    """A deterministic Predictor: ``tasks`` maps each task of the policy to its :class:`Keywords`."""

    def __init__(self, tasks: Mapping[str, Keywords]) -> None:
        self.tasks = dict(tasks)

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        return [self.tasks[task].predict(task, text, abstain) for text in texts]

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        return []

    def ready(self) -> bool:
        return True


@dataclass
class Workflow:
    """One Settings, its migrated SQLite database, the gateway app and a worker context."""

    feedback_columns: ClassVar[tuple[str, ...]] = ("task", "label", "author", "source")

    settings: Settings
    database: Database
    predictor: KeywordPredictor
    worker: WorkerContext
    http: TestClient

    def run_jobs(self) -> int:
        """Run queued jobs until none is left; how many attempts ran (a worker runs a
        decision's deliveries right after it, inside the same ``run_one``)."""
        before = self._attempts()
        loops = 0
        while run_one(self.worker, "test-worker") is not None:
            loops += 1
            if loops > MAX_JOBS:
                raise AssertionError("the job queue does not drain")
        return self._attempts() - before

    def _attempts(self) -> int:
        with self.database.session() as session:
            return int(session.scalar(select(func.coalesce(func.sum(JobRecord.attempts), 0))) or 0)

    def feedback(self, *columns: str) -> list[tuple[Any, ...]]:
        """The recorded corrections, oldest first, as tuples of ``columns`` (of ``feedback_columns``)."""
        names = columns or self.feedback_columns
        with self.database.session() as session:
            rows = session.scalars(select(FeedbackRecord).order_by(FeedbackRecord.id)).all()
            return [tuple(getattr(row, name) for name in names) for row in rows]


W = TypeVar("W", bound=Workflow)


@contextmanager
def run_workflow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    predictor: KeywordPredictor,
    *,
    make: Callable[..., W],
    policy: str | None = None,
    tenant: str = "acme",
    **settings: Any,
) -> Iterator[W]:
    """``make(settings, database, predictor, worker, http)``: :class:`Workflow` or a subclass.

    Settings in ``tmp_path`` (``settings`` override the test defaults), ``policy`` stored for
    ``tenant``, the database migrated; everything closed again on the way out."""
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    config = Settings(**{"env": "test", "home": tmp_path, "workers": 0, **settings})
    if policy is not None:
        PolicyStore(config.policies_dir).put(tenant, policy)
    database = Database(config.db_url)
    database.migrate()
    worker = WorkerContext.build(config, database, predictor=predictor)
    try:
        with TestClient(create_app(config, predictor=predictor, database=database)) as http:
            yield make(config, database, predictor, worker, http)
    finally:
        worker.close()
        database.dispose()
