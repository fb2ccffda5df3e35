"""Dependencies as ``Annotated`` aliases: routes declare what they need, not how to get it.

Objects live on ``app.state`` (set by :func:`deskpilot.gateway.app.create_app`); a
missing one means startup has not finished, which is a 503, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from deskpilot.config import Settings
from deskpilot.errors import AuthError, ConfigError, ForbiddenError
from deskpilot.gateway.errors import ServiceUnavailableError, UnsupportedMediaTypeError
from deskpilot.gateway.ratelimit import client_address, limiter_of
from deskpilot.jobs.base import JobNotifier
from deskpilot.logs import bind_tenant
from deskpilot.store import Database, Principal, authenticate_key
from deskpilot.tasks.classify import Predictor

logger = logging.getLogger("deskpilot.gateway")

KEY_HINT = "create a key with `deskpilot keys create --tenant NAME`"
# RFC 6750 b64token; anything else cannot be a key we issued, so skip the lookup.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{1,512}=*")

bearer = HTTPBearer(
    auto_error=False,
    description=f"An API key sent as `Authorization: Bearer <key>`; {KEY_HINT}.",
)


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database | None = getattr(request.app.state, "database", None)
    if database is None:
        raise ServiceUnavailableError("the database is not ready yet", hint="retry in a few seconds")
    return database


def get_predictor(request: Request) -> Predictor:
    predictor: Predictor | None = getattr(request.app.state, "predictor", None)
    if predictor is None:
        failure: str | None = getattr(request.app.state, "predictor_error", None)
        if failure:
            raise ServiceUnavailableError(f"the models failed to load: {failure}", hint="see the server log")
        raise ServiceUnavailableError("the models are still loading", hint="retry in a few seconds")
    return predictor


@contextmanager
def db_session(database: Database) -> Iterator[Session]:
    """A store session whose connection failures are a 503 for the client, not a 500."""
    try:
        with database.session() as session:
            yield session
    except (ConfigError, OperationalError, InterfaceError) as exc:
        logger.error("database unavailable: %s", exc)
        raise ServiceUnavailableError("the database is unavailable", hint="retry in a few seconds") from exc


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def get_ready_predictor(predictor: PredictorDep) -> Predictor:
    if not predictor.ready():
        raise ServiceUnavailableError("the models are still loading", hint="retry in a few seconds")
    return predictor


ReadyPredictorDep = Annotated[Predictor, Depends(get_ready_predictor)]


def _lookup(database: Database, key: str) -> Principal | None:
    with db_session(database) as session:
        return authenticate_key(session, key)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller behind the Bearer key, within the rate limits (checked before the lookup)."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise AuthError("the Authorization header must be 'Bearer <key>'", hint=KEY_HINT)
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'", hint=KEY_HINT)
    key = credentials.credentials
    limiter = limiter_of(request)
    if limiter is not None:
        await limiter.guard_address(client_address(request))
        await limiter.hit_key(key)
    principal: Principal | None = None
    if _B64TOKEN.fullmatch(key):
        principal = await run_in_threadpool(_lookup, get_database(request), key)
    if principal is None:
        raise AuthError("the API key is wrong or has been revoked", hint=KEY_HINT)
    bind_tenant(principal.tenant)  # the request's log lines name the tenant from here on
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


class RequireScope:
    """Dependency: the caller's key has one of ``scopes`` (``admin`` has them all)."""

    def __init__(self, *scopes: str) -> None:
        self.scopes = frozenset(scopes)

    def __call__(self, principal: PrincipalDep) -> Principal:
        if principal.scopes & (self.scopes | {"admin"}):
            return principal
        wanted = " or ".join(repr(s) for s in sorted(self.scopes))
        raise ForbiddenError(
            f"this API key lacks the {wanted} scope needed here",
            hint=f"use a key of tenant {principal.tenant!r} created with that scope",
        )


ReadPrincipal = Annotated[Principal, Depends(RequireScope("read"))]
ReadOrWritePrincipal = Annotated[Principal, Depends(RequireScope("read", "write"))]


async def require_json_body(request: Request) -> None:
    """415 for bodies that are not JSON, before they turn into confusing 422s."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        if await request.body():
            raise UnsupportedMediaTypeError(
                "the request has a body but no Content-Type", hint="send Content-Type: application/json"
            )
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaTypeError(
        f"Content-Type {media[:80]!r} is not supported", hint="send Content-Type: application/json"
    )


WritePrincipal = Annotated[Principal, Depends(RequireScope("write"))]
AdminPrincipal = Annotated[Principal, Depends(RequireScope("admin"))]


# Jobs: the row committed by a route is the truth; ringing the workers' bell only saves a poll.


def get_job_notifier(request: Request) -> JobNotifier | None:
    notifier: JobNotifier | None = getattr(request.app.state, "job_notifier", None)
    return notifier


JobNotifierDep = Annotated[JobNotifier | None, Depends(get_job_notifier)]


def notify_jobs(notifier: JobNotifier | None, job_ids: Sequence[int]) -> None:
    """Wake workers for ``job_ids`` after a commit; a failure is logged, never raised.

    Sync, for ``BackgroundTasks``: it runs in the threadpool after the response is sent, so a
    slow broker never delays the client's 202.
    """
    ids = list(job_ids)
    if notifier is None or not ids:
        return
    try:
        notifier.notify(ids)
    except Exception:
        logger.exception("could not notify workers of jobs %s; they will find them on their next poll", ids)
