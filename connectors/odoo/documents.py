"""Incoming documents -> Odoo records (a draft vendor bill or a project task), planned. Pure.

``OdooClient.act`` runs a ``file_document`` action (see :mod:`deskpilot.connectors.filing`)
with these ORM calls, over JSON-2 or JSON-RPC like every other call:

1. ``search_read`` on ``account.move`` (``narration ilike <marker>``) or ``project.task``
   (``description ilike <marker>``): a record already holding ``deskpilot:doc:<sha256>`` is
   reused and nothing is created.
2. Otherwise, for a vendor bill, ``res.partner`` ``search_read`` (``vat`` / ``name`` ``=ilike`` the
   document's; no match: the destination's ``default_supplier`` partner id, else no partner at
   all, which Odoo allows on a draft) and ``res.currency`` ``search_read`` on the currency code
   (not found: the company's). Then ``create`` of an ``in_invoice`` draft with one line for the
   document's total and no taxes (the accountant splits them), or of a task in the ``queue``
   project.
3. ``ir.attachment`` ``search_read`` on the record, then ``create`` (``datas`` base64) unless an
   attachment with the same ``checksum`` (SHA-1 of the bytes) is there already.

``create`` takes its ``vals_list`` positionally over JSON-RPC (Odoo's ``call_kw`` reads
``args[0]`` for it) and by name over JSON-2: see :func:`create_call` and
:func:`jsonrpc_create_request`.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deskpilot.connectors.filing import Incoming, incoming, permanent
from deskpilot.connectors.odoo.convert import OdooCall, PlannedCall
from deskpilot.connectors.odoo.options import FIELD_RE
from deskpilot.types import Action

MOVE = "account.move"
TASK = "project.task"
ATTACHMENT = "ir.attachment"
PARTNER = "res.partner"
CURRENCY = "res.currency"
MODELS = {"purchase_invoice": MOVE, "task": TASK}
MARKER_FIELDS = {MOVE: "narration", TASK: "description"}
RESERVED = frozenset({"create", "queue", "assignee", "default_supplier"})
_CURRENCY = re.compile(r"[A-Z]{3}")
_VAT_NOISE = re.compile(r"[\s.\-]")


@dataclass(frozen=True, slots=True)
class DocumentPlan:
    """What one ``file_document`` action does in Odoo (lookups aside)."""

    incoming: Incoming
    model: str
    find: OdooCall  # the marker search
    values: dict[str, Any]  # complete for a task; a bill still needs partner, currency, narration
    default_partner: int | None

    @property
    def marker_field(self) -> str:
        return MARKER_FIELDS[self.model]


def _record_id(key: str, value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) <= 0:
        raise permanent(f"fields.{key}: {value!r} is not an Odoo record id")
    return int(text)


def _extra(key: str, value: Any) -> Any:
    """A policy field -> its ``create`` value: ``*_id`` an id, ``*_ids`` ids to set, else as given."""
    if not FIELD_RE.fullmatch(key):
        raise permanent(f"fields.{key}: not an Odoo field name (lowercase letters, digits, '_')")
    if key.endswith("_ids"):
        items = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
        return [[6, 0, [_record_id(key, item) for item in items]]]
    if key.endswith("_id"):
        return _record_id(key, value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise permanent(f"fields.{key}: {value!r} is not a string or a number")
    return value


def plan_document(action: Action) -> DocumentPlan:
    """The record to create for one ``file_document`` action; permanent ActionFailedError if impossible."""
    doc = incoming(action)
    model = MODELS[doc.kind]
    extras = {key: _extra(key, value) for key, value in action.fields.items() if key not in RESERVED}
    queue = action.fields.get("queue")
    assignee = action.fields.get("assignee")
    field = MARKER_FIELDS[model]
    find = OdooCall(
        model, "search_read", (), {"domain": [[field, "ilike", doc.marker]], "fields": ["id", field]}
    )
    if model == TASK:
        if not queue:
            raise permanent(
                "a task needs the policy's `queue` (a project id): Odoo shows a task without a project "
                "only to its assignees"
            )
        values: dict[str, Any] = {"name": doc.title(), "project_id": _record_id("queue", queue)}
        if assignee:
            values["user_ids"] = [[6, 0, [_record_id("assignee", assignee)]]]
        values.update(extras)
        values["description"] = _html(doc, None)
        return DocumentPlan(doc, model, find, values, None)
    values = {"move_type": "in_invoice"}
    if doc.fields.get("number"):
        values["ref"] = doc.fields["number"]
    bill_date, due_date = doc.day("date"), doc.day("due_date")
    if bill_date:
        values["invoice_date"] = bill_date
    if due_date and (bill_date is None or due_date >= bill_date):
        values["invoice_date_due"] = due_date
    if queue:
        values["journal_id"] = _record_id("queue", queue)  # a purchase journal is AP's queue
    if assignee:
        values["invoice_user_id"] = _record_id("assignee", assignee)
    total, number = doc.amount(), doc.fields.get("number")
    label = (doc.doctype or "document").replace("_", " ").capitalize()
    line = {
        "name": f"{label} {number}" if number else doc.title(),
        "quantity": 1,
        "price_unit": float(total) if total is not None else 0.0,
        "tax_ids": [[6, 0, []]],
    }
    values["invoice_line_ids"] = [[0, 0, line]]
    values.update(extras)
    default = action.fields.get("default_supplier")
    default_partner = _record_id("default_supplier", default) if default else None
    return DocumentPlan(doc, model, find, values, default_partner)


def existing_record(rows: Any, plan: DocumentPlan) -> int | None:
    """The id of a ``search_read`` row whose marker field holds the marker (``ilike`` is looser)."""
    for row in rows if isinstance(rows, list) else []:
        if (
            not isinstance(row, Mapping)
            or isinstance(row.get("id"), bool)
            or not isinstance(row.get("id"), int)
        ):
            continue
        if plan.incoming.marker in html.unescape(str(row.get(plan.marker_field) or "")):
            return int(row["id"])
    return None


# --- vendor bill ------------------------------------------------------------------------
def _vat(value: str) -> str:
    return _VAT_NOISE.sub("", value).upper()


def _literal(value: str) -> str:
    """``value`` as an ``=ilike`` pattern matching only itself (PostgreSQL escapes with ``\\``)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_partner(doc: Incoming) -> OdooCall | None:
    """Partners with the document's VAT number or name (case-insensitive); None if it has neither."""
    name, vat = doc.fields.get("supplier"), _vat(doc.fields.get("vat_id", ""))
    leaves: list[list[Any]] = []
    if vat:
        leaves.append(["vat", "=ilike", "%".join(_literal(c) for c in vat)])  # "DE 123 456 789" too
    if name:
        leaves.append(["name", "=ilike", _literal(name)])
    if not leaves:
        return None
    domain: list[Any] = ["|", *leaves] if len(leaves) == 2 else leaves
    return OdooCall(
        PARTNER, "search_read", (), {"domain": domain, "fields": ["id", "name", "vat"], "limit": 20}
    )


