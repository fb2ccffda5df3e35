"""``deskpilot worker`` and ``deskpilot jobs ...``: run the job queue, look into it, retry.

Registered on the main app by :func:`register` (called from ``deskpilot.cli``). The shared
helpers (``say``, ``fail``, ``settings``...) are imported inside the commands, so importing
this module first, or running ``python -m deskpilot.cli``, never meets a half-built module.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from deskpilot.config import Settings
    from deskpilot.store import Database
    from deskpilot.store.models import JobRecord

jobs_app = typer.Typer(help="Background jobs: list, inspect, retry dead ones.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
ERROR_CELL_CHARS = 80


class Backend(StrEnum):
    embedded = "embedded"
    celery = "celery"


class CeleryPool(StrEnum):
    prefork = "prefork"
    threads = "threads"
    solo = "solo"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    dead = "dead"


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
    app.add_typer(jobs_app, name="jobs")


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    """The job store, migrated (a fresh home gets its tables), disposed afterwards."""
    from deskpilot.store import Database

    database = Database(settings.db_url)
    try:
        database.migrate()
        yield database
    finally:
        database.dispose()


# --- worker --------------------------------------------------------------------------
def worker_cmd(
    backend: Annotated[
        Backend | None, typer.Option(help="Queue backend (default: the queue_backend setting, embedded)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, max=64, help="embedded: worker threads (default: setting workers)")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="celery: worker processes, each loads the models once (default: setting workers)",
        ),
    ] = None,
    kinds: Annotated[
        str | None, typer.Option(help="embedded: only these job kinds, comma-separated (e.g. retrain)")
    ] = None,
    pool: Annotated[CeleryPool, typer.Option(help="celery: execution pool")] = CeleryPool.prefork,
    log_level: Annotated[
        str | None, typer.Option(help="Log level [default: settings log_level, info]")
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option("--log-json/--log-text", help="JSON log lines or text [default: settings log_format]"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this process's Prometheus metrics (predictions it made) on this port",
        ),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port")] = "127.0.0.1",
) -> None:
    """Process background jobs until SIGTERM/SIGINT (jobs in hand are finished first).

    embedded: threads polling the database (SQLite or PostgreSQL). celery: a Celery worker
    on DESKPILOT_BROKER_URL (Redis or RabbitMQ) with PostgreSQL as the store, plus a sweeper
    that re-publishes due jobs and a heartbeat that keeps running jobs' leases.
    """
    from deskpilot.cli import fail, settings, user_errors
    from deskpilot.logs import logging_configured

    s = settings()
    level = (log_level or s.log_level).lower()
    if level not in ("debug", "info", "warning", "error"):
        fail(f"--log-level {log_level!r}: use debug, info, warning or error")
    chosen = backend.value if backend is not None else s.queue_backend
    kind_list = [k.strip() for k in (kinds or "").split(",") if k.strip()]
    if chosen == "celery":
        if kind_list:
            fail("--kinds needs --backend embedded: Celery workers take every kind from the one queue")
        if threads is not None:
            fail("--threads is for --backend embedded; use --concurrency with celery")
        if metrics_port is not None and pool == CeleryPool.prefork:
            fail("--metrics-port needs --pool threads or solo: prefork children count in their own processes")
    elif concurrency is not None:
        fail("--concurrency is for --backend celery; use --threads with the embedded backend")
    with logging_configured(s, json_format=log_json, level=level):
        if metrics_port is not None:
            from deskpilot.telemetry import serve_metrics

            with user_errors():
                serve_metrics(metrics_port, metrics_host)
        if chosen == "celery":
            _run_celery(s, concurrency or max(1, s.workers), pool.value, level)
        else:
            _run_embedded(s, threads or max(1, s.workers), kind_list)


def _run_embedded(s: Settings, threads: int, kinds: list[str]) -> None:
    from deskpilot.cli import say, user_errors
    from deskpilot.jobs.context import WorkerContext
    from deskpilot.jobs.embedded import EmbeddedWorkerPool

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    with user_errors(), _database(s) as database:
        context = WorkerContext.build(s, database)
        workers = EmbeddedWorkerPool(context, threads=threads, kinds=kinds or None, name="worker")
        context.notifier = workers  # follow-up jobs (deliveries) wake this pool at once
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            workers.start()
            say(
                f"embedded worker {workers.name}: {threads} thread(s), kinds "
                f"{','.join(kinds) if kinds else 'all'}, store {database.safe_url}; "
                "stop with Ctrl-C or SIGTERM"
            )
            stop.wait()
            say("stopping: finishing the jobs in hand")
            workers.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            context.close()
    say(f"worker stopped after {workers.processed} job(s)")


def _run_celery(s: Settings, concurrency: int, pool: str, log_level: str) -> None:
    from celery.signals import worker_ready

    from deskpilot.cli import say, user_errors, warn
    from deskpilot.jobs.celery_backend import CeleryNotifier, Sweeper, make_celery

    with user_errors(), _database(s) as database:
        if database.backend == "sqlite":
            warn(
                "Celery workers on SQLite only scale on one machine; "
                "set DESKPILOT_DATABASE_URL to PostgreSQL to scale out"
            )
        app = make_celery(s)
        app.conf.worker_hijack_root_logger = False  # keep the handler configure_logging installed
        runtime = app.deskpilot_runtime
        runtime.inherit(database)  # the sweeper's connections: children must not touch them
        notifier = CeleryNotifier(app)
        sweeper = Sweeper(database, notifier, s)

        def start_sweeper(**_: Any) -> None:
            sweeper.start()  # once the pool's children are forked: no thread is copied into them

        worker_ready.connect(start_sweeper, weak=False)
        worker = app.Worker(
            hostname=f"deskpilot-{os.getpid()}@{socket.gethostname()}",
            pool_cls=pool,
            concurrency=concurrency,
            loglevel=log_level.upper(),
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            quiet=True,
        )
        say(
            f"celery worker: {concurrency} {pool} process(es) on broker "
            f"{app.connection().as_uri()}, store {database.safe_url}; sweeping every {sweeper.interval_s:g} s"
        )
        try:
            worker.start()
        finally:
            worker_ready.disconnect(start_sweeper)
            sweeper.stop()
            runtime.close()
            notifier.close()
    code = int(worker.exitcode or 0)
    if code:
        raise typer.Exit(code)


# --- jobs ----------------------------------------------------------------------------
def _tenant_slugs(session: Session, tenant_ids: set[int]) -> dict[int, str]:
    from sqlalchemy import select

    from deskpilot.store import Tenant

    if not tenant_ids:
        return {}
    rows = session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(tenant_ids))).all()
    return {int(i): str(slug) for i, slug in rows}


def _job_dict(job: JobRecord, tenant: str) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.id,
        "tenant": tenant,
        "kind": job.kind,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_after": when(job.run_after),
        "lease_owner": job.lease_owner,
        "lease_expires_at": when(job.lease_expires_at),
        "last_error": job.last_error,
        "payload": job.payload,
        "result": job.result,
        "progress": job.progress,
        "created_at": when(job.created_at),
        "updated_at": when(job.updated_at),
        "finished_at": when(job.finished_at),
    }


def _short(text: str | None, limit: int = ERROR_CELL_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@jobs_app.command("list")
def jobs_list_cmd(
    state: Annotated[
        JobState | None, typer.Option(help="Only jobs in this state (dead: the dead letters).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind, e.g. deliver_action.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs (default: all tenants)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first, with the error that dead-lettered them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from deskpilot.cli import emit_json, say, settings, user_errors
    from deskpilot.store import get_tenant, queue

    with user_errors(), _database(settings()) as database, database.session() as session:
        tenant_id: int | None = None
        found = True
        if tenant is not None:
            row = get_tenant(session, tenant)
            found = row is not None
            tenant_id = row.id if row is not None else None
        jobs = (
            queue.list_jobs(
                session, tenant_id=tenant_id, state=state.value if state else None, kind=kind, limit=limit
            )
            if found
            else []
        )
        slugs = _tenant_slugs(session, {j.tenant_id for j in jobs})
        items = [_job_dict(j, slugs.get(j.tenant_id, str(j.tenant_id))) for j in jobs]
        totals = queue.counts(session)
    if as_json:
        emit_json({"jobs": items, "counts": totals})
        return
    if not items:
        say("no jobs match" if state or kind or tenant else "no jobs yet")
        return
    table = Table(title="jobs (" + ", ".join(f"{n} {s}" for s, n in sorted(totals.items())) + ")")
    for column in ("id", "tenant", "kind", "state", "tries"):
        table.add_column(column, no_wrap=True)
    table.add_column("when, UTC", no_wrap=True)  # next run, or when it finished
    table.add_column("error", overflow="fold", min_width=12)
    for it in items:
        moment = it["finished_at"] if it["state"] in ("done", "dead") else it["run_after"]
        table.add_row(
            str(it["id"]),
            escape(it["tenant"]),
            escape(it["kind"]),
            it["state"],
            f"{it['attempts']}/{it['max_attempts']}",
            (moment or "")[5:16].replace("T", " "),  # MM-DD HH:MM
            escape(_short(it["last_error"])),
        )
    Console().print(table)


@jobs_app.command("show")
def jobs_show_cmd(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The job id.")], as_json: JsonOpt = False
) -> None:
    """One job in full: payload, result, progress, lease and last error."""
    import json

    from deskpilot.cli import emit_json, fail, settings, user_errors
    from deskpilot.store import queue

    with user_errors(), _database(settings()) as database, database.session() as session:
        job = queue.get_job(session, job_id)
        if job is None:
            fail(f"no job {job_id}")
        item = _job_dict(job, _tenant_slugs(session, {job.tenant_id}).get(job.tenant_id, str(job.tenant_id)))
    if as_json:
        emit_json(item)
        return
    for key, value in item.items():
        shown = (
            json.dumps(value, default=str) if isinstance(value, dict) else ("" if value is None else value)
        )
        typer.echo(f"{key}: {shown}")


@jobs_app.command("retry")
def jobs_retry_cmd(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The id of a dead job.")],
    as_json: JsonOpt = False,
) -> None:
    """Give a dead job a fresh set of attempts and wake the workers."""
    from deskpilot.cli import emit_json, say, settings, user_errors
    from deskpilot.jobs.notify import close_notifier, notifier_for
    from deskpilot.store import queue

    s = settings()
    with user_errors(), _database(s) as database:
        with database.session() as session:
            job = queue.retry(session, job_id)
            kind, error = job.kind, job.last_error
        notifier = notifier_for(s)
        try:
            if notifier is not None:
                notifier.notify([job_id])
        finally:
            close_notifier(notifier)
    if as_json:
        emit_json({"id": job_id, "kind": kind, "state": "queued", "last_error": error})
        return
    say(f"job {job_id} ({kind}) is queued again; last error was: {_short(error, 200) or 'none'}")
