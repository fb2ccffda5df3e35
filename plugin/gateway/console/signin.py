"""Sign in and sign out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from deskpilot.config import Settings
from deskpilot.gateway.console.auth import (
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    FormDep,
    SignInRequired,
    check_login_csrf,
    cookie_secure,
    current_identity,
    secret_of,
)
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, SettingsDep, db_session
from deskpilot.gateway.ratelimit import client_address, guard_client, limiter_of
from deskpilot.store import Database
from deskpilot.store.users import SESSION_TTL, authenticate_user, close_session, open_session

router = APIRouter(prefix="/console", include_in_schema=False)

FAILED = "wrong team, email or password"


def safe_next(target: str | None) -> str:
    """Only a console path of this site: never an open redirect to somewhere else."""
    if not target or not target.startswith("/console") or target.startswith("//") or "\\" in target:
        return "/console"
    if target.startswith(("/console/login", "/console/logout")):
        return "/console"
    return target


def _form(
    request: Request, settings: Settings, *, next_url: str, status: int = 200, **extra: object
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": next_url, "default_tenant": settings.default_tenant, **extra},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(settings),
    )
    return response


@router.get("/login")
def login_page(
    request: Request, settings: SettingsDep, next: Annotated[str | None, Query()] = None
) -> Response:
    try:
        current_identity(request)
    except SignInRequired:
        return _form(request, settings, next_url=safe_next(next))
    return RedirectResponse(safe_next(next), status_code=303)


def _sign_in(database: Database, secret: str, tenant: str, email: str, password: str) -> str | None:
    with db_session(database) as session:
        user = authenticate_user(session, tenant.strip().lower(), email, password)
        return open_session(session, user, secret) if user is not None else None


@router.post("/login")
async def login(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    tenant: Annotated[str, Form(max_length=63)],
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/console",
) -> Response:
    check_login_csrf(request, csrf_token)
    await guard_client(request)  # an address that keeps guessing waits (DESKPILOT_RATE_LIMIT_AUTH_FAILURES)
    token = await run_in_threadpool(_sign_in, database, secret_of(settings), tenant, email, password)
    if token is None:
        limiter = limiter_of(request)
        if limiter is not None:
            await limiter.note_auth_failure(client_address(request))
        return _form(
            request, settings, next_url=safe_next(next), status=401, error=FAILED, tenant=tenant, email=email
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(settings),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


def _sign_out(database: Database, secret: str, token: str) -> None:
    with db_session(database) as session:
        close_session(session, token, secret)


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep, database: DatabaseDep, form: FormDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(_sign_out, database, secret_of(settings), token)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response
