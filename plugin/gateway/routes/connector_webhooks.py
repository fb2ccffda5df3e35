"""Webhooks of the outside systems: ``POST /webhooks/{tenant}/{system}[/{route}]``.

One handler for every connector (the generic one has its own route): authenticate with the
connector's scheme and the tenant's secret, let the connector say what the delivery means,
store its events in the inbox (each once per delivery id) and answer at once — the work
happens in the job queue, so Slack's three seconds are never at risk.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.connectors.base import Inbound, connector_info, get_connector
from deskpilot.errors import AuthError, InputDataError, NotFoundError
from deskpilot.gateway.deps import DatabaseDep, JobNotifierDep, SettingsDep, db_session, notify_jobs
from deskpilot.gateway.errors import UnsupportedMediaTypeError, error_responses
from deskpilot.gateway.ratelimit import guard_client, limit_webhook
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.store.workflow import Accepted, accept_event
from deskpilot.types import Event

logger = logging.getLogger("deskpilot.gateway")

router = APIRouter(tags=["webhooks"])

_TENANT = re.compile(r"[a-z0-9_-]{1,63}")
_SYSTEM = re.compile(r"[a-z][a-z0-9_-]{0,31}")


# What each built-in system sends (plugins check their own): anything else is a 415.
_JSON = ("application/json",)
_FORM = ("application/x-www-form-urlencoded",)
_JSON_SYSTEMS = frozenset({"jira", "zendesk", "servicenow", "erpnext", "odoo"})


def expected_media(system: str, route: str) -> tuple[str, ...] | None:
    if system == "slack":
        return _FORM if route in ("commands", "interactivity") else _JSON
    return _JSON if system in _JSON_SYSTEMS else None


def _require_media(request: Request, system: str, route: str, raw: bytes) -> None:
    expected = expected_media(system, route)
    if expected is None:
        return
    header = request.headers.get("content-type")
    media = (header or "").split(";", 1)[0].strip().lower()
    if header is None and not raw:
        return
    json_like = expected == _JSON and media.startswith("application/") and media.endswith("+json")
    if media in expected or json_like:
        return
    shown = f"Content-Type {media[:80]!r}" if header is not None else "a body without a Content-Type"
    raise UnsupportedMediaTypeError(
        f"{shown} is not what {system} sends here", hint=f"send Content-Type: {expected[0]}"
    )


def _options(request: Request, tenant: str, system: str) -> dict[str, str]:
    """The tenant's policy options for this system (e.g. the bot's own account id)."""
    policies: PolicyStore | None = getattr(request.app.state, "policies", None)
    policy = policies.get(tenant) if policies is not None else None
    if policy is None:
        return {}
    for candidate in policy.systems.values():
        if candidate.connector == system:
            return dict(candidate.options)
    return {}


def _store(database: Database, settings: Settings, events: Sequence[Event], actor: str) -> list[Accepted]:
    """Every event of one delivery in one transaction: all stored, or none."""
    with db_session(database) as session:
        return [
            accept_event(session, event, actor=actor, max_attempts=settings.job_max_attempts)
            for event in events
        ]


def _summary(events: Sequence[Event], accepted: Sequence[Accepted], inbound: Inbound) -> dict[str, Any]:
    return {
        "accepted": [
            {
                "kind": event.kind,
                "ticket_id": result.ticket_id or None,
                "job_id": result.job_id,
                "duplicate": result.duplicate,
            }
            for event, result in zip(events, accepted, strict=True)
        ],
        "ignored": inbound.ignored,
    }


@router.post(
    "/webhooks/{tenant}/{system}",
    summary="A connector's webhook (Slack, Jira, Zendesk, ServiceNow, ERPNext, Odoo, plugins)",
    description=(
        "Authenticated by the system's own signature scheme with the tenant's secret "
        "(`DESKPILOT_WEBHOOK_SECRETS`, key `<tenant>/<system>` or `<tenant>`); see the "
        "connector's setup page. Answers at once; the work happens in the job queue."
    ),
    status_code=202,
    responses=error_responses(401, 404, 413, 415, 422, 500, 503),
    dependencies=[Depends(guard_client)],
)
async def connector_webhook(
    tenant: str,
    system: str,
    request: Request,
    background: BackgroundTasks,
    settings: SettingsDep,
    database: DatabaseDep,
    notifier: JobNotifierDep,
) -> JSONResponse:
    return await _dispatch(tenant, system, "", request, background, settings, database, notifier)


@router.post(
    "/webhooks/{tenant}/{system}/{route:path}",
    summary="A connector's webhook with a sub-path (Slack events/commands/interactivity, Odoo's token)",
    status_code=202,
    responses=error_responses(401, 404, 413, 415, 422, 500, 503),
    dependencies=[Depends(guard_client)],
)
async def connector_webhook_route(
    tenant: str,
    system: str,
    route: str,
    request: Request,
    background: BackgroundTasks,
    settings: SettingsDep,
    database: DatabaseDep,
    notifier: JobNotifierDep,
) -> JSONResponse:
    return await _dispatch(tenant, system, route, request, background, settings, database, notifier)


async def _dispatch(
    tenant: str,
    system: str,
    route: str,
    request: Request,
    background: BackgroundTasks,
    settings: Settings,
    database: Database,
    notifier: Any,
) -> JSONResponse:
    if not _TENANT.fullmatch(tenant) or not _SYSTEM.fullmatch(system) or system == "generic":
        raise NotFoundError(f"no webhook endpoint at {request.url.path}")
    try:
        connector = get_connector(system)
    except InputDataError:
        raise NotFoundError(
            f"no connector {system!r}: no webhook endpoint at {request.url.path}",
            hint="`deskpilot connectors list` shows the connectors installed",
        ) from None
    secret = settings.webhook_secret(tenant, system)
    if not secret:
        info = connector_info(system)
        raise AuthError(
            f"{system} webhooks are not enabled for this tenant",
            hint=f'set DESKPILOT_WEBHOOK_SECRETS=\'{{"{tenant}/{system}": "..."}}\''
            + (f"; see {info.docs}" if info is not None and info.docs else ""),
        )
    raw = await request.body()
    connector.verify(
        request.headers, raw, secret=secret, route=route, tolerance_s=settings.webhook_tolerance_s
    )
    await limit_webhook(request, tenant, system, route)  # authentic deliveries count
    _require_media(request, system, route, raw)  # after the signature: strangers learn only 401
    inbound = connector.parse(tenant, route, request.headers, raw, _options(request, tenant, system))
    events = list(inbound.events)
    accepted = (
        await run_in_threadpool(_store, database, settings, events, f"webhook:{system}") if events else []
    )
    new_jobs = [a.job_id for a in accepted if not a.duplicate and a.job_id is not None]
    if new_jobs:
        background.add_task(notify_jobs, notifier, new_jobs)
    if inbound.reply is not None:
        return JSONResponse(inbound.reply, status_code=inbound.status, background=background)
    return JSONResponse(
        _summary(events, accepted, inbound), status_code=inbound.status, background=background
    )
