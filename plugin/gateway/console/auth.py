"""Who is signed in, what they may do, and the CSRF check every console form passes.

A session is a random token in an HttpOnly cookie (stored hashed, see
:mod:`deskpilot.store.users`). Each session's CSRF token is an HMAC of its token with the
server's secret (``DESKPILOT_SECRET_KEY``, refused when left at its default in production by
:meth:`~deskpilot.config.Settings.check_secrets`), so it needs no storage and dies with the
session. The sign-in form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from deskpilot.config import Settings
from deskpilot.errors import DeskpilotError, ForbiddenError
from deskpilot.gateway.deps import db_session, get_database
from deskpilot.store.users import ConsoleIdentity, session_identity

SESSION_COOKIE = "deskpilot_session"
LOGIN_CSRF_COOKIE = "deskpilot_login_csrf"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MANAGER_ROLES = ("lead", "admin")


class SignInRequired(DeskpilotError):  # type: ignore[misc,unused-ignore]
    """No live session: pages send the browser to the sign-in form."""

    code = "sign_in_required"
    status = 401


class CsrfError(ForbiddenError):  # type: ignore[misc,unused-ignore]
    code = "csrf_failed"


def secret_of(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def csrf_for(session_token: str, secret: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{session_token}".encode(), hashlib.sha256).hexdigest()


def cookie_secure(settings: Settings) -> bool:
    """Secure cookies everywhere but development and tests (plain http on loopback)."""
    return not settings.is_development


def current_identity(request: Request) -> ConsoleIdentity:
    """The signed-in person; also leaves the session's CSRF token on ``request.state``."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("sign in to use the console", hint="/console/login")
    settings: Settings = request.app.state.settings
    secret = secret_of(settings)
    with db_session(get_database(request)) as session:
        identity = session_identity(session, token, secret)
    if identity is None:
        raise SignInRequired("your session has ended; sign in again", hint="/console/login")
    request.state.console_identity = identity
    request.state.csrf_token = csrf_for(token, secret)
    return identity


IdentityDep = Annotated[ConsoleIdentity, Depends(current_identity)]


def _csrf_refused() -> CsrfError:
    return CsrfError(
        "this form's security token is missing or out of date, so nothing was changed",
        hint="reload the page and try again",
    )


async def verified_form(request: Request, identity: IdentityDep) -> FormData:
    """The POSTed form, once its CSRF token (field or X-CSRF-Token header) matches the session's."""
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    expected: str = request.state.csrf_token
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise _csrf_refused()
    return form


FormDep = Annotated[FormData, Depends(verified_form)]


def check_login_csrf(request: Request, sent: object) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise _csrf_refused()


class RequireRole:
    """Dependency: the signed-in person has one of ``roles``."""

    def __init__(self, *roles: str) -> None:
        self.roles = roles

    def __call__(self, identity: IdentityDep) -> ConsoleIdentity:
        if identity.role in self.roles:
            return identity
        raise ForbiddenError(
            f"your role ({identity.role}) cannot do this; it needs {' or '.join(self.roles)}",
            hint="ask an admin of your team: `deskpilot users set-role`",
        )


ManagerDep = Annotated[ConsoleIdentity, Depends(RequireRole(*MANAGER_ROLES))]
