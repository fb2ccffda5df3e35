"""Process logging: text for a terminal, one JSON object per line for log shippers.

Every record passes :class:`RedactingFilter` on the way out, so secrets (and, with
``redact_pii``, personal data) never reach a log line, whoever logged it: our code, uvicorn,
Celery, SQLAlchemy, or a traceback whose exception message quoted a credential.

The request id and tenant travel in a context variable set by the gateway's middleware
(:func:`bind_request`): worker threads started by ``run_in_threadpool`` copy the context,
and the :class:`RequestContext` they copy is the same object, so a tenant learnt while
authenticating in a thread is seen by the access-log line written afterwards.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from deskpilot.redaction import register_settings, scrub

if TYPE_CHECKING:
    from deskpilot.config import Settings

ACCESS_LOGGER = "deskpilot.access"
_HANDLER_MARK = "_deskpilot_handler"
# what a LogRecord carries by itself; anything else came in ``extra=`` and goes into the JSON
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
_DROPPED = frozenset({"color_message"})  # uvicorn's ANSI-coloured copy of the message


@dataclass(slots=True)
class RequestContext:
    request_id: str | None = None
    tenant: str | None = None
    job_id: int | None = None


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "deskpilot_log_context", default=None
)


def current() -> RequestContext | None:
    return _context.get()


def bind_request(request_id: str) -> contextvars.Token[RequestContext | None]:
    """Start a request's log context; hand the token back to :func:`unbind`."""
    return _context.set(RequestContext(request_id=request_id))


def unbind(token: contextvars.Token[RequestContext | None]) -> None:
    _context.reset(token)


def bind_tenant(tenant: str) -> None:
    """Name the tenant of the current request or job (visible to the whole request)."""
    ctx = _context.get()
    if ctx is not None:
        ctx.tenant = tenant


@contextmanager
def job_context(job_id: int, tenant: str | None = None) -> Iterator[RequestContext]:
    """A job's log context in a worker thread: its lines carry ``job_id`` (and the tenant)."""
    ctx = RequestContext(tenant=tenant, job_id=job_id)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


class RedactingFilter(logging.Filter):
    """Render the message and traceback once, scrubbed; the formatters print what is left."""

    def __init__(self, *, pii: bool = False) -> None:
        super().__init__()
        self.pii = pii

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_deskpilot_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = scrub(message, pii=self.pii), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, pii=self.pii)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, pii=self.pii)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, scrub(value, pii=self.pii))
        record._deskpilot_scrubbed = True
        return True


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    ctx = _context.get()
    fields: dict[str, Any] = {}
    if ctx is not None:
        for key in ("request_id", "tenant", "job_id"):
            value = getattr(ctx, key)
            if value is not None:
                fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, tenant, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context_fields(record))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _DROPPED and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
            if record.exc_info and record.exc_info[0] is not None:
                entry["exc_type"] = record.exc_info[0].__name__
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL time logger: message [request_id=...]`` for a person at a terminal.

    The level comes first, as in uvicorn's own format, so ``grep ^ERROR`` still finds errors.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)-8s %(asctime)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _context_fields(record)
        if not fields:
            return line
        tags = " ".join(f"{key}={value}" for key, value in fields.items())
        head, _, rest = line.partition("\n")
        return f"{head} [{tags}]" + (f"\n{rest}" if rest else "")


_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu")


@contextmanager
def logging_configured(
    settings: Settings,
    *,
    json_format: bool | None = None,
    level: str | None = None,
    stream: IO[str] | None = None,
) -> Iterator[logging.Handler]:
    """:func:`configure_logging` for the life of a command; the previous setup comes back after."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    libraries = {name: logging.getLogger(name) for name in _LIBRARY_LOGGERS}
    saved = {name: (list(lg.handlers), lg.propagate, lg.disabled, lg.level) for name, lg in libraries.items()}
    handler = configure_logging(settings, json_format=json_format, level=level, stream=stream)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        root.handlers[:] = [h for h in saved_root[0] if h is not handler]
        root.setLevel(saved_root[1])
        for name, (handlers, propagate, disabled, lvl) in saved.items():
            library = logging.getLogger(name)
            library.handlers[:] = handlers
            library.propagate, library.disabled = propagate, disabled
            library.setLevel(lvl)


def configure_logging(
    settings: Settings,
    *,
    json_format: bool | None = None,
    level: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the one root handler (replacing one installed before) and route library loggers to it.

    uvicorn's own access log is switched off: the gateway writes one access line per request
    (logger ``deskpilot.access``) with the route, status, duration and request id.
    """
    register_settings(settings)
    use_json = settings.log_format == "json" if json_format is None else json_format
    # bound now, not looked up per line: Celery swaps sys.stderr for a proxy that logs (a loop)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(RedactingFilter(pii=settings.redact_pii))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel((level or settings.log_level).upper())
    for name in ("uvicorn", "uvicorn.error", "celery", "kombu"):
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    for noisy in ("httpx", "httpcore", "urllib3", "multipart", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
