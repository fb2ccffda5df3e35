"""A real HTTP server on a free loopback port that plays a Jira Cloud site's REST v3 for tests.

Endpoints, with Jira's request/response shapes and error bodies
(https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/ and
.../api-group-issue-comments/)::

    GET  /rest/api/3/myself                       the authenticated user
    GET  /rest/api/3/issue/{key}                  {"id", "key", "self", "fields"}
    PUT  /rest/api/3/issue/{key}                  {"fields": {...}, "update": {...}} -> 204
    GET  /rest/api/3/issue/{key}/comment          ?startAt&maxResults&orderBy -> a page
    POST /rest/api/3/issue/{key}/comment          {"body": ADF, "visibility"?, "properties"?} -> 201

Errors as Jira sends them: 401 (plain text) without valid Basic ``email:api_token`` (or the
configured bearer token); 404 ``{"errorMessages": ["Issue does not exist or you do not have
permission to see it."], "errors": {}}``; 400 ``{"errorMessages": [], "errors": {field: msg}}``
for unknown fields, components, priorities, options, unassignable users and labels with
spaces (an edit is all or nothing). Jira uses no 409/412 on these endpoints. ``fail_next``
injects 429 (with ``Retry-After``) or 5xx; ``delay_s`` stalls before handling a request and
``reply_delay_s={"POST": 2.0}`` after applying it (a response lost to a client timeout).

The site also produces the webhooks Jira would send: :meth:`JiraStandin.created_payload`,
:meth:`JiraStandin.person_changes` (a person's edit) and :meth:`JiraStandin.updated_payload`
(the latest change, deskpilot's own included). Use as ``from support.jira_standin import JiraStandin``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from support.standin import (
    Answer,
    Reply,
    Request,
    SeenRequest,
    StandinServer,
    basic_auth,
    same_secret,
)

API = "/rest/api/3"
NOT_FOUND = "Issue does not exist or you do not have permission to see it."
UNAUTHENTICATED = "Client must be authenticated to access this resource."
ROLES = ("Administrators", "Service Desk Team", "Developers")


@dataclass
class User:
    account_id: str
    display_name: str
    email: str | None = None
    account_type: str = "atlassian"

    def shape(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accountId": self.account_id,
            "displayName": self.display_name,
            "accountType": self.account_type,
            "active": True,
            "timeZone": "Europe/Berlin",
        }
        if self.email is not None:
            out["emailAddress"] = self.email
        return out


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    comments: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # changelog entries


class JiraStandin(StandinServer):
    """A thread-safe Jira Cloud site with one project (``SUP``), its components and users.

    ``url`` is the site's base URL, e.g. ``http://127.0.0.1:41234`` (as ``https://acme.atlassian.net``).
    """

    label = "Jira"
    methods = ("GET", "PUT", "POST", "DELETE")
    json_type = "application/json;charset=UTF-8"
    text_type = "text/plain;charset=UTF-8"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        email: str = "deskpilot-bot@acme.example",
        api_token: str = "atl-token",
        bearer: str | None = None,
        bot_account_id: str = "5b10ac8d82e05b22cc7d4ef5",
        components: tuple[str, ...] = ("Network", "Billing", "Hardware", "Access"),
        priorities: tuple[str, ...] = ("Highest", "High", "Medium", "Low", "Lowest"),
        custom_fields: dict[str, tuple[str, tuple[str, ...]]] | None = None,
        page_size: int = 50,
        delay_s: float = 0.0,
        reply_delay_s: dict[str, float] | None = None,
    ) -> None:
        super().__init__(delay_s=delay_s)
        self.email = email
        self.api_token = api_token
        self.bearer = bearer
        self.page_size = page_size
        self.reply_delay_s = dict(reply_delay_s or {})  # method -> seconds, after applying
        self.components = {name: str(10000 + i) for i, name in enumerate(components)}
        self.priorities = {name: str(i + 1) for i, name in enumerate(priorities)}
        self.issue_types = {"Task": "10001", "Bug": "10004", "Service Request": "10010"}
        # id -> (name, options); options empty = a text field
        self.custom_fields: dict[str, tuple[str, tuple[str, ...]]] = (
            custom_fields
            if custom_fields is not None
            else {"customfield_10050": ("Support queue", ("Network team", "Billing team", "Triage"))}
        )
        self.bot = User(bot_account_id, "deskpilot", email)
        self.users = {
            u.account_id: u
            for u in (
                self.bot,
                User("557058:ana-0001", "Ana Agent", "ana@acme.example"),
                User("557058:bo-0002", "Bo Billing", "bo@acme.example"),
                User("712020:cust-0003", "Cy Customer", None, "customer"),
                User("557058:auto-0004", "Automation for Jira", None, "app"),
            )
        }
        self.issues: dict[str, Issue] = {}
        self._ids = itertools.count(10100)
        self._comment_ids = itertools.count(20001)
        self._history_ids = itertools.count(30001)

    @property
    def credentials(self) -> str:
        """What goes into DESKPILOT_CONNECTOR_SECRETS for this site."""
        return f"{self.email}:{self.api_token}"

    # test controls ---------------------------------------------------------------------------
    def add_issue(
        self,
        key: str,
        summary: str,
        description: Any = None,
        *,
        reporter: str = "712020:cust-0003",
        issue_type: str = "Service Request",
        **fields: Any,
    ) -> Issue:
        with self._lock:
            issue = Issue(
                id=str(next(self._ids)),
                key=key,
                fields={
                    "summary": summary,
                    "description": description,
                    "project": {"id": "10000", "key": key.split("-")[0], "name": "Support"},
                    "issuetype": {"id": self.issue_types[issue_type], "name": issue_type},
                    "reporter": self.users[reporter].shape(),
                    "assignee": None,
                    "priority": {"id": self.priorities["Medium"], "name": "Medium"},
                    "components": [],
                    "labels": [],
                    "status": {"id": "1", "name": "Open"},
                    **{cf: None for cf in self.custom_fields},
                    **fields,
                },
            )
            self.issues[key] = issue
            return issue

    def issue(self, key: str) -> dict[str, Any]:
        """A copy of the issue's fields (KeyError when there is none)."""
        with self._lock:
            copied: dict[str, Any] = json.loads(json.dumps(self.issues[key].fields))
            return copied

    def add_comment(self, key: str, text: str, author: str = "557058:ana-0001") -> None:
        """A comment written by someone else (plain ADF paragraph)."""
        with self._lock:
            user = self.users[author].shape()
            self.issues[key].comments.append(
                {
                    "id": str(next(self._comment_ids)),
                    "author": user,
                    "body": {"type": "doc", "version": 1, "content": [_paragraph(text)]},
                    "created": _now(),
                    "updated": _now(),
                    "jsdPublic": True,
                }
            )

    def comments(self, key: str) -> list[dict[str, Any]]:
        with self._lock:
            copied: list[dict[str, Any]] = json.loads(json.dumps(self.issues[key].comments))
            return copied

    def calls(self, method: str | None = None) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request so far, optionally of one method."""
        with self._lock:
            return [(r.method, r.path, r.status) for r in self.requests if method in (None, r.method)]

    # webhooks this site would send -----------------------------------------------------------
    def _issue_shape(self, issue: Issue) -> dict[str, Any]:
        return {
            "id": issue.id,
            "self": f"{self.url}/rest/api/2/{issue.id}",
            "key": issue.key,
            "fields": json.loads(json.dumps(issue.fields)),
        }

    def created_payload(self, key: str) -> dict[str, Any]:
        """The ``jira:issue_created`` body an admin webhook delivers for ``key``."""
        with self._lock:
            issue = self.issues[key]
            return {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_created",
                "issue_event_type_name": "issue_created",
                "user": issue.fields["reporter"],
                "issue": self._issue_shape(issue),
            }

    def person_changes(self, key: str, account_id: str, **changes: Any) -> dict[str, Any]:
        """Apply a person's edit (policy-style values: component names, priority name, accountId,
        ``customfield_...`` option value) and return the ``jira:issue_updated`` body it triggers."""
        edit: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "components":
                edit[name] = [{"name": v} for v in value]
            elif name == "priority":
                edit[name] = {"name": value}
            elif name == "assignee":
                edit[name] = {"accountId": value} if value else None
            elif name in self.custom_fields and self.custom_fields[name][1]:
                edit[name] = {"value": value}
            else:
                edit[name] = value
        with self._lock:
            errors, _items = self._apply(self.issues[key], {"fields": edit}, account_id)
            if errors:
                raise ValueError(f"invalid edit: {errors}")
            return self.updated_payload(key)

    def updated_payload(self, key: str) -> dict[str, Any]:
        """The ``jira:issue_updated`` body for the issue's latest change (ours included)."""
        with self._lock:
            issue = self.issues[key]
            change = issue.history[-1]
            return {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_generic",
                "user": self.users[change["author"]].shape(),
                "issue": self._issue_shape(issue),
                "changelog": {"id": change["id"], "items": change["items"]},
            }

    # request handling (from handler threads) -------------------------------------------------
    def _respond(self, request: Request) -> Reply | None:
        reply = super()._respond(request)
        pause = self.reply_delay_s.get(request.method, 0.0)
        if pause > 0 and self._stopping.wait(pause):
            return None  # stopped before answering
        return reply

    def _answer(self, request: Request) -> Answer:
        return self.handle(request.method, request.path, request.query, request.headers, request.body)

    def _authenticated(self, headers: dict[str, str]) -> User | None:
        given = headers.get("authorization", "")
        if same_secret(given, basic_auth(self.credentials)):
            return self.bot
        if self.bearer is not None and same_secret(given, f"Bearer {self.bearer}"):
            return self.bot
        return None

    def _field_errors(self, name: str, value: Any) -> tuple[Any, str | None]:
        """(stored value, None) or (None, Jira's message) for one ``fields`` entry."""
        if name == "summary":
            return (
                (value, None) if isinstance(value, str) and value else (None, "You must specify a summary.")
            )
        if name == "components":
            out = []
            for item in value if isinstance(value, list) else [None]:
                ref = item if isinstance(item, dict) else {}
                if "name" in ref and ref["name"] in self.components:
                    out.append({"id": self.components[ref["name"]], "name": ref["name"]})
                elif "id" in ref and ref["id"] in self.components.values():
                    name_of = {v: k for k, v in self.components.items()}
                    out.append({"id": ref["id"], "name": name_of[ref["id"]]})
                elif "id" in ref:
                    return None, f"Component with id '{ref['id']}' does not exist."
                else:
                    return None, f"Component name '{ref.get('name')}' is not valid"
            return out, None
        if name == "labels":
            return self._labels(value)
        if name == "priority":
            ref = value if isinstance(value, dict) else {}
            found = [(n, i) for n, i in self.priorities.items() if ref.get("name") == n or ref.get("id") == i]
            return (
                ({"id": found[0][1], "name": found[0][0]}, None)
                if found
                else (None, "The priority selected is invalid.")
            )
        if name == "issuetype":
            ref = value if isinstance(value, dict) else {}
            found = [
                (n, i) for n, i in self.issue_types.items() if ref.get("name") == n or ref.get("id") == i
            ]
            return (
                ({"id": found[0][1], "name": found[0][0]}, None)
                if found
                else (None, "The issue type selected is invalid.")
            )
        if name == "assignee":
            if value is None:
                return None, None
            account = value.get("accountId") if isinstance(value, dict) else None
            user = self.users.get(account) if isinstance(account, str) else None
            if user is None or user.account_type != "atlassian":
                return None, f"User '{account}' cannot be assigned issues."
            return user.shape(), None
        if name in self.custom_fields:
            label, options = self.custom_fields[name]
            if not options:
                return (value, None) if isinstance(value, str) else (None, "Operation value must be a string")
            ref = value if isinstance(value, dict) else {}
            for i, option in enumerate(options):
                option_id = str(10020 + i)
                if ref.get("value") == option or ref.get("id") == option_id:
                    return {
                        "self": f"{self.url}/rest/api/3/customFieldOption/{option_id}",
                        "value": option,
                        "id": option_id,
                    }, None
            return None, f"Specify a valid 'id' or 'name' for {label}"
        return None, f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."

    @staticmethod
    def _labels(value: Any) -> tuple[Any, str | None]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, "Operation value must be an array of strings"
        for label in value:
            if any(ch.isspace() for ch in label):
                return None, f"The label '{label}' contains spaces which is invalid."
        return list(dict.fromkeys(value)), None

    def _apply_update(self, fields: dict[str, Any], name: str, ops: Any) -> str | None:
        current = list(fields.get(name) or [])
        for op in ops if isinstance(ops, list) else [None]:
            if not isinstance(op, dict) or len(op) != 1:
                return "Operation must be one of add, remove, set"
            verb, arg = next(iter(op.items()))
            if name == "labels":
                stored, problem = self._labels(arg if verb == "set" else [arg])
            else:
                stored, problem = self._field_errors(name, arg if verb == "set" else [arg])
            if problem is not None:
                return problem
            if verb == "set":
                current = stored
            elif verb == "add":
                current += [s for s in stored if s not in current]
            elif verb == "remove":
                current = [c for c in current if c not in stored]
            else:
                return f"Operation '{verb}' is not supported"
        fields[name] = current
        return None

    def _apply(
        self, issue: Issue, body: dict[str, Any], author: str
    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Validate everything, then apply all of it (or nothing); returns (errors, changelog items)."""
        new = json.loads(json.dumps(issue.fields))
        errors: dict[str, str] = {}
        for name, value in (body.get("fields") or {}).items():
            stored, problem = self._field_errors(name, value)
            if problem is not None:
                errors[name] = problem
            else:
                new[name] = stored
        for name, ops in (body.get("update") or {}).items():
            if name not in ("labels", "components"):
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
                continue
            problem = self._apply_update(new, name, ops)
            if problem is not None:
                errors[name] = problem
        if errors:
            return errors, []
        items = _changelog_items(issue.fields, new, self.custom_fields)
        issue.fields = new
        if items:
            issue.history.append(
                {"id": str(next(self._history_ids)), "author": author, "items": items, "created": _now()}
            )
        return {}, items

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Answer:
        """(status, JSON body or text or None, extra headers); all state changes under the lock."""
        fault = self._take_fault(method)
        if fault is not None:
            message = "Rate limit exceeded." if fault.status == 429 else "Internal server error"
            return fault.status, {"errorMessages": [message], "errors": {}}, fault.retry_headers()
        user = self._authenticated(headers)
        if user is None:
            return 401, UNAUTHENTICATED, {"WWW-Authenticate": 'Basic realm="protected-area"'}
        if path == f"{API}/myself" and method == "GET":
            return 200, user.shape(), {}
        if not path.startswith(f"{API}/issue/"):
            return 404, {"errorMessages": [f"No endpoint at {path}"], "errors": {}}, {}
        parts = path[len(f"{API}/issue/") :].split("/")
        key = unquote(parts[0])
        with self._lock:
            issue = self.issues.get(key) or next((i for i in self.issues.values() if i.id == key), None)
            if issue is None:
                return 404, {"errorMessages": [NOT_FOUND], "errors": {}}, {}
            if parts[1:] == [] and method == "GET":
                return 200, self._issue_shape(issue), {}
            if parts[1:] == [] and method == "PUT":
                data, problem = _json_object(body)
                if data is None:
                    return 400, {"errorMessages": [problem], "errors": {}}, {}
                errors, _items = self._apply(issue, data, user.account_id)
                if errors:
                    return 400, {"errorMessages": [], "errors": errors}, {}
                return 204, None, {}
            if parts[1:] == ["comment"] and method == "GET":
                return self._comment_page(issue, query)
            if parts[1:] == ["comment"] and method == "POST":
                return self._add_comment(issue, user, body)
        return (
            405 if parts[1:] in ([], ["comment"]) else 404,
            {"errorMessages": [f"No endpoint at {path}"], "errors": {}},
            {},
        )

    def _comment_page(self, issue: Issue, query: dict[str, str]) -> Answer:
        try:
            start = int(query.get("startAt", "0"))
            wanted = int(query.get("maxResults", "5000"))
        except ValueError:
            return 400, {"errorMessages": ["startAt and maxResults must be integers"], "errors": {}}, {}
        if start < 0 or wanted < 0:
            return 400, {"errorMessages": ["startAt and maxResults must not be negative"], "errors": {}}, {}
        order = query.get("orderBy", "created").lstrip("+")
        comments = list(issue.comments)
        if order == "-created":
            comments.reverse()
        page_size = min(wanted, self.page_size)
        page = comments[start : start + page_size]
        return 200, {"startAt": start, "maxResults": page_size, "total": len(comments), "comments": page}, {}

    def _add_comment(self, issue: Issue, user: User, body: bytes) -> Answer:
        data, problem = _json_object(body)
        if data is None:
            return 400, {"errorMessages": [problem], "errors": {}}, {}
        doc = data.get("body")
        if not (
            isinstance(doc, dict)
            and doc.get("type") == "doc"
            and doc.get("version") == 1
            and isinstance(doc.get("content"), list)
        ):
            return 400, {"errorMessages": [], "errors": {"comment": "Comment body is not valid!"}}, {}
        if not doc["content"]:
            return 400, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}, {}
        visibility = data.get("visibility")
        if visibility is not None:
            kind = visibility.get("type") if isinstance(visibility, dict) else None
            if kind == "role" and visibility.get("value") not in ROLES:
                message = f"You are currently not a member of the project role: {visibility.get('value')}."
                return 400, {"errorMessages": [], "errors": {"commentLevel": message}}, {}
            if kind not in ("role", "group"):
                return 400, {"errorMessages": ["Invalid visibility type"], "errors": {}}, {}
        properties = data.get("properties") or []
        internal = any(
            isinstance(p, dict)
            and p.get("key") == "sd.public.comment"
            and (p.get("value") or {}).get("internal")
            for p in properties
        )
        comment_id = str(next(self._comment_ids))
        comment: dict[str, Any] = {
            "self": f"{self.url}{API}/issue/{issue.id}/comment/{comment_id}",
            "id": comment_id,
            "author": user.shape(),
            "body": doc,
            "updateAuthor": user.shape(),
            "created": _now(),
            "updated": _now(),
            "jsdPublic": not internal,
        }
        if visibility is not None:
            comment["visibility"] = visibility
        if properties:
            comment["properties"] = properties
        issue.comments.append(comment)
        return 201, comment, {}


def _paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [{"type": "text", "text": text}]}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())


def _json_object(body: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        return None, f"Unexpected character in the request body: {exc}"
    if not isinstance(data, dict):
        return None, "Can not deserialize the request body: expected a JSON object"
    return data, ""


def _changelog_items(
    old: dict[str, Any], new: dict[str, Any], custom: dict[str, tuple[str, tuple[str, ...]]]
) -> list[dict[str, Any]]:
    """What Jira's changelog says about an edit, in the webhook's item shape."""
    items: list[dict[str, Any]] = []
    for name in new:
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name == "components":
            old_ids = {c["id"]: c["name"] for c in before or []}
            new_ids = {c["id"]: c["name"] for c in after or []}
            for cid, cname in old_ids.items():
                if cid not in new_ids:
                    items.append(_item("Component", "components", cid, cname, None, None))
            for cid, cname in new_ids.items():
                if cid not in old_ids:
                    items.append(_item("Component", "components", None, None, cid, cname))
        elif name == "labels":
            items.append(
                _item("labels", "labels", None, " ".join(before or []) or None, None, " ".join(after or []))
            )
        elif name == "assignee":
            item = _item(
                "assignee",
                "assignee",
                (before or {}).get("accountId"),
                (before or {}).get("displayName"),
                (after or {}).get("accountId"),
                (after or {}).get("displayName"),
            )
            item["tmpFromAccountId"], item["tmpToAccountId"] = item["from"], item["to"]
            items.append(item)
        elif name in ("priority", "issuetype"):
            items.append(
                _item(
                    name,
                    name,
                    (before or {}).get("id"),
                    (before or {}).get("name"),
                    (after or {}).get("id"),
                    (after or {}).get("name"),
                )
            )
        elif name in custom:
            label, options = custom[name]
            if options:
                item = _item(
                    label,
                    name,
                    (before or {}).get("id"),
                    (before or {}).get("value"),
                    (after or {}).get("id"),
                    (after or {}).get("value"),
                )
            else:
                item = _item(label, name, None, before, None, after)
            item["fieldtype"] = "custom"
            items.append(item)
        else:
            items.append(
                _item(name, name, None, str(before) if before else None, None, str(after) if after else None)
            )
    return items


def _item(field_name: str, field_id: str, from_: Any, from_s: Any, to: Any, to_s: Any) -> dict[str, Any]:
    return {
        "field": field_name,
        "fieldtype": "jira",
        "fieldId": field_id,
        "from": from_,
        "fromString": from_s,
        "to": to,
        "toString": to_s,
    }
