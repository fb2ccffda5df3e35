"""Incoming documents -> ERPNext records (a draft Purchase Invoice or a Task), planned. Pure.

``ErpnextClient.act`` runs a ``file_document`` action (see :mod:`deskpilot.connectors.filing`)
with the calls planned here, in this order:

1. ``GET /api/resource/<Doctype>?filters=[["remarks"|"description","like","%deskpilot:doc:<sha>%"]]``:
   a record carrying the document's marker already exists (an earlier attempt, another
   decision on the same file): it is reused, nothing is created.
2. Otherwise, for a Purchase Invoice, the supplier is looked up (:func:`find_supplier`: an
   enabled Supplier whose name, supplier_name or tax_id matches the document's) and, when the
   policy gives neither ``expense_account`` nor ``item_code``, the Company's default expense
   account (:func:`find_company`: ERPNext refuses a row without an item and without an expense
   account). Then ``POST /api/resource/Purchase Invoice`` (docstatus 0, a draft) or
   ``POST /api/resource/Task``.
3. ``GET /api/resource/File`` on that record, then ``POST /api/method/upload_file`` (multipart)
   unless a File with the same ``content_hash`` (MD5 of the bytes) is attached already.
4. ``assignee``: ``frappe.desk.form.assign_to.add`` (already assigned counts as done).

A supplier ERPNext does not know is filed under ``default_supplier`` (the destination's fields,
else the system's options) with a line in the remarks naming the supplier on the document;
without one the action fails permanently, naming the supplier to create.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deskpilot.connectors.erpnext.convert import PlannedCall
from deskpilot.connectors.filing import Incoming, incoming, permanent
from deskpilot.types import Action

PURCHASE_INVOICE = "Purchase Invoice"
TASK = "Task"
DOCTYPES = {"purchase_invoice": PURCHASE_INVOICE, "task": TASK}
MARKER_FIELDS = {PURCHASE_INVOICE: "remarks", TASK: "description"}
RESERVED = frozenset({"create", "queue", "assignee", "supplier", "default_supplier"})
UPLOAD_PATH = "/api/method/upload_file"
ASSIGN_PATH = "/api/method/frappe.desk.form.assign_to.add"
DEFAULT_UOM = "Nos"
MAX_DATA_CHARS = 140  # a Frappe Data field (Task.subject, item_name)
_FIELDNAME = re.compile(r"[a-z][a-z0-9_]{0,139}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_VAT_NOISE = re.compile(r"[\s.\-]")


@dataclass(frozen=True, slots=True)
class DocumentPlan:
    """What one ``file_document`` action does in ERPNext (lookups aside)."""

    incoming: Incoming
    doctype: str
    find: PlannedCall  # the marker search
    record: dict[str, Any]  # the body to POST: complete for a Task; a Purchase Invoice still
    # needs supplier, items and remarks (they depend on lookups)
    supplier: str | None  # the policy's Supplier (sent as is), else None
    default_supplier: str | None
    assignee: str | None

    @property
    def marker_field(self) -> str:
        return MARKER_FIELDS[self.doctype]


def resource(doctype: str) -> str:
    return f"/api/resource/{doctype}"  # httpx percent-encodes the space


def _listing(doctype: str, filters: list[list[Any]], fields: list[str], **extra: str) -> PlannedCall:
    params = {"filters": json.dumps(filters), "fields": json.dumps(fields), "limit_page_length": "20"}
    params.update(extra)
    return PlannedCall("GET", resource(doctype), params=params)


def _value(key: str, value: Any) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise permanent(f"fields.{key}: {type(value).__name__} is not an ERPNext field value")
    return value


def plan_document(action: Action, options: Mapping[str, str]) -> DocumentPlan:
    """The record to create for one ``file_document`` action; permanent ActionFailedError if impossible."""
    doc = incoming(action)
    doctype = DOCTYPES[doc.kind]
    extras: dict[str, Any] = {}
    for key, value in action.fields.items():
        if key in RESERVED:
            continue
        if not _FIELDNAME.fullmatch(key):
            raise permanent(f"fields.{key}: not an ERPNext fieldname (lowercase, e.g. cost_center)")
        extras[key] = _value(key, value)
    queue = str(_value("queue", action.fields["queue"])) if action.fields.get("queue") else None
    assignee = str(_value("assignee", action.fields["assignee"])) if action.fields.get("assignee") else None
    field = MARKER_FIELDS[doctype]
    find = _listing(doctype, [[field, "like", f"%{doc.marker}%"]], ["name", field, "docstatus"])
    if doctype == TASK:
        record: dict[str, Any] = {"subject": doc.title()[:MAX_DATA_CHARS], "status": "Open"}
        if queue:
            record["project"] = queue
        record.update(extras)
        record["description"] = task_description(doc)
        return DocumentPlan(doc, doctype, find, record, None, None, assignee)
    if queue:
        raise permanent(
            "the policy sets `queue` for a Purchase Invoice; ERPNext files invoices by company, not queue",
            hint="drop `queue` from the invoice destination (use `assignee`, or a field such as cost_center)",
        )
    record = {"docstatus": 0}
    if doc.fields.get("number"):
        record["bill_no"] = doc.fields["number"]
    bill_date, due_date = doc.day("date"), doc.day("due_date")
    if bill_date:
        record["bill_date"] = bill_date
    if due_date and (bill_date is None or due_date >= bill_date):  # else 417 "Due Date cannot be before"
        record["due_date"] = due_date
    currency = doc.fields.get("currency", "").upper()
    if _CURRENCY.fullmatch(currency):
        record["currency"] = currency
    if options.get("company"):
        record["company"] = options["company"]
    record.update(extras)
    supplier = str(_value("supplier", action.fields["supplier"])) if action.fields.get("supplier") else None
    default = action.fields.get("default_supplier") or options.get("default_supplier") or None
    default_supplier = str(_value("default_supplier", default)) if default else None
    return DocumentPlan(doc, doctype, find, record, supplier, default_supplier, assignee)


def existing_record(answer: Mapping[str, Any], plan: DocumentPlan) -> str | None:
    """The name of a record holding the marker (a live one before a cancelled one), else None."""
    rows = answer.get("data")
    found = [
        r
        for r in (rows if isinstance(rows, list) else [])
        if isinstance(r, dict)
        and isinstance(r.get("name"), str)
        and plan.incoming.marker in str(r.get(plan.marker_field) or "")
    ]
    found.sort(key=lambda r: r.get("docstatus") == 2)
    return str(found[0]["name"]) if found else None


# --- Purchase Invoice ---------------------------------------------------------------------
def _vat(value: str) -> str:
    return _VAT_NOISE.sub("", value).upper()


def find_supplier(doc: Incoming) -> PlannedCall | None:
    """Enabled Suppliers named like the document's supplier or with its VAT id; None if it has neither."""
    name, vat = doc.fields.get("supplier"), doc.fields.get("vat_id")
    alternatives: list[list[Any]] = []
    if name:
        alternatives += [["name", "=", name], ["supplier_name", "=", name]]
    if vat and _vat(vat):  # stored with or without spaces or dots: "DE 123 456 789" too
        alternatives.append(["tax_id", "like", "%".join(_vat(vat))])
    if not alternatives:
        return None
    return _listing(
        "Supplier",
        [["disabled", "=", 0]],
        ["name", "supplier_name", "tax_id"],
        or_filters=json.dumps(alternatives),
    )


