"""Outbound Jira Cloud client: one ``route`` action -> REST v3 calls, idempotent under retries.

Mapping (policy destination keys -> ``PUT /rest/api/3/issue/{key}``, see ``convert.plan``):

==================  ===========================================================
``queue``           ``fields[options.custom_field]``: ``{"value": v}`` (select),
                    ``{"id": v}`` (``custom_field_kind: option_id``) or ``v`` (text)
``components``      ``fields.components = [{"name": n}, ...]`` (comma-separated names; replaces)
``labels``          ``update.labels = [{"add": l}, ...]`` (comma-separated; keeps other labels)
``priority``        ``fields.priority = {"name": v}``
``assignee``        ``fields.assignee = {"accountId": v}``
``issue_type``      ``fields.issuetype = {"name": v}``
any field id        ``fields[id] = v`` as written (``customfield_10060``, ``duedate``, ...)
``group``           refused: Jira issues have none
==================  ===========================================================

then ``POST /rest/api/3/issue/{key}/comment`` with an ADF body: a headline, ``context.note``
(or the decisions), ``context.draft`` if any, and the marker ``[deskpilot:<idempotency key>]``;
visibility from ``options.comment_visibility`` (JSM ``sd.public.comment`` internal property by
default, or a role/group restriction).

Idempotency: setting fields is naturally idempotent; before commenting, the client pages
through ``GET /rest/api/3/issue/{key}/comment`` (newest first) and skips the POST when a comment
already holds the marker. Auth: Basic ``email:api_token`` (API token) or ``bearer:<token>``
(OAuth 2.0, with ``url`` ``https://api.atlassian.com/ex/jira/<cloud id>``). One attempt per
call: timeouts, connection errors, 408/425/429 and 5xx are transient (``retry_after`` from
``Retry-After`` or ``X-RateLimit-Reset``); other 4xx are permanent, with Jira's own message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.generic.client import TRANSIENT_STATUSES, retry_after_seconds
from deskpilot.connectors.jira import adf, convert
from deskpilot.connectors.jira.options import JiraOptions
from deskpilot.errors import ConfigError
from deskpilot.types import Action

MAX_ERROR_CHARS = 300
PAGE_SIZE = 100
MAX_COMMENT_PAGES = 50  # 5,000 comments searched for the marker; beyond that a duplicate is possible
_HINTS = {
    400: "a field is not on the issue's edit screen, or a value (name, option, account) is unknown",
    401: "check the Jira credentials (email:api_token) in DESKPILOT_CONNECTOR_SECRETS",
    403: "the account needs Browse projects, Edit issues, Assign issues and Add comments",
    404: "the issue was deleted or moved, or the account cannot see it",
}


def authorization(token: str | None) -> str:
    """The ``Authorization`` header for ``email:api_token`` or ``bearer:<token>``; never echoes it."""
    if not token:
        raise ConfigError(
            "the Jira connector has no credentials",
            hint='set DESKPILOT_CONNECTOR_SECRETS={"<credentials name>": "email@example.com:<api token>"}',
        )
    scheme, sep, rest = token.partition(":")
    if scheme.lower() == "bearer" and sep and rest:
        return f"Bearer {rest}"
    if not sep or not scheme or not rest or "@" not in scheme:
        raise ConfigError(
            "the Jira credentials are not in the form email:api_token (or bearer:<token>)",
            hint="create an API token at https://id.atlassian.com/manage-profile/security/api-tokens",
        )
    return "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")


def error_text(response: httpx.Response) -> str:
    """Jira's ``errorMessages`` and ``errors`` (``field: message``), or the body's text."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and ("errorMessages" in data or "errors" in data):
        parts = [str(m) for m in data.get("errorMessages") or [] if m]
        errors = data.get("errors")
        if isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in errors.items()]
        text = "; ".join(parts) or text
    elif isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def retry_after(response: httpx.Response, *, now: float | None = None) -> float | None:
    """``Retry-After`` (seconds or HTTP date), else Jira's ``X-RateLimit-Reset`` (ISO 8601)."""
    found = retry_after_seconds(response.headers.get("Retry-After"), now=now)
    if found is not None:
        return found
    reset = response.headers.get("X-RateLimit-Reset")
    if not reset:
        return None
    try:
        when = datetime.fromisoformat(reset.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (datetime.now().timestamp() if now is None else now))


class JiraClient:
    """Sync REST v3 client for one Jira site. Thread-safe (httpx.Client is); close it."""

    name = "jira"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        options: Mapping[str, str] | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"Jira URL {base_url!r} is not an http(s) URL (e.g. https://acme.atlassian.net)"
            )
        self.options = JiraOptions.from_mapping(options)
        self.base_url = base_url.rstrip("/")
        headers = {
            "Authorization": authorization(token),
            "Accept": "application/json",
            "User-Agent": "deskpilot-jira",
        }
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    # one action ------------------------------------------------------------------------------
    def act(self, action: Action) -> dict[str, Any]:
        calls = convert.plan(action, self.options)
        summary: dict[str, Any] = {"issue": convert.issue_key(action), "updated": [], "comment": None}
        for call in calls:
            if call.marker is not None:
                found = self.find_comment(call.path, call.marker)
                if found is not None:
                    summary["comment"] = {"id": found, "created": False}
                    continue
            response = self._send(call.method, call.path, json_body=call.json)
            if call.purpose == "fields":
                summary["updated"] = sorted({*call.json.get("fields", {}), *call.json.get("update", {})})
            elif call.purpose == "comment":
                answer = self._json(response)
                summary["comment"] = {"id": str(answer.get("id", "")), "created": True}
        return summary

    def find_comment(self, path: str, marker: str) -> str | None:
        """The id of the newest comment on the issue whose text holds ``marker``, if any."""
        start = 0
        for _ in range(MAX_COMMENT_PAGES):
            params = {"startAt": str(start), "maxResults": str(PAGE_SIZE), "orderBy": "-created"}
            page = self._json(self._send("GET", path, params=params))
            comments = page.get("comments")
            if not isinstance(comments, list) or not comments:
                return None
            for comment in comments:
                body = comment.get("body") if isinstance(comment, dict) else None
                text = body if isinstance(body, str) else adf.to_text(body)
                if marker in text:
                    return str(comment.get("id", ""))
            start += len(comments)
            total = page.get("total")
            if isinstance(total, int) and start >= total:
                return None
        return None

    # HTTP ------------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = self.base_url + path
        shown = f"{method} {path}"
        try:
            response = self._http.request(method, url, json=json_body, params=params)
        except httpx.TimeoutException as exc:
            message = f"Jira {shown} timed out ({type(exc).__name__})"
            raise ActionFailedError(message, transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"Jira {shown}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(
                f"Jira {shown} failed: {type(exc).__name__}: {exc}", transient=True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        raise ActionFailedError(
            f"Jira {shown} answered {status}: {error_text(response)}",
            transient=status >= 500 or status in TRANSIENT_STATUSES,
            hint=_HINTS.get(status),
            upstream_status=status,
            retry_after=retry_after(response),
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise ActionFailedError(
                f"Jira answered {response.status_code} with a body that is not JSON", transient=True
            ) from None
        return data if isinstance(data, dict) else {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JiraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
