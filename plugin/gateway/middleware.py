"""Pure ASGI middleware: request ids, the access log and latency metrics, a body size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so bodies stream through untouched and the
limit also holds for chunked uploads that carry no Content-Length.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskpilot.gateway.metrics import GatewayMetrics, route_template
from deskpilot.logs import ACCESS_LOGGER, bind_request, current, unbind

REQUEST_ID_HEADER = "X-Request-ID"
access_logger = logging.getLogger(ACCESS_LOGGER)
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    """Echo a sane incoming ``X-Request-ID`` or make one; expose it as ``request.state.request_id``
    and to every log line written while the request runs (``deskpilot.logs``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        # Mutate in place: outer layers (the 500 handler) share this scope dict.
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = rid
            await send(message)

        token = bind_request(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            unbind(token)


class AccessMiddleware:
    """One access-log line and one latency observation per request, labelled by route template.

    The template is read after the app ran (the router records the matched route in the
    shared scope), so ``/v1/tickets/7`` and ``/v1/tickets/8`` are one series. A request that
    raised counts as a 500, the answer the error handler outside this layer gives.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except BaseException:
            status = 500
            raise
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(scope)
        path = str(scope.get("path", ""))
        if self.metrics is not None:
            self.metrics.observe(method, route, status, seconds)
        if access_logger.isEnabledFor(logging.INFO):
            context = current()
            addressed = scope.get("path_params", {}).get("tenant")
            if context is not None and context.tenant is None and isinstance(addressed, str):
                context.tenant = addressed  # a webhook names its tenant in the path, not by key
            duration_ms = round(seconds * 1000, 2)
            access_logger.info(
                "%s %s %d %.1f ms",
                method,
                path,
                status,
                duration_ms,
                extra={
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit; handled as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit:,} bytes")


def _too_large_body(limit: int) -> bytes:
    error = {
        "code": "payload_too_large",
        "message": f"request body is larger than the limit of {limit:,} bytes",
        "hint": "send fewer or shorter texts per request",
    }
    return json.dumps({"error": error}).encode()


class BodySizeLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413: early by Content-Length, else while streaming.

    ``larger`` gives some paths (a regex each) a limit of their own: document uploads and
    emails are megabytes where JSON requests are kilobytes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_max = max_bytes
        self.larger = [(re.compile(pattern), limit) for pattern, limit in (larger or {}).items()]

    def limit_for(self, path: str) -> int:
        return next((limit for pattern, limit in self.larger if pattern.fullmatch(path)), self.default_max)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope.get("path", ""))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            await self._reject(send, max_bytes)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLargeError(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            # Normally the exception handlers answer; this covers reads outside them.
            if started:
                raise
            await self._reject(send, max_bytes)

    async def _reject(self, send: Send, max_bytes: int) -> None:
        body = _too_large_body(max_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
