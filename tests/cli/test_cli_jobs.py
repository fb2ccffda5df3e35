"""`deskpilot jobs list|show|retry` on a real store, and `deskpilot worker` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cli_support import Invoke, assert_ok, error_line, last_json, subprocess_env

from deskpilot.config import Settings
from deskpilot.store import Database, get_or_create_tenant, queue
from deskpilot.store.workflow import DELIVER_ACTION

REDIS_URL = os.environ.get("DESKPILOT_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"


@pytest.fixture
def store(home: Path) -> Iterator[Database]:
    """The store of this test's DESKPILOT_HOME (the CLI's own SQLite file)."""
    database = Database(Settings().db_url)
    database.migrate()
    yield database
    database.dispose()


def _dead_job(store: Database, tenant: str, error: str) -> int:
    with store.session() as session:
        owner = get_or_create_tenant(session, tenant)
        job_id = queue.enqueue(session, owner.id, DELIVER_ACTION, {"outbox_id": 7})
    with store.session() as session:
        assert queue.claim(session, "w", 30.0, job_id=job_id) is not None
        assert queue.fail(session, job_id, "w", error, transient=False, base_s=1.0, max_s=1.0) == "dead"
    return job_id


def _queued_job(store: Database, tenant: str, kind: str = "retrain") -> int:
    with store.session() as session:
        return queue.enqueue(session, get_or_create_tenant(session, tenant).id, kind, {"task": "queue"})


def test_jobs_list_show_and_retry(cli: Invoke, store: Database) -> None:
    result = cli("jobs", "list")
    assert_ok(result)
    assert "no jobs yet" in result.stderr

    dead = _dead_job(store, "acme", "POST /actions answered 400: [bold]bad field[/]")
    queued = _queued_job(store, "globex")

    result = cli("jobs", "list")
    assert_ok(result)
    assert "deliver_action" in result.stdout and "retrain" in result.stdout, result.stdout
    assert "[bold]bad" in result.stdout  # the error as written, not read as Rich markup

    listing = last_json(cli("jobs", "list", "--state", "dead", "--json").stdout)
    assert [j["id"] for j in listing["jobs"]] == [dead]
    (item,) = listing["jobs"]
    assert (item["tenant"], item["kind"], item["state"], item["attempts"]) == (
        "acme",
        DELIVER_ACTION,
        "dead",
        1,
    )
    assert item["last_error"] == "POST /actions answered 400: [bold]bad field[/]"
    assert listing["counts"] == {"dead": 1, "queued": 1}
    assert [
        j["id"] for j in last_json(cli("jobs", "list", "--tenant", "globex", "--json").stdout)["jobs"]
    ] == [queued]
    assert last_json(cli("jobs", "list", "--tenant", "nobody", "--json").stdout)["jobs"] == []
    assert [
        j["id"] for j in last_json(cli("jobs", "list", "--kind", "retrain", "--json").stdout)["jobs"]
    ] == [queued]

    shown = last_json(cli("jobs", "show", str(dead), "--json").stdout)
    assert shown["payload"] == {"outbox_id": 7} and shown["finished_at"] is not None
    result = cli("jobs", "show", str(dead))
    assert_ok(result)
    assert "last_error: POST /actions answered 400" in result.stdout

    result = cli("jobs", "retry", str(dead))
    assert_ok(result)
    assert f"job {dead} (deliver_action) is queued again" in result.stderr
    with store.session() as session:
        job = queue.get_job(session, dead)
        assert job is not None and (job.state, job.attempts) == ("queued", 0)

    assert "only dead jobs can be retried" in error_line(cli("jobs", "retry", str(dead)))
    assert "no job 999" in error_line(cli("jobs", "retry", "999"))
    assert "no job 999" in error_line(cli("jobs", "show", "999"))


def test_worker_refuses_options_of_the_other_backend(cli: Invoke) -> None:
    assert "--kinds needs --backend embedded" in error_line(
        cli("worker", "--backend", "celery", "--kinds", "x")
    )
    assert "--concurrency is for --backend celery" in error_line(cli("worker", "--concurrency", "2"))


@pytest.mark.services
def test_jobs_retry_rings_the_celery_bell(
    cli: Invoke, store: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        try:
            client.ping()
        except redis.ConnectionError:
            if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
                pytest.fail(f"Redis not reachable at {REDIS_URL} and DESKPILOT_REQUIRE_SERVICES=1")
            pytest.skip(f"Redis not reachable at {REDIS_URL}")
        client.delete("deskpilot")
        monkeypatch.setenv("DESKPILOT_QUEUE_BACKEND", "celery")
        monkeypatch.setenv("DESKPILOT_BROKER_URL", REDIS_URL)
        dead = _dead_job(store, "acme", "boom")
        assert_ok(cli("jobs", "retry", str(dead)))
        messages = client.lrange("deskpilot", 0, -1)
        assert len(messages) == 1 and b"deskpilot.run_job" in messages[0]
        client.delete("deskpilot")
    finally:
        client.close()


def test_embedded_worker_process_runs_jobs_and_stops_gracefully(home: Path, store: Database) -> None:
    with store.session() as session:
        tenant = get_or_create_tenant(session, "acme").id
        # real handlers, no models or outside systems: an action whose outbox row is gone
        # completes as "deleted"; a kind nobody handles is dead-lettered with the reason
        gone = queue.enqueue(session, tenant, DELIVER_ACTION, {"outbox_id": 4242})
        unknown = queue.enqueue(session, tenant, "no_such_kind", {})
    env = subprocess_env(home)
    env["DESKPILOT_JOB_POLL_S"] = "0.05"
    process = subprocess.Popen(
        [sys.executable, "-m", "deskpilot.cli", "worker", "--threads", "2"],
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with store.session() as session:
                states = [queue.get_job(session, i).state for i in (gone, unknown)]  # type: ignore[union-attr]
            if states == ["done", "dead"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert states == ["done", "dead"], stderr
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopping: finishing the jobs in hand" in stderr
    assert "worker stopped after 2 job(s)" in stderr
    with store.session() as session:
        job = queue.get_job(session, unknown)
        assert job is not None and "unknown job kind 'no_such_kind'" in (job.last_error or "")
        job = queue.get_job(session, gone)
        assert job is not None and job.result == {"outbox_id": 4242, "state": "deleted"}
