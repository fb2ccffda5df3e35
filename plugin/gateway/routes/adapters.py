"""The caller's adapters: what tasks and versions its tenant can classify with, and signed uploads.

An upload registers a candidate version (never the champion): it is refused with 403 unless
its files are signed with the tenant's adapter signing key, or the caller's key has the admin
scope (an admin import). Only JSON and safetensors files are taken, and the safetensors
header is checked without loading a tensor.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from deskpilot.adapters.registry import Registry
from deskpilot.adapters.signing import (
    OPTIONAL_FILES,
    SIGNATURE_HEADER,
    SIGNED_FILES,
    adapter_digest,
    signature_valid,
)
from deskpilot.config import Settings
from deskpilot.errors import ForbiddenError, InputDataError, PayloadTooLargeError
from deskpilot.gateway.deps import (
    DatabaseDep,
    PredictorDep,
    ReadPrincipal,
    SettingsDep,
    WritePrincipal,
    db_session,
)
from deskpilot.gateway.errors import UnsupportedMediaTypeError, error_responses
from deskpilot.gateway.routes.tickets import actor_of
from deskpilot.gateway.schemas import TASK_PATTERN, AdapterOut, AdaptersResponse
from deskpilot.store import Database, Principal, upsert_adapter
from deskpilot.store.workflow import audit

router = APIRouter(prefix="/v1", tags=["adapters"])

ACCEPTED_FILES = SIGNED_FILES + OPTIONAL_FILES
TaskName = Annotated[
    str, Path(pattern=f"^{TASK_PATTERN}$", description="The task the adapter is for, e.g. intent")
]


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


class UploadedAdapterOut(BaseModel):
    tenant: str
    task: str
    version: str = Field(description="The version it was registered as")
    status: str = Field(description="Always candidate: promote it with `deskpilot adapters promote`")
    kind: str
    base_model: str
    labels: list[str]
    sha256: str = Field(description="The canonical digest of the files (what the signature covers)")
    authorized_by: str = Field(description="signature (the tenant's signing key) or admin (an admin import)")


UPLOAD_DESCRIPTION = f"""\
Register a trained adapter as a new **candidate** version of a task (it is not served until
promoted). Send `multipart/form-data` with one part per file, the part named after the file:
{", ".join(f"`{n}`" for n in SIGNED_FILES)}, and for a classifier to be served also
{", ".join(f"`{n}`" for n in OPTIONAL_FILES)}. Nothing else is taken: no pickle formats.

Sign the files with the tenant's adapter signing key (`DESKPILOT_ADAPTER_SIGNING_KEYS`) and send
the signature in `{SIGNATURE_HEADER}`; `deskpilot adapters sign DIR --tenant T` prints it. A key
with the admin scope may import without a signature. `card.json` must name this task.
"""


async def _read_files(request: Request, settings: Settings) -> dict[str, bytes]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"Content-Type {media[:80]!r} is not supported here",
            hint="send multipart/form-data with one part per file, named after the file",
        )
    limit = settings.adapter_upload_max_bytes
    files: dict[str, bytes] = {}
    async with request.form(max_files=len(ACCEPTED_FILES), max_fields=0, max_part_size=64 * 1024) as form:
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                raise InputDataError(
                    f"part {field[:80]!r} is not a file", hint="send each file as a file part"
                )
            name = field if field not in ("file", "files") else (value.filename or "")
            if name not in ACCEPTED_FILES:
                raise InputDataError(
                    f"{name[:80]!r} is not an adapter file: only {', '.join(ACCEPTED_FILES)} are taken",
                    hint="adapters are JSON and safetensors only; no .bin, .pt or pickle files",
                )
            if name in files:
                raise InputDataError(f"{name} was sent twice")
            data = await value.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLargeError(
                    f"{name} is larger than the limit of {limit:,} bytes",
                    hint="DESKPILOT_ADAPTER_UPLOAD_MAX_BYTES sets the limit",
                )
            files[name] = data
    return files


def _authorize(
    settings: Settings, principal: Principal, files: dict[str, bytes], signature: str | None
) -> str:
    """``signature`` or ``admin``; 403 otherwise. Every non-admin refusal looks the same."""
    if signature_valid(settings.adapter_signing_key(principal.tenant), files, signature):
        return "signature"
    if "admin" in principal.scopes:
        return "admin"
    raise ForbiddenError(
        f"the adapter is not signed with tenant {principal.tenant!r}'s adapter signing key",
        hint=f"sign the files with `deskpilot adapters sign DIR --tenant {principal.tenant}` and send the "
        f"result in {SIGNATURE_HEADER}, or have an admin key import it",
    )


def _register(
    settings: Settings,
    database: Database,
    principal: Principal,
    task: str,
    files: dict[str, bytes],
    authorized_by: str,
) -> UploadedAdapterOut:
    card = Registry(settings.adapters_dir).register_upload(principal.tenant, task, files)
    digest = adapter_digest(files).hex()
    with db_session(database) as session:
        upsert_adapter(
            session,
            principal.tenant,
            task,
            card.version,
            kind=card.kind,
            base_model=card.base_model,
            metrics=_plain(card.metrics),
            status="candidate",
        )
        audit(
            session,
            principal.tenant_id,
            "adapter.uploaded" if authorized_by == "signature" else "adapter.imported",
            actor_of(principal),
            {"task": task, "version": card.version, "sha256": digest, "authorized_by": authorized_by},
        )
    return UploadedAdapterOut(
        tenant=principal.tenant,
        task=task,
        version=card.version,
        status="candidate",
        kind=card.kind,
        base_model=card.base_model,
        labels=list(card.labels),
        sha256=digest,
        authorized_by=authorized_by,
    )


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """The card's metrics as the database takes them (finite JSON), or none."""
    try:
        json.dumps(metrics, allow_nan=False)
    except (TypeError, ValueError):
        return {}
    return metrics


@router.post(
    "/adapters/{task}",
    summary="Upload a signed adapter as a new candidate version (or import one with an admin key)",
    description=UPLOAD_DESCRIPTION,
    status_code=201,
    response_model=UploadedAdapterOut,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 500, 503),
    openapi_extra={
        "parameters": [
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "v1=<hex HMAC-SHA256 of the files' canonical digest, by the tenant's key>",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": list(SIGNED_FILES),
                        "properties": {n: {"type": "string", "format": "binary"} for n in ACCEPTED_FILES},
                    }
                }
            },
        },
    },
)
async def upload_adapter(
    task: TaskName,
    request: Request,
    response: Response,
    principal: WritePrincipal,
    settings: SettingsDep,
    database: DatabaseDep,
) -> UploadedAdapterOut:
    files = await _read_files(request, settings)
    authorized_by = _authorize(settings, principal, files, request.headers.get(SIGNATURE_HEADER))
    out = await run_in_threadpool(_register, settings, database, principal, task, files, authorized_by)
    response.headers["Location"] = "/v1/adapters"
    return out
