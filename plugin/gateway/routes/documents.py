"""Documents in (``POST /v1/documents``, the signed email webhook), their state and originals out.

A request is answered once every file in it has been kept and extracted: 202 with one entry per
file (and per email attachment) when at least one was accepted, 422 when all were refused, each
refusal with its reason. Classification and filing in the ERP follow in the background.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from deskpilot.connectors.base import get_connector
from deskpilot.errors import AuthError, InputDataError, NotFoundError, PayloadTooLargeError
from deskpilot.gateway.deps import (
    DatabaseDep,
    JobNotifierDep,
    ReadPrincipal,
    SettingsDep,
    WritePrincipal,
    db_session,
    notify_jobs,
)
from deskpilot.gateway.errors import UnsupportedMediaTypeError, error_responses
from deskpilot.gateway.ratelimit import guard_client, limit_webhook
from deskpilot.gateway.routes.tickets import actor_of
from deskpilot.gateway.workflow_schemas import MAX_ID
from deskpilot.jobs.document_intake import Intake, receive_file
from deskpilot.store.documents import document_out, get_document, list_documents

router = APIRouter(tags=["documents"])

_TENANT = re.compile(r"[a-z0-9_-]{1,63}")
MAX_METADATA_CHARS = 10_000
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The id POST /v1/documents answered")]
STATES = "received|rejected|processing|filed|triage|failed"

UPLOAD_DESCRIPTION = """\
Upload one or more files as `multipart/form-data`: each in a part named `file` (or `files`),
plus an optional `metadata` part holding a JSON object kept with every document (e.g. the
mailbox or the uploader). Supported: PDF (text layer; scanned pages through OCR when Tesseract
is installed), DOCX, EML (body and attachments), HTML, plain text, PNG/JPEG (OCR).

