"""A real HTTP server on a free loopback port that plays an ERPNext site's REST API for tests.

Implements the calls the ERPNext connector makes, with Frappe's request and response shapes
(https://docs.frappe.io/framework/user/en/api/rest):

    GET  /api/resource/Issue/{name}                      {"data": {...}}
    PUT  /api/resource/Issue/{name}   {"issue_type": ..} {"data": {...}}   (Link values checked)
    GET  /api/resource/Comment?filters=[..]&fields=[..]  {"data": [...]}   (=, like, in filters)
    POST /api/resource/Comment        {...}              {"data": {...}}
    POST /api/method/frappe.desk.form.assign_to.add      {"message": [{"owner", "name"}]}
    GET  /api/method/frappe.auth.get_logged_user         {"message": "<user>"}

Auth is ``Authorization: token <api_key>:<api_secret>``: a wrong one is 401
``AuthenticationError``, none at all makes the request a Guest's and writes are 403
``PermissionError``. Unknown records are 404 ``DoesNotExistError``, unknown Link values 417
``LinkValidationError``; errors carry Frappe's ``exc_type``, ``exception`` and
``_server_messages``. ``fail_next`` injects 429s (plain-text "Too Many Requests" with
``Retry-After`` and ``X-RateLimit-*``, as Frappe's rate limiter), 5xx (nginx HTML for
502-504), 409 ``DuplicateEntryError`` or any status. ``duplicate_assign`` chooses how an
assignment that already exists is answered: ``"message"`` (current Frappe: 200 with a msgprint)
or ``"error"`` (older releases: 417 ``DuplicateToDoError``).

People's actions (``human_update``, ``human_assign``) change records as the desk UI would, and
``webhook_body`` renders a record as the documented Webhook JSON template would, so tests can
sign it and post it to deskpilot.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from support.standin import Answer, Fault, Request, SeenRequest, StandinServer, same_secret

ISSUE_FIELDS = (
    "name",
    "subject",
    "status",
    "priority",
    "issue_type",
    "description",
    "raised_by",
    "customer",
    "company",
    "opening_date",
    "naming_series",
    "owner",
    "creation",
    "modified",
    "modified_by",
    "docstatus",
    "idx",
    "_assign",
)
WEBHOOK_ISSUE_KEYS = (
    "doctype",
    "name",
    "subject",
    "description",
    "raised_by",
    "issue_type",
    "priority",
    "status",
    "creation",
    "modified",
    "modified_by",
    "_assign",
)
WEBHOOK_TODO_KEYS = (
    "doctype",
    "name",
    "reference_type",
    "reference_name",
    "allocated_to",
    "assigned_by",
    "assignment_rule",
    "status",
    "modified",
    "modified_by",
)
NGINX_PAGE = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr>"
    "<center>nginx</center></body></html>"
)
_ISSUE = re.compile(r"/api/resource/Issue/([^/]+)")
_REASONS = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}
_EXC = {
    401: "AuthenticationError",
    403: "PermissionError",
    404: "DoesNotExistError",
    409: "DuplicateEntryError",
    417: "ValidationError",
    500: "OperationalError",
}


def frappe_error(exc_type: str, message: str) -> dict[str, Any]:
    """Frappe's v1 error body: ``exc_type``, ``exception``, and ``_server_messages`` (JSON in JSON)."""
    shown = {"message": message, "title": "Message", "indicator": "red", "raise_exception": 1}
    return {
        "exception": f"frappe.exceptions.{exc_type}: {message}",
        "exc_type": exc_type,
        "_server_messages": json.dumps([json.dumps(shown)]),
    }


def webhook_body(doc: dict[str, Any], event: str, keys: tuple[str, ...]) -> bytes:
    """What Frappe sends for the documented template: the rendered JSON, loaded and dumped again."""
    data: dict[str, Any] = {"event": event}
    data.update({key: doc.get(key) for key in keys})
    return json.dumps(data, default=str).encode("utf-8")