def pick_partner(rows: Any, doc: Incoming) -> int | None:
    """The partner with the document's VAT number, else the one with its name."""
    found = (
        [r for r in rows if isinstance(r, Mapping) and isinstance(r.get("id"), int)]
        if isinstance(rows, list)
        else []
    )
    vat, name = _vat(doc.fields.get("vat_id", "")), doc.fields.get("supplier", "").casefold()
    for row in found:
        if vat and isinstance(row.get("vat"), str) and _vat(row["vat"]) == vat:
            return int(row["id"])
    for row in found:
        if name and str(row.get("name") or "").casefold() == name:
            return int(row["id"])
    return None


def find_currency(doc: Incoming) -> OdooCall | None:
    code = doc.fields.get("currency", "").upper()
    if not _CURRENCY.fullmatch(code):
        return None
    return OdooCall(
        CURRENCY, "search_read", (), {"domain": [["name", "=", code]], "fields": ["id", "name"], "limit": 1}
    )


def first_id(rows: Any) -> int | None:
    if (
        isinstance(rows, list)
        and rows
        and isinstance(rows[0], Mapping)
        and isinstance(rows[0].get("id"), int)
    ):
        return int(rows[0]["id"])
    return None


def _html(doc: Incoming, remarks: list[str] | None) -> str:
    """The narration / description: the explanation, the fields read, remarks, the marker."""
    parts = [f"<p>{html.escape(p)}</p>" for p in doc.explanation()]
    read = doc.summary()
    if read:
        parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in read) + "</ul>")
    parts += [f"<p>{html.escape(r)}</p>" for r in remarks or []]
    parts.append(f"<p>{html.escape(doc.marker)}</p>")
    return "".join(parts)


def narration(doc: Incoming, remarks: list[str]) -> str:
    if doc.amount() is None:
        remarks = [*remarks, "The total could not be read: the line's price is 0."]
    return _html(doc, remarks)


# --- attachment -------------------------------------------------------------------------
def find_attachments(model: str, record_id: int) -> OdooCall:
    domain = [["res_model", "=", model], ["res_id", "=", record_id]]
    return OdooCall(ATTACHMENT, "search_read", (), {"domain": domain, "fields": ["id", "name", "checksum"]})


def existing_attachment(rows: Any, sha1: str, filename: str) -> int | None:
    """An attachment with these bytes (``checksum``), or this name when it has no checksum."""
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or not isinstance(row.get("id"), int):
            continue
        checksum = row.get("checksum")
        if checksum == sha1 or (not checksum and row.get("name") == filename):
            return int(row["id"])
    return None


def attachment_values(model: str, record_id: int, doc: Incoming, content: bytes) -> dict[str, Any]:
    return {
        "name": doc.filename,
        "datas": base64.b64encode(content).decode("ascii"),
        "res_model": model,
        "res_id": record_id,
        "mimetype": doc.media_type,
    }


# --- create over both APIs --------------------------------------------------------------
def create_call(model: str, values: dict[str, Any]) -> OdooCall:
    """JSON-2: ``POST /json/2/<model>/create {"vals_list": [values]}`` -> ``[id]``."""
    return OdooCall(model, "create", (), {"vals_list": [values]})


def jsonrpc_create_request(
    model: str, values: dict[str, Any], *, database: str, uid: int, api_key: str, request_id: int
) -> PlannedCall:
    """JSON-RPC: ``execute_kw(db, uid, key, model, "create", [[values]], {})`` -> ``[id]``."""
    args = [database, uid, api_key, model, "create", [[values]], {}]
    params = {"service": "object", "method": "execute_kw", "args": args}
    return PlannedCall(
        "POST", "/jsonrpc", {"jsonrpc": "2.0", "method": "call", "params": params, "id": request_id}
    )


def created_id(result: Any) -> int | None:
    """``create``'s answer: ``[id]`` (a list of one), or an id."""
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    return result if isinstance(result, int) and not isinstance(result, bool) else None
