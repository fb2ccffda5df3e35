"""Classify texts with the caller's adapter for a task, and record what was answered."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.errors import AdapterNotFoundError
from deskpilot.gateway.deps import (
    DatabaseDep,
    ReadOrWritePrincipal,
    ReadyPredictorDep,
    SettingsDep,
    db_session,
    require_json_body,
)
from deskpilot.gateway.errors import error_responses
from deskpilot.gateway.schemas import ClassifyRequest, ClassifyResponse, ClassifyResult
from deskpilot.store import Database, Principal, record_predictions
from deskpilot.tasks.classify import Predictor, classify
from deskpilot.telemetry import count_predictions
from deskpilot.types import Prediction

router = APIRouter(prefix="/v1", tags=["classify"])


def _classify_and_record(
    predictor: Predictor,
    database: Database,
    settings: Settings,
    principal: Principal,
    request: ClassifyRequest,
    texts: Sequence[str],
) -> tuple[list[Prediction], list[int | None]]:
    """CPU-bound model call plus a short DB write: runs in the threadpool."""
    predictions = classify(
        predictor,
        principal.tenant,
        request.task,
        texts,
        max_texts=settings.max_batch_texts,
        max_chars=settings.max_text_chars,
        version=request.version,
        abstain=request.abstain,
    )
    count_predictions("api", request.task, predictions)
    if not settings.record_predictions:
        return predictions, [None] * len(predictions)
    with db_session(database) as session:
        ids = record_predictions(session, principal.tenant_id, request.task, texts, predictions)
    return predictions, list(ids)


def _explain(exc: AdapterNotFoundError, task: str) -> AdapterNotFoundError:
    """Make sure the 404 names the task and says how to get an adapter for it."""
    message = exc.message if task in exc.message else f"no adapter for task {task!r}: {exc.message}"
    hint = exc.hint or (
        f"train one with `deskpilot train classifier --task {task} --data FILE`; "
        "GET /v1/adapters lists the tasks you can use"
    )
    return AdapterNotFoundError(message, hint=hint)


@router.post(
    "/classify",
    summary="Classify one or more texts with a task's adapter",
    response_model=ClassifyResponse,
    responses=error_responses(400, 401, 403, 404, 413, 415, 422, 500, 503),
    dependencies=[Depends(require_json_body)],
)
async def classify_texts(
    body: ClassifyRequest,
    principal: ReadOrWritePrincipal,
    predictor: ReadyPredictorDep,
    database: DatabaseDep,
    settings: SettingsDep,
) -> ClassifyResponse:
    texts = body.all_texts()
    try:
        predictions, ids = await run_in_threadpool(
            _classify_and_record, predictor, database, settings, principal, body, texts
        )
    except AdapterNotFoundError as exc:
        raise _explain(exc, body.task) from exc
    results = [ClassifyResult.build(p, i) for p, i in zip(predictions, ids, strict=True)]
    return ClassifyResponse(task=body.task, results=results)
