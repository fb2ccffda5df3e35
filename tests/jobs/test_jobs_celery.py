"""The scale-out path for real: `deskpilot worker --backend celery` processes over Redis or
RabbitMQ with PostgreSQL as the store, delivering outbox actions to a stand-in helpdesk.

The worker is a real subprocess (prefork children, acks_late); the test rings the bell with
:class:`CeleryNotifier`, as the gateway does. No models are needed: ``deliver_action`` jobs
exercise the real handler, policy file, connector client and HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from jobs_support import TOKEN, add_delivery, rabbitmq_url, redis_url, require_port, write_policy
from sqlalchemy import update
from support.helpdesk_standin import HelpdeskStandin

from deskpilot.config import Settings
from deskpilot.jobs.celery_backend import CeleryNotifier, Sweeper, make_celery
from deskpilot.store import Database, get_or_create_tenant, queue
from deskpilot.store.models import JobRecord, OutboxAction, utcnow

WORKER_LEASE_S = 2.0
WORKER_COMMAND = [sys.executable, "-m", "deskpilot.cli", "worker", "--backend", "celery"]


class Worker:
    """``deskpilot worker --backend celery`` in its own process group, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, concurrency: int = 2) -> Worker:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*WORKER_COMMAND, "--concurrency", str(concurrency)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: SIGKILL takes the pool's children too
            )
        return self

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """A machine dying: every process of the worker, no cleanup."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> int:
        """SIGTERM: Celery's warm shutdown; returns the exit code."""
        assert self.process is not None
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            raise

    def ensure_stopped(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[HelpdeskStandin]:
    with HelpdeskStandin(token=TOKEN, state_file=tmp_path / "desk.json") as standin:
        yield standin


def _broker(url: str, name: str) -> Iterator[str]:
    require_port(url, name)
    app = make_celery(Settings(broker_url=url))
    with app.connection_for_write() as connection:  # stale messages from earlier runs add only noise
        app.amqp.TaskConsumer(connection).purge()
    app.close()
    if url.startswith("redis"):  # and so do messages a killed worker left unacknowledged
        client = redis.Redis.from_url(url)
        try:
            client.delete("unacked", "unacked_index", "unacked_mutex")
        finally:
            client.close()
    yield url


@pytest.fixture
def redis_broker() -> Iterator[str]:
    yield from _broker(redis_url(), "Redis")


@pytest.fixture
def rabbitmq_broker() -> Iterator[str]:
    yield from _broker(rabbitmq_url(), "RabbitMQ")


@pytest.fixture
def store(pg_url: str) -> Iterator[Database]:
    database = Database(pg_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def make_worker(
    tmp_path: Path, pg_url: str, desk: HelpdeskStandin
) -> Iterator[Callable[[str], tuple[Worker, CeleryNotifier]]]:
    made: list[tuple[Worker, CeleryNotifier]] = []

    def make(broker: str) -> tuple[Worker, CeleryNotifier]:
        policies = tmp_path / "policies"
        write_policy(policies, desk.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPILOT_")}
        env.update(
            DESKPILOT_HOME=str(tmp_path / "home"),
            DESKPILOT_ENV="test",
            DESKPILOT_DATABASE_URL=pg_url,
            DESKPILOT_BROKER_URL=broker,
            DESKPILOT_QUEUE_BACKEND="celery",
            DESKPILOT_POLICY_DIR=str(policies),
            DESKPILOT_CONNECTOR_SECRETS=json.dumps({"helpdesk": TOKEN}),
            DESKPILOT_CONNECTOR_TIMEOUT_S="10",
            DESKPILOT_JOB_LEASE_S=str(WORKER_LEASE_S),
            DESKPILOT_JOB_BACKOFF_S="0.5",
            DESKPILOT_JOB_POLL_S="0.04",  # the sweeper runs every 25 polls: 1 s
            OMP_NUM_THREADS="1",
        )
        notifier = CeleryNotifier(make_celery(Settings(broker_url=broker)))
        pair = (Worker(env, tmp_path / "worker.log"), notifier)
        made.append(pair)
        return pair

    yield make
    for worker, notifier in made:
        worker.ensure_stopped()
        notifier.close()


def _jobs(database: Database, ids: list[int]) -> list[JobRecord]:
    with database.session() as session:
        found = [queue.get_job(session, job_id) for job_id in ids]
    assert all(job is not None for job in found)
    return [job for job in found if job is not None]


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout} s waiting for {what}; worker log:\n{worker.output()[-6000:]}"
            )
        time.sleep(0.05)


def _posts(desk: HelpdeskStandin) -> list[Any]:
    return [r for r in desk.requests if r.method == "POST"]


@pytest.mark.services
def test_celery_workers_over_redis_deliver_every_job_once_and_retry_after_backoff(
    redis_broker: str, store: Database, desk: HelpdeskStandin, make_worker: Callable[..., Any]
) -> None:
    worker, notifier = make_worker(redis_broker)
    worker.start(concurrency=2)
    ids = [add_delivery(store, f"R{i}") for i in range(5)]
    desk.fail_next(1, status=503)  # one delivery meets an outage: a transient failure
    assert notifier.publish(ids) == 5
    notifier.notify(ids[:3])  # duplicate bells (a retried webhook, two sweepers) are harmless

    _wait_for(lambda: all(j.state == "done" for j in _jobs(store, ids)), 40, "all jobs done", worker)
    jobs = _jobs(store, ids)
    assert sorted(desk.applied_keys()) == sorted(f"acme:R{i}" for i in range(5))  # each once
    assert len(_posts(desk)) == 6  # five deliveries and the one retry; duplicates ran nothing
    retried = [j for j in jobs if j.attempts == 2]
    assert len(retried) == 1 and all(j.attempts == 1 for j in jobs if j not in retried)
    assert "sweeper published" in worker.output()  # nobody else re-publishes a retry
    with store.session() as session:
        outbox = session.get(OutboxAction, retried[0].payload["outbox_id"])
        assert outbox is not None and (outbox.state, outbox.attempts) == ("done", 2)
    assert worker.stop() == 0, worker.output()[-4000:]


@pytest.mark.services
def test_celery_workers_over_rabbitmq(
    rabbitmq_broker: str, store: Database, desk: HelpdeskStandin, make_worker: Callable[..., Any]
) -> None:
    worker, notifier = make_worker(rabbitmq_broker)
    worker.start(concurrency=1)
    ids = [add_delivery(store, f"Q{i}") for i in range(3)]
    notifier.notify(ids)
    notifier.notify(ids)
    _wait_for(lambda: all(j.state == "done" for j in _jobs(store, ids)), 40, "all jobs done", worker)
    assert sorted(desk.applied_keys()) == ["acme:Q0", "acme:Q1", "acme:Q2"]
    assert len(_posts(desk)) == 3
    assert [j.attempts for j in _jobs(store, ids)] == [1, 1, 1]
    assert worker.stop() == 0, worker.output()[-4000:]


@pytest.mark.services
def test_a_worker_killed_mid_job_loses_nothing(
    redis_broker: str, store: Database, desk: HelpdeskStandin, make_worker: Callable[..., Any]
) -> None:
    desk.delay_s = 1.0  # the helpdesk is slow: the worker dies while its request is in flight
    worker, notifier = make_worker(redis_broker)
    worker.start(concurrency=1)
    ids = [add_delivery(store, "K1")]
    notifier.notify(ids)
    _wait_for(lambda: _jobs(store, ids)[0].state == "running", 30, "the job to start", worker)
    time.sleep(0.3)
    worker.kill()
    job = _jobs(store, ids)[0]
    assert (job.state, job.attempts) == ("running", 1)  # a lease held by a dead process

    worker.start(concurrency=1)  # after restart: the lease lapses, the sweeper re-publishes
    _wait_for(lambda: _jobs(store, ids)[0].state == "done", 30, "the job to complete", worker)
    assert _jobs(store, ids)[0].attempts == 2
    assert desk.applied_keys() == ["acme:K1"]  # the first request landed; the retry was a replay
    _wait_for(lambda: len(_posts(desk)) == 2, 5, "the first request to be answered", worker)
    assert desk.replays == 1
    assert worker.stop() == 0, worker.output()[-4000:]


# --- without a broker process ----------------------------------------------------------
def test_the_notifier_never_raises_when_the_broker_is_down() -> None:
    for url in ("redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1//"):
        notifier = CeleryNotifier(make_celery(Settings(broker_url=url)))
        try:
            start = time.monotonic()
            assert notifier.publish([1, 2, 3]) == 0
            assert time.monotonic() - start < 10
            start = time.monotonic()
            notifier.notify([4])  # paused after the error: no second wait for the dead broker
            assert time.monotonic() - start < 0.1
        finally:
            notifier.close()


class _RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.fail = False

    def publish(self, job_ids: list[int]) -> int:
        if self.fail:
            return 0
        self.sent.append(list(job_ids))
        return len(job_ids)


def test_sweeper_publishes_due_jobs_once_per_change(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", job_lease_s=60.0)
    recorder = _RecordingNotifier()
    sweeper = Sweeper(db, recorder, settings, interval_s=1.0)  # type: ignore[arg-type]
    with db.session() as session:
        tenant = get_or_create_tenant(session, "acme").id
        fresh = queue.enqueue(session, tenant, "test_echo", {})
        old = queue.enqueue(session, tenant, "test_echo", {})
        leased = queue.enqueue(session, tenant, "test_echo", {})
        later = queue.enqueue(session, tenant, "test_echo", {}, run_after=utcnow() + timedelta(hours=1))
    past = utcnow() - timedelta(seconds=30)
    with db.session() as session:
        session.execute(
            update(JobRecord).where(JobRecord.id != fresh).values(created_at=past, updated_at=past)
        )
        assert queue.claim(session, "dead-worker", 0.05, job_id=leased) is not None
    time.sleep(0.1)  # the dead worker's lease lapses

    # the fresh job's creator is publishing it; the future one is not due
    assert sweeper.sweep() == [old, leased]
    assert sweeper.sweep() == []  # nothing changed: nothing published again
    with db.session() as session:  # a worker takes `old` and fails: a retry, due at once
        assert queue.claim(session, "w", 30.0, job_id=old) is not None
    with db.session() as session:
        assert queue.fail(session, old, "w", "boom", transient=True, base_s=0.0, max_s=0.0) == "queued"
    recorder.fail = True
    assert sweeper.sweep() == []  # the broker is down: remembered as not sent
    recorder.fail = False
    assert sweeper.sweep() == [old]
    assert later not in {i for batch in recorder.sent for i in batch}
    assert fresh not in {i for batch in recorder.sent for i in batch}
