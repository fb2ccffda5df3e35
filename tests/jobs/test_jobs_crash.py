"""Crash safety: a worker process SIGKILLed again and again loses and duplicates nothing.

The worker is the real ``deskpilot worker`` process; the helpdesk is a real HTTP server in
this process that survives the kills. A rule decides every ticket, so no model loads and a
restart is quick, which puts the 20 kills in the middle of real work: between claiming a
job, storing decisions, calling the helpdesk and marking the action done.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from support.helpdesk_standin import HelpdeskStandin

from deskpilot.store import Database
from deskpilot.store.models import JobRecord, OutboxAction, TicketRecord
from deskpilot.store.workflow import accept_ticket
from deskpilot.types import Ticket

pytestmark = pytest.mark.slow

TOKEN = "helpdesk-token"
TICKETS = 200
KILLS = 20

POLICY = """\
systems:
  helpdesk: {{connector: generic, url: "{url}", credentials: helpdesk}}
tasks:
  queue:
    destinations:
      billing: {{system: helpdesk, queue: billing-team}}
      shipping: {{system: helpdesk, queue: shipping-team}}
triage: {{system: helpdesk, queue: triage}}
overrides:
  - name: invoices
    when: {{text_matches: "invoice"}}
    set: {{queue: billing}}
  - name: everything-else
    when: {{text_matches: "."}}
    set: {{queue: shipping}}
"""


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "deskpilot.cli", "worker", "--threads", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _progress(database: Database) -> tuple[int, int]:
    with database.session() as session:
        decided = session.scalars(
            select(TicketRecord.id).where(TicketRecord.state.in_(("routed", "triage")))
        ).all()
        done = session.scalars(select(OutboxAction.id).where(OutboxAction.state == "done")).all()
    return len(decided), len(done)


def _jobs_done(database: Database) -> int:
    with database.session() as session:
        return len(session.scalars(select(JobRecord.id).where(JobRecord.state == "done")).all())


def test_sigkilled_worker_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database = Database(f"sqlite:///{home / 'deskpilot.db'}")
    database.migrate()
    with HelpdeskStandin(token=TOKEN, delay_s=0.05) as desk:
        (home / "policies").mkdir(parents=True)
        (home / "policies" / "acme.yaml").write_text(POLICY.format(url=desk.url), encoding="utf-8")
        with database.session() as session:
            for i in range(TICKETS):
                subject = f"invoice {i} is wrong" if i % 2 else f"parcel {i} is late"
                ticket = Ticket(subject=subject, body="please help", source="email", external_id=f"T-{i}")
                accept_ticket(session, "acme", ticket, delivery_id=f"d-{i}", actor="test")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPILOT_")}
        env.update(
            DESKPILOT_HOME=str(home),
            DESKPILOT_ENV="development",
            DESKPILOT_JOB_LEASE_S="1.5",
            DESKPILOT_JOB_POLL_S="0.05",
            DESKPILOT_JOB_BACKOFF_S="0.05",
            DESKPILOT_JOB_MAX_ATTEMPTS="100",
            DESKPILOT_CONNECTOR_SECRETS=f'{{"helpdesk": "{TOKEN}"}}',
        )
        rng = random.Random(7)
        interrupted = 0
        for _ in range(KILLS):
            before = _jobs_done(database)
            worker = _worker(env)
            # kill only once this worker is visibly working, at a random point after that
            deadline = time.monotonic() + 30
            while _jobs_done(database) == before and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            interrupted += _jobs_done(database) < 2 * TICKETS
        assert interrupted == KILLS, f"only {interrupted} of {KILLS} kills landed while work remained"

        worker = _worker(env)
        try:
            deadline = time.monotonic() + 90
            while _progress(database) != (TICKETS, TICKETS) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

        with database.session() as session:
            states = Counter(session.scalars(select(TicketRecord.state)).all())
            outbox = session.scalars(select(OutboxAction)).all()
            jobs = Counter(session.scalars(select(JobRecord.state)).all())
        assert states == {"routed": TICKETS}, states
        assert len(outbox) == TICKETS and {o.state for o in outbox} == {"done"}
        assert jobs == {"done": 2 * TICKETS}, jobs
        applied = Counter(a.key for a in desk.applied)
        assert set(applied) == {o.idempotency_key for o in outbox}
        assert max(applied.values()) == 1, [k for k, n in applied.items() if n > 1]
        queues = Counter((desk.ticket(f"T-{i}") or {}).get("queue") for i in range(TICKETS))
        assert queues == {"billing-team": TICKETS // 2, "shipping-team": TICKETS // 2}
    database.dispose()
