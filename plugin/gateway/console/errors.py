"""Errors on console pages are pages: the same status codes as the API, in HTML.

The app's JSON handlers stay in charge of every other path (and of ``/console/api``); these
wrap them and answer only for console pages. A page that needs a session sends the
browser to the sign-in form instead of showing a 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from deskpilot.errors import DeskpilotError
from deskpilot.gateway.console.auth import SignInRequired
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.errors import describe_validation_errors

Handler = Callable[[Request, Exception], Awaitable[Response]]
AnyHandler = Callable[[Request, Any], Response | Awaitable[Response]]

TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Check the form",
    429: "Too many attempts",
    503: "Not ready",
}


def is_console_page(request: Request) -> bool:
    path = request.url.path
    return (path == "/console" or path.startswith("/console/")) and not path.startswith("/console/api/")


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)


def _page(request: Request, status: int, message: str, hint: str | None) -> Response:
    return render(
        request,
        "error.html",
        {
            "status": status,
            "title": TITLES.get(status, "Something went wrong"),
            "message": message,
            "hint": hint,
        },
        status_code=status,
    )


async def _call(original: AnyHandler, request: Request, exc: Exception) -> Response:
    answer = original(request, exc)
    return answer if isinstance(answer, Response) else await answer


def _console_aware(original: AnyHandler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if not is_console_page(request):
            return await _call(original, request, exc)
        if isinstance(exc, SignInRequired):
            if request.method == "GET":
                return login_redirect(request)
            return _page(request, 401, exc.message, "sign in again, then repeat what you did")
        if isinstance(exc, DeskpilotError) and exc.status < 500:
            page = _page(request, exc.status, exc.message, exc.hint)
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int):
                page.headers["Retry-After"] = str(retry_after)
            return page
        if isinstance(exc, RequestValidationError):
            return _page(request, 422, describe_validation_errors(exc.errors()), "check the values and retry")
        if isinstance(exc, StarletteHTTPException) and exc.status_code < 500:
            message = f"there is no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
            return _page(request, exc.status_code, message, None)
        return await _call(original, request, exc)

    return handle


def install_console_errors(app: FastAPI) -> None:
    """Wrap the handlers :func:`deskpilot.gateway.errors.install_error_handlers` installed."""
    for kind in (DeskpilotError, RequestValidationError, StarletteHTTPException):
        original = app.exception_handlers.get(kind)
        if original is None:
            raise RuntimeError("install the gateway's error handlers before the console's")
        app.add_exception_handler(kind, _console_aware(original))
