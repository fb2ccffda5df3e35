"""Outbound ERPNext / Frappe client: a routing decision becomes REST calls on the Issue.

Mapping of a ``route`` action (``action.fields`` keys as in the tenant's policy):

=====================================  ===================================================
policy key                             REST call
=====================================  ===================================================
``issue_type``, ``priority``, any      ``PUT /api/resource/Issue/{name}`` with those fields
other ``fields`` key (an Issue field)  (one request, e.g. ``{"issue_type": "Bug",
                                       "priority": "High"}``)
``queue`` / ``group``                  the same PUT, on the field named by
                                       ``options["queue_field"]`` / ``["group_field"]``
``assignee`` (a User id, i.e. email)   ``POST /api/method/frappe.desk.form.assign_to.add``
                                       ``{"doctype": "Issue", "name": ..., "assign_to": [user]}``
``context["note"]``                    ``POST /api/resource/Comment`` (``comment_type``
                                       ``Comment``) ending with ``deskpilot:<idempotency key>``
=====================================  ===================================================

Idempotent under retries: the PUT sets values (the same twice is the same); an assignee who
already has an open ToDo is a success (current Frappe answers 200 with "Already in the following
Users ToDo list", older versions 417 ``DuplicateToDoError``); the comment is posted only when
``GET /api/resource/Comment`` filtered on the Issue and ``content like %deskpilot:<key>%``
finds none.

Auth: ``Authorization: token <api_key>:<api_secret>`` (the credential is ``api_key:api_secret``).
Errors follow Frappe's shape ``{"exc_type", "exception", "_server_messages"}``: timeouts,
connection errors, 408, 425, 429 (``Retry-After``) and 5xx are transient; 401/403
(``AuthenticationError``/``PermissionError``), 404 (``DoesNotExistError``), 409
(``DuplicateEntryError``), 417 (``ValidationError``, e.g. an unknown Issue Type) are permanent.
One attempt per ``act``: the job queue retries with backoff.

A ``file_document`` action (an incoming document) creates a draft Purchase Invoice or a Task
with the original attached, once per document hash: see ``documents.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.erpnext import documents
from deskpilot.connectors.erpnext.convert import PlannedCall, plan_route
from deskpilot.connectors.generic.client import retry_after_seconds
from deskpilot.errors import ConfigError, DeskpilotError
from deskpilot.types import Action

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 300
# current Frappe (a msgprint with a 200) and older releases (DuplicateToDoError, a 417)
ALREADY_ASSIGNED = ("already in the following users todo list", "already in user's to do list")
_TAGS = re.compile(r"<[^>]+>")
_HINTS = {
    401: "check the ERPNext credential (api_key:api_secret of the API user)",
    403: "the API user needs write on Issue (Support Team) and read+create on Comment",
    404: "the Issue was deleted or renamed in ERPNext",
    417: "check that the policy's values exist in ERPNext (Issue Type, Issue Priority, User)",
}
_DOCUMENT_HINTS = {
    **_HINTS,
    403: "the API user needs create and write on Purchase Invoice (Accounts User) or Task (Projects "
    "User), read on Supplier and Company, and create on File",
    404: "the record was deleted in ERPNext while the document was being filed",
    417: "check the policy's values (Supplier, Project, User) and options.expense_account, "
    "options.item_code, options.company",
}
Upload = dict[str, tuple[str, bytes, str]]


def _user_agent() -> str:
    try:
        return f"deskpilot/{version('deskpilot')}"
    except PackageNotFoundError:
        return "deskpilot/unknown"


def _clip(text: str) -> str:
    text = " ".join(_TAGS.sub(" ", text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def server_messages(data: Mapping[str, Any]) -> list[str]:
    """The texts in Frappe's ``_server_messages``: a JSON list of JSON-encoded message dicts."""
    raw = data.get("_server_messages")
    if not isinstance(raw, str):
        return []
    try:
        items = json.loads(raw)
    except ValueError:
        return [raw]
    out: list[str] = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, str):
            with contextlib.suppress(ValueError):
                item = json.loads(item)
        message = item.get("message") if isinstance(item, dict) else item
        if message is not None:
            out.append(str(message))
    return out


