"""Zendesk payloads -> deskpilot events, and routing actions -> Zendesk REST calls. Pure functions.

Inbound, two body shapes are accepted on ``POST /webhooks/{tenant}/zendesk``:

1. **Event subscription** (a webhook subscribed to Zendesk ticket events; documented at
   https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/)::

       {"type": "zen:event-type:ticket.created", "id": "cbe4028c-...", "time": "...",
        "subject": "zen:ticket:5158", "zendesk_event_version": "2022-11-06",
        "detail": {"id": "5158", "subject": "...", "description": "...", "actor_id": "...",
                   "group_id": "...", "priority": "LOW", "requester_id": "...", ...},
        "event": {"current": "...", "previous": "...", "meta": {...}}}

   The delivery id is the event ``id``. Used types: ``ticket.created`` (a ticket),
   ``ticket.group_assignment_changed`` (alias ``ticket.group_changed``),
   ``ticket.priority_changed``, ``ticket.agent_assignment_changed`` (alias
   ``ticket.assignee_changed``): field changes by ``detail.actor_id``. Other types are
   acknowledged and ignored.

2. **Trigger template** (a webhook connected to a trigger, whose JSON body the admin writes with
   placeholders; deskpilot's documented template, ``docs/connectors/zendesk.md``)::

       {"event": "ticket.created",
        "ticket": {"id": "{{ticket.id}}", "subject": "{{ticket.title}}",
                   "description": "{{ticket.description}}", "requester": "{{ticket.requester.email}}",
                   "group_id": "{{ticket.group.id}}", "assignee_id": "{{ticket.assignee.id}}",
                   "priority": "{{ticket.priority}}", "tags": "{{ticket.tags}}",
                   "updated_at": "{{ticket.updated_at_with_timestamp}}",
                   "updated_by": "{{current_user.id}}"}}

   ``event`` is ``ticket.created``, ``ticket.updated`` (every routed field present becomes a
   field change: use it with a trigger condition such as "Group | Changed"),
   ``ticket.group_changed``, ``ticket.priority_changed`` or ``ticket.assignee_changed``. A
   trigger body has no event id, so the delivery id is ticket id + ``updated_at`` + event + a
   hash of the body (+ the field for a field change): the same on Zendesk's retries of that
   delivery, different for two updates within the placeholder's one-minute resolution.

A change made by deskpilot's own Zendesk user (policy ``options.bot_user_id``) or by Zendesk
itself (actor ``-1``: triggers, automations) is not a correction and is ignored. Field names
are the policy's destination keys (``group``, ``priority``, ``assignee``) and values Zendesk's
raw ids, priorities in lower case as in the REST API (``high``).

Outbound, a ``route`` action becomes one ``PUT /api/v2/tickets/{id}.json`` (see
``update_fields`` for the mapping) carrying the fields that differ from the ticket as read and
a private comment ending in ``deskpilot:<idempotency key>``, left out when a comment with that
marker is already on the ticket. ``plan_update`` returns the calls as data; ``client.py`` reads
the ticket and its comments, then executes them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deskpilot.connectors.base import Inbound
from deskpilot.errors import InputDataError
from deskpilot.types import Action, Event, EventKind, FieldChange, Ticket

SOURCE = "zendesk"
EVENT_PREFIX = "zen:event-type:"
SYSTEM_ACTOR = "-1"  # Zendesk itself (triggers, automations, SLA) in actor ids
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000
MAX_NOTE_CHARS = 10_000
PRIORITIES = ("urgent", "high", "normal", "low")
TICKET_TYPES = ("problem", "incident", "question", "task")
MARKER_PREFIX = "deskpilot:"

# event-subscription type (without the prefix) -> policy destination key
EVENT_FIELDS = {
    "ticket.group_assignment_changed": "group",
    "ticket.group_changed": "group",
    "ticket.priority_changed": "priority",
    "ticket.agent_assignment_changed": "assignee",
    "ticket.assignee_changed": "assignee",
}
# trigger-template event -> policy destination keys it reports
TRIGGER_EVENTS: dict[str, tuple[str, ...]] = {
    "ticket.created": (),
    "ticket.updated": ("group", "priority", "assignee"),
    "ticket.group_changed": ("group",),
    "ticket.priority_changed": ("priority",),
    "ticket.assignee_changed": ("assignee",),
}
# policy destination key -> key in a trigger body's "ticket" / an event's "detail"
DETAIL_KEYS = {"group": "group_id", "priority": "priority", "assignee": "assignee_id"}
_EXAMPLE = (
    '{"event": "ticket.created", "ticket": {"id": "{{ticket.id}}", "subject": "{{ticket.title}}", ...}} '
    'or a Zendesk event such as {"type": "zen:event-type:ticket.created", "id": ..., "detail": {...}}'
)
_DIGITS = re.compile(r"[0-9]{1,20}")
_CUSTOM = re.compile(r"custom_([0-9]{1,20})")


# --- inbound --------------------------------------------------------------------------------
def _load(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="set the webhook's request format to JSON; in a trigger body quote every placeholder",
        ) from None
    except (RecursionError, ValueError) as exc:
        raise InputDataError(f"body is not usable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"body is a JSON {type(data).__name__}, not an object", hint=f"send {_EXAMPLE}")
    return data


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text(data: Mapping[str, Any], key: str, path: str) -> str | None:
    """A string (or whole number, as Zendesk sends some ids) at ``key``; None when absent, null or blank."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | None):
        raise InputDataError(f"{_where(path, key)}: expected a string, got a JSON {type(value).__name__}")
    text = str(value).strip() if value is not None else ""
    return text or None