Every original is kept (content-addressed: the same file twice is stored once and answered
with `duplicate: true`). Files over the limits (`DESKPILOT_DOC_MAX_BYTES`, `_MAX_PAGES`,
`_MAX_DEPTH`, ...), encrypted, corrupt, bombs, empty ones and files whose extension lies about
their content are refused with a `reason` and a `message`.
"""


def _answer(intake: Intake, response: Response, background: BackgroundTasks, notifier: Any) -> Any:
    body = {"accepted": intake.accepted, "files": [f.as_dict() for f in intake.files]}
    if intake.accepted == 0:
        return JSONResponse(
            status_code=422,
            content={
                "error": {
                    "code": "document_rejected",
                    "message": "no file could be accepted: "
                    + "; ".join(f"{f.filename}: {f.message}" for f in intake.files)[:2000],
                    "hint": "see each file's reason; the originals were kept",
                },
                **body,
            },
        )
    if intake.job_ids:
        background.add_task(notify_jobs, notifier, intake.job_ids)
    first = next((f for f in intake.files if f.document_id is not None and f.state != "rejected"), None)
    if first is not None:
        response.headers["Location"] = f"/v1/documents/{first.document_id}"
    return body


def _metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise InputDataError(f"metadata: at most {MAX_METADATA_CHARS} characters")
    try:
        value = json.loads(raw)
    except ValueError:
        raise InputDataError(
            "metadata must be a JSON object", hint='e.g. {"mailbox": "ap@acme.example"}'
        ) from None
    if not isinstance(value, dict):
        raise InputDataError("metadata must be a JSON object", hint='e.g. {"mailbox": "ap@acme.example"}')
    return value


@router.post(
    "/v1/documents",
    summary="Upload documents to classify, read and file (answers 202 once they are kept)",
    description=UPLOAD_DESCRIPTION,
    status_code=202,
    responses=error_responses(400, 401, 403, 413, 415, 422, 500),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "metadata": {"type": "string", "description": "a JSON object"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_documents(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    principal: WritePrincipal,
    settings: SettingsDep,
    database: DatabaseDep,
    notifier: JobNotifierDep,
) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"Content-Type {media[:80]!r} is not supported here",
            hint="send multipart/form-data with each file in a part named 'file'",
        )
    files: list[tuple[str, bytes]] = []
    async with request.form(max_files=settings.doc_max_files, max_fields=10) as form:
        uploads = [v for key in ("file", "files") for v in form.getlist(key) if isinstance(v, UploadFile)]
        if not uploads:
            raise InputDataError(
                "no file in the request", hint="put each file in a multipart part named 'file'"
            )
        raw_meta = form.get("metadata")
        meta = _metadata(raw_meta if isinstance(raw_meta, str) else None)
        for upload in uploads:
            data = await upload.read(settings.doc_max_bytes + 1)
            name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:255] or "upload"
            if len(data) > settings.doc_max_bytes:
                raise PayloadTooLargeError(
                    f"{name}: larger than the limit of {settings.doc_max_bytes:,} bytes; nothing was stored",
                    hint="DESKPILOT_DOC_MAX_BYTES sets the limit",
                )
            files.append((name, data))
    intake = Intake()
    for name, data in files:
        got = await run_in_threadpool(
            receive_file,
            database,
            settings,
            principal.tenant,
            name,
            data,
            source="upload",
            actor=actor_of(principal),
            meta=meta,
        )
        intake.files.extend(got.files)
    return _answer(intake, response, background, notifier)


@router.get("/v1/documents", summary="Recent documents of the caller's tenant, newest first")
def list_documents_route(
    principal: ReadPrincipal,
    database: DatabaseDep,
    state: Annotated[str | None, Query(pattern=f"^({STATES})$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    with db_session(database) as session:
        rows = list_documents(session, principal.tenant_id, state=state, limit=limit, before_id=before_id)
        return {"documents": [document_out(r) for r in rows]}


@router.get(
    "/v1/documents/{document_id}",
    summary="A document: state, class, key fields with their spans, reason when refused",
    responses=error_responses(401, 403, 404),
)
def get_document_route(
    document_id: DocumentId, principal: ReadPrincipal, database: DatabaseDep
) -> dict[str, Any]:
    with db_session(database) as session:
        row = get_document(session, principal.tenant_id, document_id)
        if row is None:
            raise NotFoundError(f"no document {document_id} for this tenant")
        return document_out(row)


@router.get(
    "/v1/documents/{document_id}/original",
    summary="The file as it was received",
    response_class=Response,
    responses={
        200: {
            "description": "The original bytes, with the media type they were received as",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(401, 403, 404),
    },
)
def get_original_route(
    document_id: DocumentId, principal: ReadPrincipal, database: DatabaseDep, settings: SettingsDep
) -> Response:
    from deskpilot.documents.originals import OriginalStore

    with db_session(database) as session:
        row = get_document(session, principal.tenant_id, document_id)
        if row is None:
            raise NotFoundError(f"no document {document_id} for this tenant")
        sha, filename, media = row.sha256, row.filename, row.media_type
    path = OriginalStore(settings.documents_dir).path(sha)
    if not path.is_file():
        raise NotFoundError(f"the original of document {document_id} is missing from the store")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "document"
    return Response(
        path.read_bytes(),
        media_type=media or "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


EMAIL_DESCRIPTION = """\
Receive an email (the raw RFC 822 message, `Content-Type: message/rfc822`) from a mail server's
pipe or a provider's inbound-parse webhook; or `multipart/form-data` with the raw message in a
field named `email` (SendGrid's "POST the raw, full MIME message"). Signed like the generic
webhook (`X-Deskpilot-Timestamp`, `X-Deskpilot-Signature` over the raw body, secret
`DESKPILOT_WEBHOOK_SECRETS` keyed `tenant/email` or `tenant`). Each attachment (recursively,
attached emails included) becomes a document; an email without attachments is one itself.
"""


@router.post(
    "/webhooks/{tenant}/email",
    summary="Receive a signed email; its attachments become documents",
    description=EMAIL_DESCRIPTION,
    status_code=202,
    responses={**error_responses(400, 404, 413, 415, 422, 500), 401: {"description": "bad signature"}},
    dependencies=[Depends(guard_client)],
)
async def email_webhook(
    tenant: str,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    settings: SettingsDep,
    database: DatabaseDep,
    notifier: JobNotifierDep,
) -> Any:
    if not _TENANT.fullmatch(tenant):
        raise NotFoundError(
            f"no webhook endpoint at {request.url.path}", hint="the tenant is 1-63 of a-z 0-9 _ -"
        )
    secret = settings.webhook_secret(tenant, "email")
    if not secret:
        example = json.dumps({f"{tenant}/email": "<a long random secret>"})
        raise AuthError(
            "the email webhook is not enabled for this tenant",
            hint=f"the server operator sets DESKPILOT_WEBHOOK_SECRETS='{example}'",
        )
    raw = await request.body()
    get_connector("generic").verify(
        request.headers, raw, secret=secret, tolerance_s=settings.webhook_tolerance_s
    )
    await limit_webhook(request, tenant, "email")  # authentic deliveries count
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=20, max_part_size=settings.doc_max_bytes) as form:
            field = form.get("email")
            if isinstance(field, str):
                message = field.encode("utf-8", "surrogateescape")
            elif isinstance(field, UploadFile):
                message = await field.read()
            else:
                message = b""
        if not message:
            raise InputDataError("no 'email' field with the raw message", hint="enable raw MIME posting")
    elif media in ("message/rfc822", "application/octet-stream", "text/plain"):
        message = raw
    else:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media[:80]!r} is not supported here",
            hint="send the raw message as message/rfc822",
        )
    if len(message) > settings.doc_max_bytes:
        raise PayloadTooLargeError(
            f"the email is larger than the limit of {settings.doc_max_bytes:,} bytes",
            hint="DESKPILOT_DOC_MAX_BYTES sets the limit",
        )
    intake = await run_in_threadpool(
        receive_file,
        database,
        settings,
        tenant,
        "message.eml",
        message,
        source="email",
        actor="webhook:email",
        meta={"channel": "email"},
    )
    return _answer(intake, response, background, notifier)