def error_text(response: httpx.Response) -> tuple[str | None, str]:
    """(Frappe's ``exc_type``, a short message) of an error response, whatever its shape."""
    try:
        data = response.json()
    except ValueError:
        return None, _clip(response.text) or response.reason_phrase
    if not isinstance(data, dict):
        return None, _clip(json.dumps(data))
    exc_type = data.get("exc_type") if isinstance(data.get("exc_type"), str) else None
    messages = server_messages(data)
    if messages:
        return exc_type, _clip("; ".join(messages))
    exception = data.get("exception") or data.get("message")
    if isinstance(exception, str) and exception.strip():
        return exc_type, _clip(exception.strip().splitlines()[-1])
    return exc_type, _clip(exc_type or response.text or response.reason_phrase)


def _already_assigned(messages: list[str]) -> bool:
    return any(text in m.lower() for m in messages for text in ALREADY_ASSIGNED)


def parse_credential(token: str | None) -> str:
    """``api_key:api_secret`` -> the Authorization header value; ConfigError naming the format."""
    if not token:
        raise ConfigError(
            "the ERPNext connector needs a credential",
            hint='set DESKPILOT_CONNECTOR_SECRETS to {"<credentials name>": "<api_key>:<api_secret>"} '
            "(User > API Access > Generate Keys in ERPNext)",
        )
    key, sep, secret = token.partition(":")
    if not sep or not key.strip() or not secret.strip() or any(c.isspace() for c in token.strip()):
        raise ConfigError(
            "the ERPNext credential is not api_key:api_secret",
            hint="join the user's API Key and API Secret with one colon, without spaces",
        )
    return f"token {key.strip()}:{secret.strip()}"


