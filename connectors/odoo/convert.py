"""Odoo payloads -> deskpilot events, and routing actions -> Odoo method calls. Pure functions.

Inbound. Odoo's *Send Webhook Notification* action posts (``_run_action_webhook``)::

    {"_action": "deskpilot: tickets(#12)", "_id": 42, "_model": "helpdesk.ticket",
     "create_date": "2024-05-02 10:15:42", "description": "<p>VPN drops ...</p>", "id": 42,
     "name": "VPN down", "partner_email": "ana@example.com", "priority": "1", "team_id": 1,
     "user_id": false, "write_date": "2024-05-02 10:15:42", "write_uid": 2}

``record.read(fields, load=None)`` gives a many2one as its id (``[id, "name"]`` is accepted
too), an empty field as ``false``, and ``json.dumps(default=str)`` dates as
``"YYYY-MM-DD HH:MM:SS"``. There is no delivery id and no event type, so:

* ``write_date`` (*Last Updated on*) and ``create_date`` (*Created on*) must be among the sent
  fields. Equal, the record was just created: a ``ticket`` event (``name`` -> subject,
  ``description`` HTML -> text, ``partner_email`` -> requester; the fields are configurable;
  metadata ``{model, id, create_date}``). Different, a person saved a change: a
  ``field_change`` event per routed field present (``team_id`` -> policy key ``queue``,
  ``user_id`` -> ``assignee``, ``priority`` -> ``priority``, an optional ``group_field`` ->
  ``group``), unless ``write_uid`` is deskpilot's own API user (``options.api_user_id``):
  those are our writes coming back.
* a ticket's delivery id is ``<model>:<id>:<write_date>``: the same notice sent twice, by a
  replay or by two rules on one save, is stored once. A field change's is
  ``<model>:<id>:<policy key>=<value>``: a notice re-reports every routed field it carries, so
  a later save of another field must not record the same correction again.

Outbound. A ``route`` action becomes Odoo ORM calls (:class:`OdooCall`), rendered for the
JSON-2 API (Odoo 19+) by :func:`json2_request` or for JSON-RPC ``execute_kw`` (Odoo 17, 18) by
:func:`jsonrpc_request`:

1. ``write`` on ``[id]`` with the destination fields (:func:`write_values`): ``queue`` ->
   ``team_id`` and ``assignee`` -> ``user_id`` (record ids), ``priority`` -> ``priority``,
   ``tags`` -> ``tag_ids`` as link commands ``[[4, id], ...]``; any other key is an Odoo field
   name (``*_id``: a record id, ``*_ids``: ids to link, else the value as written);
2. ``search_read`` on ``mail.message`` for the note's marker ``[deskpilot:<idempotency key>]``;
3. ``message_post`` (an internal note, ``subtype_xmlid: mail.mt_note``) only when step 2 found
   no message with that marker: the decision's explanation, then the marker.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from deskpilot.connectors.base import ActionFailedError, Inbound
from deskpilot.connectors.odoo.options import FIELD_RE, OdooOptions
from deskpilot.errors import InputDataError
from deskpilot.types import Action, Event, FieldChange, Ticket

SOURCE = "odoo"
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000
MAX_REQUESTER_CHARS = 320
MAX_DELIVERY_ID_CHARS = 200
NOTE_SUBTYPE = "mail.mt_note"
_FIELD_HINT = "add it to the Fields of the automation rule's Send Webhook Notification action"
_TAG = re.compile(r"</?[A-Za-z][^>]*>|<!--|&[#A-Za-z0-9]+;")
_LABELS = {"write_date": "Last Updated on", "create_date": "Created on", "write_uid": "Last Updated by"}


# --- inbound -----------------------------------------------------------------------------
def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputDataError(f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputDataError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise InputDataError(f"body is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputDataError(
            f"body is a JSON {type(data).__name__}, not an object",
            hint="point an Odoo Send Webhook Notification action at this URL",
        )
    return data


def _missing(name: str) -> InputDataError:
    label = _LABELS.get(name)
    shown = f"{name} ({label})" if label else name
    return InputDataError(f"{name}: missing", hint=f"{shown}: {_FIELD_HINT}")


def _record_id(value: Any, name: str) -> int | None:
    """A many2one as read with ``load=None`` (an id), or classic (``[id, "name"]``); None if empty."""
    if value is False or value is None:
        return None
    if isinstance(value, list) and len(value) == 2 and not isinstance(value[1], list):
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputDataError(f"{name}: {value!r} is not a record id (a whole number, or [id, name])")
    return value


def _timestamp(data: Mapping[str, Any], name: str) -> tuple[str, datetime]:
    raw = data.get(name)
    if raw is None:
        raise _missing(name)
    if not isinstance(raw, str):
        raise InputDataError(f"{name}: {raw!r} is not a date and time such as '2024-05-02 10:15:42'")
    try:
        return raw.strip(), datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InputDataError(
            f"{name}: {raw!r} is not a date and time such as '2024-05-02 10:15:42'"
        ) from None


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is False or value is None:
        return ""
    if not isinstance(value, str):
        raise InputDataError(f"{name}: {type(value).__name__} where text was expected")
    return value


class _TextOf(HTMLParser):
    BLOCKS = frozenset(
        "address article blockquote br dd div dl dt fieldset figure footer form h1 h2 h3 h4 h5 h6 "  # noqa: SIM905
        "header hr li main nav ol p pre section table td th tr ul".split()
    )
    HIDDEN = frozenset(("script", "style", "head", "title", "template"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(value: str) -> str:
    """Odoo's HTML as plain text: a line per block, a blank line between blocks at most.

    Source newlines inside HTML are spaces, as a browser shows them; a value without any tag
    (a plain Text field) keeps its lines.
    """
    if not _TAG.search(value):
        text = value
    else:
        parser = _TextOf()
        parser.feed(value)
        parser.close()
        text = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _delivery_id(*parts: object) -> str:
    value = ":".join(str(p) for p in parts)
    if len(value) <= MAX_DELIVERY_ID_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _scalar(value: Any, name: str) -> str | None:
    """A routed field's raw value as a string (a record id or a selection key); None if empty."""
    if value is False or value is None or value == "":
        return None
    if isinstance(value, list):
        found = _record_id(value, name)
        return None if found is None else str(found)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputDataError(f"{name}: {value!r} is neither a record id nor a value")
    return str(value)


