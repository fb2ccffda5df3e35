"""When to retrain: after enough new corrections, or on a schedule. No torch here.

Callers own the transaction and ring the worker bell after it commits:

- the feedback route, after :func:`~deskpilot.store.workflow.record_feedback`, calls
  :func:`maybe_enqueue_retrain` (``DESKPILOT_RETRAIN_AFTER_CORRECTIONS``);
- a worker, now and then, calls :func:`enqueue_scheduled_retrains` (or
  :func:`due_scheduled_retrains` and :func:`enqueue_retrain` itself) for
  ``DESKPILOT_RETRAIN_INTERVAL_MINUTES``.

"New" corrections are those with an id above what the task's last retrain consumed: the
``feedback_upto`` in the result of its latest finished retrain job, or, for a job that died,
the ``feedback_upto`` it was enqueued with (so a retrain that keeps failing is not re-queued
on every correction). At most one retrain per task is queued or running at a time, and a
task without a champion on disk is never queued (there is nothing to retrain).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deskpilot.adapters.registry import Registry
from deskpilot.config import Settings
from deskpilot.errors import InputDataError
from deskpilot.store import queue
from deskpilot.store.models import FeedbackRecord, JobRecord, Tenant, utcnow
from deskpilot.store.workflow import RETRAIN, count_feedback

PENDING = ("queued", "running")


@dataclass(frozen=True, slots=True)
class RetrainState:
    """What the retrain jobs of one task say about it."""

    pending: int | None  # id of a queued or running retrain job
    consumed_upto: int  # corrections up to this id were used (or tried)
    last_finished_at: datetime | None


def _jobs(session: Session, tenant_id: int | None = None) -> list[JobRecord]:
    query = select(JobRecord).where(JobRecord.kind == RETRAIN).order_by(JobRecord.id)
    if tenant_id is not None:
        query = query.where(JobRecord.tenant_id == tenant_id)
    return list(session.scalars(query))


def _upto(job: JobRecord) -> int:
    source: dict[str, Any] = job.result if job.state == "done" and job.result else job.payload
    value = source.get("feedback_upto", job.payload.get("feedback_upto", 0))
    return int(value) if isinstance(value, int | float) else 0


def _states(jobs: list[JobRecord]) -> dict[tuple[int, str], RetrainState]:
    grouped: dict[tuple[int, str], list[JobRecord]] = defaultdict(list)
    for job in jobs:
        task = job.payload.get("task")
        if isinstance(task, str):
            grouped[(job.tenant_id, task)].append(job)
    states: dict[tuple[int, str], RetrainState] = {}
    for key, items in grouped.items():
        pending = next((j.id for j in items if j.state in PENDING), None)
        ended = [j for j in items if j.state in ("done", "dead")]
        finished = [j.finished_at for j in ended if j.finished_at is not None]
        states[key] = RetrainState(
            pending=pending,
            consumed_upto=max((_upto(j) for j in ended), default=0),
            last_finished_at=max(finished, default=None),
        )
    return states


def retrain_state(session: Session, tenant_id: int, task: str) -> RetrainState:
    return _states(_jobs(session, tenant_id)).get((tenant_id, task), RetrainState(None, 0, None))


def pending_retrain(session: Session, tenant_id: int, task: str) -> int | None:
    """The id of the task's queued or running retrain job, if any."""
    return retrain_state(session, tenant_id, task).pending


def _has_champion(session: Session, settings: Settings, tenant_id: int, task: str) -> bool:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return False
    try:
        return Registry(settings.adapters_dir).champion_version(tenant.slug, task) is not None
    except InputDataError:  # a task name that cannot be an adapter folder
        return False


def _max_feedback_id(session: Session, tenant_id: int, task: str) -> int:
    found = session.scalar(
        select(func.max(FeedbackRecord.id)).where(
            FeedbackRecord.tenant_id == tenant_id, FeedbackRecord.task == task
        )
    )
    return int(found or 0)


def enqueue_retrain(
    session: Session,
    tenant_id: int,
    task: str,
    settings: Settings,
    *,
    reason: str,
    requested_by: str | None = None,
    max_minutes: float | None = None,
    max_attempts: int | None = None,
) -> int:
    """Queue a retrain job for the task (no checks) and return its id.

    The payload records ``feedback_upto``, the newest correction at this moment.
    """
    payload: dict[str, Any] = {
        "task": task,
        "reason": reason,
        "feedback_upto": _max_feedback_id(session, tenant_id, task),
    }
    if requested_by:
        payload["requested_by"] = requested_by
    if max_minutes:
        payload["max_minutes"] = max_minutes
    return queue.enqueue(
        session,
        tenant_id,
        RETRAIN,
        payload,
        max_attempts=max_attempts if max_attempts is not None else settings.job_max_attempts,
    )


def maybe_enqueue_retrain(session: Session, tenant_id: int, task: str, settings: Settings) -> int | None:
    """After a correction: queue a retrain when the task has enough new ones.

    With ``retrain_after_corrections`` N > 0, a job (payload ``{"task", "reason":
    "corrections", "feedback_upto"}``) is queued once N corrections arrived after the last
    retrain's ``feedback_upto``, unless one is already queued or running or the task has no
    champion. Returns the new job's id, else None. Call it in the transaction that stored
    the correction, and notify the workers after the commit.
    """
    needed = settings.retrain_after_corrections
    if needed <= 0:
        return None
    state = retrain_state(session, tenant_id, task)
    if state.pending is not None:
        return None
    if count_feedback(session, tenant_id, task, after_id=state.consumed_upto) < needed:
        return None
    if not _has_champion(session, settings, tenant_id, task):
        return None
    return enqueue_retrain(session, tenant_id, task, settings, reason="corrections")


def due_scheduled_retrains(
    session: Session, settings: Settings, *, now: datetime | None = None
) -> list[tuple[int, str]]:
    """(tenant_id, task) pairs a scheduled retrain is due for, in order.

    With ``retrain_interval_minutes`` > 0: a task is due when it has corrections newer than
    its last retrain consumed, no retrain queued or running, a champion, and its last retrain
    ended at least the interval ago (or it was never retrained).
    """
    if settings.retrain_interval_minutes <= 0:
        return []
    cutoff = (now or utcnow()) - timedelta(minutes=settings.retrain_interval_minutes)
    newest = session.execute(
        select(FeedbackRecord.tenant_id, FeedbackRecord.task, func.max(FeedbackRecord.id)).group_by(
            FeedbackRecord.tenant_id, FeedbackRecord.task
        )
    ).all()
    states = _states(_jobs(session))
    due: list[tuple[int, str]] = []
    for tenant_id, task, max_id in newest:
        state = states.get((tenant_id, task), RetrainState(None, 0, None))
        if state.pending is not None or int(max_id or 0) <= state.consumed_upto:
            continue
        if state.last_finished_at is not None and state.last_finished_at > cutoff:
            continue
        if _has_champion(session, settings, tenant_id, task):
            due.append((int(tenant_id), str(task)))
    return sorted(due)


def enqueue_scheduled_retrains(
    session: Session, settings: Settings, *, now: datetime | None = None
) -> list[int]:
    """Queue a retrain (reason ``"schedule"``) for every due task; returns the job ids."""
    return [
        enqueue_retrain(session, tenant_id, task, settings, reason="schedule")
        for tenant_id, task in due_scheduled_retrains(session, settings, now=now)
    ]
