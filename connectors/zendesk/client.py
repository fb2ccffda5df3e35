"""Outbound Zendesk client: one routing action = read the ticket, then at most one update.

For ``Action(kind="route", external_id=<Zendesk ticket id>, fields=...)``:

1. ``GET /api/v2/tickets/{id}.json``: the ticket as it is (404: permanent, the ticket is gone).
2. ``GET /api/v2/tickets/{id}/comments.json?page[size]=100&sort=-created_at``, following
   ``links.next`` while ``meta.has_more`` (at most ``max_comment_pages`` pages): is a comment
   holding ``deskpilot:<idempotency key>`` already there?
3. ``PUT /api/v2/tickets/{id}.json`` with ``{"ticket": {...}}``: only the fields that differ
   from step 1 (``group`` -> ``group_id``, ``assignee`` -> ``assignee_id``, ``priority``,
   ``type``, ``tags`` -> ``additional_tags``, ``custom_<id>`` -> ``custom_fields``; see
   ``convert.update_fields``), plus ``comment: {"body": <note + marker>, "public": false}``
   unless step 2 found the marker, plus ``safe_update: true`` and ``updated_stamp`` (the
   ``updated_at`` read in step 1). Nothing to change and the note already there: no PUT.

Zendesk only takes an ``Idempotency-Key`` when *creating* tickets, so idempotency here is
the read-then-write above: a re-run after a crash finds its comment and equal fields, and
writes nothing. ``safe_update`` makes Zendesk answer 409 when someone changed the ticket
between our read and our write; that is transient, the job retries and reads again.

Auth, from ``DESKPILOT_CONNECTOR_SECRETS[<policy credentials>]``: ``agent@example.com/token:<api
token>`` (HTTP Basic, Zendesk's API-token form) or ``bearer:<OAuth access token>``.

One attempt per call; the job queue retries with backoff the errors marked transient:
timeouts, connection errors, 408, 409, 425, 429 and 5xx (``retry_after`` from ``Retry-After``,
seconds or an HTTP date). 401/403, 404, 422 (Zendesk's ``RecordInvalid`` details, e.g. an
unknown group or a closed ticket) and other 4xx are permanent. Messages carry Zendesk's own
error text, truncated, never the credentials.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.generic.client import retry_after_seconds
from deskpilot.connectors.zendesk import convert
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
MAX_ERROR_CHARS = 300
MAX_COMMENT_PAGES = 10
_NOT_FIELDS = ("comment", "safe_update", "updated_stamp")


def _user_agent() -> str:
    try:
        return f"deskpilot/{version('deskpilot')} (zendesk connector)"
    except PackageNotFoundError:
        return "deskpilot (zendesk connector)"


def authorization(token: str | None) -> str:
    """The ``Authorization`` header for a credential; ConfigError (without the secret) if malformed."""
    if not token or not token.strip():
        raise ConfigError(
            "no Zendesk credential for this system",
            hint='set DESKPILOT_CONNECTOR_SECRETS to {"<credentials>": "<email>/token:<api token>"}',
        )
    token = token.strip()
    if token.lower().startswith("bearer:"):
        bearer = token[len("bearer:") :].strip()
        if not bearer:
            raise ConfigError("the Zendesk credential 'bearer:' has no token after it")
        return f"Bearer {bearer}"
    user, sep, secret = token.partition(":")
    if not sep or not user.endswith("/token") or "@" not in user or not secret:
        raise ConfigError(
            "the Zendesk credential is not in the form <agent email>/token:<api token>",
            hint="or bearer:<OAuth access token>; see docs/connectors/zendesk.md",
        )
    return "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")


def account_url(url: str) -> str:
    """``https://acme.zendesk.com`` (a trailing ``/api/v2`` or ``/`` is dropped); ConfigError otherwise."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"Zendesk URL {url!r} is not an http(s) URL", hint="use https://<subdomain>.zendesk.com"
        )
    base = url.rstrip("/")
    return base.removesuffix("/api/v2").rstrip("/")