def _need(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _text(data, key, path)
    if value is None:
        raise InputDataError(f"{_where(path, key)}: missing or empty")
    return value


def _ticket_id(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _need(data, key, path)
    if not _DIGITS.fullmatch(value):
        raise InputDataError(
            f"{_where(path, key)}: {value!r} is not a Zendesk ticket id (digits)",
            hint='use "{{ticket.id}}" in the trigger body',
        )
    return value


def _object(data: Mapping[str, Any], key: str, path: str = "") -> dict[str, Any]:
    value = data.get(key)
    where = _where(path, key)
    if value is None:
        raise InputDataError(f"{where}: missing", hint=f"send {_EXAMPLE}")
    if not isinstance(value, dict):
        raise InputDataError(f"{where}: expected an object, got a JSON {type(value).__name__}")
    return value


def _clip(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _field_value(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    return value.lower() if name == "priority" else value


def _is_ours(actor: str | None, options: Mapping[str, str]) -> str | None:
    """Why a change by ``actor`` is not a person's correction (None when it is one)."""
    bot = (options.get("bot_user_id") or "").strip()
    if actor is not None and bot and actor == bot:
        return f"change made by deskpilot's own Zendesk user {bot}"
    if actor == SYSTEM_ACTOR:
        return "change made by Zendesk itself (a trigger or automation), not by a person"
    return None


def _ticket(
    subject: str | None, description: str | None, requester: str | None, metadata: dict[str, Any], path: str
) -> Ticket:
    subject_text, cut_subject = _clip(subject or "", MAX_SUBJECT_CHARS)
    body_text, cut_body = _clip(description or "", MAX_BODY_CHARS)
    if not subject_text.strip() and not body_text.strip():
        raise InputDataError(f"{path}.subject, {path}.description: both are empty; a ticket needs text")
    if cut_subject or cut_body:
        metadata["truncated"] = True
    return Ticket(
        subject=subject_text,
        body=body_text,
        requester=requester,
        source=SOURCE,
        external_id=metadata["zendesk_ticket_id"],
        metadata=metadata,
    )


def _event(tenant: str, delivery_id: str, kind: EventKind, payload: Ticket | FieldChange) -> Event:
    return Event(tenant=tenant, source=SOURCE, delivery_id=delivery_id, kind=kind, payload=payload)


def _from_subscription(tenant: str, data: dict[str, Any], options: Mapping[str, str]) -> Inbound:
    kind = str(data["type"])[len(EVENT_PREFIX) :]
    if not kind.startswith("ticket.") or (kind != "ticket.created" and kind not in EVENT_FIELDS):
        return Inbound(ignored=f"Zendesk event type {data['type']!r} is not used by deskpilot")
    event_id = _need(data, "id", "")
    detail = _object(data, "detail")
    ticket_id = _ticket_id(detail, "id", "detail")
    subject_ref = _text(data, "subject", "")
    if subject_ref is not None and subject_ref != f"zen:ticket:{ticket_id}":
        raise InputDataError(f"subject: {subject_ref!r} does not name ticket {ticket_id} (detail.id)")
    delivery = event_id
    if kind == "ticket.created":
        metadata: dict[str, Any] = {"zendesk_ticket_id": ticket_id, "zendesk_event_id": event_id}
        for key in ("group_id", "assignee_id", "requester_id", "brand_id", "organization_id", "form_id"):
            if (value := _text(detail, key, "detail")) is not None:
                metadata[key] = value
        for key in ("priority", "status", "type"):
            if (value := _text(detail, key, "detail")) is not None:
                metadata[key] = value.lower()
        tags = detail.get("tags")
        if isinstance(tags, list):
            metadata["tags"] = [str(tag) for tag in tags if isinstance(tag, str | int)]
        via = detail.get("via")
        if isinstance(via, dict) and isinstance(via.get("channel"), str):
            metadata["via_channel"] = via["channel"]
        subject, description = _text(detail, "subject", "detail"), _text(detail, "description", "detail")
        ticket = _ticket(subject, description, None, metadata, "detail")
        return Inbound(events=(_event(tenant, delivery, "ticket", ticket),))
    name = EVENT_FIELDS[kind]
    actor = _text(detail, "actor_id", "detail")
    why = _is_ours(actor, options)
    if why is not None:
        return Inbound(ignored=why)
    change = _object(data, "event")
    current = _field_value(name, _text(change, "current", "event"))
    if current is None:
        return Inbound(ignored=f"{name} was cleared on ticket {ticket_id}; nothing to learn from")
    change_payload = FieldChange(
        external_id=ticket_id,
        field=name,
        value=current,
        author=f"zendesk-user:{actor}" if actor else "zendesk-user:unknown",
        previous=_field_value(name, _text(change, "previous", "event")),
    )
    return Inbound(events=(_event(tenant, delivery, "field_change", change_payload),))


def _trigger_delivery(ticket_id: str, updated_at: str | None, event: str, body: bytes) -> str:
    """Stable across Zendesk's retries of one rendered body, distinct for two updates.

    ``{{ticket.updated_at_with_timestamp}}`` has minute resolution (``2013-12-12T05:35Z``), so
    two updates in one minute share it; the body's hash tells them apart (a retry resends the
    same bytes, so it keeps its id).
    """
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"zendesk:{ticket_id}:{updated_at or '-'}:{event}:{digest}"


def _from_trigger(tenant: str, data: dict[str, Any], body: bytes, options: Mapping[str, str]) -> Inbound:
    event = data["event"]
    if event not in TRIGGER_EVENTS:
        known = ", ".join(TRIGGER_EVENTS)
        raise InputDataError(f"event: {event!r} is not known", hint=f"use one of {known} in the trigger body")
    raw = _object(data, "ticket")
    ticket_id = _ticket_id(raw, "id", "ticket")
    updated_at = _text(raw, "updated_at", "ticket")
    delivery = _trigger_delivery(ticket_id, updated_at, event, body)
    if event == "ticket.created":
        metadata: dict[str, Any] = {"zendesk_ticket_id": ticket_id}
        for key in ("group_id", "assignee_id", "via_channel", "brand_id", "updated_at"):
            if (value := _text(raw, key, "ticket")) is not None:
                metadata[key] = value
        if (priority := _text(raw, "priority", "ticket")) is not None:
            metadata["priority"] = priority.lower()
        if (tags := _text(raw, "tags", "ticket")) is not None:
            metadata["tags"] = tags.split()
        ticket = _ticket(
            _text(raw, "subject", "ticket"),
            _text(raw, "description", "ticket"),
            _text(raw, "requester", "ticket"),
            metadata,
            "ticket",
        )
        return Inbound(events=(_event(tenant, delivery, "ticket", ticket),))
    actor = _text(raw, "updated_by", "ticket")
    why = _is_ours(actor, options)
    if why is not None:
        return Inbound(ignored=why)
    events = []
    for name in TRIGGER_EVENTS[event]:
        value = _field_value(name, _text(raw, DETAIL_KEYS[name], "ticket"))
        if value is None:
            continue
        change = FieldChange(
            external_id=ticket_id,
            field=name,
            value=value,
            author=f"zendesk-user:{actor}" if actor else "zendesk-user:unknown",
            previous=None,  # placeholders only give the value after the change
        )
        events.append(_event(tenant, f"{delivery}:{name}", "field_change", change))
    if not events:
        wanted = ", ".join(f"ticket.{DETAIL_KEYS[n]}" for n in TRIGGER_EVENTS[event])
        return Inbound(ignored=f"{event} for ticket {ticket_id} carries no value in {wanted}")
    return Inbound(events=tuple(events))


def parse(tenant: str, body: bytes, options: Mapping[str, str]) -> Inbound:
    """One verified Zendesk delivery -> Inbound; InputDataError naming the JSON path otherwise."""
    data = _load(body)
    kind = data.get("type")
    if isinstance(kind, str) and kind.startswith(EVENT_PREFIX):
        return _from_subscription(tenant, data, options)
    if isinstance(data.get("event"), str):
        return _from_trigger(tenant, data, body, options)
    if isinstance(kind, str):
        return Inbound(ignored=f"Zendesk delivery of type {kind!r} is not a ticket event")
    raise InputDataError(
        "body has neither a Zendesk event 'type' nor a trigger 'event'", hint=f"send {_EXAMPLE}"
    )


# --- outbound -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One REST request, as data: ``path`` is relative to the account URL."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)


def ticket_path(ticket_id: str) -> str:
    return f"/api/v2/tickets/{ticket_id}.json"


def comments_path(ticket_id: str) -> str:
    return f"/api/v2/tickets/{ticket_id}/comments.json"


def read_calls(ticket_id: str, *, page_size: int = 100) -> list[PlannedCall]:
    """What the client reads before it plans: the ticket, then its comments newest first."""
    return [
        PlannedCall("GET", ticket_path(ticket_id)),
        PlannedCall(
            "GET", comments_path(ticket_id), params={"page[size]": str(page_size), "sort": "-created_at"}
        ),
    ]


def target_ticket(action: Action) -> str:
    """The Zendesk ticket id: the action's external id, else the ticket metadata's ``zendesk_ticket_id``."""
    metadata = action.context.get("ticket_metadata")
    from_metadata = metadata.get("zendesk_ticket_id") if isinstance(metadata, dict) else None
    for candidate in (action.external_id, from_metadata):
        if candidate is not None and _DIGITS.fullmatch(str(candidate)):
            return str(candidate)
    raise InputDataError(
        f"ticket {action.ticket_id} has no Zendesk ticket id (external_id {action.external_id!r})",
        hint="only tickets received from Zendesk can be routed in Zendesk",
    )


def _id(key: str, value: Any) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not _DIGITS.fullmatch(text):
        raise InputDataError(f"fields.{key}: {value!r} is not a Zendesk id (digits, e.g. 360001234567)")
    return int(text)


def _choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise InputDataError(f"fields.{key}: {value!r} is not one of {', '.join(allowed)}")
    return text


def _tags(value: Any) -> list[str]:
    items = value if isinstance(value, list) else re.split(r"[\s,]+", str(value))
    return sorted({str(tag).strip().lower() for tag in items if str(tag).strip()})


def update_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Policy destination keys -> Zendesk ticket properties.

    ``group`` -> ``group_id``, ``assignee`` -> ``assignee_id`` (ids), ``priority`` (urgent, high,
    normal, low), ``type`` (problem, incident, question, task), ``tags`` (a list or a string of
    space/comma separated tags) -> ``additional_tags`` (added, existing tags kept),
    ``custom_<field id>`` -> ``custom_fields: [{"id", "value"}]``. Zendesk has no queues:
    ``queue`` is refused with a hint, as is any other key.
    """
    out: dict[str, Any] = {}
    custom: list[dict[str, Any]] = []
    for key, value in fields.items():
        if key == "group":
            out["group_id"] = _id(key, value)
        elif key == "assignee":
            out["assignee_id"] = _id(key, value)
        elif key == "priority":
            out["priority"] = _choice(key, value, PRIORITIES)
        elif key == "type":
            out["type"] = _choice(key, value, TICKET_TYPES)
        elif key == "tags":
            out["additional_tags"] = _tags(value)
        elif (match := _CUSTOM.fullmatch(key)) is not None:
            custom.append({"id": int(match.group(1)), "value": value})
        elif key == "queue":
            raise InputDataError(
                "fields.queue: Zendesk has no queues", hint="route with `group: <group id>` in the policy"
            )
        else:
            raise InputDataError(
                f"fields.{key}: not a field deskpilot can set in Zendesk",
                hint="use group, assignee, priority, type, tags or custom_<field id>",
            )
    if custom:
        out["custom_fields"] = sorted(custom, key=lambda item: item["id"])
    return out


def pending(update: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``update`` the ticket ``current`` (as ``GET`` returns it) does not have yet."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key == "additional_tags":
            have = {str(tag).lower() for tag in current.get("tags") or []}
            missing = [tag for tag in value if tag not in have]
            if missing:
                out[key] = missing
        elif key == "custom_fields":
            rows = [item for item in current.get("custom_fields") or [] if isinstance(item, dict)]
            have_values = {item.get("id"): item.get("value") for item in rows}
            changed = [item for item in value if _same(have_values.get(item["id"])) != _same(item["value"])]
            if changed:
                out[key] = changed
        elif _same(current.get(key)) != _same(value):
            out[key] = value
    return out


def _same(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def marker(idempotency_key: str) -> str:
    return f"{MARKER_PREFIX}{idempotency_key}"


def has_marker(comments: Iterable[Mapping[str, Any]], mark: str) -> bool:
    """Whether any comment's text (``body``, ``plain_body`` or ``html_body``) holds ``mark``."""
    for comment in comments:
        for key in ("body", "plain_body", "html_body"):
            text = comment.get(key)
            if isinstance(text, str) and mark in text:
                return True
    return False


def comment_body(action: Action) -> str:
    """The private note: the decision's explanation, then the idempotency marker on its own line."""
    note = action.context.get("note")
    if not isinstance(note, str) or not note.strip():
        described = ", ".join(f"{k}={v}" for k, v in action.fields.items())
        lines = [f"deskpilot routed this ticket: {described}."]
        for decision in action.context.get("decisions") or []:
            if isinstance(decision, dict) and decision.get("task"):
                if decision.get("abstained"):
                    lines.append(f"- {decision['task']}: unsure, sent to triage")
                else:
                    score = decision.get("score")
                    shown = f" ({score:.2f})" if isinstance(score, int | float) else ""
                    lines.append(f"- {decision['task']}: {decision.get('label')}{shown}")
        note = "\n".join(lines)
    note, _ = _clip(note.strip(), MAX_NOTE_CHARS)
    return f"{note}\n\n[{marker(action.idempotency_key)}]"


def _flag(options: Mapping[str, str], key: str, default: bool) -> bool:
    value = (options.get(key) or "").strip().lower()
    if not value:
        return default
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise InputDataError(f"options.{key}: {value!r} is not true or false")


def plan_update(
    action: Action,
    *,
    current: Mapping[str, Any],
    marker_present: bool,
    options: Mapping[str, str] | None = None,
) -> list[PlannedCall]:
    """The writes for ``action`` given the ticket as read: none when everything is already there.

    Options: ``internal_note`` (default true) adds the private comment; ``safe_update`` (default
    true) sends ``safe_update`` with the ``updated_stamp`` read, so Zendesk answers 409 instead of
    overwriting a change made in between (the job is retried and reads again).
    """
    opts = options or {}
    ticket_id = target_ticket(action)
    changes = pending(update_fields(action.fields), current)
    if _flag(opts, "internal_note", True) and not marker_present:
        changes["comment"] = {"body": comment_body(action), "public": False}
    if not changes:
        return []
    stamp = current.get("updated_at")
    if _flag(opts, "safe_update", True) and isinstance(stamp, str) and stamp:
        changes["safe_update"] = True
        changes["updated_stamp"] = stamp
    return [PlannedCall("PUT", ticket_path(ticket_id), json={"ticket": changes})]
