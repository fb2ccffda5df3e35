"""Jinja2 pages with the console's filters and the security headers every page carries."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup
from starlette.responses import Response

from deskpilot.gateway.console import svg
from deskpilot.redaction import preview

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

# no inline script or style anywhere: the pages work under a strict policy
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _pct(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _bar(value: float | None, threshold: float | None = None, abstained: bool = False) -> Markup:
    return svg.confidence_bar(value, threshold, abstained)


@pass_context
def _excerpt(context: Any, text: str | None, limit: int = 600) -> str:
    """A list's or queue's excerpt of a ticket: secrets masked, PII redacted with redact_pii."""
    settings = context["request"].app.state.settings
    return preview(text or "", settings, limit=limit)


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters.update(pct=_pct, num=_num, when=_when, excerpt=_excerpt)
templates.env.globals.update(bar=_bar)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A page, with the signed-in person (if any) and the session's CSRF token in its context."""
    full = {
        "identity": getattr(request.state, "console_identity", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "path": request.url.path,
        **context,
    }
    response = templates.TemplateResponse(request, name, full, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
