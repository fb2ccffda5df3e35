"""A real HTTP server on a free loopback port that plays Slack's Web API and response_urls.

Not a mock of our client: the real ``slack_sdk.WebClient`` (``base_url=standin.url``) and
``WebhookClient`` talk to it over sockets. Shapes follow Slack's reference
(https://docs.slack.dev/reference/methods/...):

    POST /api/auth.test             -> {"ok": true, "user_id", "team_id", "bot_id", ...}
    POST /api/chat.postMessage      channel, text|blocks, thread_ts?, metadata?
                                    -> {"ok": true, "channel", "ts", "message"}
    POST /api/chat.update           channel, ts, text|blocks, metadata?
                                    -> {"ok": true, "channel", "ts", "text", "message"}
    POST /api/conversations.replies channel, ts, cursor?, limit?, include_all_metadata?
                                    -> {"ok": true, "messages": [parent, replies...],
                                        "has_more", "response_metadata": {"next_cursor"}}
    POST /api/<anything else>       HTTP 404 {"ok": false, "error": "unknown_method"}
    POST /hooks/<id>                a slash command's response_url: "ok", or 404 "expired_url"/"used_url"

Arguments may come as a query string, a form body or (write methods) a JSON body, as with
Slack. Like Slack, errors are HTTP 200 with ``{"ok": false, "error": ...}``: ``not_authed``
(no token), ``invalid_auth`` (wrong token), ``channel_not_found``, ``thread_not_found``,
``message_not_found``, ``cant_update_message``, ``no_text``, ``invalid_blocks``,
``invalid_metadata_format``; rate limits are HTTP 429 ``ratelimited`` with ``Retry-After``.
``fail_next`` injects those and 5xx answers (with a non-JSON body, as Slack's edge sends).

    with SlackStandin(token="xoxb-t") as slack:
        ts = slack.post_user_message("C0HELP", "VPN down")
        ...
        assert [m["text"] for m in slack.replies("C0HELP", ts)] == [...]
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from support.standin import Fault, Reply, Request, StandinServer, same_secret

DEFAULT_TOKEN = "xoxb-1111-2222-standin"
BOT_USER_ID = "U0DESKBOT"
BOT_ID = "B0DESKBOT"
TEAM_ID = "T0ACME"
RESPONSE_URL_USES = 5  # Slack: up to five times within 30 minutes
_METHODS = ("auth.test", "chat.postMessage", "chat.update", "conversations.replies")


@dataclass(frozen=True)
class SeenCall:
    """One request as the server saw it; ``args`` merged from query, form or JSON."""

    method: str  # the Web API method ("chat.postMessage") or "hooks"
    path: str
    headers: dict[str, str]
    args: dict[str, Any]
    status: int
    error: str | None


@dataclass(frozen=True)
class _Fault(Fault):
    error: str | None = None  # the ``error`` of an HTTP 200 ``{"ok": false}``


class _ApiError(Exception):
    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error, self.status, self.extra = error, status, extra


class SlackStandin(StandinServer):
    """Thread-safe stand-in Slack workspace with one bot user; channels must be declared.

    ``url`` is the Web API base URL, as ``https://slack.com/api/`` in production.
    """

    label = "Slack"
    url_path = "/api/"
    aliases: ClassVar[Mapping[str, str]] = {"GET": "POST"}
    keep_blank_values = True
    json_type = "application/json; charset=utf-8"
    text_type = "text/html"
    requests: list[SeenCall]

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        channels: tuple[str, ...] = ("C0HELP",),
        bot_user_id: str = BOT_USER_ID,
        delay_s: float = 0.0,
    ) -> None:
        super().__init__(delay_s=delay_s)
        self.token = token
        self.bot_user_id = bot_user_id
        self.hook_posts: list[dict[str, Any]] = []
        self._messages: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in channels}
        self._hooks: dict[str, int] = {}  # id -> uses left
        self._clock = itertools.count(1)

    @property
    def calls(self) -> list[SeenCall]:
        """Every request so far, as the Web API method (or ``"hooks"``) it called."""
        return self.requests

    # test controls ---------------------------------------------------------------------
    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: float | str | None = None,
        *,
        error: str | None = None,
        method: str | None = None,
    ) -> None:
        """The next ``n`` requests (to ``method`` only, when given; ``"hooks"`` for response_urls)
        answer ``status``: 429 is ``ratelimited``, 200 needs ``error``, 5xx has an HTML body."""
        self._inject(n, _Fault(status, retry_after, method, error=error))

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._clock):06d}"

    def post_user_message(self, channel: str, text: str, user: str = "U0ANA") -> str:
        """A person's message, as if typed in Slack; returns its ts (the ticket's thread)."""
        with self._lock:
            ts = self._next_ts()
            self._messages[channel][ts] = {"type": "message", "user": user, "text": text, "ts": ts}
            return ts

    def bot_post(self, **args: Any) -> dict[str, Any]:
        """A chat.postMessage by our bot that bypasses HTTP (to set up a thread's history)."""
        return self._api("chat.postMessage", args)

    def response_url(self) -> str:
        """A fresh slash-command response_url on this server (five uses, as Slack's)."""
        with self._lock:
            hook = f"T0ACME/{next(self._clock)}/{base64.urlsafe_b64encode(b'secret-path').decode()}"
            self._hooks[hook] = RESPONSE_URL_USES
        return f"{self.base_url}/hooks/{hook}"

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The thread under ``ts``, parent excluded, oldest first (copies)."""
        with self._lock:
            found = [
                m for m in self._messages[channel].values() if m.get("thread_ts") == ts and m["ts"] != ts
            ]
            return [json.loads(json.dumps(m)) for m in sorted(found, key=lambda m: m["ts"])]

    def calls_to(self, method: str) -> list[SeenCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # request handling (called from handler threads) ------------------------------------
    def _authorise(self, headers: dict[str, str], args: dict[str, Any]) -> None:
        given = headers.get("authorization")
        if given is not None:
            token = given[len("Bearer ") :] if given.startswith("Bearer ") else ""
        else:
            token = str(args.get("token") or "")
            if not token:
                raise _ApiError("not_authed")
        if not same_secret(token, self.token):
            raise _ApiError("invalid_auth")

    def _channel(self, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        channel = args.get("channel")
        if not isinstance(channel, str) or channel not in self._messages:
            raise _ApiError("channel_not_found")
        return self._messages[channel]

    @staticmethod
    def _json_arg(args: dict[str, Any], key: str, error: str) -> Any:
        value = args.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _ApiError(error) from None
        return value

    def _content(self, args: dict[str, Any]) -> dict[str, Any]:
        """text, blocks and metadata of a chat.postMessage/chat.update, validated like Slack."""
        blocks = self._json_arg(args, "blocks", "invalid_blocks")
        if blocks is not None and (
            not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks)
        ):
            raise _ApiError("invalid_blocks")
        text = args.get("text")
        if not text and not blocks:
            raise _ApiError("no_text")
        content: dict[str, Any] = {"text": text or "", "blocks": blocks or []}
        metadata = self._json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is not None:
            if (
                not isinstance(metadata, dict)
                or not isinstance(metadata.get("event_type"), str)
                or not isinstance(metadata.get("event_payload"), dict)
            ):
                raise _ApiError("invalid_metadata_format")
            content["metadata"] = metadata
        return content

    def _respond(self, request: Request) -> Reply:
        path, headers, body = request.path, request.headers, request.body
        is_hook = path.startswith("/hooks/")
        method = "hooks" if is_hook else path.removeprefix("/api/")
        fault = self._take_fault(method)
        if fault is not None:
            return self._fault(method, request, fault)
        if is_hook:
            status, text = self._hook(path.removeprefix("/hooks/"), body)
            self._record(SeenCall(method, path, headers, {"body": body.decode()}, status, None))
            return self._reply(status, text)
        args: dict[str, Any] = {}
        try:
            args = self._args(request)
            if method not in _METHODS:
                raise _ApiError("unknown_method", 404, req_method=method)
            self._authorise(headers, args)
            answer = {"ok": True, **self._api(method, args)}
            status, error = 200, None
        except _ApiError as exc:
            answer = {"ok": False, "error": exc.error, **exc.extra}
            status, error = exc.status, exc.error
        except ValueError:
            answer, status, error = {"ok": False, "error": "invalid_json"}, 200, "invalid_json"
        args.pop("token", None)
        self._record(SeenCall(method, path, headers, args, status, error))
        return self._reply(status, answer)

    def _fault(self, method: str, request: Request, fault: Fault) -> Reply:
        error = fault.error if isinstance(fault, _Fault) else None
        error = error or ("ratelimited" if fault.status == 429 else None)
        self._record(
            SeenCall(method, request.path, request.headers, {}, fault.status, error or f"HTTP {fault.status}")
        )
        if error is not None:
            answer: Any = {"ok": False, "error": error}
        else:  # Slack's edge answers 5xx with an HTML page
            answer = "<html><body>upstream unavailable</body></html>"
        return self._reply(fault.status, answer, fault.retry_headers())

    @staticmethod
    def _args(request: Request) -> dict[str, Any]:
        """The arguments from the query string and a form or (write methods) JSON body."""
        args: dict[str, Any] = dict(request.query)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json" and request.body:
            data = json.loads(request.body)
            if not isinstance(data, dict):
                raise _ApiError("invalid_json")
            data.pop("token", None)  # Slack: JSON bodies must authenticate with the header
            args.update(data)
        elif request.body:
            args.update(parse_qsl(request.body.decode(), keep_blank_values=True))
        return args

    def _api(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if method == "auth.test":
                return {
                    "url": "https://acme.slack.com/",
                    "team": "Acme",
                    "user": "deskpilot",
                    "team_id": TEAM_ID,
                    "user_id": self.bot_user_id,
                    "bot_id": BOT_ID,
                }
            if method == "chat.postMessage":
                return self._post(args)
            if method == "chat.update":
                return self._update(args)
            return self._replies(args)

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self._channel(args)
        content = self._content(args)
        thread_ts = args.get("thread_ts")
        if thread_ts is not None and thread_ts not in messages:
            raise _ApiError("invalid_thread_ts")
        ts = self._next_ts()
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "app_id": "A0DESK",
            "ts": ts,
        }
        message |= content
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            messages[thread_ts]["thread_ts"] = thread_ts
            messages[thread_ts]["reply_count"] = messages[thread_ts].get("reply_count", 0) + 1
        messages[ts] = message
        return {"channel": args["channel"], "ts": ts, "message": dict(message)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self._channel(args)
        found = messages.get(str(args.get("ts")))
        if found is None:
            raise _ApiError("message_not_found")
        if found.get("user") != self.bot_user_id:
            raise _ApiError("cant_update_message")
        found.update(self._content(args))
        found["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"channel": args["channel"], "ts": found["ts"], "text": found["text"], "message": dict(found)}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self._channel(args)
        parent = messages.get(str(args.get("ts")))
        if parent is None:
            raise _ApiError("thread_not_found")
        metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = max(1, min(int(args.get("limit") or 1000), 1000))
        replies = self.replies(args["channel"], parent["ts"])
        cursor = args.get("cursor")
        start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
        page = replies[start : start + limit]
        more = start + limit < len(replies)
        shown = [dict(parent), *page]
        if not metadata:
            shown = [{k: v for k, v in m.items() if k != "metadata"} for m in shown]
        next_cursor = base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""
        return {"messages": shown, "has_more": more, "response_metadata": {"next_cursor": next_cursor}}

    def _hook(self, hook: str, body: bytes) -> tuple[int, str]:
        with self._lock:
            uses = self._hooks.get(hook)
            if uses is None:
                return 404, "expired_url"
            if uses <= 0:
                return 404, "used_url"
            try:
                message = json.loads(body)
            except ValueError:
                return 400, "invalid_payload"
            if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
                return 400, "no_text"
            self._hooks[hook] = uses - 1
            self.hook_posts.append(message)
            return 200, "ok"
