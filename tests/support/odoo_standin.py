"""A real HTTP server on a free loopback port that plays Odoo 17-19 for tests.

Not a mock of our client: requests go through sockets and are answered with Odoo's shapes.

    POST /json/2/<model>/<method>   Odoo 19+ (``version >= 19``): ``Authorization: bearer <key>``,
                                    optional ``X-Odoo-Database``; body ``{"ids": [...], **params}``;
                                    200 with the method's JSON result (a recordset as its ids);
                                    errors 4xx/5xx ``{"name", "message", "arguments", "context",
                                    "debug"}``: 401 bad key, 403 AccessError, 404 unknown model or
                                    method and MissingError, 422 UserError/ValidationError and bad
                                    parameters, 500 anything else (e.g. ValueError)
    POST /jsonrpc                   Odoo 17+: ``common.authenticate``, ``common.version``,
                                    ``object.execute_kw``; errors as HTTP 200 ``{"error": {"code":
                                    200, "message": "Odoo Server Error", "data": {"name", ...}}}``

Before 19, ``/json/2/...`` is werkzeug's HTML 404, as on a real Odoo 17.

Models: ``helpdesk.ticket`` (name, description, partner_email, team_id, user_id, priority
'0'-'3', tag_ids, create/write date and uid), ``helpdesk.team``, ``helpdesk.tag``,
``res.users`` and ``mail.message``; for incoming documents ``account.move`` (vendor bills, with
``invoice_line_ids`` one2many commands), ``account.move.line``, ``account.journal``,
``account.tax``, ``project.project``, ``project.task``, ``res.partner``, ``res.currency`` and
``ir.attachment`` (``datas`` base64 in, stored bytes, ``checksum`` = SHA-1, ``file_size``; the
first PDF or image on a bill becomes its ``message_main_attachment_id``). Methods: ``create``
(``vals_list``: JSON-2 answers ``[ids]``; JSON-RPC takes it positionally and answers an id for
a dict, ids for a list, and fails with Odoo's ``IndexError`` when it comes by name), ``write``,
``read``, ``search_read``, ``search_count``, ``message_post``. Required fields missing on
``create`` are Odoo's ``ValidationError`` ("a mandatory field is not set"). Domains: prefix
``&``, ``|``, ``!`` over ``[field, op, value]`` leaves (implicit AND) with ``=``, ``!=``, ``in``,
``not in``, ``like``, ``ilike`` (``%``/``_`` wildcards, ``\\`` escapes), ``=like``,
``=ilike``; records with ``active`` false are left out unless the domain names ``active``.
``records_of``, ``record`` and ``attachments_of`` read records and attachment bytes back.

Odoo itself uses neither 409 nor 412; concurrent writes surface as a serialization failure,
injected with ``fail_next_error(1, "psycopg2.errors.SerializationFailure", ...)``.

To play the people and Odoo's automation rule: ``create_ticket(...)`` and ``human_write(...)``
change records as a person would, and ``webhook_payload(model, id, fields)`` gives the exact
bytes Odoo's *Send Webhook Notification* posts (``ir.actions.server._run_action_webhook``).
Use: ``from support.odoo_standin import OdooStandin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import inspect
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from support.standin import Answer, Request, SeenRequest, StandinServer, same_secret

_JSON2 = re.compile(r"/json/2/([^/]+)/([^/]+)")
HTML_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server.</p>\n"
)
STATUS_OF = {
    "odoo.exceptions.AccessDenied": 401,
    "odoo.exceptions.AccessError": 403,
    "odoo.exceptions.MissingError": 404,
    "odoo.exceptions.UserError": 422,
    "odoo.exceptions.ValidationError": 422,
}
REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 422: "UnprocessableEntity"}

# field -> (type, comodel or selection keys)
FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "helpdesk.ticket": {
        "id": ("integer", None),
        "name": ("char", None),
        "description": ("html", None),
        "partner_email": ("char", None),
        "team_id": ("many2one", "helpdesk.team"),
        "user_id": ("many2one", "res.users"),
        "priority": ("selection", ("0", "1", "2", "3")),
        "tag_ids": ("many2many", "helpdesk.tag"),
        "create_date": ("datetime", None),
        "write_date": ("datetime", None),
        "create_uid": ("many2one", "res.users"),
        "write_uid": ("many2one", "res.users"),
    },
    "helpdesk.team": {"id": ("integer", None), "name": ("char", None)},
    "helpdesk.tag": {"id": ("integer", None), "name": ("char", None)},
    "res.users": {"id": ("integer", None), "name": ("char", None), "login": ("char", None)},
    "mail.message": {
        "id": ("integer", None),
        "model": ("char", None),
        "res_id": ("integer", None),
        "body": ("html", None),
        "message_type": ("char", None),
        "subtype_xmlid": ("char", None),
        "author_uid": ("integer", None),
    },
}
_STAMPS: dict[str, tuple[str, Any]] = {
    "create_date": ("datetime", None),
    "write_date": ("datetime", None),
    "create_uid": ("many2one", "res.users"),
    "write_uid": ("many2one", "res.users"),
}
FIELDS.update(
    {
        "account.move": {
            "id": ("integer", None),
            "name": ("char", None),
            "move_type": (
                "selection",
                (
                    "entry",
                    "out_invoice",
                    "out_refund",
                    "in_invoice",
                    "in_refund",
                    "out_receipt",
                    "in_receipt",
                ),
            ),
            "state": ("selection", ("draft", "posted", "cancel")),
            "ref": ("char", None),
            "invoice_date": ("date", None),
            "invoice_date_due": ("date", None),
            "partner_id": ("many2one", "res.partner"),
            "currency_id": ("many2one", "res.currency"),
            "journal_id": ("many2one", "account.journal"),
            "invoice_user_id": ("many2one", "res.users"),
            "narration": ("html", None),
            "invoice_line_ids": ("one2many", ("account.move.line", "move_id")),
            "amount_total": ("float", None),
            "message_main_attachment_id": ("many2one", "ir.attachment"),
            **_STAMPS,
        },
        "account.move.line": {
            "id": ("integer", None),
            "move_id": ("many2one", "account.move"),
            "name": ("char", None),
            "quantity": ("float", None),
            "price_unit": ("float", None),
            "tax_ids": ("many2many", "account.tax"),
            "price_subtotal": ("float", None),
        },
        "account.journal": {"id": ("integer", None), "name": ("char", None), "type": ("char", None)},
        "account.tax": {"id": ("integer", None), "name": ("char", None)},
        "project.project": {"id": ("integer", None), "name": ("char", None)},
        "project.task": {
            "id": ("integer", None),
            "name": ("char", None),
            "project_id": ("many2one", "project.project"),
            "description": ("html", None),
            "user_ids": ("many2many", "res.users"),
            "priority": ("selection", ("0", "1")),
            **_STAMPS,
        },
        "res.partner": {
            "id": ("integer", None),
            "name": ("char", None),
            "vat": ("char", None),
            "email": ("char", None),
            "active": ("boolean", None),
        },
        "res.currency": {"id": ("integer", None), "name": ("char", None), "active": ("boolean", None)},
        "ir.attachment": {
            "id": ("integer", None),
            "name": ("char", None),
            "datas": ("binary", None),
            "res_model": ("char", None),
            "res_id": ("integer", None),
            "mimetype": ("char", None),
            "type": ("selection", ("binary", "url")),
            "checksum": ("char", None),
            "file_size": ("integer", None),
        },
    }
)
READONLY = frozenset(
    {
        "id",
        "create_date",
        "write_date",
        "create_uid",
        "write_uid",
        "checksum",
        "file_size",
        "amount_total",
        "price_subtotal",
    }
)
# what ``create`` fills in when not given, and what it refuses to go without (field: label)
DEFAULTS: dict[str, dict[str, Any]] = {
    "account.move": {"name": "/", "move_type": "entry", "state": "draft", "journal_id": 2, "currency_id": 1},
    "account.move.line": {"quantity": 1.0, "price_unit": 0.0},
    "res.partner": {"active": True},
    "res.currency": {"active": True},
    "ir.attachment": {"type": "binary"},
}
REQUIRED: dict[str, dict[str, str]] = {
    "project.task": {"name": "Title"},
    "ir.attachment": {"name": "Name"},
    "res.partner": {"name": "Name"},
    "account.move": {"journal_id": "Journal"},
}
MAIN_ATTACHMENT_TYPES = ("application/pdf", "image/")


class OdooError(Exception):
    """An exception raised "inside Odoo"; ``name`` is its fully qualified class name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Records:
    """A recordset returned by a method: JSON-2 answers its ids, JSON-RPC an id if ``single``."""

    ids: tuple[int, ...]
    single: bool = False


