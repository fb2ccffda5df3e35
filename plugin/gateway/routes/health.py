"""Liveness and readiness probes for orchestrators and load balancers (no auth)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deskpilot.gateway.schemas import HealthResponse, ReadyResponse
from deskpilot.store import Database
from deskpilot.tasks.classify import Predictor

logger = logging.getLogger("deskpilot.gateway")

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    return HealthResponse()


def _ping(database: Database | None) -> bool:
    if database is None:
        return False
    try:
        return bool(database.ping())
    except Exception:  # a probe reports, it does not crash
        logger.warning("database ping failed", exc_info=True)
        return False


def _models_ready(predictor: Predictor | None) -> bool:
    if predictor is None:
        return False
    try:
        return bool(predictor.ready())
    except Exception:
        logger.warning("predictor.ready() failed", exc_info=True)
        return False


@router.get(
    "/readyz",
    summary="Readiness: database reachable and models loaded",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ReadyResponse, "description": "Database or models not ready"}},
)
async def readyz(request: Request) -> ReadyResponse | JSONResponse:
    state = request.app.state
    database: Database | None = getattr(state, "database", None)
    predictor: Predictor | None = getattr(state, "predictor", None)
    db_ok = await run_in_threadpool(_ping, database)
    models_ok = await run_in_threadpool(_models_ready, predictor)
    if db_ok and models_ok:
        return ReadyResponse(status="ready", database=True, models=True)
    problems = []
    if not db_ok:
        problems.append("database unreachable" if database is not None else "database not opened yet")
    if not models_ok:
        failure: str | None = getattr(state, "predictor_error", None)
        problems.append(f"models failed to load: {failure}" if failure else "models still loading")
    body = ReadyResponse(status="not_ready", database=db_ok, models=models_ok, detail="; ".join(problems))
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
