"""Claim one job, run its handler, and record how it ended. Shared by every backend."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from deskpilot.errors import (
    ActionError,
    ConfigError,
    DeskpilotError,
    InputDataError,
    NotFoundError,
    PolicyError,
)
from deskpilot.logs import job_context
from deskpilot.redaction import scrub
from deskpilot.store import queue
from deskpilot.store.documents import PROCESS_DOCUMENT
from deskpilot.store.workflow import ANSWER_QUERY, APPLY_FEEDBACK, DELIVER_ACTION, PROCESS_TICKET, RETRAIN

from .base import JobRun, LeaseLost, PermanentJobError
from .context import WorkerContext
from .feedback import answer_query, apply_feedback
from .pipeline import deliver_action, process_ticket

logger = logging.getLogger("deskpilot.jobs")

Handler = Callable[[WorkerContext, JobRun], None]


def _process_document(context: WorkerContext, run: JobRun) -> None:
    # the field rules and the originals store load only in processes that get documents
    module = importlib.import_module("deskpilot.jobs.documents")
    module.process_document(context, run)


def _retrain(context: WorkerContext, run: JobRun) -> None:
    # training imports torch: loaded by name, only in processes that retrain
    module = importlib.import_module("deskpilot.jobs.retrain")
    module.run_retrain_job(context, run)


HANDLERS: dict[str, Handler] = {
    PROCESS_TICKET: process_ticket,
    DELIVER_ACTION: deliver_action,
    RETRAIN: _retrain,
    APPLY_FEEDBACK: apply_feedback,
    ANSWER_QUERY: answer_query,
    PROCESS_DOCUMENT: _process_document,
}

_PERMANENT = (PermanentJobError, InputDataError, PolicyError, ConfigError, NotFoundError)


def worker_name(prefix: str = "worker") -> str:
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ActiveJobs:
    """The jobs this process holds leases on, for the heartbeat that keeps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, str] = {}

    def add(self, job_id: int, owner: str) -> None:
        with self._lock:
            self._jobs[job_id] = owner

    def remove(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def by_owner(self) -> dict[str, list[int]]:
        with self._lock:
            owners: dict[str, list[int]] = {}
            for job_id, owner in self._jobs.items():
                owners.setdefault(owner, []).append(job_id)
            return owners


def heartbeat(context: WorkerContext, active: ActiveJobs) -> None:
    """Extend the leases of running jobs; called every third of a lease."""
    lease = context.settings.job_lease_s
    for owner, job_ids in active.by_owner().items():
        try:
            with context.database.session() as session:
                queue.extend(session, job_ids, owner, lease)
        except (DeskpilotError, OperationalError):
            logger.warning("could not extend the leases of jobs %s", job_ids, exc_info=True)


def schedule_retrains(context: WorkerContext) -> list[int]:
    """Queue the retrains the schedule says are due (``retrain_interval_minutes``)."""
    if context.settings.retrain_interval_minutes <= 0:
        return []
    from .triggers import enqueue_scheduled_retrains

    try:
        with context.database.session() as session:
            job_ids = enqueue_scheduled_retrains(session, context.settings)
    except (DeskpilotError, OperationalError):
        logger.warning("could not check for scheduled retrains", exc_info=True)
        return []
    if job_ids and context.notifier is not None:
        context.notifier.notify(job_ids)
    return job_ids


def run_one(
    context: WorkerContext,
    owner: str,
    *,
    job_id: int | None = None,
    kinds: Sequence[str] | None = None,
    active: ActiveJobs | None = None,
) -> int | None:
    """Run the next visible job (or ``job_id``); returns its id, or None when there was none."""
    settings = context.settings
    with context.database.session() as session:
        job = queue.claim(session, owner, settings.job_lease_s, kinds=kinds, job_id=job_id)
        if job is None:
            return None
        run = JobRun(
            job.id, job.tenant_id, job.kind, dict(job.payload), owner, job.attempts, job.max_attempts
        )
    if active is not None:
        active.add(run.id, owner)
    try:
        with job_context(run.id):  # the job's log lines carry its id (and tenant, once known)
            try:
                handler = HANDLERS.get(run.kind)
                if handler is None:
                    raise PermanentJobError(f"unknown job kind {run.kind!r}")
                handler(context, run)
            except LeaseLost:
                logger.warning("job %d: lease lost to another worker; its results were dropped", run.id)
            except Exception as exc:
                _record_failure(context, run, exc)
    finally:
        if active is not None:
            active.remove(run.id)
    for follow_up in run.follow_ups:  # filled only by a handler whose results were committed
        run_one(context, owner, job_id=follow_up, active=active)
    return run.id


def _record_failure(context: WorkerContext, run: JobRun, exc: Exception) -> None:
    transient = not isinstance(exc, _PERMANENT) and not (isinstance(exc, ActionError) and not exc.transient)
    message = exc.message if isinstance(exc, DeskpilotError) else f"{type(exc).__name__}: {exc}"
    # stored and shown (GET /v1/jobs, the console): never a credential, nor personal data if asked
    message = scrub(message, pii=context.settings.redact_pii)
    retry_after = getattr(exc, "retry_after", None)
    if transient and not isinstance(exc, (ActionError, OperationalError, OSError, TimeoutError)):
        logger.exception("job %d (%s) failed; it will be retried", run.id, run.kind)
    else:
        logger.warning("job %d (%s) failed: %s", run.id, run.kind, message)
    settings = context.settings
    try:
        with context.database.session() as session:
            state = queue.fail(
                session,
                run.id,
                run.owner,
                message,
                transient=transient,
                base_s=settings.job_backoff_s,
                max_s=settings.job_backoff_max_s,
                retry_after_s=float(retry_after) if isinstance(retry_after, (int, float)) else None,
            )
    except (DeskpilotError, OperationalError):
        # the lease will expire and the job will be run again: nothing is lost
        logger.exception("could not record the failure of job %d", run.id)
        return
    if state == "dead":
        logger.error("job %d (%s) is dead: %s", run.id, run.kind, message)
