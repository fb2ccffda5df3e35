"""One ticket: its text, each decision and why, the draft, the actions, and the buttons that correct it.

"Confirm" and "Change to…" write the same feedback rows as ``POST /v1/feedback``
(:func:`~deskpilot.store.workflow.record_feedback`, source ``console``), in the same
transaction as the retrain they may trigger, so retraining counts them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from deskpilot.config import Settings
from deskpilot.errors import InputDataError, NotFoundError
from deskpilot.gateway.console.auth import FormDep, IdentityDep
from deskpilot.gateway.console.labels import known_labels
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, JobNotifierDep, SettingsDep, db_session, notify_jobs
from deskpilot.jobs.triggers import maybe_enqueue_retrain
from deskpilot.store import Database, review
from deskpilot.store.models import DecisionRecord, DocumentRecord
from deskpilot.store.users import ConsoleIdentity
from deskpilot.store.workflow import audit_log, decisions_for, get_ticket, outbox_for, record_feedback

router = APIRouter(prefix="/console", include_in_schema=False)

TicketId = Annotated[int, Path(ge=1, le=2**62)]
FEEDBACK_SOURCE = "console"


def no_ticket(ticket_id: int) -> NotFoundError:
    return NotFoundError(f"no ticket {ticket_id} in your team", hint="pick one from the inbox")


def _load(request: Request, database: Database, identity: ConsoleIdentity, ticket_id: int) -> dict[str, Any]:
    with db_session(database) as session:
        ticket = get_ticket(session, identity.tenant_id, ticket_id)
        if ticket is None:
            raise no_ticket(ticket_id)
        decisions = [review.decision_view(d) for d in decisions_for(session, ticket.id)]
        labels = {
            d.task: known_labels(
                request,
                session,
                identity,
                d.task,
                [a.get("label", "") for a in d.explanation.get("alternatives", []) if isinstance(a, dict)],
            )
            for d in decisions
        }
        draft = next(
            (d.explanation["draft"] for d in decisions if isinstance(d.explanation.get("draft"), dict)), None
        )
        document = session.scalars(
            select(DocumentRecord).where(
                DocumentRecord.tenant_id == identity.tenant_id, DocumentRecord.ticket_id == ticket.id
            )
        ).first()
        return {
            "ticket": ticket,
            "decisions": decisions,
            "labels": labels,
            "draft": draft,
            "document": document,
            "actions": outbox_for(session, ticket.id),
            "feedback": review.ticket_feedback(session, identity.tenant_id, ticket.id),
            "history": audit_log(session, identity.tenant_id, ticket_id=ticket.id, limit=100),
        }


@router.get("/tickets/{ticket_id}")
async def ticket_page(
    request: Request, ticket_id: TicketId, identity: IdentityDep, database: DatabaseDep
) -> Response:
    data = await run_in_threadpool(_load, request, database, identity, ticket_id)
    saved = request.query_params.get("saved")
    return render(request, "ticket.html", {**data, "saved": saved})


def _form_int(value: object, name: str) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    raise InputDataError(
        f"the form's {name} is missing or not a number", hint="reload the page and try again"
    )


def record_correction(
    database: Database,
    settings: Settings,
    identity: ConsoleIdentity,
    ticket_id: int,
    decision_id: int,
    label: str | None,
) -> tuple[str, int | None]:
    """Confirm (``label`` None: the decision's own label) or change one decision of a ticket.

    Returns the label recorded and the retrain job it triggered, if any.
    """
    with db_session(database) as session:
        if get_ticket(session, identity.tenant_id, ticket_id) is None:
            raise no_ticket(ticket_id)
        decision = session.get(DecisionRecord, decision_id)
        if decision is None or decision.tenant_id != identity.tenant_id or decision.ticket_id != ticket_id:
            raise NotFoundError(f"ticket {ticket_id} has no decision {decision_id}", hint="reload the page")
        chosen = label if label is not None else (decision.label or decision.predicted_label)
        if not chosen:
            raise InputDataError("this decision has no label to confirm", hint="choose one with Change to…")
        row = record_feedback(
            session,
            identity.tenant,
            task=decision.task,
            label=chosen,
            author=identity.email,
            ticket_id=ticket_id,
            decision_id=decision_id,
            source=FEEDBACK_SOURCE,
        )
        return row.label, maybe_enqueue_retrain(session, identity.tenant_id, row.task, settings)


def back_to(form_next: object, ticket_id: int) -> str:
    if isinstance(form_next, str) and form_next in ("/console/triage",):
        return form_next
    return f"/console/tickets/{ticket_id}?saved=1"


@router.post("/tickets/{ticket_id}/feedback")
async def give_feedback(
    ticket_id: TicketId,
    identity: IdentityDep,
    form: FormDep,
    database: DatabaseDep,
    settings: SettingsDep,
    notifier: JobNotifierDep,
    background: BackgroundTasks,
) -> Response:
    decision_id = _form_int(form.get("decision_id"), "decision")
    action = form.get("action")
    label: str | None = None
    if action == "change":
        raw = form.get("label")
        label = raw.strip() if isinstance(raw, str) else ""
        if not label or len(label) > 200:
            raise InputDataError("choose the right label (1-200 characters)")
    elif action != "confirm":
        raise InputDataError("the form's action must be confirm or change")
    _, retrain_job = await run_in_threadpool(
        record_correction, database, settings, identity, ticket_id, decision_id, label
    )
    if retrain_job is not None:
        background.add_task(notify_jobs, notifier, [retrain_job])
    return RedirectResponse(back_to(form.get("next"), ticket_id), status_code=303)
