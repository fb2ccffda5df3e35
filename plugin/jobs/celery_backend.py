"""The scale-out backend: Celery workers over Redis or RabbitMQ, PostgreSQL as the store.

The broker only rings the bell. A message carries a job id and nothing else; the worker
that receives it claims the job row under a lease (:func:`deskpilot.store.queue.claim`),
so a duplicate message, a redelivery or a stale id finds nothing to claim and is dropped.
Nothing is lost either:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only after
  its job ran, and goes back to the queue when the process running it dies;
- every job running in a process has its lease extended by a heartbeat thread; a process
  (or machine) that dies stops extending, the lease lapses and the job is visible again;
- the :class:`Sweeper` in each ``deskpilot worker --backend celery`` publishes the jobs the
  store says are due: retries whose backoff has passed, jobs whose lease lapsed, and jobs
  whose publish was lost (the broker was down when the gateway committed).

Each worker process builds its :class:`WorkerContext` once (models load lazily, once per
process) and never shares a database connection with its parent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from deskpilot.config import Settings
from deskpilot.errors import DeskpilotError
from deskpilot.store import Database, queue
from deskpilot.store.models import JobRecord, utcnow

from .context import WorkerContext
from .embedded import SCHEDULE_CHECK_S
from .runner import ActiveJobs, heartbeat, run_one, worker_name
from .triggers import enqueue_scheduled_retrains

logger = logging.getLogger("deskpilot.jobs")

TASK_NAME = "deskpilot.run_job"
QUEUE_NAME = "deskpilot"
SWEEP_LIMIT = 500
PAUSE_AFTER_ERROR_S = 5.0

_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.2, "interval_max": 0.5}
"""A gateway must not hang on a dead broker: a lost ring only delays a job (the sweeper finds it)."""


def sweep_interval(settings: Settings) -> float:
    return max(1.0, settings.job_poll_s * 25)


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` with the one task, ``deskpilot.run_job(job_id)``."""
    app = Celery("deskpilot", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2.0,
        task_publish_retry_policy=_PUBLISH_RETRY,
        task_default_queue=QUEUE_NAME,
        # a lost broker connection must not kill running jobs: their leases guard them, and
        # the redelivered message finds the job taken or done
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    runtime = CeleryRuntime(app, settings)
    app.deskpilot_runtime = runtime

    @app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(job_id: int) -> str:
        return runtime.run(job_id)

    # each prefork child builds its own runtime; the parent's connections stay the parent's
    worker_process_init.connect(runtime.after_fork, weak=True)
    return app


class _Process:
    """What one worker process holds: its store, its context, its leases and their heartbeat."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.pid = os.getpid()
        self.database = Database(settings.db_url)
        self.context = WorkerContext.build(settings, self.database, notifier=CeleryNotifier(app))
        self.active = ActiveJobs()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="deskpilot-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        interval = max(0.2, self.context.settings.job_lease_s / 3)
        while not self._stop.wait(interval):
            heartbeat(self.context, self.active)

    def close(self) -> None:
        self._stop.set()
        self._beat.join(5.0)
        self.context.close()
        self.database.dispose()


class CeleryRuntime:
    """Process-wide state behind the task: built on first use in each process, once."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._lock = threading.Lock()
        self._process: _Process | None = None
        self._inherited: list[Database] = []

    def inherit(self, database: Database) -> None:
        """A database the worker's parent uses (the sweeper's): children must not touch it."""
        self._inherited.append(database)

    def after_fork(self, **_: Any) -> None:
        """In a new child: drop (never close) the parent's connections, start afresh."""
        logger.debug("worker process %d: dropping the connections inherited from its parent", os.getpid())
        for database in self._inherited:
            database.engine.dispose(close=False)
        self._inherited = []
        if self._process is not None:
            self._process.database.engine.dispose(close=False)
        self._lock = threading.Lock()
        self._process = None

    def process(self) -> _Process:
        with self._lock:
            if self._process is None or self._process.pid != os.getpid():
                self._process = _Process(self.app, self.settings)
            return self._process

    def run(self, job_id: Any) -> str:
        """The task body: run the job if it is still there to claim; never raises."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            logger.error("dropping a message with job id %r: not an integer", job_id)
            return "invalid"
        process = self.process()
        try:
            ran = run_one(process.context, worker_name("celery"), job_id=job_id, active=process.active)
        except (DeskpilotError, SQLAlchemyError) as exc:
            # the job row stays as it was: the sweeper publishes it again once the store is back
            logger.warning("job %d: the job store is unreachable: %s", job_id, exc)
            return "store-unreachable"
        if ran is None:
            logger.debug("job %d: not due, already taken or finished; message dropped", job_id)
            return "skipped"
        return "ran"

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.pid == os.getpid():
            process.close()


class CeleryNotifier:
    """Rings the bell for committed jobs; a broker error is logged, never raised.

    It publishes over a connection of its own (opened on first use, reopened after an
    error, serialised by a lock), so ``close()`` releases exactly what it opened and never
    the process-wide pools other Celery apps may share.
    """

    def __init__(self, app: Celery, *, pause_after_error_s: float = PAUSE_AFTER_ERROR_S) -> None:
        self.app = app
        self.pause_after_error_s = pause_after_error_s
        self._lock = threading.Lock()
        self._connection: Any = None
        self._producer: Any = None
        self._paused_until = 0.0

    def publish(self, job_ids: Sequence[int]) -> int:
        """Send one message per job; returns how many were sent (stops at the first error).

        After an error it sends nothing for ``pause_after_error_s``: while the broker is down,
        requests must not each wait for a connection timeout (the sweeper catches up).
        """
        sent = 0
        with self._lock:
            if job_ids and time.monotonic() < self._paused_until:
                logger.debug("broker unavailable: %d job(s) left to the sweeper", len(job_ids))
                return 0
            for job_id in job_ids:
                try:
                    if self._producer is None:
                        self._connection = self.app.connection_for_write()
                        self._producer = self.app.amqp.Producer(self._connection)
                    self.app.send_task(
                        TASK_NAME, args=[int(job_id)], ignore_result=True, producer=self._producer
                    )
                except Exception as exc:  # kombu/redis/amqp raise many types; none may reach the caller
                    self._drop_connection()
                    self._paused_until = time.monotonic() + self.pause_after_error_s
                    logger.warning(
                        "could not publish %d job(s) to the broker (%s: %s); the sweeper will publish them",
                        len(job_ids) - sent,
                        type(exc).__name__,
                        exc,
                    )
                    break
                sent += 1
        return sent

    def notify(self, job_ids: Sequence[int]) -> None:
        self.publish(job_ids)

    def _drop_connection(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                logger.debug("closing the broker connection failed", exc_info=True)

    def close(self) -> None:
        """Close this notifier's broker connection."""
        with self._lock:
            self._drop_connection()
        self.app.close()


class Sweeper:
    """Publishes the jobs the store says are due, so none waits on a lost message.

    Each job is published once per change of its row (a retry coming due, a lease lapsing)
    and again every ``job_lease_s`` while it stays due (a backlog, or a lost message). New
    jobs are left to whoever created them for one interval: their own publish is on its way.
    Several sweepers (one per worker machine) only add duplicate messages, which are harmless.
    """

    def __init__(
        self,
        database: Database,
        notifier: CeleryNotifier,
        settings: Settings,
        *,
        interval_s: float | None = None,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.settings = settings
        self.interval_s = interval_s if interval_s is not None else sweep_interval(settings)
        self.republish_s = max(self.interval_s, settings.job_lease_s)
        self._published: dict[int, tuple[datetime, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[int]:
        """One pass; returns the ids published."""
        with self.database.session() as session:
            due = queue.due_job_ids(session, limit=SWEEP_LIMIT)
            rows = (
                session.execute(
                    select(JobRecord.id, JobRecord.updated_at, JobRecord.created_at).where(
                        JobRecord.id.in_(due)
                    )
                ).all()
                if due
                else []
            )
        now, clock = utcnow(), time.monotonic()
        fresh_after = now - timedelta(seconds=self.interval_s)
        seen: dict[int, tuple[datetime, float]] = {}
        wanted: list[int] = []
        for job_id, updated_at, created_at in sorted(rows):
            last = self._published.get(job_id)
            if last is not None and last[0] == updated_at and clock - last[1] < self.republish_s:
                seen[job_id] = last
            elif last is None and created_at > fresh_after:
                continue  # just created: its creator's publish is on its way
            else:
                wanted.append(job_id)
                seen[job_id] = (updated_at, clock)
        sent = self.notifier.publish(wanted)
        for job_id in wanted[sent:]:  # not sent: try again next pass
            seen.pop(job_id, None)
        self._published = seen
        if sent:
            logger.info("sweeper published %d due job(s)", sent)
        return wanted[:sent]

    def _loop(self) -> None:
        next_schedule = time.monotonic()
        while not self._stop.wait(self.interval_s):
            try:
                if time.monotonic() >= next_schedule:
                    next_schedule = time.monotonic() + SCHEDULE_CHECK_S
                    self._schedule_retrains()
                self.sweep()
            except (DeskpilotError, SQLAlchemyError) as exc:
                logger.warning("sweeper: the job store is unreachable: %s", exc)
            except Exception:  # the sweeper must outlive any one bad pass
                logger.exception("sweeper pass failed")

    def _schedule_retrains(self) -> None:
        """Queue the retrains ``retrain_interval_minutes`` says are due; the next sweep sends them."""
        if self.settings.retrain_interval_minutes <= 0:
            return
        with self.database.session() as session:
            enqueue_scheduled_retrains(session, self.settings)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="deskpilot-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