class ErpnextClient:
    """Sync client for one ERPNext site. Close it.

    ``options``: ``queue_field``, ``group_field`` (routing); ``default_supplier``, ``company``,
    ``expense_account``, ``item_code``, ``uom`` (filing documents, see ``documents.py``).
    """

    name = "erpnext"

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
            raise ConfigError(f"ERPNext URL {base_url!r} is not an http(s) URL", hint="use the site URL")
        self.base_url = base_url.rstrip("/")
        self.options = dict(options or {})
        headers = {
            "Authorization": parse_credential(token),
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    # one REST call --------------------------------------------------------------------
    def _call(
        self,
        call: PlannedCall,
        *,
        ok_when: tuple[int, str] | None = None,
        files: Upload | None = None,
        hints: Mapping[int, str] = _HINTS,
    ) -> dict[str, Any]:
        """Send ``call``; the JSON answer, or ActionFailedError. ``ok_when`` = (status, exc_type) accepted.

        With ``files`` the request is multipart: ``call.json`` are its form fields.
        """
        where = f"ERPNext {call.method} {call.path}"
        try:
            if files is None:
                response = self._http.request(
                    call.method, call.path, params=call.params or None, json=call.json
                )
            else:
                response = self._http.request(call.method, call.path, data=call.json, files=files)
        except httpx.TimeoutException as exc:
            raise ActionFailedError(f"{where} timed out ({type(exc).__name__})", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"{where}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(f"{where} failed: {type(exc).__name__}: {exc}", transient=True) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                answer = response.json()
            except ValueError:
                raise ActionFailedError(
                    f"{where} answered {status} with a body that is not JSON: {_clip(response.text)}",
                    transient=True,
                    upstream_status=status,
                ) from None
            return answer if isinstance(answer, dict) else {"data": answer}
        exc_type, message = error_text(response)
        if (
            ok_when is not None
            and status == ok_when[0]
            and (exc_type == ok_when[1] or _already_assigned([message]))
        ):
            return {"_accepted_error": exc_type or str(status), "message": message}
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if retry_after is None and status == 429:
            retry_after = retry_after_seconds(response.headers.get("X-RateLimit-Reset"))
        label = f"{status} {exc_type}" if exc_type else str(status)
        raise ActionFailedError(
            f"{where} answered {label}: {message}",
            transient=status >= 500 or status in TRANSIENT_STATUSES,
            hint=hints.get(status),
            upstream_status=status,
            retry_after=retry_after,
        )

    # the action -------------------------------------------------------------------------
    def act(self, action: Action) -> dict[str, Any]:
        if action.kind == "file_document":
            return self._file_document(action)
        try:
            plan = plan_route(action, self.options)
        except DeskpilotError as exc:
            raise ActionFailedError(exc.message, transient=False, hint=exc.hint) from None
        summary: dict[str, Any] = {"issue": plan.issue, "updated": {}, "assigned": [], "comment": None}
        if plan.update is not None:
            self._call(plan.update)
            summary["updated"] = dict(plan.update.json or {})
        if plan.assign is not None:
            answer = self._call(plan.assign, ok_when=(417, "DuplicateToDoError"))
            already = "_accepted_error" in answer or _already_assigned(server_messages(answer))
            summary["assigned"] = list((plan.assign.json or {}).get("assign_to", []))
            summary["already_assigned"] = already
        if plan.find_comment is not None and plan.comment is not None:
            found = self._call(plan.find_comment).get("data")
            rows = found if isinstance(found, list) else []
            existing = next(
                (
                    r.get("name")
                    for r in rows
                    if isinstance(r, dict) and plan.marker in str(r.get("content", ""))
                ),
                None,
            )
            if existing is not None:
                summary["comment"], summary["comment_existed"] = existing, True
            else:
                created = self._call(plan.comment).get("data")
                summary["comment"] = created.get("name") if isinstance(created, dict) else None
                summary["comment_existed"] = False
        return summary

    def _file_document(self, action: Action) -> dict[str, Any]:
        """Find or create the document's record, attach the original once, assign it."""
        plan = documents.plan_document(action, self.options)
        doc = plan.incoming
        content = doc.read()
        name = documents.existing_record(self._call(plan.find, hints=_DOCUMENT_HINTS), plan)
        summary: dict[str, Any] = {"kind": doc.kind, "doctype": plan.doctype, "name": name, "created": False}
        if name is None:
            record = dict(plan.record)
            if plan.doctype == documents.PURCHASE_INVOICE:
                record.update(self._invoice_parts(plan))
                summary["supplier"] = record["supplier"]
            insert = PlannedCall("POST", documents.resource(plan.doctype), json=record)
            created = self._call(insert, hints=_DOCUMENT_HINTS).get("data")
            name = created.get("name") if isinstance(created, dict) else None
            if not isinstance(name, str) or not name:
                raise ActionFailedError(
                    f"ERPNext POST {insert.path} answered without the new record's name", transient=False
                )
            summary.update(name=name, created=True)
        digest = hashlib.md5(content, usedforsecurity=False).hexdigest()  # Frappe's File.content_hash
        listed = self._call(documents.find_files(plan.doctype, name), hints=_DOCUMENT_HINTS)
        found = documents.existing_file(listed, digest, doc.filename)
        existed = found is not None
        if found is None:
            form = documents.upload_form(plan.doctype, name, doc)
            upload = PlannedCall("POST", documents.UPLOAD_PATH, json=form)
            files = {"file": (doc.filename, content, doc.media_type)}
            message = self._call(upload, files=files, hints=_DOCUMENT_HINTS).get("message")
            found = message if isinstance(message, dict) else {}
        summary.update(file=found.get("name"), file_url=found.get("file_url"), file_existed=existed)
        if plan.assignee:
            self._call(
                documents.assign(plan.doctype, name, plan.assignee),
                ok_when=(417, "DuplicateToDoError"),
                hints=_DOCUMENT_HINTS,
            )
            summary["assigned"] = [plan.assignee]
        return summary

    def _invoice_parts(self, plan: documents.DocumentPlan) -> dict[str, Any]:
        """Supplier, the one row and the remarks of a new Purchase Invoice (they need lookups)."""
        doc, note = plan.incoming, None
        supplier = plan.supplier
        if supplier is None:
            lookup = documents.find_supplier(doc)
            found = self._call(lookup, hints=_DOCUMENT_HINTS) if lookup is not None else {}
            supplier = documents.pick_supplier(found, doc)
        if supplier is None:
            named = " / ".join(doc.fields[k] for k in ("supplier", "vat_id") if doc.fields.get(k))
            if plan.default_supplier is None:
                what = (
                    f"ERPNext has no enabled Supplier {named!r}"
                    if named
                    else "the document names no supplier"
                )
                raise ActionFailedError(
                    f"{what}, and the policy sets no default_supplier",
                    transient=False,
                    hint="create the Supplier (its name or Tax ID as on the document), or set "
                    "default_supplier in the destination's fields or the system's options",
                )
            supplier = plan.default_supplier
            shown = f"{named!r}, not found in ERPNext" if named else "not read"
            note = f"Supplier on the document: {shown}; filed under {supplier!r}: correct it."
        parts: dict[str, Any] = {"supplier": supplier}
        expense = self.options.get("expense_account") or None
        if expense is None and not self.options.get("item_code"):
            companies = self._call(documents.find_company(self.options), hints=_DOCUMENT_HINTS)
            parts["company"], expense = documents.company_expense_account(companies, self.options)
        parts["items"] = [documents.invoice_row(doc, self.options, expense)]
        parts["remarks"] = documents.remarks(doc, note)
        return parts

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ErpnextClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
