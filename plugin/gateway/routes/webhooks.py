"""Inbound webhooks. No API key here: the tenant's shared secret signs each delivery.

Order matters: the path is checked, then the signature (401), then the body (415/422), and
only an authentic, well-formed delivery reaches the database, so a rejected request stores
nothing. The protocol is documented in ``deskpilot.connectors.generic.verify``.
"""

from __future__ import annotations

import hashlib
import json
import re

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from deskpilot.connectors.base import get_connector
from deskpilot.connectors.generic.verify import SIGNATURE_HEADER
from deskpilot.errors import AuthError, InputDataError, NotFoundError
from deskpilot.gateway.deps import DatabaseDep, JobNotifierDep, SettingsDep, require_json_body
from deskpilot.gateway.errors import ErrorResponse, error_responses
from deskpilot.gateway.ratelimit import guard_client, limit_webhook
from deskpilot.gateway.routes.tickets import answer_accepted, store_ticket
from deskpilot.gateway.workflow_schemas import SOURCE_PATTERN, SOURCE_RULE, TicketAccepted
from deskpilot.types import Ticket

router = APIRouter(tags=["webhooks"])

_TENANT = re.compile(r"[a-z0-9_-]{1,63}")

GENERIC_DESCRIPTION = """\
Receive a ticket from any system that signs its deliveries with the tenant's secret
(`DESKPILOT_WEBHOOK_SECRETS`, keyed by `tenant` or by `tenant/source`). Headers:

* `X-Deskpilot-Timestamp`: unix seconds at signing; refused outside a window of
  `DESKPILOT_WEBHOOK_TOLERANCE_S` (300 s by default), so re-sign every retry;
* `X-Deskpilot-Signature`: `v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + raw body)>`;
* `X-Deskpilot-Delivery`: the sender's id for the delivery (1-200 printable ASCII), the same on
  every retry: a repeated delivery creates nothing and gets the original answer with
  `duplicate: true` and `Idempotent-Replayed: true`.

Body: `{"type": "ticket", "ticket": {"subject", "body", "requester"?, "external_id"?, "metadata"?}}`.
Corrections (`"type": "feedback"`) are refused here with 422: send them to `POST /v1/feedback`.
"""

_BODY_SCHEMA = {
    "type": "object",
    "required": ["type", "ticket"],
    "properties": {
        "type": {"type": "string", "enum": ["ticket"]},
        "ticket": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "subject": {"type": "string", "maxLength": 1000},
                "body": {"type": "string"},
                "requester": {"type": "string", "maxLength": 320},
                "external_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "metadata": {"type": "object"},
            },
        },
    },
    "example": {"type": "ticket", "ticket": {"subject": "VPN down", "body": "Since 9am the VPN drops."}},
}
_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("X-Deskpilot-Timestamp", "Unix seconds when the delivery was signed"),
        ("X-Deskpilot-Signature", "v1=<hex HMAC-SHA256 of 'v1:' + timestamp + ':' + raw body>"),
        ("X-Deskpilot-Delivery", "The sender's unique id for this delivery; reused on retries"),
    )
]


def _secret_hint(tenant: str) -> str:
    example = json.dumps({tenant: "<a long random secret>"})
    return f"the server operator sets DESKPILOT_WEBHOOK_SECRETS='{example}'"


@router.post(
    "/webhooks/{tenant}/generic/{source}",
    summary="Receive a signed ticket from any system (answers 202 at once)",
    description=GENERIC_DESCRIPTION,
    status_code=202,
    response_model=TicketAccepted,
    responses={
        **error_responses(400, 404, 413, 415, 422, 500, 503),
        401: {"model": ErrorResponse, "description": "Missing, malformed, stale or forged signature"},
    },
    openapi_extra={
        "parameters": _HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}},
    },
    dependencies=[Depends(guard_client)],
)
async def generic_webhook(
    tenant: str,
    source: str,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    settings: SettingsDep,
    database: DatabaseDep,
    notifier: JobNotifierDep,
) -> TicketAccepted:
    if not _TENANT.fullmatch(tenant) or not SOURCE_PATTERN.fullmatch(source):
        raise NotFoundError(
            f"no webhook endpoint at {request.url.path}",
            hint=f"the tenant is 1-63 and the source {SOURCE_RULE}",
        )
    secret = settings.webhook_secret(tenant, source)
    if not secret:
        raise AuthError("webhooks are not enabled for this tenant", hint=_secret_hint(tenant))
    raw = await request.body()
    connector = get_connector("generic")
    connector.verify(request.headers, raw, secret=secret, tolerance_s=settings.webhook_tolerance_s)
    await limit_webhook(request, tenant, "generic", source)  # authentic deliveries count
    await require_json_body(request)  # after the signature: strangers learn nothing but 401
    inbound = connector.parse(tenant, source, request.headers, raw, {})
    event = inbound.events[0]
    if event.kind != "ticket" or not isinstance(event.payload, Ticket):
        raise InputDataError(
            f'"type": "{event.kind}" deliveries are not accepted on this webhook; nothing was stored',
            hint="send corrections to POST /v1/feedback with an API key that has the write scope",
        )
    ticket = event.payload
    if len(ticket.body) > settings.max_text_chars:
        raise InputDataError(
            f"ticket.body: {len(ticket.body)} characters, at most {settings.max_text_chars} allowed",
            hint="DESKPILOT_MAX_TEXT_CHARS sets the limit",
        )
    signature = request.headers.get(SIGNATURE_HEADER, "")
    replay_key = hashlib.sha256(f"{source}\n{signature}".encode()).hexdigest()
    accepted = await run_in_threadpool(
        store_ticket,
        database,
        settings,
        tenant,
        ticket,
        event.delivery_id,
        f"webhook:generic/{source}",
        replay_key,
    )
    return answer_accepted(accepted, response, background, notifier)
