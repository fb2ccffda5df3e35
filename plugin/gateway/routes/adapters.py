"""The caller's adapters: what tasks and versions its tenant can classify with."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from deskpilot.gateway.deps import PredictorDep, ReadPrincipal
from deskpilot.gateway.errors import error_responses
from deskpilot.gateway.schemas import AdapterOut, AdaptersResponse

router = APIRouter(prefix="/v1", tags=["adapters"])


@router.get(
    "/adapters",
    summary="List the adapters of the caller's tenant",
    response_model=AdaptersResponse,
    responses=error_responses(401, 403, 500, 503),
)
async def list_adapters(principal: ReadPrincipal, predictor: PredictorDep) -> AdaptersResponse:
    summaries = await run_in_threadpool(predictor.adapters, principal.tenant)
    # The predictor is asked for one tenant; filter again so a bug there cannot leak others.
    mine = [AdapterOut.build(s) for s in summaries if s.tenant == principal.tenant]
    return AdaptersResponse(adapters=mine)
