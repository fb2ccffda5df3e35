"""Helpers for the job tests: service URLs and probes, a routing policy, real deliveries.

Import by name (``from jobs_support import ...``): pytest puts tests/jobs on sys.path.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deskpilot.store import Database, get_or_create_tenant
from deskpilot.store import queue as store_queue
from deskpilot.store.models import OutboxAction, TicketRecord
from deskpilot.store.workflow import DELIVER_ACTION

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]

POLICY = """\
version: 1
systems:
  helpdesk:
    connector: generic
    url: {url}
    credentials: helpdesk
tasks:
  queue:
    destinations:
      billing: {{system: helpdesk, queue: billing-team}}
triage:
  system: helpdesk
  queue: triage
"""
TOKEN = "standin-token"


def postgres_url() -> str:
    return os.environ.get("DESKPILOT_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def redis_url() -> str:
    return os.environ.get("DESKPILOT_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def rabbitmq_url() -> str:
    return os.environ.get("DESKPILOT_TEST_RABBITMQ_URL") or DEFAULT_RABBITMQ_URL


def unavailable(reason: str) -> None:
    if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and DESKPILOT_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def require_port(url: str, name: str) -> None:
    """Skip (or fail under CI's switch) when nothing listens at the URL's host and port."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    try:
        with socket.create_connection((host, port or 0), timeout=1.0):
            pass
    except OSError:
        unavailable(f"{name} not reachable at {host}:{port}")


def write_policy(folder: Path, url: str, tenant: str = "acme") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tenant}.yaml"
    path.write_text(POLICY.format(url=url), encoding="utf-8")
    return path


def add_delivery(
    database: Database,
    key: str,
    *,
    tenant: str = "acme",
    fields: dict[str, str] | None = None,
    max_attempts: int = 5,
) -> int:
    """A ticket, its outbox action (set a queue in the stand-in helpdesk) and the job delivering it."""
    with database.session() as session:
        owner = get_or_create_tenant(session, tenant)
        ticket = TicketRecord(
            tenant_id=owner.id, source="generic", external_id=key, subject="s", body="b", state="routed"
        )
        session.add(ticket)
        session.flush()
        outbox = OutboxAction(
            tenant_id=owner.id,
            ticket_id=ticket.id,
            system="helpdesk",
            connector="generic",
            kind="update",
            payload={"fields": fields or {"queue": "billing-team"}, "external_id": key},
            idempotency_key=f"{tenant}:{key}",
        )
        session.add(outbox)
        session.flush()
        return store_queue.enqueue(
            session, owner.id, DELIVER_ACTION, {"outbox_id": outbox.id}, max_attempts=max_attempts
        )
