"""Tickets, the inbox, decisions, the outbox, feedback and the audit log.

The rule that keeps a helpdesk whole: whatever must happen together is written in one
transaction. A delivery and its ticket and its job; a decision and its outbox actions and
its audit entries. A crash can then only ever lose work that was never acknowledged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass, replace
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from deskpilot.errors import ConflictError, InputDataError, NotFoundError
from deskpilot.types import Action, Event, Prediction, RouteDecision, Ticket

from . import queue
from .models import (
    AuditEntry,
    DecisionRecord,
    FeedbackRecord,
    InboxEvent,
    OutboxAction,
    Tenant,
    TicketRecord,
    utcnow,
)
from .repositories import _insert, get_tenant, tenant_id_for

PROCESS_TICKET = "process_ticket"
DELIVER_ACTION = "deliver_action"
RETRAIN = "retrain"
APPLY_FEEDBACK = "apply_feedback"
ANSWER_QUERY = "answer_query"
MAX_DELIVERY_ID_CHARS = 200


_TICKETS = cast(Table, TicketRecord.__table__)
_INSERT_TICKET = insert(_TICKETS).returning(_TICKETS.c.id)
_INBOX = cast(Table, InboxEvent.__table__)
_ANSWER_INBOX = (
    update(_INBOX)
    .where(_INBOX.c.id == bindparam("row_id"))
    .values(
        ticket_id=bindparam("new_ticket_id"),
        response=bindparam("new_response", type_=_INBOX.c.response.type),
    )
)
_INSERT_AUDIT = insert(cast(Table, AuditEntry.__table__))


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an inbound delivery got: the same answer every time it is delivered again."""

    ticket_id: int
    job_id: int | None
    duplicate: bool
    response: dict[str, Any]


# audit -----------------------------------------------------------------------------------


def audit(
    session: Session,
    tenant_id: int,
    kind: str,
    actor: str,
    data: dict[str, Any] | None = None,
    *,
    ticket_id: int | None = None,
) -> None:
    session.connection().execute(
        _INSERT_AUDIT,
        {"tenant_id": tenant_id, "ticket_id": ticket_id, "kind": kind, "actor": actor, "data": data or {}},
    )


def audit_log(
    session: Session,
    tenant_id: int,
    *,
    ticket_id: int | None = None,
    limit: int = 500,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """The newest ``limit`` entries (older than ``before_id`` to page back), oldest first."""
    query = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
    if ticket_id is not None:
        query = query.where(AuditEntry.ticket_id == ticket_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    newest = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))
    return newest[::-1]


# inbox -----------------------------------------------------------------------------------


def _check_delivery_id(delivery_id: str) -> str:
    if (
        not isinstance(delivery_id, str)
        or not delivery_id
        or len(delivery_id) > MAX_DELIVERY_ID_CHARS
        or not delivery_id.isprintable()
    ):
        raise InputDataError(
            "the delivery id must be 1-200 printable characters",
            hint="send a unique id per delivery and reuse it when you retry",
        )
    return delivery_id