class ErpnextStandin(StandinServer):
    """Thread-safe stand-in ERPNext site; a context manager.

    ``url`` is the site URL, e.g. ``http://127.0.0.1:41234`` (the API is under ``/api``).
    """

    label = "ERPNext"
    methods = ("GET", "PUT", "POST")
    json_separators = (",", ":")
    text_type = "text/html; charset=utf-8"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        api_key: str = "3f1c0a9e2b7d4c1",
        api_secret: str = "9a8b7c6d5e4f3a2",
        api_user: str = "deskpilot@example.com",
        users: tuple[str, ...] = (
            "agent@example.com",
            "bob@example.com",
            "carol@example.com",
            "triage@example.com",
        ),
        issue_types: tuple[str, ...] = ("Bug", "Billing", "Access", "Network", "Triage"),
        priorities: tuple[str, ...] = ("Low", "Medium", "High", "Urgent"),
        custom_links: Mapping[str, tuple[str, ...]] | None = None,
        duplicate_assign: str = "message",
        delay_s: float = 0.0,
    ) -> None:
        if duplicate_assign not in ("message", "error"):
            raise ValueError("duplicate_assign is 'message' (current Frappe) or 'error' (older releases)")
        super().__init__(delay_s=delay_s)
        self.api_key, self.api_secret, self.api_user = api_key, api_secret, api_user
        self.users = {api_user, "Administrator", *users}
        self.links: dict[str, set[str]] = {"issue_type": set(issue_types), "priority": set(priorities)}
        self.links.update({k: set(v) for k, v in (custom_links or {}).items()})
        self.duplicate_assign = duplicate_assign
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: list[dict[str, Any]] = []
        self.todos: list[dict[str, Any]] = []
        self._clock = datetime(2025, 3, 4, 9, 15, 2, 123456)
        self._serial = 0

    @property
    def credential(self) -> str:
        """What goes in DESKPILOT_CONNECTOR_SECRETS: ``api_key:api_secret``."""
        return f"{self.api_key}:{self.api_secret}"

    # test controls ---------------------------------------------------------------------
    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: float | str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` requests (to ``method``/``path`` if given) answer ``status``, changing nothing."""
        self._inject(n, Fault(status, retry_after, method, path))

    def _now(self) -> str:
        with self._lock:
            self._clock += timedelta(seconds=1, microseconds=1)
            return self._clock.strftime("%Y-%m-%d %H:%M:%S.%f")

    def add_issue(
        self,
        subject: str,
        description: str = "",
        *,
        raised_by: str = "ana@example.com",
        issue_type: str | None = None,
        priority: str | None = "Medium",
        **extra: Any,
    ) -> dict[str, Any]:
        """A new Issue as created from the portal or by email (``creation == modified``)."""
        with self._lock:
            self._serial += 1
            name = f"ISS-2025-{self._serial:05d}"
            now = self._now()
            doc = {
                "name": name,
                "doctype": "Issue",
                "subject": subject,
                "status": "Open",
                "priority": priority,
                "issue_type": issue_type,
                "description": description,
                "raised_by": raised_by,
                "customer": None,
                "company": "Acme Ltd",
                "opening_date": now[:10],
                "naming_series": "ISS-.YYYY.-",
                "owner": raised_by,
                "creation": now,
                "modified": now,
                "modified_by": raised_by,
                "docstatus": 0,
                "idx": 0,
                "_assign": None,
                **extra,
            }
            self.issues[name] = doc
            return dict(doc)

    def issue(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.issues.get(name)
            return dict(found) if found is not None else None

    def human_update(self, name: str, user: str, **fields: Any) -> dict[str, Any]:
        """A person edits the Issue form and saves: fields set, ``modified``/``modified_by`` stamped."""
        with self._lock:
            doc = self.issues[name]
            doc.update(fields)
            doc["modified"], doc["modified_by"] = self._now(), user
            return dict(doc)

    def human_assign(
        self, name: str, user: str, *, by: str, assignment_rule: str | None = None
    ) -> dict[str, Any]:
        """A person (or an Assignment Rule) assigns the Issue from the sidebar: a ToDo row."""
        with self._lock:
            return self._assign(name, user, by, assignment_rule)

    def _assign(self, name: str, user: str, by: str, rule: str | None = None) -> dict[str, Any]:
        now = self._now()
        todo = {
            "name": secrets.token_hex(5),
            "doctype": "ToDo",
            "status": "Open",
            "allocated_to": user,
            "assigned_by": by,
            "assignment_rule": rule,
            "reference_type": "Issue",
            "reference_name": name,
            "description": f"Assignment for Issue {name}",
            "owner": by,
            "creation": now,
            "modified": now,
            "modified_by": by,
        }
        self.todos.append(todo)
        open_users = [
            t["allocated_to"] for t in self.todos if t["reference_name"] == name and t["status"] == "Open"
        ]
        self.issues[name]["_assign"] = json.dumps(open_users)  # db_set, update_modified=False
        return dict(todo)

    def comments_on(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self.comments if c["reference_name"] == name]

    def open_assignees(self, name: str) -> list[str]:
        with self._lock:
            return [
                t["allocated_to"] for t in self.todos if t["reference_name"] == name and t["status"] == "Open"
            ]

    def webhook_body(self, name: str, event: str) -> bytes:
        """The Issue webhook delivery for ``event`` with the Issue as it is now.

        The template also renders the custom Link fields (``custom_links``), as the setup page
        tells an admin to add the field named by ``options.queue_field``.
        """
        with self._lock:
            keys = WEBHOOK_ISSUE_KEYS + tuple(k for k in self.links if k not in WEBHOOK_ISSUE_KEYS)
            return webhook_body({"doctype": "Issue", **self.issues[name]}, event, keys)

    def todo_webhook_body(self, todo: dict[str, Any], event: str = "after_insert") -> bytes:
        return webhook_body(todo, event, WEBHOOK_TODO_KEYS)

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request, in order."""
        with self._lock:
            return [(r.method, r.path) for r in self.requests]

    # request handling (handler threads) ------------------------------------------------
    def _user(self, headers: dict[str, str]) -> tuple[str | None, int]:
        """(user, 0) when authenticated; (None, 0) for a Guest; (None, 401) for wrong keys."""
        given = headers.get("authorization")
        if given is None:
            return None, 0
        if same_secret(given, f"token {self.credential}"):
            return self.api_user, 0
        return None, 401

    def _link_problem(self, data: dict[str, Any]) -> str | None:
        for fieldname, allowed in self.links.items():
            value = data.get(fieldname)
            if value not in (None, "") and value not in allowed:
                label = {"issue_type": "Issue Type", "priority": "Issue Priority"}.get(fieldname, fieldname)
                return f"Could not find {label}: {value}"
        return None

    def _answer(self, request: Request) -> Answer:
        method, path, headers, body = request.method, request.path, request.headers, request.body
        fault = self._take_fault(method, path)
        if fault is not None:
            return _fault(fault)
        user, denied = self._user(headers)
        if denied:
            return (
                401,
                {"exc_type": "AuthenticationError", "exception": "frappe.exceptions.AuthenticationError"},
                {},
            )
        data: Any = None
        if body:
            if "application/json" not in headers.get("content-type", ""):
                return (
                    417,
                    frappe_error("ValidationError", "send a JSON body with Content-Type: application/json"),
                    {},
                )
            try:
                data = json.loads(body)
            except ValueError as exc:
                return 417, frappe_error("ValidationError", f"Invalid JSON: {exc}"), {}
        return self.handle(method, path, request.query, user, data)

    def handle(self, method: str, path: str, query: dict[str, str], user: str | None, data: Any) -> Answer:
        with self._lock:
            if path == "/api/method/frappe.auth.get_logged_user":
                return 200, {"message": user or "Guest"}, {}
            if user is None:
                doctype = "Issue" if "Issue" in path or "assign_to" in path else "Comment"
                return 403, frappe_error("PermissionError", f"Insufficient Permission for {doctype}"), {}
            issue = _ISSUE.fullmatch(path)
            if issue is not None and method in ("GET", "PUT"):
                return self._issue(method, unquote(issue.group(1)), data, user)
            if path == "/api/resource/Comment" and method == "GET":
                return self._list_comments(query)
            if path == "/api/resource/Comment" and method == "POST":
                return self._insert_comment(data, user)
            if path == "/api/method/frappe.desk.form.assign_to.add" and method == "POST":
                return self._assign_to(data, user)
            return 404, frappe_error("DoesNotExistError", f"Page {path} not found"), {}

    def _issue(self, method: str, name: str, data: Any, user: str) -> Answer:
        doc = self.issues.get(name)
        if doc is None:
            return 404, frappe_error("DoesNotExistError", f"Issue {name} not found"), {}
        if method == "GET":
            return 200, {"data": dict(doc)}, {}
        if not isinstance(data, dict):
            return 417, frappe_error("ValidationError", "Request body must be a JSON object"), {}
        problem = self._link_problem(data)
        if problem is not None:
            return 417, frappe_error("LinkValidationError", problem), {}
        writable = set(ISSUE_FIELDS) - {"name", "owner", "creation", "modified", "modified_by", "_assign"}
        for key, value in data.items():  # like doc.update(): unknown keys are silently dropped
            if key in writable or key in self.links or key.startswith("custom_"):
                doc[key] = value
        doc["modified"], doc["modified_by"] = self._now(), user
        return 200, {"data": dict(doc)}, {}

    def _assign_to(self, data: Any, user: str) -> Answer:
        if not isinstance(data, dict) or data.get("doctype") != "Issue" or not data.get("name"):
            return 417, frappe_error("ValidationError", "doctype and name are required"), {}
        name = str(data["name"])
        if name not in self.issues:
            return 404, frappe_error("DoesNotExistError", f"Issue {name} not found"), {}
        assign_to = data.get("assign_to")
        if isinstance(assign_to, str):
            assign_to = json.loads(assign_to) if assign_to.startswith("[") else [assign_to]
        if not isinstance(assign_to, list) or not assign_to:
            return 417, frappe_error("ValidationError", "assign_to must list users"), {}
        duplicates = []
        for who in assign_to:
            if who not in self.users:
                return 417, frappe_error("LinkValidationError", f"Could not find Allocated To: {who}"), {}
            if who in self.open_assignees(name):
                duplicates.append(who)
            else:
                self._assign(name, who, user)
        current = [
            {"owner": t["allocated_to"], "name": t["name"]} for t in self.todos if t["reference_name"] == name
        ]
        answer: dict[str, Any] = {"message": current}
        if duplicates and self.duplicate_assign == "error":
            return 417, frappe_error("DuplicateToDoError", "Already in user's To Do list"), {}
        if duplicates:
            text = "Already in the following Users ToDo list:{}".format("<br><br>" + "<br>".join(duplicates))
            answer["_server_messages"] = json.dumps([json.dumps({"message": text, "alert": 1})])
        return 200, answer, {}

    def _list_comments(self, query: dict[str, str]) -> Answer:
        try:
            filters = json.loads(query.get("filters", "[]"))
            fields = json.loads(query.get("fields", '["name"]'))
            limit = int(query.get("limit_page_length", "20"))
        except ValueError as exc:
            return 417, frappe_error("ValidationError", f"Invalid query: {exc}"), {}
        if isinstance(filters, dict):
            filters = [[k, "=", v] for k, v in filters.items()]
        rows = [c for c in self.comments if all(_matches(c, f) for f in filters)]
        if limit > 0:
            rows = rows[:limit]
        picked = [c if fields == ["*"] else {f: c.get(f) for f in fields} for c in rows]
        return 200, {"data": picked}, {}

    def _insert_comment(self, data: Any, user: str) -> Answer:
        if not isinstance(data, dict):
            return 417, frappe_error("ValidationError", "Request body must be a JSON object"), {}
        if data.get("reference_doctype") == "Issue" and data.get("reference_name") not in self.issues:
            message = f"Could not find Reference Name: {data.get('reference_name')}"
            return 417, frappe_error("LinkValidationError", message), {}
        now = self._now()
        doc = {
            **{k: v for k, v in data.items() if k not in ("name", "owner", "creation", "modified")},
            "name": secrets.token_hex(5),
            "doctype": "Comment",
            "comment_email": user,
            "owner": user,
            "creation": now,
            "modified": now,
            "modified_by": user,
        }
        self.comments.append(doc)
        return 200, {"data": dict(doc)}, {}


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%``, ``_``), case-insensitive as MariaDB's default collation."""
    parts = ("." if ch == "_" else ".*" if ch == "%" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches(doc: dict[str, Any], spec: list[Any]) -> bool:
    if len(spec) == 4:  # [doctype, field, op, value]
        spec = spec[1:]
    fieldname, op, value = spec
    actual = doc.get(fieldname)
    if op == "=":
        return bool(actual == value)
    if op == "like":
        return actual is not None and _like(str(value)).fullmatch(str(actual)) is not None
    if op == "in":
        return actual in value
    raise ValueError(f"unsupported filter operator {op!r}")


def _fault(fault: Fault) -> Answer:
    extra = fault.retry_headers()
    if fault.status == 429:
        reset = str(fault.retry_after if fault.retry_after is not None else 60)
        extra.update(
            {"X-RateLimit-Reset": reset, "X-RateLimit-Limit": "600000000", "X-RateLimit-Remaining": "0"}
        )
        return 429, "Too Many Requests", extra
    if fault.status in _REASONS:
        return fault.status, NGINX_PAGE.format(_REASONS[fault.status]), extra
    exc_type = _EXC.get(fault.status, "ValidationError")
    return fault.status, frappe_error(exc_type, f"injected {exc_type} ({fault.status})"), extra