@dataclass(frozen=True)
class SeenCall:
    api: str  # "json2" or "jsonrpc"
    model: str
    method: str
    ids: tuple[int, ...]
    params: dict[str, Any]
    uid: int
    error: str | None = None


class OdooStandin(StandinServer):
    """Thread-safe stand-in Odoo with one database. The API key belongs to user ``uid``.

    ``fail_next`` faults and ``delay_s`` apply to the POSTs (GETs are always werkzeug's 404).
    """

    label = "Odoo"
    json_type = "application/json; charset=utf-8"
    text_type = "text/html; charset=utf-8"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        api_key: str = "odoo-api-key",
        uid: int = 7,
        login: str = "deskpilot-bot",
        database: str = "acme",
        other_databases: tuple[str, ...] = (),
        version: int = 19,
        delay_s: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(delay_s=delay_s, port=port)
        self.api_key = api_key
        self.uid = uid
        self.database = database
        self.other_databases = other_databases  # when set, JSON-2 needs X-Odoo-Database
        self.version = version
        self.calls: list[SeenCall] = []
        self.records: dict[str, dict[int, dict[str, Any]]] = {model: {} for model in FIELDS}
        self._keys = {api_key: uid}
        self._errors: deque[tuple[OdooError, str | None, str | None]] = deque()
        self._clock = datetime(2024, 5, 2, 10, 15, 42)
        self.add("res.users", 2, name="Mitchell Admin", login="admin")
        self.add("res.users", uid, name="deskpilot", login=login)
        # what a database with Accounting installed has: currencies (one archived) and journals
        self.add("res.currency", 1, name="EUR", active=True)
        self.add("res.currency", 2, name="USD", active=True)
        self.add("res.currency", 3, name="CHF", active=False)
        self.add("account.journal", 2, name="Vendor Bills", type="purchase")
        self.add("account.journal", 3, name="Miscellaneous Operations", type="general")

    # test controls ---------------------------------------------------------------------
    def fail_next_error(
        self, n: int, name: str, message: str, *, model: str | None = None, method: str | None = None
    ) -> None:
        """The next ``n`` ORM calls (of ``model``/``method`` if given) raise the Odoo exception
        ``name`` (after authentication), changing nothing."""
        with self._lock:
            self._errors.extend((OdooError(name, message), model, method) for _ in range(n))

    def record(self, model: str, record_id: int) -> dict[str, Any] | None:
        """A stored record as Odoo keeps it (one2many and many2many as lists of ids)."""
        with self._lock:
            found = self.records[model].get(record_id)
            return {k: v for k, v in found.items() if not k.startswith("_")} if found is not None else None

    def records_of(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in r.items() if not k.startswith("_")}
                for _, r in sorted(self.records[model].items())
            ]

    def attachments_of(self, model: str, record_id: int) -> list[dict[str, Any]]:
        """The attachments of a record, each with its bytes under ``content``."""
        with self._lock:
            return [
                {**{k: v for k, v in a.items() if not k.startswith("_")}, "content": a["_raw"]}
                for _, a in sorted(self.records["ir.attachment"].items())
                if a["res_model"] == model and a["res_id"] == record_id
            ]

    def add_user(self, uid: int, login: str, *, api_key: str | None = None) -> None:
        with self._lock:
            self.add("res.users", uid, name=login.title(), login=login)
            if api_key is not None:
                self._keys[api_key] = uid

    def add(self, model: str, record_id: int, **values: Any) -> None:
        """Put a record in place as it is (no write_date, no checks): teams, tags, users."""
        with self._lock:
            self.records[model][record_id] = {"id": record_id, **values}

    def create_ticket(
        self, name: str, description: str | bool = False, partner_email: str | bool = False, **values: Any
    ) -> int:
        """A ticket created by a person (user 2) or the mail gateway: create_date == write_date."""
        with self._lock:
            stamp = self._tick()
            record_id = max(self.records["helpdesk.ticket"], default=41) + 1
            record = {field: _empty(kind) for field, (kind, _) in FIELDS["helpdesk.ticket"].items()}
            record.update(
                id=record_id,
                name=name,
                description=description,
                partner_email=partner_email,
                priority="0",
                create_date=stamp,
                write_date=stamp,
                create_uid=2,
                write_uid=2,
            )
            self.records["helpdesk.ticket"][record_id] = record
            if values:
                self._write("helpdesk.ticket", [record_id], values, uid=2, stamp=stamp)
            return record_id

    def human_write(self, model: str, record_id: int, *, uid: int = 2, **values: Any) -> None:
        """A person saves a change in the form view."""
        with self._lock:
            self._write(model, [record_id], values, uid=uid)

    def webhook_payload(
        self, model: str, record_id: int, fields: list[str], *, action: str = "deskpilot", action_id: int = 12
    ) -> bytes:
        """The body of Odoo's Send Webhook Notification for this record, byte for byte."""
        with self._lock:
            values: dict[str, Any] = {"_model": model, "_id": record_id, "_action": f"{action}(#{action_id})"}
            values.update(self._read(model, [record_id], fields)[0])
        return json.dumps(values, sort_keys=True, default=str).encode()

    def ticket(self, record_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self.records["helpdesk.ticket"].get(record_id)
            return dict(found) if found is not None else None

    def notes(self, model: str, record_id: int) -> list[str]:
        """Bodies of the messages posted on a record, oldest first."""
        with self._lock:
            return [
                m["body"]
                for m in sorted(self.records["mail.message"].values(), key=lambda m: m["id"])
                if m["model"] == model and m["res_id"] == record_id
            ]

    def call_names(self) -> list[str]:
        with self._lock:
            return [f"{c.model}.{c.method}" for c in self.calls]

    # ORM ---------------------------------------------------------------------------------
    def _tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def _model(self, model: str) -> dict[str, tuple[str, Any]]:
        spec = FIELDS.get(model)
        if spec is None:
            raise OdooError("builtins.KeyError", model)
        return spec

    def _existing(self, model: str, ids: list[int]) -> list[dict[str, Any]]:
        table = self.records[model]
        missing = [i for i in ids if i not in table]
        if missing:
            raise OdooError(
                "odoo.exceptions.MissingError",
                "Record does not exist or has been deleted.\n"
                f"(Record: {model}({missing[0]},), User: {self.uid})",
            )
        return [table[i] for i in ids]

    def _write(
        self, model: str, ids: list[int], vals: Any, *, uid: int, stamp: datetime | None = None
    ) -> bool:
        spec = self._model(model)
        if not isinstance(vals, dict):
            raise OdooError("builtins.TypeError", "write() argument vals must be a dict")
        records = self._existing(model, ids)
        clean: dict[str, Any] = {}
        for name, value in vals.items():
            if name not in spec or name in READONLY:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model {model!r}")
            kind, extra = spec[name]
            clean[name] = self._convert(model, name, kind, extra, value)
        stamp = stamp or self._tick()
        for record in records:
            for name, value in clean.items():
                if FIELDS[model][name][0] == "many2many":
                    record[name] = _apply_commands(record.get(name) or [], value)
                else:
                    record[name] = value
            if "write_date" in spec:
                record.update(write_date=stamp, write_uid=uid)
        return True

    def _convert(self, model: str, name: str, kind: str, extra: Any, value: Any) -> Any:
        if kind == "many2one":
            if value is False:
                return False
            if isinstance(value, bool) or not isinstance(value, int):
                raise OdooError("builtins.TypeError", f"{model}.{name}: expected a record id, got {value!r}")
            if value not in self.records[extra]:
                raise OdooError(
                    "odoo.exceptions.ValidationError",
                    f"The operation cannot be completed: {model}.{name} refers to a missing {extra} "
                    f"record ({value})",
                )
            return value
        if kind == "many2many":
            if not isinstance(value, list) or not all(isinstance(c, list) and c for c in value):
                raise OdooError("builtins.ValueError", f"{model}.{name}: expected a list of commands")
            for command in value:
                if command[0] == 6 and any(i not in self.records[extra] for i in command[2]):
                    raise OdooError(
                        "odoo.exceptions.ValidationError",
                        f"The operation cannot be completed: {extra} records {command[2]} do not all exist",
                    )
                if command[0] in (3, 4) and command[1] not in self.records[extra]:
                    raise OdooError(
                        "odoo.exceptions.ValidationError",
                        f"The operation cannot be completed: {extra} record {command[1]} does not exist",
                    )
            return value
        if kind == "selection":
            if value is not False and value not in extra:
                raise OdooError("builtins.ValueError", f"Wrong value for {model}.{name}: {value!r}")
            return value
        if kind == "date":
            try:
                return value if value is False else date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise OdooError(
                    "builtins.ValueError", f"time data {value!r} does not match format '%Y-%m-%d'"
                ) from None
        if kind in ("float", "integer"):
            if value is not False and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise OdooError("builtins.ValueError", f"{model}.{name}: {value!r} is not a number")
            return value
        if kind == "boolean":
            return bool(value)
        if kind == "binary":
            try:
                return value if value is False else base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise OdooError("binascii.Error", str(exc)) from None
        if value is not False and not isinstance(value, str | int):
            raise OdooError("builtins.ValueError", f"{model}.{name}: {value!r} is not a {kind}")
        return value

    def _read(self, model: str, ids: list[int], fields: list[str] | None) -> list[dict[str, Any]]:
        spec = self._model(model)
        names = [f for f in (fields or list(spec)) if f != "id"]
        unknown = [f for f in names if f not in spec]
        if unknown:
            raise OdooError("builtins.ValueError", f"Invalid field {unknown[0]!r} on model {model!r}")
        out = []
        for record in self._existing(model, ids):
            row = {"id": record["id"]}
            for name in names:
                row[name] = record.get(name, _empty(spec[name][0]))
            out.append(row)
        return out

    def _search(self, model: str, domain: Any) -> list[int]:
        """Ids matching a domain in Odoo's prefix notation (``&``, ``|``, ``!``; implicit AND)."""
        spec = self._model(model)
        if domain is None:
            domain = []
        if not isinstance(domain, list):
            raise OdooError("builtins.ValueError", f"Invalid domain: {domain!r}")
        stack: list[Callable[[dict[str, Any]], bool]] = []
        for token in reversed(domain):
            if token in ("&", "|", "!"):
                needed = 1 if token == "!" else 2
                if len(stack) < needed:
                    raise OdooError("builtins.ValueError", f"Invalid domain: {domain!r}")
                first = stack.pop()
                if token == "!":
                    stack.append(lambda r, f=first: not f(r))
                    continue
                second = stack.pop()
                if token == "&":
                    stack.append(lambda r, f=first, g=second: f(r) and g(r))
                else:
                    stack.append(lambda r, f=first, g=second: f(r) or g(r))
                continue
            if not isinstance(token, list | tuple) or len(token) != 3 or token[0] not in spec:
                raise OdooError("builtins.ValueError", f"Invalid leaf {token!r}")
            stack.append(_leaf(*token))
        if "active" in spec and not any(isinstance(t, list | tuple) and t[0] == "active" for t in domain):
            stack.append(lambda r: r.get("active", True) is not False)  # active_test
        table = self.records[model]
        return [i for i in sorted(table) if all(test(table[i]) for test in stack)]

    def _create(self, model: str, vals: Any, uid: int) -> int:
        """One ``create``: values checked as ``write`` does, defaults, required fields, children."""
        spec = self._model(model)
        if not isinstance(vals, dict):
            raise OdooError("builtins.TypeError", "create() takes a dict or a list of dicts")
        clean: dict[str, Any] = {}
        children: list[tuple[str, str, dict[str, Any]]] = []
        for name, value in vals.items():
            if name not in spec or name in READONLY:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model {model!r}")
            kind, extra = spec[name]
            if kind == "one2many":
                comodel, inverse = extra
                for command in value if isinstance(value, list) else [None]:
                    if not isinstance(command, list) or len(command) != 3 or command[0] != 0:
                        raise OdooError("builtins.ValueError", f"{model}.{name}: expected [0, 0, values]")
                    children.append((comodel, inverse, dict(command[2])))
            else:
                clean[name] = self._convert(model, name, kind, extra, value)
        record = {field: _empty(kind) for field, (kind, _) in spec.items()}
        record.update(DEFAULTS.get(model, {}))
        for name, value in clean.items():
            record[name] = _apply_commands([], value) if spec[name][0] == "many2many" else value
        for name, label in REQUIRED.get(model, {}).items():
            if record.get(name) in (False, None, ""):
                raise OdooError(
                    "odoo.exceptions.ValidationError",
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n"
                    "- Delete: another model requires the record being deleted. If possible, archive it "
                    f"instead.\n\nModel: {model}, Field: {label} ({name})",
                )
        table = self.records[model]
        record_id = max(table, default=0) + 1
        record["id"] = record_id
        if "create_date" in spec:
            stamp = self._tick()
            record.update(create_date=stamp, write_date=stamp, create_uid=uid, write_uid=uid)
        if model == "ir.attachment":
            self._attachment(record, vals)
        table[record_id] = record
        for comodel, inverse, child in children:
            record[_o2m_field(spec, comodel)].append(
                self._create(comodel, {**child, inverse: record_id}, uid)
            )
        if model == "account.move.line":
            record["price_subtotal"] = float(record["quantity"] or 0) * float(record["price_unit"] or 0)
        if model == "account.move":
            lines = self.records["account.move.line"]
            record["amount_total"] = sum(lines[i]["price_subtotal"] for i in record["invoice_line_ids"])
        return record_id

    def _attachment(self, record: dict[str, Any], vals: dict[str, Any]) -> None:
        """Odoo stores the bytes, not ``datas``; it keeps checksum and size, and registers the
        first PDF or image on a record that has a main attachment (``register_as_main_attachment``)."""
        raw = record["datas"] or b""
        record["_raw"] = raw
        record["datas"] = base64.b64encode(raw).decode() if raw else False
        record.update(checksum=hashlib.sha1(raw, usedforsecurity=False).hexdigest(), file_size=len(raw))
        record["mimetype"] = record["mimetype"] or "application/octet-stream"
        owner = self.records.get(str(record["res_model"] or ""), {}).get(record["res_id"])
        if (
            owner is not None
            and owner.get("message_main_attachment_id") is False
            and str(record["mimetype"]).startswith(MAIN_ATTACHMENT_TYPES)
        ):
            owner["message_main_attachment_id"] = record["id"]

    # methods: (records' ids, keyword parameters); each may raise OdooError
    def _m_create(self, model: str, ids: list[int], uid: int, vals_list: Any) -> Any:
        items = vals_list if isinstance(vals_list, list) else [vals_list]
        return Records(
            tuple(self._create(model, vals, uid) for vals in items), single=isinstance(vals_list, dict)
        )

    def _m_write(self, model: str, ids: list[int], uid: int, vals: Any) -> Any:
        return self._write(model, ids, vals, uid=uid)

    def _m_read(self, model: str, ids: list[int], uid: int, fields: Any = None, load: Any = None) -> Any:
        return self._read(model, ids, fields)

    def _m_search_read(
        self,
        model: str,
        ids: list[int],
        uid: int,
        domain: Any = None,
        fields: Any = None,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
    ) -> Any:
        found = self._search(model, domain)[offset:]
        return self._read(model, found[:limit] if limit else found, fields)

    def _m_search_count(
        self, model: str, ids: list[int], uid: int, domain: Any = None, limit: Any = None
    ) -> Any:
        return len(self._search(model, domain))

    def _m_message_post(
        self,
        model: str,
        ids: list[int],
        uid: int,
        body: str = "",
        message_type: str = "notification",
        subtype_xmlid: str | None = None,
        subject: str | None = None,
        partner_ids: Any = None,
        attachment_ids: Any = None,
        body_is_html: bool = False,
    ) -> Any:
        if len(ids) != 1:
            raise OdooError("builtins.ValueError", f"Expected singleton: {model}{tuple(ids)}")
        self._existing(model, ids)
        if model == "mail.message" or "write_date" not in FIELDS[model]:
            raise OdooError("builtins.AttributeError", f"{model!r} object has no attribute 'message_post'")
        messages = self.records["mail.message"]
        message_id = max(messages, default=100) + 1
        stored = body if body_is_html else html.escape(body, quote=False).replace("\n", "<br>")
        messages[message_id] = {
            "id": message_id,
            "model": model,
            "res_id": ids[0],
            "body": f"<p>{stored}</p>",
            "message_type": message_type,
            "subtype_xmlid": subtype_xmlid,
            "author_uid": uid,
        }
        return Records((message_id,), single=True)

    MODEL_METHODS = frozenset({"search_read", "search_count", "create"})  # @api.model: no ids

    def invoke(
        self,
        api: str,
        model: str,
        method: str,
        ids: list[int],
        args: list[Any],
        params: dict[str, Any],
        uid: int,
    ) -> Any:
        """Run one method as Odoo's dispatchers do (called from handler threads)."""
        with self._lock:
            error: str | None = None
            try:
                for queued in self._errors:
                    error, only_model, only_method = queued
                    if only_model in (None, model) and only_method in (None, method):
                        self._errors.remove(queued)
                        raise error
                if model not in FIELDS:
                    raise OdooError("builtins.KeyError", model)
                func = getattr(self, f"_m_{method}", None)
                if func is None or method.startswith("_"):
                    raise OdooError(
                        "builtins.AttributeError",
                        f"The method '{method}' does not exist on the model '{model}'",
                    )
                if method in self.MODEL_METHODS and ids and api == "json2":
                    raise OdooError(
                        "werkzeug.exceptions.UnprocessableEntity", f"cannot call {model}.{method} with ids"
                    )
                try:
                    inspect.signature(func).bind(model, ids, uid, *args, **params)
                except TypeError as exc:
                    raise OdooError("builtins.TypeError", str(exc)) from None
                return func(model, ids, uid, *args, **params)
            except OdooError as exc:
                error = exc.name
                raise
            finally:
                self.calls.append(SeenCall(api, model, method, tuple(ids), dict(params), uid, error))

    def user_of(self, key: str) -> int | None:
        for known, uid in self._keys.items():
            if same_secret(key, known):
                return uid
        return None

    # HTTP (handler threads) ----------------------------------------------------------------
    def _delays(self, request: Request) -> bool:
        return request.method == "POST"

    def _answer(self, request: Request) -> Answer:
        if request.method == "GET":
            return 404, HTML_404, {}
        fault = self._take_fault("POST")
        if fault is not None:
            answer = _error_body("werkzeug.exceptions.HTTPException", f"injected {fault.status}")
            return fault.status, answer, fault.retry_headers()
        match = _JSON2.fullmatch(request.path)
        if match is not None and self.version >= 19:
            model, method = unquote(match.group(1)), unquote(match.group(2))
            return self._json2(model, method, request.headers, request.body)
        if request.path == "/jsonrpc":
            return self._jsonrpc(request.body)
        return 404, HTML_404, {}

    def _json2(self, model: str, method: str, headers: dict[str, str], body: bytes) -> Answer:
        database = headers.get("x-odoo-database")
        known = (self.database, *self.other_databases)
        if (database is not None and database not in known) or (database is None and self.other_databases):
            return 404, _error_body("werkzeug.exceptions.NotFound", "database not found"), {}
        scheme, _, key = headers.get("authorization", "").partition(" ")
        uid = self.user_of(key) if scheme.lower() == "bearer" and key else None
        if uid is None:
            return 401, _error_body("werkzeug.exceptions.Unauthorized", "Invalid apikey", 401), {}
        try:
            params = json.loads(body) if body else {}
        except ValueError as exc:
            problem = f"could not parse the body as json: {exc}"
            return 400, _error_body("werkzeug.exceptions.BadRequest", problem), {}
        if not isinstance(params, dict):
            problem = "could not parse the body, expecting a json object"
            return 400, _error_body("werkzeug.exceptions.BadRequest", problem), {}
        ids = params.pop("ids", [])
        params.pop("context", None)
        try:
            result = self.invoke("json2", model, method, list(ids), [], params, uid)
        except OdooError as exc:
            if exc.name == "builtins.KeyError":
                problem = f"the model {model!r} does not exist"
                return 404, _error_body("werkzeug.exceptions.NotFound", problem), {}
            if exc.name == "builtins.AttributeError":
                return 404, _error_body("werkzeug.exceptions.NotFound", exc.message), {}
            if exc.name in ("builtins.TypeError", "werkzeug.exceptions.UnprocessableEntity"):
                return 422, _error_body("werkzeug.exceptions.UnprocessableEntity", exc.message), {}
            return STATUS_OF.get(exc.name, 500), _error_body(exc.name, exc.message), {}
        if isinstance(result, Records):
            result = list(result.ids)
        return 200, result, {}

    def _jsonrpc(self, body: bytes) -> Answer:
        try:
            request = json.loads(body)
            params = request["params"]
            service, method, args = params["service"], params["method"], list(params["args"])
        except (ValueError, KeyError, TypeError):
            return 400, {"jsonrpc": "2.0", "id": None, "error": {"code": 400, "message": "Bad Request"}}, {}
        request_id = request.get("id")
        try:
            result = self._service(service, method, args)
        except OdooError as exc:
            data = _error_body(exc.name, exc.message)
            error = {"code": 200, "message": "Odoo Server Error", "data": data}
            return 200, {"jsonrpc": "2.0", "id": request_id, "error": error}, {}
        if isinstance(result, Records):
            result = result.ids[0] if result.single else list(result.ids)
        return 200, {"jsonrpc": "2.0", "id": request_id, "result": result}, {}

    def _service(self, service: str, method: str, args: list[Any]) -> Any:
        if service == "common" and method == "version":
            return {"server_version": f"{self.version}.0", "protocol_version": 1}
        if service == "common" and method == "authenticate":
            database, login, key = args[0], args[1], args[2]
            self._check_database(database)
            uid = self.user_of(str(key))
            user = self.records["res.users"].get(uid or 0)
            return uid if user is not None and user.get("login") == login else False
        if service == "object" and method == "execute_kw":
            database, uid, key, model, name = args[:5]
            positional = list(args[5]) if len(args) > 5 else []
            kwargs = dict(args[6]) if len(args) > 6 else {}
            self._check_database(database)
            if self.user_of(str(key)) != uid:
                raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
            ids: list[int] = []
            if name == "create" and not positional:  # call_kw reads args[0] to shape the answer
                raise OdooError("builtins.IndexError", "tuple index out of range")
            if name not in self.MODEL_METHODS and positional:
                first = positional.pop(0)
                ids = [first] if isinstance(first, int) else list(first)
            return self.invoke("jsonrpc", model, name, ids, positional, kwargs, uid)
        raise OdooError("builtins.NameError", f"{service}.{method} is not a known RPC method")

    def _check_database(self, database: Any) -> None:
        if database not in (self.database, *self.other_databases):
            raise OdooError(
                "psycopg2.OperationalError",
                'connection to server at "localhost", port 5432 failed: '
                f'FATAL:  database "{database}" does not exist',
            )


def _empty(kind: str) -> Any:
    return [] if kind in ("many2many", "one2many") else False


def _o2m_field(spec: dict[str, tuple[str, Any]], comodel: str) -> str:
    return next(n for n, (kind, extra) in spec.items() if kind == "one2many" and extra[0] == comodel)


def _apply_commands(current: list[int], commands: list[list[Any]]) -> list[int]:
    ids = list(current)
    for command in commands:
        if command[0] == 4 and command[1] not in ids:
            ids.append(command[1])
        elif command[0] == 3 and command[1] in ids:
            ids.remove(command[1])
        elif command[0] == 6:
            ids = list(command[2])
        elif command[0] == 5:
            ids = []
    return ids


def _like(pattern: str, *, insensitive: bool) -> re.Pattern[str]:
    """SQL LIKE: ``%`` any text, ``_`` one character, ``\\`` makes the next one literal."""
    parts, escaped = [], False
    for ch in str(pattern):
        if escaped:
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(parts), re.S | (re.I if insensitive else 0))


def _leaf(name: str, op: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    if op == "=":
        return lambda r: r.get(name) == value
    if op == "!=":
        return lambda r: r.get(name) != value
    if op in ("in", "not in"):
        inside = op == "in"
        return lambda r: (r.get(name) in value) is inside
    if op in ("like", "ilike"):  # Odoo wraps the value in %...%
        pattern = _like(value, insensitive=op == "ilike")
        return lambda r: isinstance(r.get(name), str) and pattern.search(r[name]) is not None
    if op in ("=like", "=ilike"):  # the value is the whole pattern
        exact = _like(value, insensitive=op == "=ilike")
        return lambda r: isinstance(r.get(name), str) and exact.fullmatch(r[name]) is not None
    raise OdooError("builtins.ValueError", f"Invalid operator {op!r}")


def _error_body(name: str, message: str, *args: Any) -> dict[str, Any]:
    return {
        "name": name,
        "message": message,
        "arguments": [message, *args],
        "context": {},
        "debug": f"Traceback (most recent call last):\n  ...\n{name}: {message}\n",
    }
