"""Corrections from people: the right label for a ticket, a decision or a classified text.

Feedback rows become training data for the next adapter version; new labels are allowed.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, BackgroundTasks, Depends
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.errors import InputDataError, NotFoundError
from deskpilot.gateway.deps import (
    DatabaseDep,
    JobNotifierDep,
    SettingsDep,
    WritePrincipal,
    db_session,
    notify_jobs,
    require_json_body,
)
from deskpilot.gateway.errors import error_responses
from deskpilot.gateway.routes.tickets import text_too_long
from deskpilot.gateway.workflow_schemas import FeedbackIn, FeedbackOut
from deskpilot.jobs.triggers import maybe_enqueue_retrain
from deskpilot.store import Database, PredictionRecord, Principal
from deskpilot.store.workflow import record_feedback

router = APIRouter(prefix="/v1", tags=["feedback"])

_ID_HINT = "ids are per tenant: use one of this API key's tenant (GET /v1/tickets/{id} lists decisions)"


def _check_prediction(session: Session, principal: Principal, body: FeedbackIn) -> None:
    """A prediction_id must be this tenant's, for this task, and about this very text."""
    prediction = session.get(PredictionRecord, body.prediction_id)
    if prediction is None or prediction.tenant_id != principal.tenant_id:
        raise NotFoundError(
            f"no prediction {body.prediction_id}",
            hint="use a prediction_id that POST /v1/classify answered for this API key's tenant",
        )
    if body.task != prediction.task:
        raise InputDataError(f"prediction {prediction.id} is for task {prediction.task!r}, not {body.task!r}")
    if hashlib.sha256((body.text or "").encode("utf-8")).hexdigest() != prediction.input_hash:
        raise InputDataError(
            f"text is not the text prediction {prediction.id} classified",
            hint="send exactly the text that was sent to POST /v1/classify",
        )


def _record(
    database: Database, settings: Settings, principal: Principal, body: FeedbackIn
) -> tuple[FeedbackOut, int | None]:
    """The correction, and in the same transaction the retrain it may trigger."""
    with db_session(database) as session:
        if body.prediction_id is not None:
            _check_prediction(session, principal, body)
        try:
            row = record_feedback(
                session,
                principal.tenant,
                task=body.task or "",
                label=body.label,
                author=body.author,
                ticket_id=body.ticket_id,
                decision_id=body.decision_id,
                text=body.text,
                source="api",
            )
        except NotFoundError as exc:
            raise NotFoundError(exc.message, hint=exc.hint or _ID_HINT) from exc
        retrain_job = maybe_enqueue_retrain(session, principal.tenant_id, row.task, settings)
        return FeedbackOut.build(row), retrain_job


def _check_length(body: FeedbackIn, settings: Settings) -> None:
    if body.text is not None and len(body.text) > settings.max_text_chars:
        raise text_too_long("text", len(body.text), settings.max_text_chars)


@router.post(
    "/feedback",
    summary="Record a correction: the right label for a ticket, decision or classified text",
    description=(
        "Name what is corrected with `ticket_id`, `decision_id` (its ticket and task are implied), "
        "`prediction_id` from `POST /v1/classify` together with the classified `text`, or `text` "
        "alone. Labels the adapter does not know yet are allowed: they teach the next version. "
        "`author`, the person who corrected, is the actor of the audit entry."
    ),
    status_code=201,
    response_model=FeedbackOut,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 500, 503),
    dependencies=[Depends(require_json_body)],
)
async def create_feedback(
    body: FeedbackIn,
    principal: WritePrincipal,
    database: DatabaseDep,
    settings: SettingsDep,
    notifier: JobNotifierDep,
    background: BackgroundTasks,
) -> FeedbackOut:
    _check_length(body, settings)
    out, retrain_job = await run_in_threadpool(_record, database, settings, principal, body)
    if retrain_job is not None:
        background.add_task(notify_jobs, notifier, [retrain_job])
    return out
