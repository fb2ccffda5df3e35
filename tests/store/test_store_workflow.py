"""The workflow tables: one ticket per delivery, decisions with their outbox, an audit log
nobody can rewrite. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import func, select

from deskpilot.errors import ConflictError
from deskpilot.store import Database
from deskpilot.store.models import AuditEntry, JobRecord, OutboxAction, TicketRecord
from deskpilot.store.repositories import get_or_create_tenant
from deskpilot.store.workflow import accept_ticket, audit, audit_log, record_decisions
from deskpilot.types import Action, RouteDecision, Ticket

TICKET = Ticket(subject="Invoice wrong", body="please fix", source="email", external_id="T-1")


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_delivery_is_stored_once_and_answers_the_same(db: Database) -> None:
    with db.session() as session:
        first = accept_ticket(session, "acme", TICKET, delivery_id="d-1", actor="t")
    with db.session() as session:
        again = accept_ticket(session, "acme", TICKET, delivery_id="d-1", actor="t")
    assert not first.duplicate and again.duplicate
    assert (again.ticket_id, again.job_id) == (first.ticket_id, first.job_id)
    assert _count(db, TicketRecord) == _count(db, JobRecord) == 1
    with db.session() as session, pytest.raises(ConflictError, match="different ticket"):
        changed = Ticket(subject="other", body="x", source="email")
        accept_ticket(session, "acme", changed, delivery_id="d-1", actor="t")
    with db.session() as session:
        other_tenant = accept_ticket(session, "globex", TICKET, delivery_id="d-1", actor="t")
    assert not other_tenant.duplicate and other_tenant.ticket_id != first.ticket_id


def test_a_replayed_signature_under_a_new_delivery_id_is_refused(db: Database) -> None:
    with db.session() as session:
        accept_ticket(session, "acme", TICKET, delivery_id="d-1", actor="t", replay_key="sig")
    with db.session() as session, pytest.raises(ConflictError, match="already delivered"):
        accept_ticket(session, "acme", TICKET, delivery_id="d-2", actor="t", replay_key="sig")
    with db.session() as session:  # the sender's own retry of d-1 is still answered
        assert accept_ticket(
            session, "acme", TICKET, delivery_id="d-1", actor="t", replay_key="sig"
        ).duplicate
    assert _count(db, TicketRecord) == 1


def test_decisions_come_with_their_outbox_jobs_and_audit(db: Database) -> None:
    with db.session() as session:
        accepted = accept_ticket(session, "acme", TICKET, delivery_id="d-1", actor="t")
    decision = RouteDecision(
        "queue", "billing", "helpdesk:queue=billing", False, target={"system": "helpdesk"}
    )
    action = Action("acme", "helpdesk", "generic", "route", accepted.ticket_id, "T-1", {"queue": "b"}, "k-1")
    with db.session() as session:
        ticket = session.get(TicketRecord, accepted.ticket_id)
        assert ticket is not None
        decision_ids, job_ids = record_decisions(session, ticket, [decision], {}, [action], {}, actor="w")
    assert len(decision_ids) == len(job_ids) == 1
    with db.session() as session:
        ticket = session.get(TicketRecord, accepted.ticket_id)
        outbox = session.scalars(select(OutboxAction)).one()
        job = session.get(JobRecord, job_ids[0])
        kinds = [e.kind for e in audit_log(session, outbox.tenant_id, ticket_id=accepted.ticket_id)]
    assert ticket is not None and ticket.state == "routed"
    assert (outbox.idempotency_key, outbox.state, outbox.payload["fields"]) == (
        "k-1",
        "pending",
        {"queue": "b"},
    )
    assert job is not None and (job.kind, job.payload) == ("deliver_action", {"outbox_id": outbox.id})
    assert kinds == ["ticket.received", "decision"]


def test_the_audit_log_refuses_updates_and_deletes(db: Database) -> None:
    with db.session() as session:
        owner = get_or_create_tenant(session, "acme")
        audit(session, owner.id, "feedback", "ana", {"label": "billing"})
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), db.session() as session:
            session.execute(sqlalchemy.text(statement))
    with db.session() as session:
        assert [(e.actor, e.data) for e in session.scalars(select(AuditEntry))] == [
            ("ana", {"label": "billing"})
        ]


def test_audit_log_pages_back_from_the_newest(db: Database) -> None:
    with db.session() as session:
        owner = get_or_create_tenant(session, "acme")
        for i in range(5):
            audit(session, owner.id, "feedback", f"a{i}")
    with db.session() as session:
        newest = audit_log(session, owner.id, limit=2)
        older = audit_log(session, owner.id, limit=2, before_id=newest[0].id)
    assert [e.actor for e in newest] == ["a3", "a4"] and [e.actor for e in older] == ["a1", "a2"]
