"""Jira Cloud payloads -> deskpilot events, and routing actions -> Jira REST calls. Pure.

Inbound (https://developer.atlassian.com/cloud/jira/platform/webhooks/#example-callback-for-an-issue-related-event):
``{"timestamp": ms, "webhookEvent": "jira:issue_created" | "jira:issue_updated", "user": {...},
"issue": {"id", "key", "fields": {...}}, "changelog": {"id", "items": [...]}}``.

* ``jira:issue_created`` -> a ``ticket`` event: subject ``fields.summary``, body
  ``fields.description`` (a wiki-markup string in admin webhooks, ADF in REST v3 shapes: both
  are read), requester ``fields.reporter.emailAddress`` or its ``accountId``, external id the
  issue key, metadata ``{id, key, project, issuetype}``.
* ``jira:issue_updated`` whose changelog shows a person (``user.accountId`` is not
  ``options.bot_account_id`` and ``user.accountType`` is not ``app``) changing a routed field
  -> one ``field_change`` per policy key: ``components`` (the issue's component names after the
  change, comma-joined), ``labels`` (the labels added), ``priority`` (name), ``assignee``
  (accountId), ``queue`` (``options.custom_field``: its displayed value), ``issue_type``
  (name) and any id in ``options.feedback_fields`` (displayed value).
* Everything else (comments, other events, other fields) is acknowledged and ignored.

Outbound: :func:`plan` maps a ``route`` action onto ``PUT /rest/api/3/issue/{key}`` and an
ADF comment ``POST /rest/api/3/issue/{key}/comment`` carrying the marker ``[deskpilot:<key>]``
(see ``client.py`` for how the marker makes the comment idempotent).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from deskpilot.connectors.base import ActionFailedError, Inbound, header
from deskpilot.connectors.jira import adf
from deskpilot.connectors.jira.options import FIELD_ID, JiraOptions
from deskpilot.connectors.jira.verify import IDENTIFIER_HEADER
from deskpilot.errors import InputDataError
from deskpilot.types import Action, Event, FieldChange, Ticket

SOURCE = "jira"
TICKET_EVENTS = ("jira:issue_created",)
CHANGE_EVENTS = ("jira:issue_updated",)
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000  # longer descriptions are cut: the classifier reads the beginning
MAX_NOTE_CHARS = 30_000  # Jira refuses comment bodies over 32767 characters
API = "/rest/api/3"
_DELIVERY = re.compile(r"[\x21-\x7e]{1,200}")
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+|[0-9]+")
# changelog ``fieldId`` (or, in old payloads, ``field``) -> the policy key it corrects
_CHANGE_KEYS = {
    "components": "components",
    "Component": "components",
    "labels": "labels",
    "priority": "priority",
    "assignee": "assignee",
    "issuetype": "issue_type",
}


# --- inbound ---------------------------------------------------------------------------------
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
        raise InputDataError(f"body is a JSON {type(data).__name__}, not a Jira webhook object")
    return data


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def delivery_id(headers: Mapping[str, str], data: Mapping[str, Any]) -> str:
    """``X-Atlassian-Webhook-Identifier`` (the same on Jira's retries); else a stable hash."""
    given = header(headers, IDENTIFIER_HEADER)
    if given is not None:
        given = given.strip()
        if not _DELIVERY.fullmatch(given):
            raise InputDataError(f"{IDENTIFIER_HEADER} must be 1-200 printable ASCII characters")
        return given
    issue, changelog = _obj(data.get("issue")), _obj(data.get("changelog"))
    parts = [data.get("webhookEvent"), issue.get("id"), data.get("timestamp"), changelog.get("id")]
    return "jira-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]


def _issue(data: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    issue = data.get("issue")
    if not isinstance(issue, dict):
        raise InputDataError("issue: missing; an issue event carries the issue object")
    key = issue.get("key")
    if not isinstance(key, str) or not _ISSUE_KEY.fullmatch(key):
        raise InputDataError(f"issue.key: {key!r} is not an issue key such as SUP-17")
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise InputDataError("issue.fields: missing or not an object")
    return key, issue, fields


def description_text(value: Any) -> str:
    """A description as plain text: a string as is, an ADF document flattened, else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return adf.to_text(value)
    return ""


def to_ticket(data: Mapping[str, Any]) -> Ticket:
    key, issue, fields = _issue(data)
    subject = fields.get("summary")
    if subject is not None and not isinstance(subject, str):
        raise InputDataError(f"issue.fields.summary: a {type(subject).__name__}, not a string")
    subject = (subject or "")[:MAX_SUBJECT_CHARS]
    body = description_text(fields.get("description"))[:MAX_BODY_CHARS]
    if not subject.strip() and not body.strip():
        raise InputDataError("issue.fields.summary, issue.fields.description: both are empty")
    reporter = _obj(fields.get("reporter"))
    metadata = {
        "id": str(issue.get("id", "")),
        "key": key,
        "project": _str(_obj(fields.get("project")).get("key")),
        "issuetype": _str(_obj(fields.get("issuetype")).get("name")),
    }
    return Ticket(
        subject=subject,
        body=body,
        requester=_str(reporter.get("emailAddress")) or _str(reporter.get("accountId")),
        source=SOURCE,
        external_id=key,
        metadata={k: v for k, v in metadata.items() if v},
    )


def _tokens(text: Any) -> list[str]:
    return text.split() if isinstance(text, str) else []


def _change_value(policy_key: str, items: list[dict[str, Any]], fields: Mapping[str, Any]) -> str | None:
    last = items[-1]
    if policy_key == "components":
        current = fields.get("components")
        if isinstance(current, list):
            names = [c["name"] for c in current if isinstance(c, dict) and isinstance(c.get("name"), str)]
            return ",".join(names) or None
        added = [i.get("toString") for i in items if i.get("to") is not None]
        return ",".join(a for a in added if isinstance(a, str)) or None
    if policy_key == "labels":
        before = set(_tokens(last.get("fromString")))
        return ",".join(t for t in _tokens(last.get("toString")) if t not in before) or None
    if policy_key == "assignee":
        return _str(last.get("to"))
    shown = last.get("toString")
    return _str(shown) if shown is not None else _str(last.get("to"))


def _previous(policy_key: str, items: list[dict[str, Any]]) -> str | None:
    first = items[0]
    if policy_key == "assignee":
        return _str(first.get("from"))
    if policy_key == "labels":
        return ",".join(_tokens(first.get("fromString"))) or None
    if policy_key == "components":
        removed = [i.get("fromString") for i in items if i.get("from") is not None]
        return ",".join(r for r in removed if isinstance(r, str)) or None
    return _str(first.get("fromString")) or _str(first.get("from"))


def field_changes(data: Mapping[str, Any], opts: JiraOptions) -> tuple[list[FieldChange], str | None]:
    """The corrections in an ``issue_updated``, or none and the reason they are ignored."""
    key, _issue_obj, fields = _issue(data)
    if opts.bot_account_id is None:
        return [], "options.bot_account_id is not set, so deskpilot's own edits cannot be told apart"
    user = _obj(data.get("user"))
    author = _str(user.get("accountId"))
    if author is None:
        return [], "the change names no user.accountId"
    if author == opts.bot_account_id:
        return [], "changed by deskpilot's own account (options.bot_account_id)"
    if user.get("accountType") == "app":
        return [], "changed by an app or automation rule, not a person"
    items = _obj(data.get("changelog")).get("items")
    watched = dict(_CHANGE_KEYS)
    watched.update({f: f for f in opts.feedback_fields})
    if opts.custom_field is not None:
        watched[opts.custom_field] = "queue"
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        name = item.get("fieldId") if isinstance(item.get("fieldId"), str) else item.get("field")
        policy_key = watched.get(name) if isinstance(name, str) else None
        if policy_key is not None:
            grouped.setdefault(policy_key, []).append(item)
    changes = []
    for policy_key, group in grouped.items():
        value = _change_value(policy_key, group, fields)
        if value is not None:
            previous = _previous(policy_key, group)
            changes.append(FieldChange(key, policy_key, value, author, previous))
    return changes, (None if changes else "no routed field changed")


def parse(tenant: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]) -> Inbound:
    """One verified Jira delivery -> Inbound (events, or why it is ignored)."""
    opts = JiraOptions.from_mapping(options)
    data = _load(body)
    event = data.get("webhookEvent")
    if not isinstance(event, str) or not event:
        raise InputDataError("webhookEvent: missing; is this a Jira webhook?")
    if event not in TICKET_EVENTS + CHANGE_EVENTS:
        return Inbound(ignored=f"webhookEvent {event!r} is not used by deskpilot")
    delivery = delivery_id(headers, data)
    if event in TICKET_EVENTS:
        ticket = to_ticket(data)
        return Inbound(events=(Event(tenant, SOURCE, delivery, "ticket", ticket),))
    changes, why = field_changes(data, opts)
    if not changes:
        return Inbound(ignored=why)
    events = tuple(
        Event(tenant, SOURCE, f"{delivery}:{change.field}", "field_change", change) for change in changes
    )
    return Inbound(events=events)


# --- outbound --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One REST request, as data. ``marker``: skip this POST when a comment already holds it."""

    method: str
    path: str
    json: dict[str, Any]
    marker: str | None = None
    purpose: str = ""


def issue_path(key: str, *rest: str) -> str:
    return "/".join([f"{API}/issue/{quote(key, safe='')}", *rest])


def _refuse(message: str, hint: str | None = None) -> ActionFailedError:
    return ActionFailedError(message, transient=False, hint=hint)


def _names(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _custom_value(kind: str, value: Any) -> Any:
    if kind == "option_id":
        return {"id": str(value)}
    return str(value) if kind == "text" else {"value": str(value)}


def edit_request(fields: Mapping[str, Any], opts: JiraOptions) -> dict[str, Any]:
    """The ``PUT /issue`` body: ``{"fields": {...}, "update": {...}}`` (only non-empty parts)."""
    out: dict[str, Any] = {}
    update: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "queue":
            if opts.custom_field is None:
                raise _refuse(
                    "the policy routes with 'queue' but the Jira system has no options.custom_field",
                    hint="set options.custom_field (e.g. customfield_10050) or route with components",
                )
            out[opts.custom_field] = _custom_value(opts.custom_field_kind, value)
        elif key == "group":
            raise _refuse(
                "Jira issues have no 'group' field",
                hint="route with queue (options.custom_field), components, assignee or a field id",
            )
        elif key == "assignee":
            out["assignee"] = {"accountId": str(value)}
        elif key == "components":
            out["components"] = [{"name": name} for name in _names(value)]
        elif key == "labels":
            labels = _names(value)
            spaced = [label for label in labels if any(ch.isspace() for ch in label)]
            if spaced:
                raise _refuse(f"Jira labels cannot contain spaces: {', '.join(map(repr, spaced))}")
            update["labels"] = [{"add": label} for label in labels]
        elif key == "priority":
            out["priority"] = {"name": str(value)}
        elif key == "issue_type":
            out["issuetype"] = {"name": str(value)}
        elif FIELD_ID.fullmatch(key):
            out[key] = value
        else:
            raise _refuse(f"policy field {key!r} is not a Jira field id (e.g. customfield_10060, duedate)")
    body: dict[str, Any] = {}
    if out:
        body["fields"] = out
    if update:
        body["update"] = update
    return body


def marker(idempotency_key: str) -> str:
    """The text that makes a comment recognisable as this action's, e.g. ``[deskpilot:abc:jira]``."""
    return f"[deskpilot:{idempotency_key}]"


def _draft_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("text")
    return value.strip() if isinstance(value, str) else ""


def comment_text(action: Action) -> tuple[str, str, str]:
    """(headline, note, draft) of the comment, in plain text."""
    shown = "; ".join(f"{k} = {v}" for k, v in action.fields.items())
    triage = bool(action.context.get("triage"))
    headline = ("deskpilot sent this issue to triage" if triage else "deskpilot routed this issue") + (
        f": {shown}" if shown else ""
    )
    note = action.context.get("note")
    if not isinstance(note, str) or not note.strip():
        decisions = action.context.get("decisions") or []
        lines = [
            f"{d.get('task')}: {'abstained' if d.get('abstained') else d.get('label')}"
            + (f" (score {d['score']:.2f})" if isinstance(d.get("score"), int | float) else "")
            for d in decisions
            if isinstance(d, dict)
        ]
        note = "\n".join(lines)
    draft = _draft_text(action.context.get("draft"))
    return headline, note.strip()[:MAX_NOTE_CHARS], draft[:MAX_NOTE_CHARS]


def comment_request(action: Action, opts: JiraOptions) -> dict[str, Any]:
    """The ``POST /comment`` body: ADF with the explanation, the draft if any, and the marker."""
    headline, note, draft = comment_text(action)
    blocks = [adf.paragraph(headline, marks=[{"type": "strong"}]), *adf.paragraphs(note)]
    if draft:
        blocks.append(adf.paragraph("Suggested reply (draft, not sent to the customer):"))
        blocks.append({"type": "blockquote", "content": adf.paragraphs(draft)})
    blocks.append(adf.paragraph(marker(action.idempotency_key), marks=[{"type": "code"}]))
    return opts.visibility.apply({"body": adf.document(*blocks)})


def issue_key(action: Action) -> str:
    key = action.external_id or _obj(action.context.get("ticket_metadata")).get("key")
    if not isinstance(key, str) or not _ISSUE_KEY.fullmatch(key):
        raise _refuse(
            f"ticket {action.ticket_id} has no Jira issue key (external_id {action.external_id!r})",
            hint="only tickets that came from Jira can be routed in Jira",
        )
    return key


def plan(action: Action, options: Mapping[str, str] | JiraOptions) -> list[PlannedCall]:
    """The REST calls for one action, in order: edit the issue (if fields), then comment once."""
    if action.kind != "route":
        raise _refuse(f"the Jira connector performs 'route' actions, not {action.kind!r}")
    opts = options if isinstance(options, JiraOptions) else JiraOptions.from_mapping(options)
    key = issue_key(action)
    calls: list[PlannedCall] = []
    edit = edit_request(action.fields, opts)
    if edit:
        calls.append(PlannedCall("PUT", issue_path(key), edit, purpose="fields"))
    calls.append(
        PlannedCall(
            "POST",
            issue_path(key, "comment"),
            comment_request(action, opts),
            marker=marker(action.idempotency_key),
            purpose="comment",
        )
    )
    return calls
