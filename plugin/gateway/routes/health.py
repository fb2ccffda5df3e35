"""Liveness and readiness probes for orchestrators and load balancers (no auth).

/healthz is cheap on purpose (the process answers); /readyz checks each part a request
needs and names the ones that are not ready.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.gateway.schemas import HealthResponse, ReadyResponse
from deskpilot.store import Database
from deskpilot.store.models import JobRecord
from deskpilot.tasks.classify import Predictor

logger = logging.getLogger("deskpilot.gateway")

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 1.0


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


def _queue(state: Any) -> str | None:
    """What is wrong with the job queue, or None when it works."""
    settings: Settings = state.settings
    if settings.queue_backend == "celery":
        return None if _broker_reachable(settings.broker_url) else "job broker unreachable"
    database: Database | None = getattr(state, "database", None)
    if database is None:
        return "job table not opened yet"
    try:
        with database.session() as session:
            session.execute(select(JobRecord.id).limit(1)).all()
    except Exception:
        logger.warning("the job table is unreadable", exc_info=True)
        return "job table unreadable"
    pool = getattr(state, "worker_pool", None)
    if pool is not None and not pool.alive():
        return "embedded worker threads stopped"
    return None


def _broker_reachable(url: str) -> bool:
    """Connect to the broker (Redis pings, AMQP opens a channel) within ``BROKER_TIMEOUT_S``."""
    kombu = importlib.import_module("kombu")  # only Celery deployments reach this

    options = {
        "socket_connect_timeout": BROKER_TIMEOUT_S,
        "socket_timeout": BROKER_TIMEOUT_S,
        "max_retries": 0,
    }
    try:
        with kombu.Connection(url, connect_timeout=BROKER_TIMEOUT_S, transport_options=options) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
            connection.default_channel  # noqa: B018 - opening the channel is the check
        return True
    except Exception as exc:
        logger.warning("job broker unreachable: %s", exc)
        return False


@router.get(
    "/readyz",
    summary="Readiness: database reachable, job queue working, models loaded",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ReadyResponse, "description": "Database, job queue or models not ready"}},
)
async def readyz(request: Request) -> ReadyResponse | JSONResponse:
    state = request.app.state
    database: Database | None = getattr(state, "database", None)
    predictor: Predictor | None = getattr(state, "predictor", None)
    db_ok = await run_in_threadpool(_ping, database)
    try:
        queue_problem = await asyncio.wait_for(run_in_threadpool(_queue, state), timeout=3 * BROKER_TIMEOUT_S)
    except TimeoutError:
        queue_problem = "job queue check timed out"
    models_ok = await run_in_threadpool(_models_ready, predictor)
    queue_ok = queue_problem is None
    if db_ok and models_ok and queue_ok:
        return ReadyResponse(status="ready", database=True, models=True, queue=True)
    problems = []
    if not db_ok:
        problems.append("database unreachable" if database is not None else "database not opened yet")
    if queue_problem is not None:
        problems.append(queue_problem)
    if not models_ok:
        failure: str | None = getattr(state, "predictor_error", None)
        problems.append(f"models failed to load: {failure}" if failure else "models still loading")
    body = ReadyResponse(
        status="not_ready", database=db_ok, models=models_ok, queue=queue_ok, detail="; ".join(problems)
    )
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
