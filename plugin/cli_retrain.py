"""``deskpilot retrain`` and the audit trail of ``deskpilot adapters promote|rollback``.

``retrain`` queues a retrain job (the same job a server's worker runs) and runs it here at
once, drawing its progress from the job row; the job row keeps the outcome
(``GET /v1/jobs/{id}``). Helpers of :mod:`deskpilot.cli` are imported inside the
functions: that module registers this one.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from deskpilot.adapters.registry import AdapterCard
    from deskpilot.jobs.context import WorkerContext
    from deskpilot.jobs.runner import ActiveJobs

CLI_ACTOR = "cli"

TaskOpt = Annotated[str, typer.Option(help="Task to retrain, e.g. queue.")]
TenantOpt = Annotated[str | None, typer.Option(help="Tenant the adapter belongs to [default: settings]")]
MinutesOpt = Annotated[
    float | None,
    typer.Option(min=0.05, help="Training budget in minutes [default: the champion's recipe]"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_cmd)


def record_champion_change(card: AdapterCard, *, kind: str, previous: str | None) -> None:
    """Mirror a champion switch into the database with its audit entry, in one transaction.

    Best effort, like the CLI's other database mirrors: the registry files are the truth.
    """
    from deskpilot.cli import settings, warn
    from deskpilot.errors import DeskpilotError
    from deskpilot.store import Database
    from deskpilot.store.champions import record_champion

    db = Database(settings().db_url)
    try:
        db.migrate()
        with db.session() as session:
            record_champion(session, card, kind=kind, actor=CLI_ACTOR, previous=previous)
    except DeskpilotError as exc:
        warn(f"the champion changed on disk but not in the database: {exc}")
    finally:
        db.dispose()


def _run_or_follow(context: WorkerContext, job_id: int, owner: str, active: ActiveJobs) -> None:
    """Run the job here; if a worker (e.g. one inside `deskpilot serve`) took it, follow it."""
    import time

    from deskpilot.cli import say
    from deskpilot.jobs.runner import run_one
    from deskpilot.store import queue

    followed = False
    while True:
        if run_one(context, owner, job_id=job_id, active=active) is not None:
            return
        with context.database.session() as session:
            job = queue.get_job(session, job_id)
            state = job.state if job is not None else "deleted"
        if state in ("done", "dead", "deleted"):
            return
        if not followed and state == "running":
            say(f"job {job_id} is running in a worker; following it")
            followed = True
        time.sleep(0.5)


class _Watcher:
    """While the job runs here: keep its lease and draw its progress from the job row."""

    def __init__(
        self, context: WorkerContext, job_id: int, active: ActiveJobs, draw: Any, poll_s: float = 0.25
    ) -> None:
        self.context = context
        self.job_id = job_id
        self.active = active
        self.draw = draw
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deskpilot-retrain-watch", daemon=True)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._show()

    def _loop(self) -> None:
        import time

        from deskpilot.jobs.runner import heartbeat

        beat_every = max(0.5, self.context.settings.job_lease_s / 3)
        last_beat = time.monotonic()
        while not self._stop.wait(self.poll_s):
            if time.monotonic() - last_beat >= beat_every:
                heartbeat(self.context, self.active)
                last_beat = time.monotonic()
            self._show()

    def _show(self) -> None:
        from sqlalchemy.exc import OperationalError

        from deskpilot.errors import DeskpilotError
        from deskpilot.store import queue

        try:
            with self.context.database.session() as session:
                job = queue.get_job(session, self.job_id)
                progress = dict(job.progress) if job is not None else {}
        except (DeskpilotError, OperationalError):
            return
        phase = progress.get("phase")
        if phase == "training" and progress.get("steps"):
            self.draw(str(progress.get("stage", "training")), int(progress["step"]), int(progress["steps"]))
        elif phase == "evaluating" and progress.get("total"):
            self.draw("evaluating", int(progress["done"]), int(progress["total"]))
        elif phase == "done":
            self.draw("evaluating", 1, 1)


def _table(outcome: dict[str, Any]) -> Any:
    from rich.table import Table

    from deskpilot.cli import _fmt

    metrics = outcome["metrics"]
    table = Table(title=f"retrain {outcome['task']}: champion vs challenger on the same rows")
    table.add_column("measure")
    table.add_column(f"champion {metrics['champion']['version']}", justify="right")
    table.add_column(f"challenger {metrics['challenger']['version']}", justify="right")
    for key in ("macro_f1", "accuracy_on_covered", "coverage", "accuracy", "n"):
        table.add_row(key, _fmt(metrics["champion"][key]), _fmt(metrics["challenger"][key]))
    data = outcome["data"]
    table.caption = (
        f"{data['eval_rows']} evaluation rows ({data['holdout_rows']} holdout + "
        f"{data['eval_rows'] - data['holdout_rows']} corrections); margins: macro-F1 "
        f"{metrics['margins']['f1']}, accuracy on covered {metrics['margins']['covered_accuracy']}"
    )
    return table


def retrain_cmd(
    task: TaskOpt,
    tenant: TenantOpt = None,
    max_minutes: MinutesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrain a classifier on its rows plus corrections; promote it only if it is not worse."""
    from rich.console import Console

    from deskpilot.cli import (
        _quiet_libraries,
        _tenant,
        emit_json,
        fail,
        progress_bar,
        say,
        settings,
        user_errors,
    )

    s = settings()
    tenant = _tenant(tenant)
    with user_errors():
        from deskpilot.adapters.registry import Registry, check_name

        check_name("task", task)
        check_name("tenant", tenant)
        _quiet_libraries()
        from deskpilot.jobs.context import WorkerContext
        from deskpilot.jobs.retrain import check_retrainable
        from deskpilot.jobs.runner import ActiveJobs, worker_name
        from deskpilot.jobs.triggers import enqueue_retrain, retrain_state
        from deskpilot.store import Database, get_or_create_tenant, queue

        champion, texts, _ = check_retrainable(Registry(s.adapters_dir), tenant, task)
        db = Database(s.db_url)
        try:
            db.migrate()
            with db.session() as session:
                owner = get_or_create_tenant(session, tenant)
                state = retrain_state(session, owner.id, task)
                job_id = state.pending
                if job_id is None:
                    job_id = enqueue_retrain(
                        session,
                        owner.id,
                        task,
                        s,
                        reason="cli",
                        requested_by=CLI_ACTOR,
                        max_minutes=max_minutes,
                        max_attempts=1,  # a failure here is reported here, not retried later
                    )
            say(f"retraining {task} (champion {champion.version}, {len(texts):,} rows) as job {job_id}")
            context = WorkerContext.build(s, db)
            active = ActiveJobs()
            owner_name = worker_name("cli")
            bar = progress_bar(enabled=sys.stderr.isatty() or not as_json)
            with bar as draw, _Watcher(context, job_id, active, draw):
                _run_or_follow(context, job_id, owner_name, active)
            with db.session() as session:
                job = queue.get_job(session, job_id)
                job_state = job.state if job is not None else "deleted"
                outcome = dict(job.result) if job is not None else {}
                error = job.last_error if job is not None else None
        finally:
            db.dispose()
    if job_state != "done":
        fail(f"retrain job {job_id} of {task} failed: {error or job_state}")

    summary = {
        "job_id": job_id,
        "task": task,
        "tenant": tenant,
        "promoted": outcome["promoted"],
        "champion": outcome["champion"],
        "previous_champion": outcome["previous_champion"],
        "challenger": outcome["challenger"],
        "reason": outcome["reason"],
        "metrics": outcome["metrics"],
        "data": outcome["data"],
        "feedback_upto": outcome["feedback_upto"],
        "train_seconds": outcome["train_seconds"],
    }
    if outcome["promoted"]:
        say(f"promoted {task} {outcome['challenger']} (was {outcome['previous_champion']})")
    else:
        say(f"kept {task} {outcome['champion']}; challenger {outcome['challenger']} rejected")
    say(outcome["reason"])
    if as_json:
        emit_json(summary)
    else:
        Console().print(_table(outcome))