def parse(tenant: str, body: bytes, options: OdooOptions) -> Inbound:
    """One webhook notice -> an Inbound; InputDataError naming the field that is wrong."""
    data = _load(body)
    model = data.get("_model")
    if model is None:
        raise InputDataError("_model: missing", hint="send Odoo's Send Webhook Notification payload")
    if model != options.model:
        raise InputDataError(
            f"_model: {model!r} is not the model this tenant routes ({options.model!r})",
            hint="point this rule at another tenant, or set options.model in the policy",
        )
    record_id = _record_id(data.get("_id", data.get("id")), "_id")
    if record_id is None:
        raise InputDataError("_id: missing", hint="send Odoo's Send Webhook Notification payload")
    if "id" in data and data["id"] != record_id:
        raise InputDataError(f"id: {data['id']!r} differs from _id {record_id}")
    write_raw, written = _timestamp(data, "write_date")
    _, created = _timestamp(data, "create_date")
    if written == created:
        return _created(tenant, data, model, record_id, write_raw, options)
    return _updated(tenant, data, model, record_id, write_raw, options)


def _created(
    tenant: str, data: Mapping[str, Any], model: str, record_id: int, stamp: str, options: OdooOptions
) -> Inbound:
    if options.subject_field not in data and options.body_field not in data:
        return Inbound(
            ignored=f"creation notice without {options.subject_field} or {options.body_field}: "
            "the ticket comes from the rule that sends them"
        )
    subject = " ".join(_text(data, options.subject_field).split())[:MAX_SUBJECT_CHARS]
    text = html_to_text(_text(data, options.body_field))[:MAX_BODY_CHARS]
    if not subject and not text:
        raise InputDataError(f"{options.subject_field}, {options.body_field}: both are empty")
    requester = None
    if options.requester_field is not None:
        found = _text(data, options.requester_field).strip()
        requester = found if 0 < len(found) <= MAX_REQUESTER_CHARS else None
    ticket = Ticket(
        subject=subject,
        body=text,
        requester=requester,
        source=SOURCE,
        external_id=str(record_id),
        metadata={"model": model, "id": record_id, "create_date": stamp},
    )
    event = Event(tenant, SOURCE, _delivery_id(model, record_id, stamp), "ticket", ticket)
    return Inbound(events=(event,))


