"""The job table as a queue, and the embedded worker pool, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from deskpilot.config import Settings
from deskpilot.errors import ConflictError, NotFoundError
from deskpilot.jobs import runner
from deskpilot.jobs.base import JobRun, LeaseLost, PermanentJobError
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.embedded import EmbeddedWorkerPool
from deskpilot.store import Database, get_or_create_tenant, queue
from deskpilot.store.models import AuditEntry, JobRecord, utcnow
from deskpilot.store.workflow import audit

TEST_KIND = "test_echo"


def _tenant(db: Database, slug: str = "acme") -> int:
    with db.session() as session:
        return get_or_create_tenant(session, slug).id


def _enqueue(
    db: Database, tenant_id: int, n: int = 1, *, kind: str = TEST_KIND, max_attempts: int = 5
) -> list[int]:
    with db.session() as session:
        return [
            queue.enqueue(session, tenant_id, kind, {"n": i}, max_attempts=max_attempts) for i in range(n)
        ]


def _claim(db: Database, owner: str, lease_s: float = 30.0, **kwargs: object) -> JobRecord | None:
    with db.session() as session:
        return queue.claim(session, owner, lease_s, **kwargs)  # type: ignore[arg-type]


def _job(db: Database, job_id: int) -> JobRecord:
    with db.session() as session:
        job = queue.get_job(session, job_id)
        assert job is not None
        return job


def _make_due(db: Database, job_id: int) -> None:
    with db.session() as session:
        session.execute(
            update(JobRecord).where(JobRecord.id == job_id).values(run_after=utcnow() - timedelta(seconds=1))
        )


def _fail(db: Database, job_id: int, owner: str, *, transient: bool = True, **kwargs: float) -> str | None:
    with db.session() as session:
        return queue.fail(
            session,
            job_id,
            owner,
            "boom",
            transient=transient,
            base_s=kwargs.pop("base_s", 10.0),
            max_s=kwargs.pop("max_s", 25.0),
            **kwargs,
        )


# --- leases ---------------------------------------------------------------------------
def test_claim_takes_the_oldest_under_a_lease_and_a_lapsed_lease_is_claimed_again(db: Database) -> None:
    tenant = _tenant(db)
    first, second = _enqueue(db, tenant, 2)

    a = _claim(db, "A", lease_s=0.3)
    assert a is not None and a.id == first
    assert (a.state, a.lease_owner, a.attempts) == ("running", "A", 1)
    b = _claim(db, "B")
    assert b is not None and b.id == second  # the leased job is invisible
    assert _claim(db, "C") is None
    with db.session() as session:
        assert queue.owns(session, first, "A")
        assert queue.due_job_ids(session) == []

    time.sleep(0.4)  # A's lease lapses: A "died"
    with db.session() as session:
        assert queue.due_job_ids(session) == [first]
        assert not queue.owns(session, first, "A")
    again = _claim(db, "C")
    assert again is not None and again.id == first
    assert (again.lease_owner, again.attempts) == ("C", 2)  # the lost attempt counts
    with db.session() as session:
        assert not queue.complete(session, first, "A")  # A's late result is refused
        assert queue.complete(session, first, "C", {"ok": True})
    assert (_job(db, first).state, _job(db, first).result) == ("done", {"ok": True})


def test_claim_by_id_and_by_kind(db: Database) -> None:
    tenant = _tenant(db)
    (echo,) = _enqueue(db, tenant)
    (other,) = _enqueue(db, tenant, kind="other")
    assert _claim(db, "A", kinds=["nothing"]) is None
    got = _claim(db, "A", job_id=other)
    assert got is not None and got.id == other
    assert _claim(db, "B", job_id=other) is None  # already leased
    got = _claim(db, "B", kinds=[TEST_KIND])
    assert got is not None and got.id == echo


def test_heartbeat_extends_only_the_owners_leases(db: Database) -> None:
    tenant = _tenant(db)
    (job_id,) = _enqueue(db, tenant)
    assert _claim(db, "A", lease_s=0.3) is not None
    with db.session() as session:
        assert queue.extend(session, [job_id], "B", 30.0) == 0
        assert queue.extend(session, [job_id], "A", 30.0) == 1
    time.sleep(0.4)
    assert _claim(db, "B") is None  # still A's


def test_concurrent_claimers_never_get_the_same_job(db: Database) -> None:
    tenant = _tenant(db)
    jobs = _enqueue(db, tenant, 40)
    start = threading.Barrier(4)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(owner: str) -> None:
        mine: list[int] = []
        try:
            start.wait()
            while (job := _claim(db, owner)) is not None:
                mine.append(job.id)
                with db.session() as session:
                    assert queue.complete(session, job.id, owner)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        got[owner] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    claimed = [job_id for mine in got.values() for job_id in mine]
    assert sorted(claimed) == jobs  # every job once: none twice, none lost
    with db.session() as session:
        assert queue.counts(session) == {"done": 40}


# --- failures -------------------------------------------------------------------------
def test_backoff_seconds_doubles_up_to_the_cap() -> None:
    for attempt, expected in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 50.0), (9, 50.0)]:
        assert queue.backoff_seconds(attempt, 2.0, 50.0, jitter=0.0) == expected
    delays = [queue.backoff_seconds(3, 2.0, 50.0) for _ in range(200)]
    assert 8.0 * 0.8 <= min(delays) < max(delays) <= 8.0 * 1.2  # jittered, within 20%
    assert queue.backoff_seconds(4, 0.0, 50.0) == 0.0


def test_transient_failures_wait_exponentially_longer(db: Database) -> None:
    tenant = _tenant(db)
    (job_id,) = _enqueue(db, tenant)
    for attempt, expected in [(1, 10.0), (2, 20.0), (3, 25.0)]:  # base 10, cap 25
        assert _claim(db, "A") is not None
        before = utcnow()
        assert _fail(db, job_id, "A") == "queued"
        job = _job(db, job_id)
        delay = (job.run_after - before).total_seconds()
        assert expected * 0.8 - 0.5 <= delay <= expected * 1.2 + 0.5, (attempt, delay)
        assert (job.attempts, job.last_error, job.lease_owner) == (attempt, "boom", None)
        assert _claim(db, "B") is None  # not due before its backoff has passed
        _make_due(db, job_id)
    # a system's own Retry-After wins when it asks for longer (up to the cap)
    assert _claim(db, "A") is not None
    before = utcnow()
    assert _fail(db, job_id, "A", base_s=0.1, max_s=25.0, retry_after_s=12.0) == "queued"
    assert 11.5 <= (_job(db, job_id).run_after - before).total_seconds() <= 12.5


def test_dead_after_max_attempts_and_permanent_failures_at_once(db: Database) -> None:
    tenant = _tenant(db)
    flaky, broken, lost = _enqueue(db, tenant, 3, max_attempts=2)
    assert _claim(db, "A", job_id=flaky) is not None
    assert _fail(db, flaky, "A") == "queued"
    _make_due(db, flaky)
    assert _claim(db, "A", job_id=flaky) is not None
    assert _fail(db, flaky, "A") == "dead"  # second of two attempts
    job = _job(db, flaky)
    assert (job.state, job.attempts, job.last_error) == ("dead", 2, "boom")
    assert job.finished_at is not None

    assert _claim(db, "A", job_id=broken) is not None
    assert _fail(db, broken, "A", transient=False) == "dead"
    assert _fail(db, broken, "A") is None  # no longer A's to fail

    # workers that die keep losing the job: past max_attempts it is dead-lettered, not run
    for _ in range(2):
        assert _claim(db, "A", lease_s=0.05, job_id=lost) is not None
        time.sleep(0.1)
    assert _claim(db, "B", job_id=lost) is None
    job = _job(db, lost)
    assert job.state == "dead" and "gave up after 2 attempts" in (job.last_error or "")
    with db.session() as session:
        assert {j.id for j in queue.list_jobs(session, state="dead")} == {flaky, broken, lost}
        assert queue.due_job_ids(session) == []


def test_retry_gives_a_dead_job_fresh_attempts(db: Database) -> None:
    tenant = _tenant(db)
    other_tenant = _tenant(db, "globex")
    (job_id,) = _enqueue(db, tenant, max_attempts=1)
    assert _claim(db, "A") is not None
    with db.session() as session, pytest.raises(ConflictError, match="only dead jobs"):
        queue.retry(session, job_id)
    assert _fail(db, job_id, "A") == "dead"
    with db.session() as session:
        with pytest.raises(NotFoundError):
            queue.retry(session, job_id, tenant_id=other_tenant)
        with pytest.raises(NotFoundError):
            queue.retry(session, job_id + 100)
        job = queue.retry(session, job_id, tenant_id=tenant)
        assert (job.state, job.attempts, job.finished_at) == ("queued", 0, None)
        assert job.last_error == "boom"  # kept, so a person sees what went wrong before
    again = _claim(db, "B")
    assert again is not None and again.id == job_id and again.attempts == 1


def test_a_lost_lease_drops_the_results_of_the_old_owner(db: Database) -> None:
    tenant = _tenant(db)
    (job_id,) = _enqueue(db, tenant)
    job = _claim(db, "A", lease_s=0.1)
    assert job is not None
    run = JobRun(job.id, job.tenant_id, job.kind, dict(job.payload), "A", job.attempts, job.max_attempts)
    time.sleep(0.2)
    assert _claim(db, "B") is not None  # B took over
    with pytest.raises(LeaseLost), db.session() as session:
        audit(session, tenant, "test.result", "A", {"job": job_id})
        run.finish(session, {"by": "A"})
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0  # nothing committed
    job = _job(db, job_id)
    assert (job.state, job.lease_owner, job.result) == ("running", "B", {})


# --- the embedded worker pool ---------------------------------------------------------
Handler = Callable[[WorkerContext, JobRun], None]


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Callable[[Handler], None]:
    def install(handler: Handler) -> None:
        monkeypatch.setitem(runner.HANDLERS, TEST_KIND, handler)

    return install


def _echo(context: WorkerContext, run: JobRun) -> None:
    with context.database.session() as session:
        run.finish(session, {"echo": run.payload, "attempt": run.attempts})


@pytest.fixture
def make_pool(db: Database, tmp_path: Path) -> Iterator[Callable[..., EmbeddedWorkerPool]]:
    pools: list[EmbeddedWorkerPool] = []

    def make(threads: int = 2, **settings: float) -> EmbeddedWorkerPool:
        values: dict[str, float] = {"job_poll_s": 5.0, "job_backoff_s": 0.05, "job_lease_s": 30.0, **settings}
        context = WorkerContext.build(Settings(home=tmp_path / "home", **values), db)  # type: ignore[arg-type]
        pool = EmbeddedWorkerPool(context, threads=threads, name="test")
        context.notifier = pool
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()
        pool.context.close()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_pool_runs_a_job_at_once_when_notified(
    db: Database, handlers: Callable[[Handler], None], make_pool: Callable[..., EmbeddedWorkerPool]
) -> None:
    handlers(_echo)
    pool = make_pool(job_poll_s=2.0)  # a run well within the poll interval is the notify's doing
    pool.start()
    time.sleep(0.3)  # both threads found nothing and sleep
    tenant = _tenant(db)
    (job_id,) = _enqueue(db, tenant)
    pool.notify([job_id])
    took = _wait(lambda: _job(db, job_id).state == "done", 4.0, "the notified job")
    assert took < 1.0
    assert _job(db, job_id).result == {"echo": {"n": 0}, "attempt": 1}
    assert pool.processed == 1


def test_pool_retries_transient_failures_and_dead_letters_permanent_ones(
    db: Database, handlers: Callable[[Handler], None], make_pool: Callable[..., EmbeddedWorkerPool]
) -> None:
    def flaky(context: WorkerContext, run: JobRun) -> None:
        if run.payload["n"] == 1:
            raise PermanentJobError("the ticket is gone")
        if run.attempts == 1:
            raise ConnectionError("helpdesk unreachable")
        _echo(context, run)

    handlers(flaky)
    tenant = _tenant(db)
    retried, doomed = _enqueue(db, tenant, 2)
    pool = make_pool(job_poll_s=0.05)
    pool.start()
    _wait(lambda: _job(db, retried).state == "done" and _job(db, doomed).state == "dead", 10.0, "both jobs")
    job = _job(db, retried)
    assert (job.attempts, job.result["attempt"], job.last_error) == (2, 2, None)
    job = _job(db, doomed)
    assert (job.attempts, job.last_error) == (1, "PermanentJobError: the ticket is gone")


def test_pool_heartbeat_keeps_a_long_job_leased(
    db: Database, handlers: Callable[[Handler], None], make_pool: Callable[..., EmbeddedWorkerPool]
) -> None:
    started = threading.Event()

    def slow(context: WorkerContext, run: JobRun) -> None:
        started.set()
        time.sleep(1.8)  # longer than the 1 s lease: only the heartbeat keeps it ours
        _echo(context, run)

    handlers(slow)
    tenant = _tenant(db)
    (job_id,) = _enqueue(db, tenant)
    pool = make_pool(threads=1, job_poll_s=0.05, job_lease_s=1.0)
    pool.start()
    assert started.wait(5.0)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert _claim(db, "thief", lease_s=30.0) is None
        time.sleep(0.1)
    _wait(lambda: _job(db, job_id).state == "done", 5.0, "the slow job")
    assert _job(db, job_id).attempts == 1