def pick_supplier(answer: Mapping[str, Any], doc: Incoming) -> str | None:
    """The Supplier with the document's VAT id, else the one with its name (case-insensitive)."""
    rows = [r for r in answer.get("data") or [] if isinstance(r, dict) and isinstance(r.get("name"), str)]
    vat = _vat(doc.fields.get("vat_id", ""))
    name = doc.fields.get("supplier", "").casefold()
    for row in rows:
        if vat and _vat(str(row.get("tax_id") or "")) == vat:
            return str(row["name"])
    for row in rows:
        if name and name in (str(row["name"]).casefold(), str(row.get("supplier_name") or "").casefold()):
            return str(row["name"])
    return None


def find_company(options: Mapping[str, str]) -> PlannedCall:
    filters = [["name", "=", options["company"]]] if options.get("company") else []
    return _listing("Company", filters, ["name", "default_expense_account"], limit_page_length="2")


def company_expense_account(answer: Mapping[str, Any], options: Mapping[str, str]) -> tuple[str, str]:
    """(Company, its default expense account) for the invoice row; permanent error naming the option."""
    rows = [r for r in answer.get("data") or [] if isinstance(r, dict)]
    hint = "set options.expense_account (an expense Account) or options.item_code (a non-stock Item)"
    if len(rows) != 1:
        what = (
            f"Company {options['company']!r} was not found"
            if options.get("company")
            else ("there is no Company" if not rows else "there are several Companies: set options.company")
        )
        raise permanent(f"ERPNext: {what}", hint=hint)
    account = rows[0].get("default_expense_account")
    if not isinstance(account, str) or not account:
        raise permanent(f"ERPNext Company {rows[0].get('name')!r} has no Default Expense Account", hint=hint)
    return str(rows[0]["name"]), account


