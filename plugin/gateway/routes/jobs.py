"""Background jobs of the caller's tenant; ``state=dead`` lists the dead letters, with their errors.

An admin can give a dead job a fresh set of attempts; the retry is written to the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from deskpilot.errors import ConflictError, NotFoundError
from deskpilot.gateway.deps import (
    AdminPrincipal,
    DatabaseDep,
    JobNotifierDep,
    ReadPrincipal,
    db_session,
    notify_jobs,
    require_json_body,
)
from deskpilot.gateway.errors import ErrorResponse, error_responses
from deskpilot.gateway.routes.tickets import actor_of
from deskpilot.gateway.workflow_schemas import MAX_ID, JobOut, JobsOut, JobState
from deskpilot.store import Database, Principal
from deskpilot.store.queue import get_job, list_jobs, retry
from deskpilot.store.workflow import audit

router = APIRouter(prefix="/v1", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="A job id, e.g. a job_id from POST /v1/tickets")]
KIND_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


def _no_job(job_id: int) -> NotFoundError:
    return NotFoundError(f"no job {job_id}", hint="GET /v1/jobs lists the jobs of this API key's tenant")


def _list(
    database: Database, principal: Principal, state: str | None, kind: str | None, limit: int
) -> JobsOut:
    with db_session(database) as session:
        rows = list_jobs(session, tenant_id=principal.tenant_id, state=state, kind=kind, limit=limit)
        return JobsOut(jobs=[JobOut.build(row) for row in rows])


@router.get(
    "/jobs",
    summary="List the tenant's jobs, newest first; state=dead lists the dead letters",
    response_model=JobsOut,
    responses=error_responses(401, 403, 422, 500, 503),
)
async def list_tenant_jobs(
    principal: ReadPrincipal,
    database: DatabaseDep,
    state: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
    kind: Annotated[
        str | None, Query(pattern=KIND_PATTERN, description="Only jobs of this kind, e.g. process_ticket")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many jobs")] = 100,
) -> JobsOut:
    return await run_in_threadpool(_list, database, principal, state, kind, limit)


def _one(database: Database, principal: Principal, job_id: int) -> JobOut:
    with db_session(database) as session:
        row = get_job(session, job_id, principal.tenant_id)
        if row is None:
            raise _no_job(job_id)
        return JobOut.build(row)


@router.get(
    "/jobs/{job_id}",
    summary="One job: state, attempts, progress, result and last error",
    response_model=JobOut,
    responses=error_responses(401, 403, 404, 422, 500, 503),
)
async def read_job(job_id: JobId, principal: ReadPrincipal, database: DatabaseDep) -> JobOut:
    return await run_in_threadpool(_one, database, principal, job_id)


def _retry(database: Database, principal: Principal, job_id: int) -> JobOut:
    with db_session(database) as session:
        try:
            row = retry(session, job_id, principal.tenant_id)
        except NotFoundError as exc:
            raise _no_job(job_id) from exc
        except ConflictError as exc:
            hint = "GET /v1/jobs?state=dead lists the jobs a retry can revive"
            raise ConflictError(exc.message, hint=hint) from exc
        ticket_id = row.payload.get("ticket_id") if isinstance(row.payload, dict) else None
        audit(
            session,
            principal.tenant_id,
            "job.retried",
            actor_of(principal),
            {"job_id": row.id, "kind": row.kind, "last_error": row.last_error},
            ticket_id=ticket_id if isinstance(ticket_id, int) else None,
        )
        session.flush()
        return JobOut.build(row)


@router.post(
    "/jobs/{job_id}/retry",
    summary="Retry a dead job with a fresh set of attempts (admin keys only)",
    status_code=202,
    response_model=JobOut,
    responses={
        **error_responses(401, 403, 404, 422, 500, 503),
        409: {"model": ErrorResponse, "description": "The job is not dead, so there is nothing to retry"},
    },
    dependencies=[Depends(require_json_body)],  # no body needed; any other body is a 415
)
async def retry_job(
    job_id: JobId,
    principal: AdminPrincipal,
    database: DatabaseDep,
    notifier: JobNotifierDep,
    background: BackgroundTasks,
) -> JobOut:
    job = await run_in_threadpool(_retry, database, principal, job_id)
    background.add_task(notify_jobs, notifier, [job.id])
    return job