def _updated(
    tenant: str, data: Mapping[str, Any], model: str, record_id: int, stamp: str, options: OdooOptions
) -> Inbound:
    if options.api_user_id is None:
        return Inbound(
            ignored="update notice ignored: options.api_user_id is not set, so deskpilot cannot "
            "tell people's changes from its own"
        )
    if "write_uid" not in data:
        raise _missing("write_uid")
    author_id = _record_id(data["write_uid"], "write_uid")
    if author_id == options.api_user_id:
        return Inbound(ignored=f"update by deskpilot's own API user {author_id}")
    author = f"odoo:user:{author_id}" if author_id is not None else "odoo:unknown-user"
    events = []
    for key, name in options.routed_fields().items():
        if name not in data:
            continue
        value = _scalar(data[name], name)
        if value is None:
            continue
        change = FieldChange(external_id=str(record_id), field=key, value=value, author=author)
        delivery = _delivery_id(model, record_id, f"{key}={value}")
        events.append(Event(tenant, SOURCE, delivery, "field_change", change))
    if not events:
        names = ", ".join(options.routed_fields().values()) or "none configured"
        return Inbound(ignored=f"update notice without a routed field ({names}) set")
    return Inbound(events=tuple(events))


# --- outbound ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OdooCall:
    """One ORM method call: ``model.browse(ids).method(**params)``."""

    model: str
    method: str
    ids: tuple[int, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """An HTTP request as data. ``json`` may hold the API key (JSON-RPC): never log it."""

    method: str
    path: str
    json: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What one route action does; ``post_note`` runs only if ``find_note`` finds no marker."""

    model: str
    record_id: int
    values: dict[str, Any]
    write: OdooCall | None
    marker: str | None
    find_note: OdooCall | None
    post_note: OdooCall | None
    created_at: datetime | None = None  # when Odoo created the record (UTC), if the ticket says


def _permanent(message: str, hint: str | None = None) -> ActionFailedError:
    return ActionFailedError(message, transient=False, hint=hint)


def _kind(key: str, options: OdooOptions) -> tuple[str, str]:
    """Policy key -> (Odoo field, "many2one" | "many2many" | "value")."""
    named = {
        "queue": (options.team_field, "many2one", "team_field"),
        "assignee": (options.assignee_field, "many2one", "assignee_field"),
        "group": (options.group_field, "many2one", "group_field"),
        "priority": (options.priority_field, "value", "priority_field"),
        "tags": (options.tag_field, "many2many", "tag_field"),
    }
    if key in named:
        name, kind, option = named[key]
        if name is None:
            raise _permanent(
                f"the policy sets {key!r} but options.{option} of the odoo system is empty",
                hint=f"set options.{option} to the Odoo field that holds it",
            )
        return name, kind
    if not FIELD_RE.fullmatch(key):
        raise _permanent(f"destination field {key!r} is not an Odoo field name")
    kind = "many2many" if key.endswith("_ids") else "many2one" if key.endswith("_id") else "value"
    return key, kind


def _ids(key: str, value: Any) -> list[int]:
    items: Sequence[Any] = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value))
    found: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if isinstance(item, bool) or not text.isdigit() or int(text) <= 0:
            raise _permanent(f"destination field {key!r}: {item!r} is not an Odoo record id")
        found.append(int(text))
    if not found:
        raise _permanent(f"destination field {key!r}: no record id given")
    return found


def write_values(fields: Mapping[str, Any], options: OdooOptions) -> dict[str, Any]:
    """The ``vals`` for ``write`` from an action's policy fields (ids become integers)."""
    vals: dict[str, Any] = {}
    for key, value in fields.items():
        name, kind = _kind(key, options)
        if name in vals:
            raise _permanent(f"the policy sets Odoo field {name!r} twice (through {key!r} and another key)")
        if kind == "many2one":
            found = _ids(key, value)
            if len(found) != 1:
                raise _permanent(f"destination field {key!r}: {value!r} names {len(found)} records, not one")
            vals[name] = found[0]
        elif kind == "many2many":
            vals[name] = [[4, record] for record in _ids(key, value)]
        elif isinstance(value, str | int) and not isinstance(value, bool):
            vals[name] = value
        else:
            raise _permanent(f"destination field {key!r}: {value!r} is not a string or a whole number")
    return vals


def note_marker(idempotency_key: str) -> str:
    return f"[deskpilot:{idempotency_key}]"


def _target(action: Action, options: OdooOptions) -> int:
    metadata = action.context.get("ticket_metadata") or {}
    model = metadata.get("model") if isinstance(metadata, Mapping) else None
    if model is not None and model != options.model:
        raise _permanent(
            f"ticket {action.ticket_id} came from Odoo model {model!r}, "
            f"the policy writes to {options.model!r}"
        )
    external = action.external_id
    if external is None and isinstance(metadata, Mapping) and isinstance(metadata.get("id"), int):
        external = str(metadata["id"])
    if external is None or not external.isdigit() or int(external) <= 0:
        raise _permanent(
            f"ticket {action.ticket_id} has no Odoo record id (external id {external!r})",
            hint="only tickets that came from Odoo's webhook can be routed in Odoo",
        )
    return int(external)


def plan_route(action: Action, options: OdooOptions) -> RoutePlan:
    """The calls for one ``route`` action; ActionFailedError (permanent) if it cannot be done."""
    if action.kind != "route":
        raise _permanent(f"the odoo connector cannot perform {action.kind!r} actions, only 'route'")
    record_id = _target(action, options)
    values = write_values(action.fields, options)
    write = OdooCall(options.model, "write", (record_id,), {"vals": values}) if values else None
    created = _created_at(action)
    note = action.context.get("note")
    if not isinstance(note, str) or not note.strip():
        return RoutePlan(options.model, record_id, values, write, None, None, None, created)
    marker = note_marker(action.idempotency_key)
    domain = [["model", "=", options.model], ["res_id", "=", record_id], ["body", "ilike", marker]]
    find = OdooCall("mail.message", "search_read", (), {"domain": domain, "fields": ["id", "body"]})
    body = f"{note.strip()}\n\n{marker}"
    post_params = {"body": body, "message_type": "comment", "subtype_xmlid": NOTE_SUBTYPE}
    post = OdooCall(options.model, "message_post", (record_id,), post_params)
    return RoutePlan(options.model, record_id, values, write, marker, find, post, created)


def _created_at(action: Action) -> datetime | None:
    """The record's ``create_date`` from the ticket's metadata (Odoo's UTC), when it is there."""
    metadata = action.context.get("ticket_metadata")
    raw = metadata.get("create_date") if isinstance(metadata, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def marked_message(rows: Any, marker: str) -> int | None:
    """The id of a ``search_read`` row whose body holds ``marker`` exactly (``ilike`` is looser)."""
    if not isinstance(rows, list):
        return None
    for row in rows:
        body, found = (row.get("body"), row.get("id")) if isinstance(row, Mapping) else (None, None)
        if isinstance(body, str) and isinstance(found, int) and marker in html.unescape(body):
            return found
    return None


def json2_request(call: OdooCall) -> PlannedCall:
    """``POST /json/2/<model>/<method>`` with ``ids`` and the named parameters (Odoo 19+)."""
    body: dict[str, Any] = {"ids": list(call.ids)} if call.ids else {}
    body.update(call.params)
    return PlannedCall("POST", f"/json/2/{call.model}/{call.method}", body)


def jsonrpc_request(
    call: OdooCall, *, database: str, uid: int, api_key: str, request_id: int = 1
) -> PlannedCall:
    """``POST /jsonrpc``: ``object.execute_kw(db, uid, key, model, method, [[ids]], params)``."""
    positional = [list(call.ids)] if call.ids else []
    params = {
        "service": "object",
        "method": "execute_kw",
        "args": [database, uid, api_key, call.model, call.method, positional, dict(call.params)],
    }
    return PlannedCall(
        "POST", "/jsonrpc", {"jsonrpc": "2.0", "method": "call", "params": params, "id": request_id}
    )


def authenticate_request(*, database: str, login: str, api_key: str, request_id: int = 1) -> PlannedCall:
    """``common.authenticate(db, login, key, {})``: the user id, or false for wrong credentials."""
    params = {"service": "common", "method": "authenticate", "args": [database, login, api_key, {}]}
    return PlannedCall(
        "POST", "/jsonrpc", {"jsonrpc": "2.0", "method": "call", "params": params, "id": request_id}
    )
