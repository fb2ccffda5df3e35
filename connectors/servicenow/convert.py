"""ServiceNow payloads -> events, and actions -> Table API calls. Pure: no I/O, no clock.

Inbound, the Business Rule (``docs/connectors/servicenow.md``) posts one JSON object per
insert or update of a record::

    {"event": "insert" | "update", "table": "incident", "sys_id": "<32 hex>", "number": "INC0010001",
     "short_description": "...", "description": "...", "caller_id": "ann@example.com",
     "assignment_group": "<sys_id>" | null, "assigned_to": "<sys_id>" | null,
     "priority": "3", "impact": "2", "urgency": "2", "category": "network",
     "sys_updated_on": "2025-03-01 09:30:12", "sys_updated_by": "ann.agent", "sys_mod_count": "4",
     "changed": ["assignment_group", ...], "previous": {"assignment_group": "<sys_id>", ...}}

* ``insert`` -> a ``ticket`` event (subject = short_description, body = description,
  requester = the caller's email, external_id = sys_id).
* ``update`` by anyone but ``options["integration_user"]`` -> one ``field_change`` per routed
  field in ``changed``, named as in the policy: ``assignment_group`` -> ``group``,
  ``assigned_to`` -> ``assignee``, any of ``priority``/``impact``/``urgency`` -> ``priority``
  (see ``options.py``), any other field -> its own name when the body carries its value.
  Other updates are acknowledged and ignored.

Every event's delivery id starts with ``sys_id:sys_updated_on[:sys_mod_count]``: the same
bytes sent again (a retry, a replay) are the same delivery, and the inbox keeps one.

Outbound, a ``route`` action becomes (``plan``)::

    GET   /api/now/table/sys_journal_field?sysparm_query=element_id=<sys_id>^element=work_notes
          ^valueLIKE[deskpilot:<key>]&sysparm_fields=sys_id,value&sysparm_limit=1
          (or, with note_lookup: record, GET /api/now/table/<table>/<sys_id>
          ?sysparm_fields=work_notes&sysparm_display_value=true)
    PATCH /api/now/table/<table>/<sys_id>?sysparm_exclude_reference_link=true&sysparm_fields=...
          {"assignment_group": <group>, "assigned_to": <assignee>, "impact": "1", "urgency": "2",
           <other policy fields as ServiceNow fields>, "work_notes": "<note>\\n\\n[deskpilot:<key>]"}

``work_notes`` is left out of the PATCH when the lookup found the marker: a retried action
sets the same fields again (idempotent) and does not repeat its note.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from deskpilot.connectors.base import Inbound
from deskpilot.connectors.servicenow.options import ServiceNowOptions
from deskpilot.errors import InputDataError
from deskpilot.types import Action, Event, FieldChange, Ticket

SOURCE = "servicenow"
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000
MAX_NOTE_CHARS = 8_000
MAX_LABEL_CHARS = 200
API = "/api/now/table"
JOURNAL_TABLE = "sys_journal_field"

SYS_ID = re.compile(r"[0-9a-f]{32}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,79}")
_MARKER_SAFE = re.compile(r"[A-Za-z0-9:._-]{1,150}")
_PRIORITY_FIELDS = ("priority", "impact", "urgency")
# ServiceNow field -> the policy's key for it (routing keys; everything else keeps its name)
POLICY_KEY = {"assignment_group": "group", "assigned_to": "assignee"}
FIELD_OF = {"group": "assignment_group", "assignee": "assigned_to", "queue": "assignment_group"}
_NOT_WRITABLE = ("work_notes", "comments", "sys_id", "number", "priority")
_KNOWN = frozenset(
    {
        "event", "table", "sys_id", "number", "short_description", "description", "caller_id",
        "assignment_group", "assigned_to", "priority", "impact", "urgency", "sys_updated_on",
        "sys_updated_by", "sys_mod_count", "changed", "previous",
    }
)  # fmt: skip
_EXAMPLE = '{"event": "insert", "sys_id": "<32 hex>", "sys_updated_on": "...", "short_description": "..."}'


# --- inbound --------------------------------------------------------------------------------
def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputDataError(f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", hint=f"send {_EXAMPLE}"
        ) from None
    except (RecursionError, ValueError) as exc:
        raise InputDataError(f"body is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"body is a JSON {type(data).__name__}, not an object", hint=f"send {_EXAMPLE}")
    return data


def _text(data: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 320) -> str | None:
    """A string value as getValue() gives it: a string, or null/absent for an empty field."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InputDataError(f"{key}: missing", hint=f"send {_EXAMPLE}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputDataError(f"{key}: must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > limit:
        raise InputDataError(f"{key}: {len(text)} characters, at most {limit} allowed")
    return text


def _number(data: Mapping[str, Any], key: str) -> int | None:
    text = _text(data, key, limit=12)
    if text is None:
        return None
    if not text.strip().lstrip("-").isdigit():
        raise InputDataError(f"{key}: {text!r} is not a whole number")
    return int(text)


@dataclass(frozen=True, slots=True)
class Record:
    """The fields of one delivery that deskpilot uses, validated."""

    event: Literal["insert", "update"]
    table: str
    sys_id: str
    number: str | None
    updated_on: str
    updated_by: str | None
    mod_count: int | None
    changed: tuple[str, ...]
    data: dict[str, Any] = field(repr=False)
    previous: dict[str, Any] = field(repr=False)


def read_record(body: bytes) -> Record:
    """Validate a Business Rule delivery; InputDataError names the first bad key."""
    data = _load(body)
    event = data.get("event")
    if event not in ("insert", "update"):
        got = "missing" if "event" not in data else f"{event!r} is not insert or update"
        raise InputDataError(f"event: {got}", hint=f"send {_EXAMPLE}")
    sys_id = _text(data, "sys_id", required=True, limit=32) or ""
    if not SYS_ID.fullmatch(sys_id):
        raise InputDataError(f"sys_id: {sys_id!r} is not a ServiceNow sys_id (32 lowercase hex digits)")
    table = _text(data, "table", limit=80) or "incident"
    if not _FIELD_NAME.fullmatch(table):
        raise InputDataError(f"table: {table!r} is not a ServiceNow table name")
    changed_raw = data.get("changed", [])
    if not isinstance(changed_raw, list) or not all(isinstance(c, str) for c in changed_raw):
        raise InputDataError('changed: must be a list of field names, e.g. ["assignment_group"]')
    previous = data.get("previous", {})
    if previous is None:
        previous = {}
    if not isinstance(previous, dict):
        raise InputDataError("previous: must be an object of field -> value before the update")
    for key in ("short_description", "description"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise InputDataError(f"{key}: must be a string, got {type(value).__name__}")
    for key in ("caller_id", "assignment_group", "assigned_to"):
        _text(data, key)
    for key in _PRIORITY_FIELDS:
        _number(data, key)
    return Record(
        event="insert" if event == "insert" else "update",
        table=table,
        sys_id=sys_id,
        number=_text(data, "number", limit=40),
        updated_on=_text(data, "sys_updated_on", required=True, limit=40) or "",
        updated_by=_text(data, "sys_updated_by"),
        mod_count=_number(data, "sys_mod_count"),
        changed=tuple(dict.fromkeys(c.strip() for c in changed_raw if c.strip())),
        data=data,
        previous=previous,
    )


def delivery_key(record: Record) -> str:
    """``sys_id:sys_updated_on[:sys_mod_count]``: stable across retries of one delivery."""
    key = f"{record.sys_id}:{record.updated_on}"
    return key if record.mod_count is None else f"{key}:{record.mod_count}"


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def to_ticket(record: Record) -> Ticket | None:
    """The ticket of an insert; None when it has no text to classify."""
    subject, cut_subject = _cut((record.data.get("short_description") or "").strip(), MAX_SUBJECT_CHARS)
    body, cut_body = _cut((record.data.get("description") or "").strip(), MAX_BODY_CHARS)
    if not subject and not body:
        return None
    metadata: dict[str, Any] = {"table": record.table, "sys_id": record.sys_id}
    for key in ("number", "assignment_group", "assigned_to", "priority", "impact", "urgency", "category"):
        value = record.data.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            metadata[key] = str(value)
    if cut_subject or cut_body:
        metadata["truncated"] = True
    return Ticket(
        subject=subject,
        body=body,
        requester=_text(record.data, "caller_id"),
        source=SOURCE,
        external_id=record.sys_id,
        metadata=metadata,
    )


def _priority(options: ServiceNowOptions, values: Mapping[str, Any], where: str) -> str | None:
    try:
        numbers = {k: _number(values, k) for k in _PRIORITY_FIELDS}
    except InputDataError as exc:
        raise InputDataError(f"{where}{exc.message}") from None
    return options.priority_value(numbers["priority"], numbers["impact"], numbers["urgency"])


def _label_value(values: Mapping[str, Any], name: str) -> str | None:
    """A field's value when it could be a policy id or label (a short string or a number)."""
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_LABEL_CHARS else None


def field_changes(record: Record, options: ServiceNowOptions) -> list[tuple[str, FieldChange]]:
    """(suffix, change) for each routed field a person changed; see the module docstring."""
    author = record.updated_by or "servicenow"
    out: list[tuple[str, FieldChange]] = []
    priority_done = False
    for name in record.changed:
        if name in _PRIORITY_FIELDS:
            if priority_done:
                continue
            priority_done = True
            value = _priority(options, record.data, "")
            if value is None:
                continue
            before = _priority(options, record.previous, "previous.") if record.previous else None
            out.append(("priority", FieldChange(record.sys_id, "priority", value, author, before)))
            continue
        if not _FIELD_NAME.fullmatch(name) or name in _KNOWN - set(POLICY_KEY):
            continue  # not a field deskpilot routes
        value = _label_value(record.data, name)
        if value is None:
            continue  # no value sent, cleared, or free text: no label stands for it
        before = _label_value(record.previous, name)
        key = POLICY_KEY.get(name, name)
        out.append((key, FieldChange(record.sys_id, key, value, author, before)))
    return out


def parse(tenant: str, body: bytes, options: ServiceNowOptions) -> Inbound:
    """One delivery -> what it means for deskpilot (see the module docstring)."""
    record = read_record(body)
    key = delivery_key(record)
    label = record.number or record.sys_id
    if record.event == "insert":
        ticket = to_ticket(record)
        if ticket is None:
            return Inbound(ignored=f"{label} has no short_description or description to classify")
        event = Event(tenant, SOURCE, f"{key}:ticket", "ticket", ticket)
        return Inbound(events=(event,))
    if options.integration_user is None:
        return Inbound(
            ignored="updates are not read as corrections until the policy sets "
            "options.integration_user (deskpilot's own ServiceNow user)"
        )
    if record.updated_by is not None and record.updated_by.lower() == options.integration_user.lower():
        return Inbound(ignored=f"{label} was updated by deskpilot's own user {options.integration_user}")
    changes = field_changes(record, options)
    if not changes:
        shown = ", ".join(record.changed) or "nothing"
        return Inbound(ignored=f"{label}: no routed field changed (changed: {shown})")
    events = tuple(Event(tenant, SOURCE, f"{key}:{suffix}", "field_change", c) for suffix, c in changes)
    return Inbound(events=events)


# --- outbound -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One Table API request, as data: ``path`` is relative to the instance URL."""

    method: Literal["GET", "PATCH"]
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: dict[str, Any] | None = None


def marker(idempotency_key: str) -> str:
    """``[deskpilot:<key>]``, the line a work note ends with; long or odd keys are hashed."""
    if _MARKER_SAFE.fullmatch(idempotency_key):
        return f"[deskpilot:{idempotency_key}]"
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"[deskpilot:sha256-{digest}]"


def target_sys_id(action: Action) -> str:
    """The record to change: the ticket's sys_id (its external id, or metadata when it came
    from ServiceNow some other way); InputDataError otherwise."""
    candidates = [action.external_id, action.context.get("ticket_metadata", {}).get("sys_id")]
    for candidate in candidates:
        if isinstance(candidate, str) and SYS_ID.fullmatch(candidate):
            return candidate
    raise InputDataError(
        f"ticket {action.ticket_id} has no ServiceNow sys_id (external_id {action.external_id!r})",
        hint="only tickets that came from ServiceNow can be routed in ServiceNow",
    )


def update_fields(action: Action, options: ServiceNowOptions) -> dict[str, str]:
    """The policy's fields as ServiceNow fields (without the work note)."""
    out: dict[str, str] = {}
    fields = dict(action.fields)
    if "group" in fields:
        fields.pop("queue", None)  # ServiceNow routes by assignment group only; group wins
    for key, raw in fields.items():
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise InputDataError(f"fields.{key}: {raw!r} is not a string or a whole number")
        value = str(raw)
        if key == "priority":
            pair = options.impact_urgency(value)
            if pair is None:
                known = ", ".join(options.priority_labels())
                raise InputDataError(
                    f"fields.priority: {value!r} is not in the priority map ({known})",
                    hint="add it to options.priority_map as label=impact/urgency",
                )
            out.setdefault("impact", str(pair[0]))
            out.setdefault("urgency", str(pair[1]))
            continue
        name = FIELD_OF.get(key, key)
        if not _FIELD_NAME.fullmatch(name) or name in _NOT_WRITABLE or name.startswith("sys_"):
            raise InputDataError(
                f"fields.{key}: deskpilot does not write ServiceNow field {name!r}",
                hint="use group, assignee, priority or a writable field name of the table",
            )
        out[name] = value  # explicit impact/urgency beat the ones derived from priority
    return out


def note_text(action: Action) -> str | None:
    """The work note: the decision's explanation and the idempotency marker; None without one."""
    note = action.context.get("note")
    if not isinstance(note, str) or not note.strip():
        return None
    text = note.strip()  # the engine's note already says what went to triage
    if len(text) > MAX_NOTE_CHARS:
        text = text[: MAX_NOTE_CHARS - 3] + "..."
    return f"{text}\n\n{marker(action.idempotency_key)}"


def plan_note_lookup(action: Action, options: ServiceNowOptions) -> PlannedCall | None:
    """The read that tells whether this action's work note is already there (None: no note)."""
    if not options.work_notes or note_text(action) is None:
        return None
    sys_id = target_sys_id(action)
    params: tuple[tuple[str, str], ...]
    if options.note_lookup == "record":
        params = (("sysparm_fields", "work_notes"), ("sysparm_display_value", "true"))
        return PlannedCall("GET", f"{API}/{options.table}/{sys_id}", params)
    query = f"element_id={sys_id}^element=work_notes^valueLIKE{marker(action.idempotency_key)}"
    params = (("sysparm_query", query), ("sysparm_fields", "sys_id,value"), ("sysparm_limit", "1"))
    return PlannedCall("GET", f"{API}/{JOURNAL_TABLE}", params)


def note_found(lookup: PlannedCall, answer: Any, idempotency_key: str) -> bool:
    """Whether the lookup's answer (``{"result": ...}``) holds this action's marker."""
    wanted = marker(idempotency_key)
    result = answer.get("result") if isinstance(answer, dict) else None
    if lookup.path.endswith(f"/{JOURNAL_TABLE}"):
        rows = result if isinstance(result, list) else []
        return any(isinstance(r, dict) and wanted in str(r.get("value", "")) for r in rows)
    notes = result.get("work_notes") if isinstance(result, dict) else None
    if isinstance(notes, dict):  # sysparm_display_value=all
        notes = notes.get("display_value")
    return isinstance(notes, str) and wanted in notes


def plan_update(action: Action, options: ServiceNowOptions, *, with_note: bool) -> PlannedCall:
    """The PATCH that routes the record (and adds the work note when ``with_note``)."""
    sys_id = target_sys_id(action)
    body: dict[str, Any] = dict(update_fields(action, options))
    note = note_text(action) if options.work_notes else None
    if with_note and note is not None:
        body["work_notes"] = note
    returned = ["sys_id", "number", *[k for k in body if k != "work_notes"], "priority", "sys_updated_on"]
    params = (
        ("sysparm_exclude_reference_link", "true"),
        ("sysparm_fields", ",".join(dict.fromkeys(returned))),
    )
    return PlannedCall("PATCH", f"{API}/{options.table}/{sys_id}", params, body)


def plan(action: Action, options: ServiceNowOptions) -> list[PlannedCall]:
    """Every call a first attempt makes: the note lookup (when there is a note), then the PATCH."""
    lookup = plan_note_lookup(action, options)
    update = plan_update(action, options, with_note=lookup is not None)
    return [lookup, update] if lookup is not None else [update]
