"""A real HTTP server on a free loopback port that plays a ServiceNow instance's Table API.

Implements what the ServiceNow connector calls, with the real shapes
(https://www.servicenow.com/docs/r/api-reference/rest-apis/c_TableAPI.html):

    GET   /api/now/table/{table}/{sys_id}   sysparm_fields, sysparm_display_value (true|false|all),
                                            sysparm_exclude_reference_link
    PATCH /api/now/table/{table}/{sys_id}   (PUT too) JSON body of field -> value; answers the record
    GET   /api/now/table/{table}            sysparm_query (encoded query: ``a=b^cLIKEd^e!=f``),
                                            sysparm_fields, sysparm_limit; sys_journal_field included

Answers ``{"result": ...}``; errors ``{"error": {"message", "detail"}, "status": "failure"}``:
401 (HTTP Basic user:password or a Bearer token; ``WWW-Authenticate`` sent), 403 (``forbid``),
404 (no such record), 400 (no such table, bad JSON, an encoded query this stand-in cannot
read: stricter than ServiceNow, which ignores bad conditions), and injected 429/5xx
(``fail_next``, with ``Retry-After``; ``html=True`` answers a non-JSON page like a
hibernating instance). ServiceNow has no 409/412 on the Table API (no ETags), and neither has
this stand-in.

Behaviour copied from the platform: fields the table does not have are ignored silently;
``work_notes`` is a journal field, so writing it appends a ``sys_journal_field`` row and
reading it gives ``""`` (actual value) or every entry, newest first (display value);
``priority`` is derived from ``impact`` and ``urgency`` (base lookup: impact + urgency - 1);
each update stamps ``sys_updated_on``/``sys_updated_by``/``sys_mod_count``.

It also plays the deskpilot Business Rule (``docs/connectors/servicenow.md``): every insert
and every update of a watched field, through the API (``PATCH``) or by a person
(``update_as``), appends the JSON body the rule would post to ``webhooks``.

    with ServiceNowStandin(users={"deskpilot.integration": "pw"}) as sn:
        sys_id = sn.add_record(short_description="VPN down", caller_id="ann@example.com")
        client = ServiceNowClient(sn.url, "deskpilot.integration:pw", timeout=5)
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from support.standin import Answer, Fault, Request, SeenRequest, StandinServer, same_secret

INCIDENT_FIELDS = frozenset(
    {
        "number", "short_description", "description", "caller_id", "assignment_group", "assigned_to",
        "priority", "impact", "urgency", "category", "subcategory", "state", "work_notes", "comments",
        "sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count",
    }
)  # fmt: skip
JOURNAL_FIELDS = frozenset(
    {"sys_id", "element_id", "element", "name", "value", "sys_created_on", "sys_created_by"}
)
REFERENCE_FIELDS = frozenset({"assignment_group", "assigned_to", "caller_id"})
JOURNALS = frozenset({"work_notes", "comments"})
WATCHED = ("assignment_group", "assigned_to", "priority", "impact", "urgency", "category")
_PATH = re.compile(r"/api/now/table/([a-z][a-z0-9_]*)(?:/([^/]+))?")
_CONDITION = re.compile(r"([a-z_][a-z0-9_.]*)(!=|=|LIKE|STARTSWITH)(.*)", re.S)


@dataclass(frozen=True)
class _Fault(Fault):
    html: bool = False  # a page instead of JSON, like a hibernating instance


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(message: str, detail: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def business_rule_json(data: dict[str, Any]) -> bytes:
    """JSON as the Business Rule sends it: non-ASCII escaped as \\uXXXX, so ASCII bytes."""
    return json.dumps(data, ensure_ascii=True).encode("ascii")


class ServiceNowStandin(StandinServer):
    """Thread-safe stand-in instance. ``users``: user_name -> password; ``tokens``: bearer -> user_name.

    ``url`` is the instance URL, e.g. ``http://127.0.0.1:41234`` (the API is under /api/now).
    """

    label = "ServiceNow"
    methods = ("GET", "PATCH", "POST")
    aliases: ClassVar[Mapping[str, str]] = {"PUT": "PATCH"}
    keep_blank_values = True
    json_type = "application/json;charset=UTF-8"
    text_type = "text/html"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        tokens: dict[str, str] | None = None,
        delay_s: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(delay_s=delay_s, port=port)
        self.users = dict(users if users is not None else {"deskpilot.integration": "secret-pw"})
        self.tokens = dict(tokens or {})
        self.webhooks: list[bytes] = []
        self.tables: dict[str, dict[str, dict[str, str]]] = {"incident": {}, "sys_journal_field": {}}
        self.forbidden: set[tuple[str, str]] = set()
        self._numbers = 10000

    # test controls ---------------------------------------------------------------------
    def fail_next(
        self,
        n: int,
        status: int = 503,
        retry_after: float | str | None = None,
        *,
        html: bool = False,
        method: str | None = None,
    ) -> None:
        """The next ``n`` requests (of ``method``, if given) answer ``status`` and change nothing.

        ``Retry-After`` is sent when given; ``html`` answers a page instead of JSON.
        """
        self._inject(n, _Fault(status, retry_after, method, html=html))

    def forbid(self, method: str, table: str) -> None:
        """ACL: ``method`` on ``table`` answers 403 from now on."""
        with self._lock:
            self.forbidden.add((method.upper(), table))

    def add_record(self, table: str = "incident", *, by: str = "ann.agent", **fields: str) -> str:
        """Insert a record as a person would (the Business Rule fires); returns its sys_id."""
        with self._lock:
            sys_id = uuid.uuid4().hex
            self._numbers += 1
            now = _now()
            record = {name: "" for name in INCIDENT_FIELDS - JOURNALS} if table == "incident" else {}
            record.update(
                sys_id=sys_id,
                number=f"INC{self._numbers:07d}",
                impact="3",
                urgency="3",
                sys_created_on=now,
                sys_created_by=by,
                sys_updated_on=now,
                sys_updated_by=by,
                sys_mod_count="0",
            )
            record.update({k: str(v) for k, v in fields.items() if k not in JOURNALS})
            self._derive(record)
            self.tables.setdefault(table, {})[sys_id] = record
            self.webhooks.append(self._rule_body(table, record, "insert", {}))
            return sys_id

    def update_as(self, user: str, sys_id: str, table: str = "incident", **fields: str) -> bytes:
        """A person changes the record in the UI; returns the body the Business Rule posts."""
        with self._lock:
            record = self.tables[table][sys_id]
            body = self._update(table, record, {k: str(v) for k, v in fields.items()}, user)
            if body is None:
                raise ValueError(f"update of {sys_id} changed no watched field: the rule would not fire")
            return body

    def record(self, sys_id: str, table: str = "incident") -> dict[str, str]:
        with self._lock:
            return dict(self.tables[table][sys_id])

    def work_notes(self, sys_id: str) -> list[str]:
        """The record's work notes, oldest first."""
        with self._lock:
            rows = [r for r in self.tables["sys_journal_field"].values() if r["element_id"] == sys_id]
            return [r["value"] for r in rows if r["element"] == "work_notes"]

    # the platform's behaviour (called under the lock) ------------------------------------
    @staticmethod
    def _derive(record: dict[str, str]) -> None:
        if record.get("impact", "").isdigit() and record.get("urgency", "").isdigit():
            record["priority"] = str(int(record["impact"]) + int(record["urgency"]) - 1)

    def _journal(self, table: str, sys_id: str, element: str, value: str, user: str, when: str) -> None:
        row_id = uuid.uuid4().hex
        self.tables["sys_journal_field"][row_id] = {
            "sys_id": row_id,
            "element_id": sys_id,
            "element": element,
            "name": table,
            "value": value,
            "sys_created_on": when,
            "sys_created_by": user,
        }

    def _update(self, table: str, record: dict[str, str], values: dict[str, str], user: str) -> bytes | None:
        """Apply an update as the platform does; returns the Business Rule's body, if it fires."""
        before = dict(record)
        known = INCIDENT_FIELDS if table == "incident" else set(record)
        now = _now()
        for name, value in values.items():
            if name not in known or name.startswith("sys_") or name == "number":
                continue  # the Table API ignores unknown and system fields without a word
            if name in JOURNALS:
                if value.strip():
                    self._journal(table, record["sys_id"], name, value, user, now)
                continue
            record[name] = value
        self._derive(record)
        record.update(
            sys_updated_on=now, sys_updated_by=user, sys_mod_count=str(int(record["sys_mod_count"]) + 1)
        )
        changed = [name for name in WATCHED if record.get(name, "") != before.get(name, "")]
        if not changed:
            return None
        previous = {name: before.get(name) or None for name in WATCHED}
        body = self._rule_body(table, record, "update", previous, changed)
        self.webhooks.append(body)
        return body

    @staticmethod
    def _rule_body(
        table: str,
        record: dict[str, str],
        event: str,
        previous: dict[str, str | None],
        changed: list[str] | None = None,
    ) -> bytes:
        data: dict[str, Any] = {"event": event, "table": table}
        for name in ("sys_id", "number", "short_description", "description", "caller_id", *WATCHED):
            data[name] = record.get(name) or None
        data.update(
            sys_updated_on=record["sys_updated_on"],
            sys_updated_by=record["sys_updated_by"],
            sys_mod_count=record["sys_mod_count"],
            changed=changed or [],
            previous=previous,
        )
        return business_rule_json(data)

    # request handling --------------------------------------------------------------------
    def _user(self, headers: dict[str, str]) -> str | None:
        given = headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            expected = self.users.get(user)
            if expected is not None and same_secret(password, expected):
                return user
        if scheme.lower() == "bearer":
            for token, user in self.tokens.items():
                if same_secret(value, token):
                    return user
        return None

    def _shape(self, table: str, record: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
        """A record as the Table API returns it (fields, display values, reference links)."""
        wanted = [f.strip() for f in query.get("sysparm_fields", "").split(",") if f.strip()]
        names = [n for n in (wanted or [*record, *(JOURNALS if table == "incident" else ())]) if n]
        display = query.get("sysparm_display_value", "false").lower()
        links = query.get("sysparm_exclude_reference_link", "false").lower() != "true"
        out: dict[str, Any] = {}
        for name in names:
            if name in JOURNALS and table == "incident":
                value = self._journal_display(record["sys_id"], name) if display in ("true", "all") else ""
                out[name] = {"display_value": value, "value": ""} if display == "all" else value
            elif name in record:
                value = record[name]
                if name in REFERENCE_FIELDS and links and value and display != "true":
                    out[name] = {"link": f"{self.url}/api/now/table/sys_user/{value}", "value": value}
                else:
                    out[name] = value
        return out

    def _journal_display(self, sys_id: str, element: str) -> str:
        rows = [
            r
            for r in self.tables["sys_journal_field"].values()
            if r["element_id"] == sys_id and r["element"] == element
        ]
        label = "Work notes" if element == "work_notes" else "Additional comments"
        return "".join(
            f"{r['sys_created_on']} - {r['sys_created_by']} ({label})\n{r['value']}\n\n"
            for r in reversed(rows)
        )

    def _select(self, table: str, query: dict[str, str]) -> list[dict[str, str]] | str:
        """Rows matching ``sysparm_query``, or the reason the query cannot be read."""
        rows = list(self.tables[table].values())
        encoded = query.get("sysparm_query", "")
        for part in (p for p in encoded.split("^") if p):
            if part.startswith("ORDERBY"):
                continue
            match = _CONDITION.fullmatch(part)
            if match is None:
                return f"cannot read the encoded query condition {part!r}"
            name, op, value = match.groups()
            if op == "=":
                rows = [r for r in rows if r.get(name, "") == value]
            elif op == "!=":
                rows = [r for r in rows if r.get(name, "") != value]
            elif op == "LIKE":
                rows = [r for r in rows if value.lower() in r.get(name, "").lower()]
            else:
                rows = [r for r in rows if r.get(name, "").startswith(value)]
        limit = query.get("sysparm_limit")
        if limit is not None:
            if not limit.isdigit():
                return f"sysparm_limit {limit!r} is not a number"
            rows = rows[: int(limit)]
        return rows

    def _answer(self, request: Request) -> Answer:
        return self.handle(request.method, request.path, request.query, request.headers, request.body)

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Answer:
        fault = self._take_fault(method)
        if fault is not None:
            extra = fault.retry_headers()
            if fault.status == 429:
                extra.update({"X-RateLimit-Limit": "100", "X-RateLimit-Reset": "60"})
                detail = "Rate limit of 100 requests per hour for Table API exceeded"
                return fault.status, _error("Rate limit exceeded", detail), extra
            if isinstance(fault, _Fault) and fault.html:
                return fault.status, "<html><body>Your instance is hibernating</body></html>", extra
            return fault.status, _error("Service Unavailable", f"injected failure {fault.status}"), extra
        user = self._user(headers)
        if user is None:
            detail = "Required to provide Auth information"
            return (
                401,
                _error("User Not Authenticated", detail),
                {"WWW-Authenticate": 'BASIC realm="Service-now"'},
            )
        match = _PATH.fullmatch(path)
        if match is None:
            return 400, _error("Requested URI does not represent any resource"), {}
        table, sys_id = match.groups()
        with self._lock:
            if table not in self.tables:
                return 400, _error(f"Invalid table {table}"), {}
            if (method, table) in self.forbidden:
                detail = "ACL Exception Update Failed due to security constraints"
                if method == "GET":
                    detail = "ACL restricts the record retrieval"
                return 403, _error("Operation Failed", detail), {}
            if sys_id is None:
                if method != "GET":
                    return 405, _error("Method not Supported", f"{method} on a table"), {}
                rows = self._select(table, query)
                if isinstance(rows, str):
                    return 400, _error("Invalid query", rows), {}
                return 200, {"result": [self._shape(table, r, query) for r in rows]}, {}
            record = self.tables[table].get(sys_id)
            if record is None:
                return (
                    404,
                    _error("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
                    {},
                )
            if method == "GET":
                return 200, {"result": self._shape(table, record, query)}, {}
            try:
                values = json.loads(body)
            except ValueError:
                return 400, _error("Exception while reading request", "The payload is not valid JSON."), {}
            if not isinstance(values, dict):
                return (
                    400,
                    _error("Exception while reading request", "The payload must be a JSON object."),
                    {},
                )
            self._update(table, record, {k: "" if v is None else str(v) for k, v in values.items()}, user)
            return 200, {"result": self._shape(table, record, query)}, {}
