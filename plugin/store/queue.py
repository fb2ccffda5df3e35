"""The job table as a queue: leases, visibility timeouts, backoff, dead letters.

Every backend (the embedded worker pool, Celery) claims work through these functions, so a
job runs once per lease whoever rang the bell. A worker that dies keeps its lease until it
expires; the job then becomes visible again and counts the lost attempt.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, insert, or_, select, update
from sqlalchemy.orm import Session

from deskpilot.errors import ConflictError, NotFoundError

from .models import JobRecord, utcnow

MAX_ERROR_CHARS = 2_000
_JOBS = cast(Table, JobRecord.__table__)
_INSERT_JOB = insert(_JOBS).returning(_JOBS.c.id)


def enqueue(
    session: Session,
    tenant_id: int,
    kind: str,
    payload: dict[str, Any],
    *,
    max_attempts: int = 5,
    run_after: datetime | None = None,
) -> int:
    """Add a job in the caller's transaction (it exists exactly when the caller's writes do): its id.

    A prepared Core INSERT ... RETURNING, not an ORM flush: the webhook path enqueues on every delivery.
    """
    now = utcnow()
    values = {
        "tenant_id": tenant_id,
        "kind": kind,
        "payload": payload,
        "max_attempts": max_attempts,
        "run_after": run_after or now,
        "created_at": now,
        "updated_at": now,
    }
    return int(session.connection().execute(_INSERT_JOB, values).scalar_one())


def _visible(now: datetime) -> Any:
    return or_(
        and_(JobRecord.state == "queued", JobRecord.run_after <= now),
        and_(JobRecord.state == "running", JobRecord.lease_expires_at < now),
    )


def claim(
    session: Session,
    owner: str,
    lease_s: float,
    *,
    kinds: Sequence[str] | None = None,
    job_id: int | None = None,
) -> JobRecord | None:
    """Take the oldest visible job (or ``job_id``, if it is visible) under a lease.

    A job whose previous lease expired has lost an attempt to a dead worker; past
    ``max_attempts`` it goes to the dead letters instead of being run again.
    """
    now = utcnow()
    candidate = select(JobRecord.id).where(_visible(now)).order_by(JobRecord.id).limit(1)
    if kinds:
        candidate = candidate.where(JobRecord.kind.in_(list(kinds)))
    if job_id is not None:
        candidate = candidate.where(JobRecord.id == job_id)
    # One statement: PostgreSQL workers skip rows another worker is claiming (SKIP LOCKED),
    # and the visibility test is repeated on the row itself, so two claimers never both win.
    claimed = session.execute(
        update(JobRecord)
        .where(JobRecord.id == candidate.with_for_update(skip_locked=True).scalar_subquery(), _visible(now))
        .values(
            state="running",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=JobRecord.attempts + 1,
            updated_at=now,
        )
        .returning(JobRecord.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if claimed is None:
        return None
    job = session.get(JobRecord, claimed, populate_existing=True)
    if job is None:  # pragma: no cover - just updated in this transaction
        return None
    if job.attempts > job.max_attempts:
        job.state = "dead"
        job.last_error = (job.last_error or "") + f" (gave up after {job.max_attempts} attempts)"
        job.lease_owner = job.lease_expires_at = None
        job.finished_at = now
        return None
    return job


def owns(session: Session, job_id: int, owner: str) -> bool:
    """True while ``owner`` still holds the job's lease (checked before committing results)."""
    row = session.execute(
        select(JobRecord.state, JobRecord.lease_owner, JobRecord.lease_expires_at)
        .where(JobRecord.id == job_id)
        .with_for_update()
    ).one_or_none()
    if row is None or row[2] is None:
        return False
    return bool(row[0] == "running" and row[1] == owner and row[2] > utcnow())