def invoice_row(doc: Incoming, options: Mapping[str, str], expense_account: str | None) -> dict[str, Any]:
    """One row for the document's total (taxes included: the accountant splits them)."""
    number = doc.fields.get("number")
    label = (doc.doctype or "document").replace("_", " ").capitalize()
    total = doc.amount()
    row: dict[str, Any] = {
        "item_name": (f"{label} {number}" if number else doc.title())[:MAX_DATA_CHARS],
        "description": "\n".join([doc.filename, *doc.summary()]),
        "qty": 1,
        "rate": float(total) if total is not None else 0.0,
        "uom": options.get("uom") or DEFAULT_UOM,
        "conversion_factor": 1,
    }
    if options.get("item_code"):
        row["item_code"] = options["item_code"]
    if expense_account:
        row["expense_account"] = expense_account
    return row


def remarks(doc: Incoming, supplier_note: str | None) -> str:
    """The invoice's remarks: why it is here, what was read, then the marker on its own line."""
    lines = doc.explanation()
    read = doc.summary()
    if read:
        lines += ["Read from the document:", *read]
    if doc.amount() is None:
        lines.append("The total could not be read: the row's rate is 0.")
    if supplier_note:
        lines.append(supplier_note)
    return "\n".join([*lines, "", doc.marker])


# --- Task and File ----------------------------------------------------------------------
def task_description(doc: Incoming) -> str:
    """HTML (Task.description is a Text Editor): the explanation, the fields read, the marker."""
    parts = [f"<p>{html.escape(p)}</p>" for p in doc.explanation()]
    read = doc.summary()
    if read:
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in read) + "</ul>")
    parts.append(f"<p>{html.escape(doc.marker)}</p>")
    return "".join(parts)


def find_files(doctype: str, name: str) -> PlannedCall:
    filters = [["attached_to_doctype", "=", doctype], ["attached_to_name", "=", name]]
    return _listing(
        "File", filters, ["name", "file_name", "file_url", "content_hash"], limit_page_length="100"
    )


def existing_file(answer: Mapping[str, Any], content_md5: str, filename: str) -> dict[str, Any] | None:
    """An attached File with these bytes (``content_hash``), or this name when it has no hash."""
    for row in answer.get("data") or []:
        if not isinstance(row, dict):
            continue
        digest = row.get("content_hash")
        if digest == content_md5 or (not digest and row.get("file_name") == filename):
            return row
    return None


def upload_form(doctype: str, name: str, doc: Incoming) -> dict[str, str]:
    """``upload_file``'s form fields besides ``file``: a private attachment of the record."""
    return {
        "is_private": "1",
        "doctype": doctype,
        "docname": name,
        "folder": "Home/Attachments",
        "file_name": doc.filename,
    }


def assign(doctype: str, name: str, user: str) -> PlannedCall:
    return PlannedCall("POST", ASSIGN_PATH, json={"doctype": doctype, "name": name, "assign_to": [user]})