def accept_ticket(
    session: Session,
    tenant: str,
    ticket: Ticket,
    *,
    delivery_id: str,
    actor: str,
    max_attempts: int = 5,
    replay_key: str | None = None,
) -> Accepted:
    """Store a delivery, its ticket and the job that will process it, once per delivery id.

    The inbox row goes in first with ON CONFLICT DO NOTHING: of two concurrent copies of a
    delivery one inserts and carries on, the other finds the first's answer. ``replay_key``
    (a hash of a webhook's signature) refuses the same signed request sent again under a
    new delivery id: a captured request replayed inside the signature's time window.
    """
    _check_delivery_id(delivery_id)
    fingerprint = _fingerprint(asdict(ticket))
    tenant_id = tenant_id_for(session, tenant)
    source = ticket.source
    claimed = _claim_delivery(session, tenant_id, source, delivery_id, "ticket", fingerprint, replay_key)
    if isinstance(claimed, Accepted):
        return claimed
    # prepared Core statements throughout: this runs for every delivery, and the ORM's unit of
    # work and per-call statement building cost more than the statements themselves
    connection = session.connection()
    now = utcnow()
    ticket_id = int(
        connection.execute(
            _INSERT_TICKET,
            {
                "tenant_id": tenant_id,
                "source": source,
                "external_id": ticket.external_id,
                "subject": ticket.subject,
                "body": ticket.body,
                "requester": ticket.requester,
                "metadata": dict(ticket.metadata),
                "state": "received",
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
    )
    job_id = queue.enqueue(
        session, tenant_id, PROCESS_TICKET, {"ticket_id": ticket_id}, max_attempts=max_attempts
    )
    response = {"ticket_id": ticket_id, "job_id": job_id, "state": "received"}
    connection.execute(
        _ANSWER_INBOX, {"row_id": claimed, "new_ticket_id": ticket_id, "new_response": response}
    )
    audit(
        session,
        tenant_id,
        "ticket.received",
        actor,
        {"source": source, "delivery_id": delivery_id, "external_id": ticket.external_id},
        ticket_id=ticket_id,
    )
    return Accepted(ticket_id=ticket_id, job_id=job_id, duplicate=False, response=response)


_CLAIMS: dict[str, Any] = {}


def _claim_statement(session: Session) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id for the inbox, built once per dialect."""
    name = session.get_bind().dialect.name
    if name not in _CLAIMS:
        dialect_insert = _insert(session)
        if dialect_insert is None:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise InputDataError(f"unsupported database dialect {name}")
        _CLAIMS[name] = dialect_insert(_INBOX).on_conflict_do_nothing().returning(_INBOX.c.id)
    return _CLAIMS[name]


def _claim_delivery(
    session: Session,
    tenant_id: int,
    source: str,
    delivery_id: str,
    kind: str,
    fingerprint: str,
    replay_key: str | None,
) -> int | Accepted:
    """The new inbox row's id, or the answer given to the first copy of this delivery."""
    statement = _claim_statement(session)
    inserted = (
        session.connection()
        .execute(
            statement,
            {
                "tenant_id": tenant_id,
                "source": source,
                "delivery_id": delivery_id,
                "kind": kind,
                "fingerprint": fingerprint,
                "replay_key": replay_key,
                "response": {},
                "received_at": utcnow(),
            },
        )
        .scalar_one_or_none()
    )
    if inserted is not None:
        return int(inserted)
    existing = session.scalars(
        select(InboxEvent).where(
            InboxEvent.tenant_id == tenant_id,
            InboxEvent.source == source,
            InboxEvent.delivery_id == delivery_id,
        )
    ).one_or_none()
    if existing is None:  # the conflict was on replay_key: these signed bytes came before
        raise ConflictError(
            "this signed request was already delivered under another delivery id; nothing was stored",
            hint="sign every new delivery afresh (a new timestamp); retry a delivery with its own id",
        )
    if existing.fingerprint != fingerprint:
        raise ConflictError(
            f"delivery {delivery_id!r} was already used for a different {existing.kind}",
            hint="use a new delivery id (Idempotency-Key) for new content; reuse one only to retry",
        )
    return Accepted(
        ticket_id=int(existing.ticket_id or 0),
        job_id=existing.response.get("job_id"),
        duplicate=True,
        response=dict(existing.response),
    )


def accept_event(
    session: Session,
    event: Event,
    *,
    actor: str,
    max_attempts: int = 5,
    replay_key: str | None = None,
) -> Accepted:
    """Store any inbound event once per delivery id, with the job that will act on it.

    Tickets are processed and routed; corrections and field changes become feedback once the
    tenant's policy has mapped them (``apply_feedback``); queries are answered (``answer_query``).
    """
    payload = event.payload
    if event.kind == "ticket" and isinstance(payload, Ticket):
        if payload.source != event.source:
            payload = replace(payload, source=event.source)
        return accept_ticket(
            session,
            event.tenant,
            payload,
            delivery_id=event.delivery_id,
            actor=actor,
            max_attempts=max_attempts,
            replay_key=replay_key,
        )
    if event.kind not in ("feedback", "field_change", "query") or not is_dataclass(payload):
        raise InputDataError(f"cannot store a {event.kind!r} event")
    _check_delivery_id(event.delivery_id)
    data = asdict(payload)
    fingerprint = _fingerprint({"kind": event.kind, **data})
    tenant_id = tenant_id_for(session, event.tenant)
    claimed = _claim_delivery(
        session, tenant_id, event.source, event.delivery_id, event.kind, fingerprint, replay_key
    )
    if isinstance(claimed, Accepted):
        return claimed
    job_kind = ANSWER_QUERY if event.kind == "query" else APPLY_FEEDBACK
    job_id = queue.enqueue(
        session,
        tenant_id,
        job_kind,
        {"kind": event.kind, "source": event.source, "event": data},
        max_attempts=max_attempts,
    )
    response = {"kind": event.kind, "job_id": job_id, "state": "received"}
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == claimed)
        .values(response=response)
        .execution_options(synchronize_session=False)
    )
    audit(
        session,
        tenant_id,
        f"{event.kind}.received",
        actor,
        {
            "source": event.source,
            "delivery_id": event.delivery_id,
            **{k: v for k, v in data.items() if k != "text"},
        },
    )
    return Accepted(ticket_id=0, job_id=job_id, duplicate=False, response=response)


