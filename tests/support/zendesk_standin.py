"""A real HTTP server on a free loopback port playing the Zendesk Support REST API for tests.

It implements what deskpilot calls, with Zendesk's request and response shapes
(https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/ and
https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/):

    GET /api/v2/tickets/{id}.json            {"ticket": {...}}
    GET /api/v2/tickets/{id}/comments.json   cursor pagination (page[size], page[after],
                                             sort=created_at|-created_at) -> {"comments", "meta",
                                             "links"}; without page[size], offset pagination
                                             (page, per_page) -> {"comments", "next_page", ...}
    PUT /api/v2/tickets/{id}.json            {"ticket": {group_id, assignee_id, priority, type,
                                             tags, additional_tags, custom_fields, comment,
                                             safe_update, updated_stamp}} -> {"ticket", "audit"}

Errors as Zendesk sends them: 401 ``{"error": "Couldn't authenticate you"}`` (Basic
``{email}/token:{api_token}`` or Bearer OAuth token), 404 ``{"error": "RecordNotFound",
"description": "Not found"}``, 422 ``{"error": "RecordInvalid", "description": "Record
validation errors", "details": {...}}`` (unknown group or agent, bad priority/type, closed
ticket), 409 ``UpdateConflict`` when ``safe_update`` meets a newer ``updated_at``, and whatever
``fail_next`` injects (e.g. 429 with ``Retry-After``, 503). ``updated_at`` advances one second
per change on a fake clock, so ``safe_update`` conflicts are deterministic.

    with ZendeskStandin(email="bot@acme.test", api_token="t") as zd:
        zd.add_ticket(35436, subject="VPN down", description="...")
        client = ZendeskClient(zd.url, zd.credential, timeout=2)
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from support import standin
from support.standin import Answer, Request, StandinServer, basic_auth, same_secret

_TICKET = re.compile(r"/api/v2/tickets/([0-9]+)\.json")
_COMMENTS = re.compile(r"/api/v2/tickets/([0-9]+)/comments\.json")
PRIORITIES = ("urgent", "high", "normal", "low")
TYPES = ("problem", "incident", "question", "task")
UPDATABLE = frozenset(
    {
        "group_id",
        "assignee_id",
        "priority",
        "type",
        "status",
        "tags",
        "additional_tags",
        "custom_fields",
        "comment",
        "safe_update",
        "updated_stamp",
    }
)
EPOCH = datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)
UNAUTHENTICATED = {"error": "Couldn't authenticate you"}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
CONFLICT = {
    "error": "UpdateConflict",
    "description": "Safe Update prevented the update due to outdated ticket data. "
    "Please fetch the latest ticket data and try again.",
}
FAULT_BODIES: dict[int, dict[str, Any]] = {
    409: CONFLICT,
    429: {
        "error": "APIRateLimitExceeded",
        "description": "Number of allowed API requests per minute exceeded",
    },
}


@dataclass(frozen=True)
class SeenRequest(standin.SeenRequest):
    """``body`` is the parsed JSON (the text when it is not JSON, None when there was none)."""

    body: Any

    def json(self) -> Any:
        return self.body


def _invalid(field: str, description: str) -> tuple[int, dict[str, Any]]:
    return 422, {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {field: [{"description": description, "error": "InvalidValue"}]},
    }


class ZendeskStandin(StandinServer):
    """Thread-safe stand-in Zendesk account; ``bot_user_id`` is the API user's id.

    ``url`` is the account URL, as a policy writes it (``https://acme.zendesk.com``).
    """

    label = "Zendesk"
    methods = ("GET", "PUT", "POST")
    json_type = "application/json; charset=utf-8"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        email: str = "deskpilot@acme.test",
        api_token: str = "zd-api-token",
        oauth_token: str | None = None,
        bot_user_id: int = 9001,
        groups: dict[int, str] | None = None,
        agents: dict[int, str] | None = None,
        delay_s: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(delay_s=delay_s, port=port)
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.bot_user_id = bot_user_id
        self.groups = dict(groups or {360001: "Network", 360002: "Billing", 360003: "Triage"})
        self.agents = dict(agents or {bot_user_id: "deskpilot", 7001: "Ana Agent", 7002: "Bo Agent"})
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.updates: list[dict[str, Any]] = []  # PUT bodies that were applied
        self.unknown_keys: list[str] = []  # ticket properties we sent that Zendesk would ignore
        self.agent_edits: list[tuple[int, int, dict[str, Any]]] = []  # (ticket, author, changes)
        self._interference: deque[tuple[int, int, dict[str, Any]]] = deque()
        self._ticks = 0
        self._ids = 1000

    @property
    def credential(self) -> str:
        """What goes in DESKPILOT_CONNECTOR_SECRETS: ``{email}/token:{api_token}``."""
        return f"{self.email}/token:{self.api_token}"

    # test controls ---------------------------------------------------------------------
    def _tick(self) -> str:
        self._ticks += 1
        return (EPOCH + timedelta(seconds=self._ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_ticket(
        self,
        ticket_id: int,
        *,
        subject: str,
        description: str,
        requester_id: int = 5001,
        group_id: int | None = None,
        assignee_id: int | None = None,
        priority: str | None = None,
        status: str = "new",
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            stamp = self._tick()
            ticket = {
                "id": ticket_id,
                "url": f"{self.url}/api/v2/tickets/{ticket_id}.json",
                "subject": subject,
                "raw_subject": subject,
                "description": description,
                "requester_id": requester_id,
                "submitter_id": requester_id,
                "assignee_id": assignee_id,
                "group_id": group_id,
                "priority": priority,
                "status": status,
                "type": None,
                "tags": sorted(tags or []),
                "custom_fields": [],
                "created_at": stamp,
                "updated_at": stamp,
            }
            self.tickets[ticket_id] = ticket
            self.comments[ticket_id] = []
            self._comment(ticket_id, requester_id, description, public=True, when=stamp)
            return dict(ticket)

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self.tickets.get(ticket_id)
            return json.loads(json.dumps(found)) if found is not None else None

    def comments_of(self, ticket_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.comments.get(ticket_id, [])]

    def agent_update(self, ticket_id: int, author_id: int, **changes: Any) -> dict[str, Any]:
        """A person changes the ticket in the agent workspace (bumps ``updated_at``)."""
        with self._lock:
            ticket = self.tickets[ticket_id]
            self.agent_edits.append((ticket_id, author_id, dict(changes)))
            ticket.update(changes)
            ticket["updated_at"] = self._tick()
            return dict(ticket)

    def change_before_next_put(self, ticket_id: int, author_id: int, **changes: Any) -> None:
        """An agent edits the ticket just before the next PUT lands (between our read and write)."""
        with self._lock:
            self._interference.append((ticket_id, author_id, changes))

    # request handling (handler threads) -------------------------------------------------
    def _authorised(self, given: str) -> bool:
        ok = same_secret(given, basic_auth(self.credential))
        if self.oauth_token is not None:
            ok |= same_secret(given, f"Bearer {self.oauth_token}")
        return ok

    def _comment(self, ticket_id: int, author: int, body: str, *, public: bool, when: str) -> dict[str, Any]:
        comment = {
            "id": self._next_id(),
            "type": "Comment",
            "author_id": author,
            "body": body,
            "html_body": f'<div class="zd-comment"><p>{body}</p></div>',
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": self._next_id(),
            "via": {"channel": "api"},
            "created_at": when,
        }
        self.comments[ticket_id].append(comment)
        return comment

    def _get_ticket(self, ticket_id: int) -> tuple[int, dict[str, Any]]:
        found = self.ticket(ticket_id)
        return (200, {"ticket": found}) if found is not None else (404, NOT_FOUND)

    def _list_comments(self, ticket_id: int, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if ticket_id not in self.tickets:
                return 404, NOT_FOUND
            rows = [dict(c) for c in self.comments[ticket_id]]
        path = f"{self.url}/api/v2/tickets/{ticket_id}/comments.json"
        if "page[size]" in query:
            size = max(1, min(100, int(query["page[size]"])))
            sort = query.get("sort", "created_at")
            if sort.lstrip("-") != "created_at":
                return 400, {
                    "error": "InvalidPaginationParameter",
                    "description": f"sort {sort!r} not allowed",
                }
            if sort.startswith("-"):
                rows.reverse()
            start = int(base64.b64decode(query["page[after]"]).decode()) if "page[after]" in query else 0
            page = rows[start : start + size]
            has_more = start + size < len(rows)
            after = base64.b64encode(str(start + size).encode()).decode() if has_more else None
            following = {"page[size]": str(size), "sort": sort, "page[after]": after or ""}
            return 200, {
                "comments": page,
                "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": None},
                "links": {"next": f"{path}?{urlencode(following)}" if has_more else None, "prev": None},
            }
        per_page = max(1, min(100, int(query.get("per_page", "100"))))
        number = max(1, int(query.get("page", "1")))
        page = rows[(number - 1) * per_page : number * per_page]
        more = number * per_page < len(rows)
        return 200, {
            "comments": page,
            "next_page": f"{path}?page={number + 1}&per_page={per_page}" if more else None,
            "previous_page": None,
            "count": len(rows),
        }

    def _update(self, ticket_id: int, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            return 400, {"error": "InvalidParameter", "description": 'body must be {"ticket": {...}}'}
        changes: dict[str, Any] = body["ticket"]
        with self._lock:
            while self._interference:
                other, author, edit = self._interference.popleft()
                self.agent_update(other, author, **edit)
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                return 404, NOT_FOUND
            self.unknown_keys += [key for key in changes if key not in UPDATABLE]
            if ticket["status"] == "closed":
                return _invalid("status", "Status: closed prevents ticket update")
            if changes.get("safe_update") and changes.get("updated_stamp") != ticket["updated_at"]:
                return 409, CONFLICT
            problem = self._validate(changes)
            if problem is not None:
                return problem
            events: list[dict[str, Any]] = []
            for key in ("group_id", "assignee_id", "priority", "type", "status"):
                if key in changes and changes[key] != ticket[key]:
                    events.append(
                        {
                            "type": "Change",
                            "field_name": key,
                            "value": changes[key],
                            "previous_value": ticket[key],
                        }
                    )
                    ticket[key] = changes[key]
            tags = set(changes["tags"]) if "tags" in changes else set(ticket["tags"])
            tags |= set(changes.get("additional_tags", []))
            if sorted(tags) != ticket["tags"]:
                events.append(
                    {
                        "type": "Change",
                        "field_name": "tags",
                        "value": sorted(tags),
                        "previous_value": ticket["tags"],
                    }
                )
                ticket["tags"] = sorted(tags)
            if "custom_fields" in changes:
                values = {f["id"]: f["value"] for f in ticket["custom_fields"]}
                values.update({f["id"]: f["value"] for f in changes["custom_fields"]})
                ticket["custom_fields"] = [{"id": k, "value": v} for k, v in sorted(values.items())]
            stamp = self._tick()
            comment = changes.get("comment")
            if isinstance(comment, dict):
                added = self._comment(
                    ticket_id,
                    self.bot_user_id,
                    str(comment.get("body", "")),
                    public=bool(comment.get("public", True)),
                    when=stamp,
                )
                events.append(
                    {
                        "type": "Comment",
                        "id": added["id"],
                        "body": added["body"],
                        "public": added["public"],
                        "author_id": self.bot_user_id,
                    }
                )
            ticket["updated_at"] = stamp
            self.updates.append(json.loads(json.dumps(changes)))
            audit = {
                "id": self._next_id(),
                "ticket_id": ticket_id,
                "created_at": stamp,
                "author_id": self.bot_user_id,
                "events": events,
            }
            return 200, {"ticket": json.loads(json.dumps(ticket)), "audit": audit}

    def _seen(self, request: Request, status: int, headers: Mapping[str, str]) -> SeenRequest:
        r = request
        return SeenRequest(r.method, r.path, r.query, r.headers, _parsed(r), status)

    def _answer(self, request: Request) -> Answer:
        fault = self._take_fault(request.method)
        if fault is not None:
            answer = FAULT_BODIES.get(
                fault.status, {"error": "InjectedFailure", "description": str(fault.status)}
            )
            return fault.status, answer, fault.retry_headers()
        if not self._authorised(request.headers.get("authorization", "")):
            return 401, UNAUTHENTICATED, {"WWW-Authenticate": 'Basic realm="Web Password"'}
        method, path = request.method, request.path
        ticket, comments = _TICKET.fullmatch(path), _COMMENTS.fullmatch(path)
        if method == "GET" and ticket:
            return (*self._get_ticket(int(ticket.group(1))), {})
        if method == "GET" and comments:
            return (*self._list_comments(int(comments.group(1)), request.query), {})
        if method == "PUT" and ticket:
            return (*self._update(int(ticket.group(1)), _parsed(request)), {})
        return 404, {"error": "InvalidEndpoint", "description": "Not found"}, {}

    def _validate(self, changes: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if "group_id" in changes and changes["group_id"] not in self.groups:
            return _invalid("group_id", "Group: is invalid")
        if "assignee_id" in changes and changes["assignee_id"] not in self.agents:
            return _invalid("assignee_id", "Assignee: is not an agent")
        if "priority" in changes and changes["priority"] not in PRIORITIES:
            return _invalid("priority", f"Priority: {changes['priority']!r} is not a valid priority")
        if "type" in changes and changes["type"] not in TYPES:
            return _invalid("type", f"Type: {changes['type']!r} is not a valid type")
        if changes.get("safe_update") and not changes.get("updated_stamp"):
            return _invalid("updated_stamp", "Updated stamp: is required for safe updates")
        comment = changes.get("comment")
        if comment is not None and (
            not isinstance(comment, dict) or not str(comment.get("body", "")).strip()
        ):
            return _invalid("comment", "Comment: body can't be blank")
        return None


def _parsed(request: Request) -> Any:
    """The body as JSON, its text when it is not JSON, None when there is none."""
    try:
        return json.loads(request.body) if request.body else None
    except ValueError:
        return request.body.decode("utf-8", "replace")
