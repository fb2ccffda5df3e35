"""What every queue backend shares: a job being run, how it ends, how workers are woken.

The job row in the database is the truth for both backends. A handler finishes its job in
the same transaction as its results (:meth:`JobRun.finish`), so a job is either done with
all its effects stored, or not done and run again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from deskpilot.store import queue


class JobNotifier(Protocol):
    """Rings the bell after a commit; losing a ring only delays a job, never loses it."""

    def notify(self, job_ids: Sequence[int]) -> None: ...


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired); our results are dropped."""


class PermanentJobError(Exception):
    """Retrying cannot help (bad data, missing configuration): dead-letter at once."""


@dataclass(slots=True)
class JobRun:
    id: int
    tenant_id: int
    kind: str
    payload: dict[str, Any]
    owner: str
    attempts: int
    max_attempts: int
    # jobs this one made that the same worker runs next (a decision's outbox deliveries): what
    # was started is finished before new tickets are taken, so a backlog cannot starve them
    follow_ups: list[int] = field(default_factory=list)

    def finish(self, session: Session, result: dict[str, Any] | None = None) -> None:
        """Mark the job done inside the caller's transaction, if our lease still holds."""
        if not queue.owns(session, self.id, self.owner):
            raise LeaseLost(f"job {self.id} is no longer ours")
        queue.complete(session, self.id, self.owner, result)


Handler = Callable[[Any, JobRun], None]