def find_ticket(session: Session, tenant_id: int, source: str, external_id: str) -> TicketRecord | None:
    """The newest ticket a system knows by ``external_id``."""
    return session.scalars(
        select(TicketRecord)
        .where(
            TicketRecord.tenant_id == tenant_id,
            TicketRecord.source == source,
            TicketRecord.external_id == external_id,
        )
        .order_by(TicketRecord.id.desc())
    ).first()


def _fingerprint(content: dict[str, Any]) -> str:
    """What a delivery carried, so a reused delivery id with other content is recognised."""
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# tickets ---------------------------------------------------------------------------------


def get_ticket(session: Session, tenant_id: int, ticket_id: int) -> TicketRecord | None:
    ticket = session.get(TicketRecord, ticket_id)
    return ticket if ticket is not None and ticket.tenant_id == tenant_id else None


def ticket_of(record: TicketRecord) -> Ticket:
    return Ticket(
        subject=record.subject,
        body=record.body,
        requester=record.requester,
        source=record.source,
        external_id=record.external_id,
        metadata=dict(record.meta),
    )


def tenant_slug(session: Session, tenant_id: int) -> str:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"no tenant {tenant_id}")
    return tenant.slug


def lock_ticket(session: Session, ticket_id: int) -> TicketRecord | None:
    return session.get(TicketRecord, ticket_id, with_for_update=True, populate_existing=True)


def decisions_for(session: Session, ticket_id: int) -> list[DecisionRecord]:
    return list(
        session.scalars(
            select(DecisionRecord).where(DecisionRecord.ticket_id == ticket_id).order_by(DecisionRecord.id)
        )
    )


def outbox_for(session: Session, ticket_id: int) -> list[OutboxAction]:
    return list(
        session.scalars(
            select(OutboxAction).where(OutboxAction.ticket_id == ticket_id).order_by(OutboxAction.id)
        )
    )


def record_decisions(
    session: Session,
    ticket: TicketRecord,
    decisions: Sequence[RouteDecision],
    predictions: dict[str, Prediction],
    actions: Sequence[Action],
    explanations: dict[str, dict[str, Any]],
    *,
    actor: str,
    max_attempts: int = 5,
) -> tuple[list[int], list[int]]:
    """Decisions, their outbox actions, the jobs that deliver them and the audit, together.

    Returns the decision ids and the ids of the delivery jobs (to wake workers for).
    """
    decision_ids: list[int] = []
    job_ids: list[int] = []
    for decision in decisions:
        prediction = predictions.get(decision.task)
        row = DecisionRecord(
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            task=decision.task,
            label=decision.label,
            predicted_label=prediction.label if prediction is not None else None,
            score=float(prediction.score) if prediction is not None else None,
            threshold=float(prediction.threshold) if prediction is not None else None,
            abstained=decision.abstained,
            adapter_version=prediction.adapter_version if prediction is not None else None,
            destination=decision.destination,
            overrides={"rules": list(decision.overrides)},
            explanation={
                "summary": decision.explanation,
                "target": decision.target,
                **explanations.get(decision.task, {}),
            },
        )
        session.add(row)
        session.flush()
        decision_ids.append(row.id)
        audit(
            session,
            ticket.tenant_id,
            "decision",
            actor,
            {
                "decision_id": row.id,
                "task": decision.task,
                "label": decision.label,
                "abstained": decision.abstained,
                "destination": decision.destination,
                "adapter_version": row.adapter_version,
                "overrides": list(decision.overrides),
            },
            ticket_id=ticket.id,
        )
    for action in actions:
        outbox = OutboxAction(
            tenant_id=ticket.tenant_id,
            ticket_id=ticket.id,
            system=action.system,
            connector=action.connector,
            kind=action.kind,
            payload={"fields": action.fields, "external_id": action.external_id, "context": action.context},
            idempotency_key=action.idempotency_key,
        )
        session.add(outbox)
        session.flush()
        job_ids.append(
            queue.enqueue(
                session, ticket.tenant_id, DELIVER_ACTION, {"outbox_id": outbox.id}, max_attempts=max_attempts
            )
        )
    abstained = any(d.abstained for d in decisions)
    ticket.state = "triage" if abstained else "routed"
    ticket.updated_at = utcnow()
    return decision_ids, job_ids


# outbox ----------------------------------------------------------------------------------


def get_outbox(session: Session, outbox_id: int, *, lock: bool = False) -> OutboxAction | None:
    return session.get(OutboxAction, outbox_id, with_for_update=lock, populate_existing=lock)


def action_of(session: Session, row: OutboxAction) -> Action:
    return Action(
        tenant=tenant_slug(session, row.tenant_id),
        system=row.system,
        connector=row.connector,
        kind=row.kind,
        ticket_id=row.ticket_id,
        external_id=row.payload.get("external_id"),
        fields=dict(row.payload.get("fields", {})),
        idempotency_key=row.idempotency_key,
        context=dict(row.payload.get("context", {})),
    )


