"""One JSON error shape for every failure, so clients parse errors one way.

``{"error": {"code": str, "message": str, "hint": str | null}}`` for DeskpilotErrors,
validation errors, routing errors (404/405), oversize bodies (413) and crashes (500).
A 500 never carries internals; its traceback goes to the log with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskpilot.errors import AuthError, DeskpilotError
from deskpilot.redaction import mask_secrets

logger = logging.getLogger("deskpilot.gateway")

DOCS_HINT = "see /docs for the request and response schemas"


class ServiceUnavailableError(DeskpilotError):  # type: ignore[misc,unused-ignore]
    """The models or the database are not ready yet; retrying later helps."""

    code = "not_ready"
    status = 503


class UnsupportedMediaTypeError(DeskpilotError):  # type: ignore[misc,unused-ignore]
    code = "unsupported_media_type"
    status = 415


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer (except /readyz, which reports its parts)."""

    error: ErrorDetail


def error_response(
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    # an error never carries a credential, even one quoted by an exception from a library
    masked_hint = mask_secrets(hint) if hint is not None else None
    body = {"error": {"code": code, "message": mask_secrets(message), "hint": masked_hint}}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error shape for ``statuses``."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }


_DESCRIPTIONS = {
    400: "Malformed request (for example a body that is not valid JSON)",
    401: "Missing, wrong or revoked API key",
    403: "The API key lacks the scope this endpoint needs",
    404: "No such resource (for example no adapter for the task)",
    413: "Request body larger than the configured limit",
    415: "Request body is not application/json",
    422: "The request is well-formed JSON but its fields are invalid",
    429: "Too many requests for this API key, webhook source or address; see Retry-After",
    500: "Unexpected server error; details are in the server log under the request id",
    503: "Models or database not ready yet; retry later",
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _request_id(request: Request) -> str | None:
    state = request.scope.get("state")
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


async def _note_auth_failure(request: Request) -> None:
    """Count a failed authentication against the client's address (see gateway/ratelimit.py)."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        client = request.client.host if request.client is not None else "unknown"
        await limiter.note_auth_failure(client)


async def deskpilot_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, DeskpilotError):  # pragma: no cover - registered for DeskpilotError only
        return await unhandled_error_handler(request, exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError) or exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
        await _note_auth_failure(request)
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if exc.status == 503:
        headers["Retry-After"] = "5"
    if exc.status >= 500:
        logger.error("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc)
    return error_response(exc.status, exc.code, exc.message, exc.hint, headers)


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``body.texts: Field required; body.task: ...`` without echoing the inputs."""
    parts: list[str] = []
    for err in errors[:10]:
        if isinstance(err, dict):
            parts.append(f"{_field(err.get('loc', ()))}: {_clean(str(err.get('msg', 'invalid')))}")
    if len(errors) > 10:
        parts.append(f"... and {len(errors) - 10} more")
    return "; ".join(parts) or "the request is invalid"


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # pragma: no cover
        return await unhandled_error_handler(request, exc)
    errors = exc.errors()
    for err in errors:
        if isinstance(err, dict) and err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            loc = err.get("loc", ())
            where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            detail = f"{ctx.get('error', 'JSON decode error')}{where}"
            return error_response(400, "invalid_json", "request body is not valid JSON", detail)
    return error_response(422, "validation_error", describe_validation_errors(errors), DOCS_HINT)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Routing errors (404/405) and other Starlette HTTPExceptions, in our shape."""
    if not isinstance(exc, StarletteHTTPException):  # pragma: no cover
        return await unhandled_error_handler(request, exc)
    status = exc.status_code
    headers = dict(exc.headers or {})
    code = _HTTP_CODES.get(status, "http_error")
    message, hint = str(exc.detail), None
    path = request.url.path
    if status == 404 and exc.detail == "Not Found":
        message, hint = f"no endpoint at {path}", DOCS_HINT
    elif status == 405:
        allowed = headers.get("Allow") or headers.get("allow")
        message = f"{request.method} is not allowed on {path}"
        hint = f"allowed methods: {allowed}" if allowed else DOCS_HINT
    elif status == 413:
        hint = "send fewer or shorter texts per request"
    elif status == 400 and exc.detail == "There was an error parsing the body":
        code, message, hint = "invalid_json", "request body is not valid JSON", "send UTF-8 encoded JSON"
    return error_response(status, code, message, hint, headers)


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: log the traceback, tell the client nothing internal."""
    rid = _request_id(request)
    logger.error(
        "unhandled error on %s %s (request id %s)",
        request.method,
        request.url.path,
        rid,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"request_id": rid},  # this handler runs outside the request's log context
    )
    headers = {"X-Request-ID": rid} if rid else None
    hint = f"quote request id {rid} when reporting this" if rid else None
    return error_response(500, "internal_error", "internal server error", hint, headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DeskpilotError, deskpilot_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
