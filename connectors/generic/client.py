"""Outbound generic client: one POST per action, idempotent on ``Idempotency-Key``.

``POST {base_url}/tickets/{external_id or "deskpilot-<ticket_id>"}/actions`` with the JSON
``{"kind", "fields", "ticket_id", "external_id", "tenant"}``, headers ``Idempotency-Key``,
``Authorization: Bearer <token>`` (when set) and, when a secret is set, the inbound
protocol's ``X-Deskpilot-Timestamp``/``-Signature``/``-Delivery`` (delivery = the key) so the
receiver can check it is us. One attempt per call: the job queue retries, with backoff, the
errors marked transient (timeouts, connection errors, 408, 425, 429, 5xx), honouring
``retry_after`` from the ``Retry-After`` header.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.generic.verify import sign
from deskpilot.errors import ConfigError
from deskpilot.types import Action

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 300


def _user_agent() -> str:
    try:
        return f"deskpilot/{version('deskpilot')}"
    except PackageNotFoundError:
        return "deskpilot/unknown"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_text(response: httpx.Response) -> str:
    """The body's own error message when it has one (``error``/``message``/``detail``), else its text."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        found = data.get("error", data.get("message", data.get("detail")))
        if isinstance(found, dict):
            found = found.get("message", found)
        if found is not None:
            text = found if isinstance(found, str) else json.dumps(found)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


class GenericClient:
    """Sync client for a system that implements the generic actions endpoint. Close it."""

    name = "generic"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        secret: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"generic connector URL {base_url!r} is not an http(s) URL")
        headers = {"User-Agent": _user_agent(), "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def url_for(self, action: Action) -> str:
        ticket = action.external_id or f"deskpilot-{action.ticket_id}"
        return f"{self.base_url}/tickets/{quote(ticket, safe='')}/actions"

    def act(self, action: Action) -> dict[str, Any]:
        url = self.url_for(action)
        payload = {
            "kind": action.kind,
            "fields": action.fields,
            "ticket_id": action.ticket_id,
            "external_id": action.external_id,
            "tenant": action.tenant,
        }
        try:  # sorted keys: a retry sends the same bytes, whatever order the fields were built in
            body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise ActionFailedError(f"action fields are not JSON: {exc}", transient=False) from None
        headers = {"Content-Type": "application/json", "Idempotency-Key": action.idempotency_key}
        if self._secret:
            headers.update(sign(self._secret, body, delivery_id=action.idempotency_key))
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise ActionFailedError(f"POST {url} timed out ({type(exc).__name__})", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"POST {url}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(
                f"POST {url} failed: {type(exc).__name__}: {exc}", transient=True
            ) from None
        return self._summary(url, response)

    def _summary(self, url: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text[:MAX_ERROR_CHARS]
            return {
                "status": status,
                "replayed": response.headers.get("Idempotent-Replayed", "").lower() == "true",
                "response": answer,
            }
        transient = status >= 500 or status in TRANSIENT_STATUSES
        hint = "check the connector token" if status in (401, 403) else None
        raise ActionFailedError(
            f"POST {url} answered {status}: {_error_text(response)}",
            transient=transient,
            hint=hint,
            upstream_status=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GenericClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