def mark_outbox(
    session: Session,
    row: OutboxAction,
    *,
    done: bool,
    actor: str,
    response: dict[str, Any] | None = None,
    error: str | None = None,
    dead: bool = False,
) -> None:
    row.attempts += 1
    if done:
        row.state = "done"
        row.done_at = utcnow()
        row.response = response or {}
        row.last_error = None
        audit(
            session,
            row.tenant_id,
            "action.done",
            actor,
            {"outbox_id": row.id, "system": row.system, "kind": row.kind, "key": row.idempotency_key},
            ticket_id=row.ticket_id,
        )
        return
    row.last_error = (error or "")[: queue.MAX_ERROR_CHARS]
    if dead:
        row.state = "dead"
        audit(
            session,
            row.tenant_id,
            "action.failed",
            actor,
            {"outbox_id": row.id, "system": row.system, "error": row.last_error},
            ticket_id=row.ticket_id,
        )


# feedback --------------------------------------------------------------------------------


def record_feedback(
    session: Session,
    tenant: str,
    *,
    task: str,
    label: str,
    author: str,
    ticket_id: int | None = None,
    decision_id: int | None = None,
    text: str | None = None,
    source: str = "api",
) -> FeedbackRecord:
    """A correction. It needs the text it is about: given, or the ticket's."""
    owner = get_tenant(session, tenant)
    if owner is None:
        raise NotFoundError(f"tenant {tenant!r} has no tickets")
    if not label.strip() or len(label) > 200:
        raise InputDataError("label must be non-empty and at most 200 characters")
    if not author.strip():
        raise InputDataError("say who made the correction ('author')")
    previous: str | None = None
    if decision_id is not None:
        decision = session.get(DecisionRecord, decision_id)
        if decision is None or decision.tenant_id != owner.id:
            raise NotFoundError(f"no decision {decision_id}")
        if ticket_id is not None and ticket_id != decision.ticket_id:
            raise InputDataError(
                f"decision {decision_id} belongs to ticket {decision.ticket_id}, not {ticket_id}"
            )
        ticket_id = decision.ticket_id
        if task and task != decision.task:
            raise InputDataError(f"decision {decision_id} is for task {decision.task!r}, not {task!r}")
        task = decision.task
        previous = decision.label or decision.predicted_label
    if not task.strip():
        raise InputDataError("say which task the correction is for ('task')")
    if ticket_id is not None:
        ticket = get_ticket(session, owner.id, ticket_id)
        if ticket is None:
            raise NotFoundError(f"no ticket {ticket_id}")
        text = ticket_of(ticket).text
        if previous is None:
            earlier = session.scalars(
                select(DecisionRecord)
                .where(DecisionRecord.ticket_id == ticket_id, DecisionRecord.task == task)
                .order_by(DecisionRecord.id.desc())
            ).first()
            previous = earlier.label or earlier.predicted_label if earlier is not None else None
    if not text or not text.strip():
        raise InputDataError("feedback needs a ticket_id, a decision_id or the text it is about")
    row = FeedbackRecord(
        tenant_id=owner.id,
        ticket_id=ticket_id,
        decision_id=decision_id,
        task=task,
        label=label,
        previous_label=previous,
        text=text,
        author=author,
        source=source,
    )
    session.add(row)
    session.flush()
    audit(
        session,
        owner.id,
        "feedback",
        author,
        {"feedback_id": row.id, "task": task, "label": label, "previous": previous, "source": source},
        ticket_id=ticket_id,
    )
    return row


def has_feedback(session: Session, ticket_id: int, task: str, label: str, author: str) -> bool:
    """True when this person already gave this label for this ticket's task."""
    found = session.scalar(
        select(FeedbackRecord.id)
        .where(
            FeedbackRecord.ticket_id == ticket_id,
            FeedbackRecord.task == task,
            FeedbackRecord.label == label,
            FeedbackRecord.author == author,
        )
        .limit(1)
    )
    return found is not None


def feedback_rows(session: Session, tenant_id: int, task: str, *, after_id: int = 0) -> list[FeedbackRecord]:
    return list(
        session.scalars(
            select(FeedbackRecord)
            .where(
                FeedbackRecord.tenant_id == tenant_id,
                FeedbackRecord.task == task,
                FeedbackRecord.id > after_id,
            )
            .order_by(FeedbackRecord.id)
        )
    )


def count_feedback(session: Session, tenant_id: int, task: str, *, after_id: int = 0) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(FeedbackRecord)
            .where(
                FeedbackRecord.tenant_id == tenant_id,
                FeedbackRecord.task == task,
                FeedbackRecord.id > after_id,
            )
        )
        or 0
    )
