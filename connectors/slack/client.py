"""Outbound Slack client: the decision as a threaded Block Kit reply, through ``slack_sdk``.

Mapping of one ``route`` action (policy fields -> Slack Web API, https://docs.slack.dev/reference/methods/):

1. ``conversations.replies`` (channel, ts = the ticket's message, ``include_all_metadata``,
   following ``next_cursor``): is there already a message of ours whose metadata
   (``event_type`` ``deskpilot_decision``) or ``[deskpilot:<key>]`` marker carries this
   action's idempotency key?
2. no: ``chat.postMessage`` (channel, ``thread_ts`` = the ticket's ts, text, blocks, metadata);
   yes: ``chat.update`` (channel, ts of that message, text, blocks, metadata). So a retry
   after a crash between posting and recording success edits the same message.

The fields (``queue``, ``group``, ``assignee``, destination ``fields``) are shown in the
message (``message.py``); Slack has no routing fields of its own. Slash-command answers go
to the command's ``response_url`` with ``slack_sdk.WebhookClient`` (``reply``).

Token: the bot token ``xoxb-...`` (scopes ``chat:write``, ``channels:history``,
``groups:history`` for private channels), as ``Authorization: Bearer``. One attempt per call:
slack_sdk's own retry handlers are switched off so the job queue sees every 429 and 5xx.
Errors: HTTP 429 (``ratelimited``, with ``Retry-After``), HTTP 5xx, 408/425, the errors
``internal_error``/``fatal_error``/``service_unavailable``/``request_timeout``, timeouts and
connection errors are transient; everything else Slack answers with ``ok: false`` (e.g.
``invalid_auth``, ``not_authed``, ``channel_not_found``, ``not_in_channel``,
``missing_scope``) is permanent. Messages carry Slack's error code, never the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any, cast
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.slack import message as msg
from deskpilot.connectors.slack.options import SlackOptions
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action

DEFAULT_BASE_URL = "https://slack.com/api/"
TRANSIENT_STATUSES = frozenset({408, 425, 429})
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
)
MAX_PAGES = 20
MAX_ERROR_CHARS = 300

# slack_sdk logs request bodies at DEBUG; keep ours at INFO so a debug root logger shows neither
# message texts nor response_url capability links. It never logs the token (it redacts it).
_sdk_logger = logging.getLogger("deskpilot.connectors.slack.sdk")
_sdk_logger.setLevel(logging.INFO)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list | tuple) and value else value)
    return None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _api_failure(what: str, response: SlackResponse) -> ActionFailedError:
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or "ok=false")
    details = f" (HTTP {status})" if status != 200 else ""
    if error == "missing_scope":
        details = f" (needed {data.get('needed')!r}, token has {data.get('provided')!r})"
    messages = (data.get("response_metadata") or {}).get("messages")
    if isinstance(messages, list) and messages:
        details += " " + "; ".join(str(m) for m in messages)
    transient = status >= 500 or status in TRANSIENT_STATUSES or error in TRANSIENT_ERRORS
    hint = None
    if error in AUTH_ERRORS:
        hint = "check the bot token (xoxb-...) named by the policy's credentials"
    elif error in ("channel_not_found", "not_in_channel"):
        hint = "invite the app to the channel (/invite @app) and check the channel id"
    return ActionFailedError(
        _cut(f"Slack {what} failed: {error}{details}"),
        transient=transient,
        hint=hint,
        upstream_status=status,
        retry_after=retry_after_seconds(_header(response.headers, "Retry-After")),
    )


def _transport_failure(what: str, exc: BaseException) -> ActionFailedError:
    """Timeouts and connection errors: transient. The reason only, never the request."""
    reason = exc.reason if isinstance(exc, URLError) else exc
    return ActionFailedError(_cut(f"Slack {what} failed: {type(reason).__name__}: {reason}"), transient=True)


class SlackClient:
    """Posts decisions into tickets' threads; answers slash commands. Thread-safe; close() is a no-op."""

    name = "slack"

    def __init__(
        self,
        base_url: str | None,
        token: str | None,
        timeout: float,
        options: Mapping[str, str] | None = None,
    ) -> None:
        url = base_url or DEFAULT_BASE_URL
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"Slack API URL {url!r} is not an http(s) URL", hint=f"use {DEFAULT_BASE_URL}")
        if not token or not token.strip():
            raise ConfigError(
                "no Slack bot token for this policy system",
                hint='set DESKPILOT_CONNECTOR_SECRETS=\'{"<credentials>": "xoxb-..."}\'',
            )
        self.options = SlackOptions.from_mapping(options)
        self.timeout = timeout
        # slack_sdk annotates timeout as int; urllib takes seconds as a float
        self._web = WebClient(
            token=token.strip(),
            base_url=url,
            timeout=cast(int, timeout),
            retry_handlers=[],
            logger=_sdk_logger,
        )

    def _call(self, call: msg.PlannedCall) -> SlackResponse:
        methods = {
            "conversations.replies": self._web.conversations_replies,
            "chat.postMessage": self._web.chat_postMessage,
            "chat.update": self._web.chat_update,
        }
        try:
            return methods[call.method](**call.args)
        except SlackApiError as exc:
            raise _api_failure(call.method, exc.response) from None
        except (URLError, TimeoutError, ConnectionError, HTTPException) as exc:
            raise _transport_failure(call.method, exc) from None
        except SlackClientError as exc:  # e.g. an invalid URL: retrying will not help
            raise ActionFailedError(_cut(f"Slack {call.method} failed: {exc}"), transient=False) from None

    def find_posted(self, thread: msg.Thread, idempotency_key: str) -> str | None:
        """The ts of our message for this key in the thread, following the pages."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = self._call(msg.lookup_call(thread, cursor))
            found = msg.find_posted(page.get("messages") or [], idempotency_key, self.options.bot_user_id)
            if found is not None:
                return found
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                return None
        return None

    def act(self, action: Action) -> dict[str, Any]:
        try:
            thread = msg.thread_of(action)
            existing = self.find_posted(thread, action.idempotency_key)
            calls = msg.plan(action, self.options, existing)
        except InputDataError as exc:
            raise ActionFailedError(str(exc), transient=False) from None
        answer: SlackResponse | None = None
        for call in calls:
            answer = self._call(call)
        data = answer.data if answer is not None and isinstance(answer.data, dict) else {}
        return {
            "status": 200,
            "method": calls[-1].method,
            "replayed": existing is not None,
            "channel": data.get("channel", thread.channel),
            "ts": data.get("ts", existing),
            "thread_ts": thread.ts,
        }

    def reply(self, url: str, message: dict[str, Any]) -> dict[str, Any]:
        """POST ``message`` to a slash command's ``response_url`` (valid 30 min, 5 uses)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ActionFailedError("response_url is not an http(s) URL", transient=False)
        where = f"response_url on {parts.hostname}"  # the path is a capability: never shown
        hook = WebhookClient(url=url, timeout=cast(int, self.timeout), retry_handlers=[], logger=_sdk_logger)
        try:
            response = hook.send_dict(message)
        except (URLError, TimeoutError, ConnectionError, HTTPException) as exc:
            raise _transport_failure(where, exc) from None
        except SlackClientError as exc:
            raise ActionFailedError(_cut(f"Slack {where} failed: {exc}"), transient=False) from None
        status = response.status_code
        if status == 200:
            return {"status": status, "body": response.body}
        raise ActionFailedError(
            _cut(f"Slack {where} answered {status}: {response.body}"),
            transient=status >= 500 or status in TRANSIENT_STATUSES,
            upstream_status=status,
            retry_after=retry_after_seconds(_header(response.headers, "Retry-After")),
        )

    def close(self) -> None:
        """Nothing to release: slack_sdk opens one connection per request."""

    def __enter__(self) -> SlackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
