"""The default backend: worker threads polling the job table (SQLite or PostgreSQL).

Runs inside ``deskpilot serve`` or alone as ``deskpilot worker``. ``notify`` wakes an idle
thread at once, so a new ticket does not wait for the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from deskpilot.errors import DeskpilotError

from .context import WorkerContext
from .runner import ActiveJobs, heartbeat, run_one, schedule_retrains, worker_name

logger = logging.getLogger("deskpilot.jobs")

SCHEDULE_CHECK_S = 60.0


class EmbeddedWorkerPool:
    def __init__(
        self,
        context: WorkerContext,
        *,
        threads: int = 1,
        kinds: Sequence[str] | None = None,
        name: str = "worker",
    ) -> None:
        if threads < 1:
            raise ValueError("an embedded worker pool needs at least one thread")
        self.context = context
        self.threads = threads
        self.kinds = list(kinds) if kinds else None
        self.name = worker_name(name)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._active = ActiveJobs()
        self._workers: list[threading.Thread] = []
        self.processed = 0
        self._count_lock = threading.Lock()

    # JobNotifier
    def notify(self, job_ids: Sequence[int]) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._workers:
            return
        self._stop.clear()
        for i in range(self.threads):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.name}/{i}",), name=f"deskpilot-{i}", daemon=True
            )
            thread.start()
            self._workers.append(thread)
        beat = threading.Thread(target=self._beat, name="deskpilot-heartbeat", daemon=True)
        beat.start()
        self._workers.append(beat)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs in hand, then return; unfinished ones are picked up again later."""
        self._stop.set()
        self._wake.set()
        for thread in self._workers:
            thread.join(timeout)
        self._workers = []

    def alive(self) -> bool:
        """True while started and every worker thread and the heartbeat still run (for /readyz)."""
        workers = list(self._workers)
        return bool(workers) and all(thread.is_alive() for thread in workers)

    def __enter__(self) -> EmbeddedWorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self, owner: str) -> None:
        poll = self.context.settings.job_poll_s
        while not self._stop.is_set():
            try:
                ran = run_one(self.context, owner, kinds=self.kinds, active=self._active)
            except (DeskpilotError, OperationalError):
                logger.warning("the job queue is unreachable; retrying", exc_info=True)
                ran = None
                self._stop.wait(min(5.0, poll * 10))
            if ran is not None:
                with self._count_lock:
                    self.processed += 1
                continue
            self._wake.wait(poll)
            if not self._stop.is_set():  # a stop must wake every thread, so it stays set
                self._wake.clear()

    def _beat(self) -> None:
        interval = max(0.2, self.context.settings.job_lease_s / 3)
        next_schedule = time.monotonic()
        while not self._stop.wait(interval):
            heartbeat(self.context, self._active)
            if time.monotonic() >= next_schedule:
                schedule_retrains(self.context)
                next_schedule = time.monotonic() + SCHEDULE_CHECK_S
