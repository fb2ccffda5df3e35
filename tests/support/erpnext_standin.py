"""A real HTTP server on a free loopback port that plays an ERPNext site's REST API for tests.

Implements the calls the ERPNext connector makes, with Frappe's request and response shapes
(https://docs.frappe.io/framework/user/en/api/rest):

    GET  /api/resource/Issue/{name}                      {"data": {...}}
    PUT  /api/resource/Issue/{name}   {"issue_type": ..} {"data": {...}}   (Link values checked)
    GET  /api/resource/Comment?filters=[..]&fields=[..]  {"data": [...]}   (=, like, in filters)
    POST /api/resource/Comment        {...}              {"data": {...}}
    POST /api/method/frappe.desk.form.assign_to.add      {"message": [{"owner", "name"}]}
    GET  /api/method/frappe.auth.get_logged_user         {"message": "<user>"}

and, for incoming documents (``records`` / ``record`` / ``attachments_of`` read them back):

    GET  /api/resource/<Doctype>?filters=&or_filters=&fields=   Purchase Invoice, Task, File,
                                                         Supplier, Company, Project: {"data": [..]}
    GET  /api/resource/<Doctype>/{name}                  {"data": {...}}
    POST /api/resource/Purchase Invoice  {...}           a draft, validated as ERPNext v15 does
    POST /api/resource/Task              {...}           (see ``_insert_purchase_invoice``)
    POST /api/method/upload_file         multipart: file, doctype, docname, is_private, folder
                                         {"message": {File}} with content_hash = MD5 of the bytes

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

Validation of new records follows what a real ERPNext v15 site answers through ``/api/resource``
(observed on frappe 15.96 / erpnext 15.94): an unknown Link is 417 ``LinkValidationError``
("Could not find Supplier: X", "Could not find Row #1: Expense Head: X"), checked first; a
Purchase Invoice without a supplier is 404 ``DoesNotExistError`` ("Supplier None not found"),
one without items a 500 ``TypeError`` (an unguarded crash, not a clean 417), a row with neither
``item_code`` nor ``expense_account`` 417 "Expense account is mandatory for item ...", a due
date before the supplier invoice date 417; a Task without a subject is 417 ``MandatoryError``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from datetime import date, datetime, timedelta
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
_RESOURCE = re.compile(r"/api/resource/([^/]+)(?:/([^/]+))?")
PURCHASE_INVOICE, TASK, FILE = "Purchase Invoice", "Task", "File"
DOCUMENT_DOCTYPES = (PURCHASE_INVOICE, TASK, FILE, "Supplier", "Company", "Project")
# Link fields: fieldname -> (label in messages, target doctype)
PI_LINKS = {
    "supplier": ("Supplier", "Supplier"),
    "company": ("Company", "Company"),
    "currency": ("Currency", "Currency"),
    "project": ("Project", "Project"),
    "cost_center": ("Cost Center", "Cost Center"),
}
PI_ITEM_LINKS = {
    "item_code": ("Item", "Item"),
    "uom": ("UOM", "UOM"),
    "expense_account": ("Expense Head", "Account"),
    "cost_center": ("Cost Center", "Cost Center"),
}
TASK_LINKS = {"project": ("Project", "Project")}
PI_FIELDS = frozenset(
    {
        "supplier", "company", "posting_date", "posting_time", "set_posting_time", "bill_no",
        "bill_date", "due_date", "currency", "conversion_rate", "remarks", "cost_center", "project",
        "is_paid", "update_stock", "on_hold", "taxes_and_charges", "naming_series",
    }
)  # fmt: skip
PI_ITEM_FIELDS = frozenset(
    {
        "item_code",
        "item_name",
        "description",
        "qty",
        "rate",
        "uom",
        "conversion_factor",
        "expense_account",
        "cost_center",
    }
)
TASK_FIELDS = frozenset(
    {
        "subject",
        "project",
        "status",
        "priority",
        "description",
        "exp_start_date",
        "exp_end_date",
        "type",
        "company",
    }
)
TASK_STATUSES = ("Open", "Working", "Pending Review", "Overdue", "Template", "Completed", "Cancelled")
TASK_PRIORITIES = ("Low", "Medium", "High", "Urgent")
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
        company: str = "Acme Ltd",
        default_expense_account: str | None = "Cost of Goods Sold - AL",
        projects: tuple[str, ...] = ("Accounts Payable", "Operations", "Triage"),
        accounts: tuple[str, ...] = ("Cost of Goods Sold - AL", "Office Expenses - AL", "Creditors - AL"),
        suppliers: tuple[str, ...] = (),
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
        # incoming documents: records by doctype and name, File contents by File name
        self.docs: dict[str, dict[str, dict[str, Any]]] = {doctype: {} for doctype in DOCUMENT_DOCTYPES}
        self.file_contents: dict[str, bytes] = {}
        self.masters: dict[str, set[str]] = {
            "Currency": {"EUR", "USD", "GBP", "CHF", "INR"},
            "UOM": {"Nos", "Unit", "Hour"},
            "Account": set(accounts),
            "Cost Center": {"Main - AL"},
            "Item": set(),
        }
        self._series: dict[str, int] = {}
        self.add_company(company, default_expense_account=default_expense_account)
        for project in projects:
            self.add_project(project)
        for supplier in suppliers:
            self.add_supplier(supplier)

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

    def _assign(
        self, name: str, user: str, by: str, rule: str | None = None, doctype: str = "Issue"
    ) -> dict[str, Any]:
        now = self._now()
        todo = {
            "name": secrets.token_hex(5),
            "doctype": "ToDo",
            "status": "Open",
            "allocated_to": user,
            "assigned_by": by,
            "assignment_rule": rule,
            "reference_type": doctype,
            "reference_name": name,
            "description": f"Assignment for {doctype} {name}",
            "owner": by,
            "creation": now,
            "modified": now,
            "modified_by": by,
        }
        self.todos.append(todo)
        open_users = [
            t["allocated_to"] for t in self.todos if t["reference_name"] == name and t["status"] == "Open"
        ]
        target = self.issues if doctype == "Issue" else self.docs[doctype]
        target[name]["_assign"] = json.dumps(open_users)  # db_set, update_modified=False
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

    # incoming documents: master data and reading records back ---------------------------
    def add_company(
        self, name: str, *, default_expense_account: str | None = None, currency: str = "EUR"
    ) -> None:
        with self._lock:
            self.docs["Company"][name] = {
                "name": name,
                "doctype": "Company",
                "default_currency": currency,
                "default_expense_account": default_expense_account,
                "default_payable_account": "Creditors - AL",
            }

    def add_project(self, name: str) -> None:
        with self._lock:
            self.docs["Project"][name] = {"name": name, "doctype": "Project", "project_name": name}

    def add_supplier(
        self,
        name: str,
        *,
        supplier_name: str | None = None,
        tax_id: str | None = None,
        disabled: bool = False,
    ) -> None:
        """A Supplier named ``name`` (naming by supplier name, ERPNext's default)."""
        with self._lock:
            self.docs["Supplier"][name] = {
                "name": name,
                "doctype": "Supplier",
                "supplier_name": supplier_name or name,
                "tax_id": tax_id,
                "disabled": int(disabled),
            }

    def add_item(self, item_code: str) -> None:
        """A non-stock Item (its expense account comes from the Company's default)."""
        with self._lock:
            self.masters["Item"].add(item_code)

    def records(self, doctype: str) -> list[dict[str, Any]]:
        """Every stored record of ``doctype`` (Purchase Invoice, Task, File, ...), oldest first."""
        with self._lock:
            return [_public(d) for d in self.docs[doctype].values()]

    def record(self, doctype: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.docs[doctype].get(name)
            return _public(found) if found is not None else None

    def attachments_of(self, doctype: str, name: str) -> list[dict[str, Any]]:
        """The Files attached to a record, each with its bytes under ``content``."""
        with self._lock:
            return [
                {**_public(f), "content": self.file_contents[f["name"]]}
                for f in self.docs[FILE].values()
                if f["attached_to_doctype"] == doctype and f["attached_to_name"] == name
            ]

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
        content_type = headers.get("content-type", "")
        if body and path == UPLOAD_PATH and content_type.startswith("multipart/form-data"):
            try:
                data = parse_multipart(content_type, body)
            except ValueError as exc:
                return 417, frappe_error("ValidationError", f"Invalid multipart body: {exc}"), {}
        elif body:
            if "application/json" not in content_type:
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
            if path == UPLOAD_PATH and method == "POST":
                return self._upload_file(data, user)
            resource = _RESOURCE.fullmatch(path)
            if resource is not None and unquote(resource.group(1)) in DOCUMENT_DOCTYPES:
                doctype = unquote(resource.group(1))
                if resource.group(2) is not None and method == "GET":
                    found = self.docs[doctype].get(unquote(resource.group(2)))
                    if found is None:
                        message = f"{doctype} {unquote(resource.group(2))} not found"
                        return 404, frappe_error("DoesNotExistError", message), {}
                    return 200, {"data": _public(found)}, {}
                if resource.group(2) is None and method == "GET":
                    return self._list(list(self.docs[doctype].values()), query)
                if resource.group(2) is None and method == "POST" and doctype == PURCHASE_INVOICE:
                    return self._insert_purchase_invoice(data, user)
                if resource.group(2) is None and method == "POST" and doctype == TASK:
                    return self._insert_task(data, user)
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
        doctypes = ("Issue", PURCHASE_INVOICE, TASK)
        if not isinstance(data, dict) or data.get("doctype") not in doctypes or not data.get("name"):
            return 417, frappe_error("ValidationError", "doctype and name are required"), {}
        doctype, name = str(data["doctype"]), str(data["name"])
        if name not in (self.issues if doctype == "Issue" else self.docs[doctype]):
            return 404, frappe_error("DoesNotExistError", f"{doctype} {name} not found"), {}
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
                self._assign(name, who, user, doctype=doctype)
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
        return self._list(self.comments, query)

    def _list(self, docs: list[dict[str, Any]], query: dict[str, str]) -> Answer:
        """``frappe.client.get_list``: filters (AND), or_filters (any), fields, limit_page_length."""
        try:
            filters = json.loads(query.get("filters", "[]"))
            or_filters = json.loads(query.get("or_filters", "[]"))
            fields = json.loads(query.get("fields", '["name"]'))
            limit = int(query.get("limit_page_length", "20"))
        except ValueError as exc:
            return 417, frappe_error("ValidationError", f"Invalid query: {exc}"), {}
        if isinstance(filters, dict):
            filters = [[k, "=", v] for k, v in filters.items()]
        if isinstance(or_filters, dict):
            or_filters = [[k, "=", v] for k, v in or_filters.items()]
        rows = [
            d
            for d in docs
            if all(_matches(d, f) for f in filters)
            and (not or_filters or any(_matches(d, f) for f in or_filters))
        ]
        if limit > 0:
            rows = rows[:limit]
        picked = [_public(d) if fields == ["*"] else {f: d.get(f) for f in fields} for d in rows]
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

    # incoming documents (handler threads, under the lock) --------------------------------
    def _next_name(self, series: str, *, take: bool = True) -> str:
        """The next name of a naming series (``take=False``: as a failed insert, rolled back)."""
        key = series.replace(".YYYY.", str(self._clock.year))
        number = self._series.get(key, 0) + 1
        if take:
            self._series[key] = number
        return f"{key}{number:05d}"

    def _exists(self, target: str, value: Any) -> bool:
        return value in self.docs[target] if target in self.docs else value in self.masters[target]

    def _link_errors(
        self, data: dict[str, Any], links: Mapping[str, tuple[str, str]], row: int = 0
    ) -> list[str]:
        """Frappe's ``get_invalid_links`` messages: ``Supplier: X`` or ``Row #1: UOM: X``."""
        found = []
        for fieldname, (label, target) in links.items():
            value = data.get(fieldname)
            if value not in (None, "") and not self._exists(target, value):
                found.append(f"Row #{row}: {label}: {value}" if row else f"{label}: {value}")
        return found

    def _stamp(self, doc: dict[str, Any], user: str) -> None:
        now = self._now()
        doc.update(owner=user, creation=now, modified=now, modified_by=user, docstatus=0, idx=0)

    def _insert_purchase_invoice(self, data: Any, user: str) -> Answer:
        """``Document.insert`` of a Purchase Invoice, in ERPNext v15's order of checks."""
        if not isinstance(data, dict):
            return 417, frappe_error("ValidationError", "Request body must be a JSON object"), {}
        items = data.get("items")
        rows = [r for r in items if isinstance(r, dict)] if isinstance(items, list) else []
        invalid = self._link_errors(data, PI_LINKS)
        for idx, row in enumerate(rows, 1):
            invalid += self._link_errors(row, PI_ITEM_LINKS, idx)
        if invalid:
            return 417, frappe_error("LinkValidationError", f"Could not find {', '.join(invalid)}"), {}
        if not data.get("supplier"):
            return 404, frappe_error("DoesNotExistError", "Supplier None not found"), {}
        if not rows:  # as observed: an unguarded crash in the totals, not a clean MandatoryError
            message = "unsupported operand type(s) for -: 'NoneType' and 'float'"
            return 500, {"exc_type": "TypeError", "exception": f"TypeError: {message}"}, {}
        if self.docs["Supplier"][data["supplier"]]["disabled"]:
            return 417, frappe_error("PartyDisabled", f"Supplier {data['supplier']} is disabled"), {}
        company = self.docs["Company"].get(data.get("company") or next(iter(self.docs["Company"]), ""))
        if company is None:
            return 417, frappe_error("MandatoryError", "[Purchase Invoice]: company"), {}
        posting_date = (
            data["posting_date"]
            if data.get("set_posting_time") and data.get("posting_date")
            else f"{self._clock:%Y-%m-%d}"
        )
        for idx, row in enumerate(rows, 1):
            if not float(row.get("qty") or 0):
                what = row.get("item_code") or row.get("item_name")
                return (
                    417,
                    frappe_error("InvalidQtyError", f"Row #{idx}: Quantity for Item {what} cannot be zero"),
                    {},
                )
            if row.get("item_code"):
                row.setdefault("expense_account", company["default_expense_account"])
            if not row.get("expense_account"):
                what = row.get("item_code") or row.get("item_name")
                return (
                    417,
                    frappe_error("ValidationError", f"Expense account is mandatory for item {what}"),
                    {},
                )
        bill_date = data.get("bill_date")
        due_date = data.get("due_date") or bill_date or posting_date
        try:
            if date.fromisoformat(str(due_date)) < date.fromisoformat(str(bill_date or posting_date)):
                message = "Due Date cannot be before Supplier Invoice Date"
                return 417, frappe_error("ValidationError", message), {}
        except ValueError as exc:
            return 417, frappe_error("ValidationError", f"Invalid date: {exc}"), {}
        name = self._next_name("ACC-PINV-.YYYY.-")
        children = []
        for idx, row in enumerate(rows, 1):
            child = {k: v for k, v in row.items() if k in PI_ITEM_FIELDS}
            qty, rate = float(row["qty"]), float(row.get("rate") or 0)
            child.update(
                name=secrets.token_hex(5),
                doctype="Purchase Invoice Item",
                parent=name,
                parenttype=PURCHASE_INVOICE,
                parentfield="items",
                idx=idx,
                qty=qty,
                rate=rate,
                amount=qty * rate,
                uom=row.get("uom") or "Nos",
                stock_uom="Nos",
                conversion_factor=float(row.get("conversion_factor") or 1),
                item_name=row.get("item_name") or row.get("item_code"),
            )
            children.append(child)
        supplier = self.docs["Supplier"][data["supplier"]]
        currency = data.get("currency") or company["default_currency"]
        total = sum(c["amount"] for c in children)
        doc = {k: v for k, v in data.items() if k in PI_FIELDS or k.startswith("custom_")}
        doc.update(
            name=name,
            doctype=PURCHASE_INVOICE,
            naming_series="ACC-PINV-.YYYY.-",
            title=supplier["supplier_name"],
            supplier_name=supplier["supplier_name"],
            company=company["name"],
            posting_date=posting_date,
            due_date=due_date,
            currency=currency,
            conversion_rate=1.0,
            credit_to=company["default_payable_account"],
            status="Draft",
            items=children,
            total=total,
            grand_total=total,
            outstanding_amount=total,
            _assign=None,
        )
        self._stamp(doc, user)
        self.docs[PURCHASE_INVOICE][name] = doc
        return 200, {"data": _public(doc)}, {}

    def _insert_task(self, data: Any, user: str) -> Answer:
        if not isinstance(data, dict):
            return 417, frappe_error("ValidationError", "Request body must be a JSON object"), {}
        invalid = self._link_errors(data, TASK_LINKS)
        if invalid:
            return 417, frappe_error("LinkValidationError", f"Could not find {', '.join(invalid)}"), {}
        status, priority = data.get("status") or "Open", data.get("priority") or "Low"
        for label, value, allowed in (
            ("Status", status, TASK_STATUSES),
            ("Priority", priority, TASK_PRIORITIES),
        ):
            if value not in allowed:
                choices = ", ".join(f'"{a}"' for a in allowed)
                message = f'{label} cannot be "{value}". It should be one of {choices}'
                return 417, frappe_error("ValidationError", message), {}
        if not str(data.get("subject") or "").strip():
            name = self._next_name("TASK-.YYYY.-", take=False)
            body = frappe_error("MandatoryError", f"[Task, {name}]: subject")
            shown = {"message": "Error: Value missing for Task: Subject", "indicator": "red"}
            body["_server_messages"] = json.dumps([json.dumps(shown)])
            return 417, body, {}
        name = self._next_name("TASK-.YYYY.-")
        doc = {k: v for k, v in data.items() if k in TASK_FIELDS or k.startswith("custom_")}
        doc.update(name=name, doctype=TASK, status=status, priority=priority, _assign=None)
        self._stamp(doc, user)
        self.docs[TASK][name] = doc
        return 200, {"data": _public(doc)}, {}

    def _upload_file(self, data: Any, user: str) -> Answer:
        """``frappe.handler.upload_file``: a File record with the uploaded bytes, as ``File.save``."""
        if not isinstance(data, Multipart):
            return 417, frappe_error("ValidationError", "send the file as multipart/form-data"), {}
        form, upload = data.fields, data.files.get("file")
        doctype, docname = form.get("doctype") or None, form.get("docname") or None
        if doctype and (doctype not in self.docs or docname not in self.docs[doctype]):
            return 404, frappe_error("DoesNotExistError", f"{doctype} {docname} not found"), {}
        if upload is None:
            message = "Fields `file_name` or `file_url` must be set for File"
            return 417, frappe_error("MandatoryError", message), {}
        filename, content = upload[0], upload[1]
        content_hash = hashlib.md5(content, usedforsecurity=False).hexdigest()
        private = form.get("is_private", "0") == "1"
        files = self.docs[FILE].values()
        same = next(
            (f for f in files if f["content_hash"] == content_hash and f["is_private"] == int(private)), None
        )
        if same is not None:  # the same bytes are stored once; the new File points at them
            file_name, file_url = filename, same["file_url"]
        else:
            file_name = filename
            if any(f["file_name"] == filename for f in files):
                stem, dot, ext = filename.rpartition(".")
                file_name = f"{stem}{content_hash[-6:]}.{ext}" if dot else f"{filename}{content_hash[-6:]}"
            file_url = f"/private/files/{file_name}" if private else f"/files/{file_name}"
        name = secrets.token_hex(5)
        doc = {
            "name": name,
            "doctype": FILE,
            "file_name": file_name,
            "file_url": file_url,
            "is_private": int(private),
            "file_size": len(content),
            "content_hash": content_hash,
            "folder": form.get("folder") or "Home",
            "attached_to_doctype": doctype,
            "attached_to_name": docname,
            "attached_to_field": form.get("fieldname") or None,
            "is_folder": 0,
        }
        self._stamp(doc, user)
        self.docs[FILE][name] = doc
        self.file_contents[name] = content
        return 200, {"message": _public(doc)}, {}


UPLOAD_PATH = "/api/method/upload_file"
_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Multipart:
    """A parsed multipart/form-data body: text fields, and files as (filename, bytes, type)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.files: dict[str, tuple[str, bytes, str]] = {}


def parse_multipart(content_type: str, body: bytes) -> Multipart:
    """Split a multipart/form-data body exactly (binary parts byte for byte); ValueError if malformed."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("no boundary in Content-Type")
    delimiter = b"--" + match.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("no closing boundary")
    form = Multipart()
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise ValueError("a part is not framed by CRLF")
        head, sep, content = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no blank line after its headers")
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        params = dict(_PARAM.findall(headers.get("content-disposition", "")))
        if "name" not in params:
            raise ValueError("a part has no name")
        if "filename" in params:
            kind = headers.get("content-type", "application/octet-stream")
            form.files[params["name"]] = (unquote(params["filename"]), content, kind)
        else:
            form.fields[params["name"]] = content.decode("utf-8")
    return form


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record as the API returns it (child rows copied too)."""
    return {k: [dict(r) for r in v] if isinstance(v, list) else v for k, v in doc.items()}


def _like(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%``, ``_``), case-insensitive as MariaDB's default collation."""
    parts = ("." if ch == "_" else ".*" if ch == "%" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches(doc: dict[str, Any], spec: list[Any]) -> bool:
    if len(spec) == 4:  # [doctype, field, op, value]
        spec = spec[1:]
    fieldname, op, value = spec
    actual = doc.get(fieldname)
    if op in ("=", "!="):
        same = actual == value or (  # MariaDB's default collation compares text case-insensitively
            isinstance(actual, str) and isinstance(value, str) and actual.casefold() == value.casefold()
        )
        return same is (op == "=")
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