def extend(session: Session, job_ids: Sequence[int], owner: str, lease_s: float) -> int:
    """Heartbeat: push the leases of the owner's running jobs forward."""
    if not job_ids:
        return 0
    now = utcnow()
    result = session.execute(
        update(JobRecord)
        .where(JobRecord.id.in_(list(job_ids)), JobRecord.lease_owner == owner, JobRecord.state == "running")
        .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_progress(session: Session, job_id: int, owner: str, progress: dict[str, Any]) -> None:
    session.execute(
        update(JobRecord)
        .where(JobRecord.id == job_id, JobRecord.lease_owner == owner)
        .values(progress=progress, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def complete(session: Session, job_id: int, owner: str, result: dict[str, Any] | None = None) -> bool:
    """Mark done if ``owner`` still holds the lease; False means another worker took over."""
    now = utcnow()
    done = session.execute(
        update(JobRecord)
        .where(JobRecord.id == job_id, JobRecord.lease_owner == owner, JobRecord.state == "running")
        .values(
            state="done",
            result=result or {},
            lease_owner=None,
            lease_expires_at=None,
            last_error=None,
            updated_at=now,
            finished_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(done, "rowcount", 0))


def backoff_seconds(attempt: int, base_s: float, max_s: float, *, jitter: float = 0.2) -> float:
    """Exponential backoff with a little jitter, so retries of one outage do not stampede."""
    delay: float = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return delay * (1.0 + random.uniform(-jitter, jitter)) if delay else 0.0


def fail(
    session: Session,
    job_id: int,
    owner: str,
    error: str,
    *,
    transient: bool,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
) -> str | None:
    """Record a failure: a transient one is retried later, a permanent one is dead-lettered.

    Returns the job's new state, or None when the lease was lost meanwhile.
    """
    job = session.get(JobRecord, job_id, populate_existing=True, with_for_update=True)
    if job is None or job.lease_owner != owner or job.state != "running":
        return None
    now = utcnow()
    job.last_error = error[:MAX_ERROR_CHARS]
    job.lease_owner = job.lease_expires_at = None
    job.updated_at = now
    if transient and job.attempts < job.max_attempts:
        delay = backoff_seconds(job.attempts, base_s, max_s)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, max_s))
        job.state = "queued"
        job.run_after = now + timedelta(seconds=delay)
    else:
        job.state = "dead"
        job.finished_at = now
    return job.state


def retry(session: Session, job_id: int, tenant_id: int | None = None) -> JobRecord:
    """Give a dead job a fresh set of attempts (``deskpilot jobs retry``)."""
    job = session.get(JobRecord, job_id, with_for_update=True)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        raise NotFoundError(f"no job {job_id}")
    if job.state != "dead":
        raise ConflictError(f"job {job_id} is {job.state}; only dead jobs can be retried")
    now = utcnow()
    job.state = "queued"
    job.attempts = 0
    job.run_after = now
    job.finished_at = None
    job.updated_at = now
    return job


def get_job(session: Session, job_id: int, tenant_id: int | None = None) -> JobRecord | None:
    job = session.get(JobRecord, job_id)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        return None
    return job


def list_jobs(
    session: Session,
    *,
    tenant_id: int | None = None,
    state: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[JobRecord]:
    query = select(JobRecord).order_by(JobRecord.id.desc()).limit(limit)
    if tenant_id is not None:
        query = query.where(JobRecord.tenant_id == tenant_id)
    if state is not None:
        query = query.where(JobRecord.state == state)
    if kind is not None:
        query = query.where(JobRecord.kind == kind)
    return list(session.scalars(query))


def due_job_ids(session: Session, *, limit: int = 500) -> list[int]:
    """Jobs a broker should be told about: queued and due, or running with a lapsed lease."""
    query = select(JobRecord.id).where(_visible(utcnow())).order_by(JobRecord.id).limit(limit)
    return list(session.scalars(query))


def counts(session: Session) -> dict[str, int]:
    from sqlalchemy import func

    rows = session.execute(select(JobRecord.state, func.count()).group_by(JobRecord.state)).all()
    return {state: int(n) for state, n in rows}