def error_text(response: httpx.Response) -> str:
    """Zendesk's error in one line: ``error``, ``description`` and each ``details`` description."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts: list[str] = []
        error = data.get("error")
        if isinstance(error, dict):  # {"error": {"title": ..., "message": ...}}
            parts += [str(error[k]) for k in ("title", "message") if error.get(k)]
        elif error:
            parts.append(str(error))
        if data.get("description"):
            parts.append(str(data["description"]))
        details = data.get("details")
        if isinstance(details, dict):
            for key, problems in details.items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    said = problem.get("description") if isinstance(problem, dict) else problem
                    parts.append(f"{key}: {said}")
        if parts:
            text = "; ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


class ZendeskClient:
    """Sync client for one Zendesk account. Close it (or use it as a context manager)."""

    name = "zendesk"

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        *,
        options: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        max_comment_pages: int = MAX_COMMENT_PAGES,
    ) -> None:
        self.base_url = account_url(url)
        headers = {
            "User-Agent": _user_agent(),
            "Accept": "application/json",
            "Authorization": authorization(token),
        }
        self.options = dict(options or {})
        self.max_comment_pages = max_comment_pages
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers=headers,
            transport=transport,
            follow_redirects=False,
        )

    # -- HTTP ------------------------------------------------------------------------------
    def _send(self, call: convert.PlannedCall) -> dict[str, Any]:
        """One request; the JSON answer of a 2xx, ActionFailedError otherwise."""
        shown = f"{call.method} {call.path}"
        try:
            response = self._http.request(call.method, call.path, params=call.params or None, json=call.json)
        except httpx.TimeoutException as exc:
            raise ActionFailedError(f"{shown} timed out ({type(exc).__name__})", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"{shown}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(f"{shown} failed: {type(exc).__name__}: {exc}", transient=True) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise ActionFailedError(
                    f"{shown} answered {status} without a JSON object", transient=True, upstream_status=status
                )
            return answer
        hint = None
        if status in (401, 403):
            hint = "check the Zendesk credential (agent email/token:api token) and the agent's role"
        elif status == 409:
            hint = "the ticket changed while deskpilot was updating it; the action is retried"
        raise ActionFailedError(
            f"{shown} answered {status}: {error_text(response)}",
            transient=status >= 500 or status in TRANSIENT_STATUSES,
            hint=hint,
            upstream_status=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _marker_present(self, ticket_id: str, mark: str) -> bool:
        call = convert.read_calls(ticket_id)[1]
        for _ in range(self.max_comment_pages):
            page = self._send(call)
            comments = page.get("comments")
            if isinstance(comments, list) and convert.has_marker(
                (c for c in comments if isinstance(c, dict)), mark
            ):
                return True
            meta, links = page.get("meta") or {}, page.get("links") or {}
            following = links.get("next") if isinstance(meta, dict) and meta.get("has_more") else None
            if not isinstance(following, str) or not following:
                following = page.get("next_page")  # offset pagination
            if not isinstance(following, str) or not following:
                return False
            nxt, base = httpx.URL(following), httpx.URL(self.base_url)
            if (nxt.scheme, nxt.host, nxt.port) != (base.scheme, base.host, base.port):
                return False  # never send the credential to another host
            call = convert.PlannedCall("GET", str(nxt))
        return False

    # -- the action ------------------------------------------------------------------------
    def act(self, action: Action) -> dict[str, Any]:
        try:
            ticket_id = convert.target_ticket(action)
            convert.update_fields(action.fields)  # refuse a bad policy before any request
        except InputDataError as exc:
            raise ActionFailedError(str(exc), transient=False) from None
        answer = self._send(convert.read_calls(ticket_id)[0])
        current = answer.get("ticket")
        if not isinstance(current, dict):
            raise ActionFailedError(
                f"GET {convert.ticket_path(ticket_id)} answered without a ticket object", transient=True
            )
        present = self._marker_present(ticket_id, convert.marker(action.idempotency_key))
        try:
            calls = convert.plan_update(action, current=current, marker_present=present, options=self.options)
        except InputDataError as exc:
            raise ActionFailedError(str(exc), transient=False) from None
        summary: dict[str, Any] = {"status": 200, "ticket_id": ticket_id, "updated": [], "audit_id": None}
        summary["comment"] = "present" if present else "off"
        for call in calls:
            body = (call.json or {}).get("ticket", {})
            result = self._send(call)
            summary["updated"] = sorted(k for k in body if k not in _NOT_FIELDS)
            if "comment" in body:
                summary["comment"] = "added"
            audit = result.get("audit")
            summary["audit_id"] = audit.get("id") if isinstance(audit, dict) else None
        summary["already_applied"] = not calls
        return summary

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ZendeskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
