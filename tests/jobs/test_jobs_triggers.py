"""When a retrain is queued: after N new corrections, or on a schedule (SQLite, no torch).

A champion on disk is a registered card (no weights): the triggers only ask whether the
task has one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.config import Settings
from deskpilot.jobs.triggers import (
    due_scheduled_retrains,
    enqueue_scheduled_retrains,
    maybe_enqueue_retrain,
    pending_retrain,
    retrain_state,
)
from deskpilot.store import Database, get_or_create_tenant, queue
from deskpilot.store.models import JobRecord, utcnow
from deskpilot.store.workflow import RETRAIN, record_feedback


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("DESKPILOT_")]:
        monkeypatch.delenv(name)
    return Settings(home=tmp_path / "home", env="test", retrain_after_corrections=3)


@pytest.fixture
def sqlite_db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.db_url)
    database.migrate()
    with database.session() as session:
        get_or_create_tenant(session, "acme")
        get_or_create_tenant(session, "beta")
    yield database
    database.dispose()


def champion(settings: Settings, tenant: str, task: str, tmp_path: Path) -> None:
    files = tmp_path / f"files-{tenant}-{task}"
    files.mkdir()
    card = AdapterCard(task=task, tenant=tenant, kind="classifier", base_model="tiny", labels=["a", "b"])
    Registry(settings.adapters_dir).register(files, card)


def tenant_id(db: Database, slug: str = "acme") -> int:
    with db.session() as session:
        return get_or_create_tenant(session, slug).id


def correct(db: Database, n: int, task: str = "queue", tenant: str = "acme") -> list[int]:
    with db.session() as session:
        return [
            record_feedback(
                session, tenant, task=task, label="billing", author="ana", text=f"ticket {task} {i}"
            ).id
            for i in range(n)
        ]


def maybe(db: Database, settings: Settings, task: str = "queue") -> int | None:
    owner = tenant_id(db)
    with db.session() as session:
        return maybe_enqueue_retrain(session, owner, task, settings)


def job(db: Database, job_id: int) -> JobRecord:
    with db.session() as session:
        found = queue.get_job(session, job_id)
        assert found is not None
        session.expunge(found)
        return found


def end(db: Database, job_id: int, *, result: dict[str, Any] | None = None, dead: bool = False) -> None:
    """Run the job's lifecycle through the queue: claim, then complete (or fail for good)."""
    with db.session() as session:
        assert queue.claim(session, "test", 60, job_id=job_id) is not None
        if dead:
            queue.fail(session, job_id, "test", "broken", transient=False, base_s=0, max_s=0)
        else:
            queue.complete(session, job_id, "test", result)


def test_n_new_corrections_queue_one_retrain(sqlite_db: Database, settings: Settings, tmp_path: Path) -> None:
    champion(settings, "acme", "queue", tmp_path)
    correct(sqlite_db, 2)
    correct(sqlite_db, 5, task="other")  # another task's corrections do not count
    assert maybe(sqlite_db, settings) is None
    ids = correct(sqlite_db, 1)
    job_id = maybe(sqlite_db, settings)
    assert job_id is not None
    queued = job(sqlite_db, job_id)
    assert (queued.kind, queued.state, queued.max_attempts) == (RETRAIN, "queued", settings.job_max_attempts)
    assert queued.payload == {"task": "queue", "reason": "corrections", "feedback_upto": ids[-1]}

    correct(sqlite_db, 3)
    assert maybe(sqlite_db, settings) is None  # one queued or running retrain per task at a time
    acme = tenant_id(sqlite_db)
    with sqlite_db.session() as session:
        assert pending_retrain(session, acme, "queue") == job_id

    # the retrain used corrections up to the third; the three after it are new
    end(sqlite_db, job_id, result={"feedback_upto": ids[-1], "promoted": True})
    with sqlite_db.session() as session:
        state = retrain_state(session, acme, "queue")
    assert (state.pending, state.consumed_upto) == (None, ids[-1]) and state.last_finished_at is not None
    second = maybe(sqlite_db, settings)
    assert second is not None and second != job_id


def test_what_a_dead_retrain_tried_is_not_retried_on_every_correction(
    sqlite_db: Database, settings: Settings, tmp_path: Path
) -> None:
    champion(settings, "acme", "queue", tmp_path)
    correct(sqlite_db, 3)
    first = maybe(sqlite_db, settings)
    assert first is not None
    end(sqlite_db, first, dead=True)
    assert job(sqlite_db, first).state == "dead"
    correct(sqlite_db, 2)
    assert maybe(sqlite_db, settings) is None  # 2 new since the dead job's feedback_upto
    correct(sqlite_db, 1)
    assert maybe(sqlite_db, settings) is not None


def test_no_trigger_when_off_or_without_a_champion(
    sqlite_db: Database, settings: Settings, tmp_path: Path
) -> None:
    correct(sqlite_db, 5)
    assert maybe(sqlite_db, settings) is None  # nothing to retrain on disk
    champion(settings, "acme", "queue", tmp_path)
    off = settings.model_copy(update={"retrain_after_corrections": 0})
    assert maybe(sqlite_db, off) is None
    assert maybe(sqlite_db, settings) is not None


def test_scheduled_retrains_are_due_after_the_interval_with_new_corrections(
    sqlite_db: Database, settings: Settings, tmp_path: Path
) -> None:
    hourly = settings.model_copy(update={"retrain_interval_minutes": 60.0})
    champion(settings, "acme", "queue", tmp_path)
    champion(settings, "beta", "queue", tmp_path)
    acme, beta = tenant_id(sqlite_db, "acme"), tenant_id(sqlite_db, "beta")
    ids = correct(sqlite_db, 1)
    correct(sqlite_db, 1, tenant="beta")
    correct(sqlite_db, 1, task="nomodel")  # no champion: never due
    with sqlite_db.session() as session:
        assert due_scheduled_retrains(session, settings) == []  # interval 0: off
        assert due_scheduled_retrains(session, hourly) == [(acme, "queue"), (beta, "queue")]
        job_ids = enqueue_scheduled_retrains(session, hourly)
    assert [job(sqlite_db, j).payload["reason"] for j in job_ids] == ["schedule", "schedule"]
    with sqlite_db.session() as session:
        assert due_scheduled_retrains(session, hourly) == []  # queued already

    acme_job = next(j for j in job_ids if job(sqlite_db, j).tenant_id == acme)
    end(sqlite_db, acme_job, result={"feedback_upto": ids[-1]})
    correct(sqlite_db, 1)  # new since that retrain, but it ended just now
    now = utcnow()
    with sqlite_db.session() as session:
        assert due_scheduled_retrains(session, hourly, now=now + timedelta(minutes=59)) == []
        assert due_scheduled_retrains(session, hourly, now=now + timedelta(minutes=61)) == [(acme, "queue")]

    end(sqlite_db, next(j for j in job_ids if j != acme_job), result={"feedback_upto": 10**9})
    with sqlite_db.session() as session:  # beta: nothing new since its retrain
        assert (beta, "queue") not in due_scheduled_retrains(session, hourly, now=now + timedelta(days=1))
