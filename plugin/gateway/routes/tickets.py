"""Tickets in (``POST /v1/tickets``), a ticket's state, decisions and history out, and the audit log.

Accepting a ticket writes its inbox row, the ticket, the job that processes it and an audit
entry in one transaction, answers 202, and only then wakes the workers.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.errors import NotFoundError
from deskpilot.gateway.deps import (
    AdminPrincipal,
    DatabaseDep,
    JobNotifierDep,
    ReadPrincipal,
    SettingsDep,
    WritePrincipal,
    db_session,
    notify_jobs,
    require_json_body,
)
from deskpilot.gateway.errors import error_responses
from deskpilot.gateway.workflow_schemas import (
    MAX_ID,
    AuditEntryOut,
    AuditLogOut,
    TicketAccepted,
    TicketIn,
    TicketOut,
)
from deskpilot.jobs.base import JobNotifier
from deskpilot.store import Database, Principal
from deskpilot.store.workflow import (
    Accepted,
    accept_ticket,
    audit_log,
    decisions_for,
    get_ticket,
    outbox_for,
)
from deskpilot.types import Ticket

router = APIRouter(prefix="/v1", tags=["tickets"])

MAX_IDEMPOTENCY_KEY_CHARS = 200
TicketId = Annotated[int, Path(ge=1, le=MAX_ID, description="The ticket_id POST /v1/tickets answered")]

POST_DESCRIPTION = (
    "Store a ticket and queue it for classification and routing; answers **202** at once with "
    "the ticket id (`Location: /v1/tickets/{id}`) while the work runs in the background.\n\n"
    "Send an `Idempotency-Key` header (1-200 printable characters, unique per ticket) to make "
    "retries safe: a request repeating a key already used by this tenant for the same `source` "
    "creates nothing and answers with the original body, `duplicate: true` and "
    "`Idempotent-Replayed: true`. **Without the header every request creates a new ticket**: "
    "a random key is used, so retries cannot be recognised."
)


def actor_of(principal: Principal) -> str:
    """How the audit log names an API caller: the key's name and id (never the key)."""
    return f"api-key:{principal.key_name}#{principal.key_id}"


def store_ticket(
    database: Database,
    settings: Settings,
    tenant: str,
    ticket: Ticket,
    delivery_id: str,
    actor: str,
    replay_key: str | None = None,
) -> Accepted:
    """The inbox/ticket/job/audit transaction; blocking, so routes run it in the threadpool."""
    with db_session(database) as session:
        return accept_ticket(
            session,
            tenant,
            ticket,
            delivery_id=delivery_id,
            actor=actor,
            max_attempts=settings.job_max_attempts,
            replay_key=replay_key,
        )


def answer_accepted(
    accepted: Accepted,
    response: Response,
    background: BackgroundTasks,
    notifier: JobNotifier | None,
) -> TicketAccepted:
    """202 body and headers for an accepted delivery; new jobs are announced after the response."""
    body = TicketAccepted.build(accepted)
    response.headers["Location"] = f"/v1/tickets/{body.ticket_id}"
    if accepted.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    elif body.job_id is not None:
        background.add_task(notify_jobs, notifier, [body.job_id])
    return body


def text_too_long(field: str, length: int, limit: int) -> RequestValidationError:
    """A 422 in the same shape as the schema's own length errors, for limits set in Settings."""
    return RequestValidationError(
        [
            {
                "type": "string_too_long",
                "loc": ("body", field),
                "msg": f"{length} characters, at most {limit} allowed (DESKPILOT_MAX_TEXT_CHARS)",
                "input": None,
            }
        ]
    )


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY_CHARS or not value.isprintable():
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("header", "Idempotency-Key"),
                    "msg": f"must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
                    "input": None,
                }
            ]
        )
    return value


@router.post(
    "/tickets",
    summary="Submit a ticket for routing (answers 202 at once)",
    description=POST_DESCRIPTION,
    status_code=202,
    response_model=TicketAccepted,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 500, 503),
    dependencies=[Depends(require_json_body)],
)
async def create_ticket(
    body: TicketIn,
    principal: WritePrincipal,
    database: DatabaseDep,
    settings: SettingsDep,
    notifier: JobNotifierDep,
    response: Response,
    background: BackgroundTasks,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="Unique per ticket; reuse it when retrying"),
    ] = None,
) -> TicketAccepted:
    if len(body.body) > settings.max_text_chars:
        raise text_too_long("body", len(body.body), settings.max_text_chars)
    delivery_id = _idempotency_key(idempotency_key) or uuid.uuid4().hex
    ticket = Ticket(
        subject=body.subject,
        body=body.body,
        requester=body.requester,
        source=body.source,
        external_id=body.external_id,
        metadata=dict(body.metadata),
    )
    accepted = await run_in_threadpool(
        store_ticket, database, settings, principal.tenant, ticket, delivery_id, actor_of(principal)
    )
    return answer_accepted(accepted, response, background, notifier)


def _load_ticket(database: Database, principal: Principal, ticket_id: int) -> TicketOut:
    with db_session(database) as session:
        row = get_ticket(session, principal.tenant_id, ticket_id)
        if row is None:
            raise _no_ticket(ticket_id)
        return TicketOut.build(
            row,
            decisions_for(session, row.id),
            outbox_for(session, row.id),
            audit_log(session, principal.tenant_id, ticket_id=row.id),
        )


def _no_ticket(ticket_id: int) -> NotFoundError:
    hint = "use a ticket_id that POST /v1/tickets answered for this API key's tenant"
    return NotFoundError(f"no ticket {ticket_id}", hint=hint)


@router.get(
    "/tickets/{ticket_id}",
    summary="A ticket: its state, decisions, actions in outside systems and history",
    response_model=TicketOut,
    responses=error_responses(401, 403, 404, 422, 500, 503),
)
async def read_ticket(ticket_id: TicketId, principal: ReadPrincipal, database: DatabaseDep) -> TicketOut:
    return await run_in_threadpool(_load_ticket, database, principal, ticket_id)


def _ticket_history(database: Database, principal: Principal, ticket_id: int, limit: int) -> AuditLogOut:
    with db_session(database) as session:
        if get_ticket(session, principal.tenant_id, ticket_id) is None:
            raise _no_ticket(ticket_id)
        entries = audit_log(session, principal.tenant_id, ticket_id=ticket_id, limit=limit)
        return AuditLogOut(entries=[AuditEntryOut.build(e) for e in entries])


Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many entries, oldest first")]


@router.get(
    "/tickets/{ticket_id}/audit",
    summary="A ticket's audit log, oldest first",
    response_model=AuditLogOut,
    responses=error_responses(401, 403, 404, 422, 500, 503),
)
async def read_ticket_audit(
    ticket_id: TicketId, principal: ReadPrincipal, database: DatabaseDep, limit: Limit = 500
) -> AuditLogOut:
    return await run_in_threadpool(_ticket_history, database, principal, ticket_id, limit)


def _tenant_audit(database: Database, principal: Principal, limit: int) -> AuditLogOut:
    with db_session(database) as session:
        entries = audit_log(session, principal.tenant_id, limit=limit)
        return AuditLogOut(entries=[AuditEntryOut.build(e) for e in entries])


@router.get(
    "/audit",
    summary="The newest entries of the tenant's audit log, oldest first (admin keys only)",
    response_model=AuditLogOut,
    responses=error_responses(401, 403, 422, 500, 503),
)
async def read_audit(principal: AdminPrincipal, database: DatabaseDep, limit: Limit = 100) -> AuditLogOut:
    return await run_in_threadpool(_tenant_audit, database, principal, limit)
