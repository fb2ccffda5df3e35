"""ERPNext / Frappe webhook bodies -> events, and routing actions -> planned REST calls. Pure.

Inbound: a Frappe *Webhook* record renders its JSON body from a Jinja template with ``doc`` (the
document, as a dict with dates as strings). deskpilot documents the template it expects
(``docs/connectors/erpnext.md``; the same template for every Issue webhook, only ``event``
differs, because Frappe's template context has no event name)::

    {"event": "after_insert", "doctype": "Issue", "name": "ISS-2025-00042",
     "subject": "...", "description": "<p>HTML</p>", "raised_by": "ana@example.com",
     "issue_type": "Bug", "priority": "Medium", "status": "Open",
     "creation": "2025-03-04 09:15:02.123456", "modified": "2025-03-04 09:15:02.123456",
     "modified_by": "ana@example.com", "_assign": "[\\"agent@example.com\\"]"}

and, for assignments (a ToDo row; Frappe changes an Issue's ``_assign`` without saving the
Issue, so no Issue webhook fires when a person reassigns it)::

    {"event": "after_insert", "doctype": "ToDo", "name": "a1b2c3", "reference_type": "Issue",
     "reference_name": "ISS-2025-00042", "allocated_to": "bob@example.com",
     "assigned_by": "carol@example.com", "assignment_rule": null, "status": "Open",
     "modified": "2025-03-04 10:00:00.000000"}

* Issue ``after_insert`` -> a ``ticket``. So is an ``on_update`` whose ``modified`` equals
  ``creation``: Frappe runs ``on_update`` inside ``insert`` too, and both deliveries get the same
  delivery id, so the inbox keeps one ticket whichever arrives first.
* Issue ``on_update``/``on_change`` by anyone but our API user (``options["api_user"]``,
  comma-separated for several) -> one ``field_change`` per routed field that has a value:
  ``issue_type``, ``priority``, ``queue`` (the field named by ``options["queue_field"]``),
  ``group`` (``options["group_field"]``), ``assignee`` (``_assign`` when exactly one user is
  assigned) and each field in ``options["extra_fields"]``. Frappe sends no previous values, so
  an unchanged value is reported too: the engine records it as a confirmation of the label.
* ToDo ``after_insert`` on an Issue by a person -> ``field_change`` ``assignee``; ToDos made by
  our API user or by an Assignment Rule are ignored.
* Everything else (other doctypes and events, our own saves) is acknowledged and ignored.

Delivery ids are ``{doctype}:{name}:{modified}`` (plus ``:{field}`` for a field change): Frappe
has no delivery id, and a retry or replay of the same document version maps to the same id.

Outbound: :func:`plan_route` turns a ``route`` action into :class:`RoutePlan`, the REST calls
the client makes (see ``client.py`` for how they are executed).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskpilot.connectors.base import Inbound
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action, Event, FieldChange, Ticket

SOURCE = "erpnext"
ISSUE = "Issue"
TODO = "ToDo"
MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000
MAX_DELIVERY_ID_CHARS = 200
UPDATE_EVENTS = frozenset({"on_update", "on_change"})
ROUTED_FIELDS = ("issue_type", "priority")
MARKER_PREFIX = "deskpilot:"
_FIELDNAME = re.compile(r"[a-z][a-z0-9_]{0,139}")
_ASSIGN_HINT = 'render it with {{ doc["_assign"] | tojson }}'
_TEMPLATE_HINT = "use the webhook JSON template from docs/connectors/erpnext.md"


# --- inbound -------------------------------------------------------------------------------
class _Payload(BaseModel):
    """Keys the template renders; unknown keys are kept (custom fields), types are strict."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, populate_by_name=True)

    event: str = Field(min_length=1, max_length=64)
    doctype: str = Field(min_length=1, max_length=140)
    name: str = Field(min_length=1, max_length=140)
    modified: str = Field(min_length=1, max_length=64)
    modified_by: str | None = Field(default=None, max_length=320)


_M = TypeVar("_M", bound=_Payload)


class IssuePayload(_Payload):
    subject: str | None = None
    description: str | None = None
    raised_by: str | None = Field(default=None, max_length=320)
    issue_type: str | None = None
    priority: str | None = None
    status: str | None = None
    creation: str | None = Field(default=None, max_length=64)
    assign: str | list[str] | None = Field(default=None, alias="_assign")


class ToDoPayload(_Payload):
    reference_type: str | None = None
    reference_name: str | None = Field(default=None, max_length=140)
    allocated_to: str | None = Field(default=None, max_length=320)
    assigned_by: str | None = Field(default=None, max_length=320)
    assignment_rule: str | None = None
    status: str | None = None


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputDataError(f"body is not UTF-8 (byte {exc.start})", hint=_TEMPLATE_HINT) from None
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="set Request Structure to JSON and render values with | tojson (" + _TEMPLATE_HINT + ")",
        ) from None
    except (RecursionError, ValueError) as exc:
        raise InputDataError(f"body is not usable JSON: {exc}", hint=_TEMPLATE_HINT) from None
    if not isinstance(data, dict):
        raise InputDataError(f"body is a JSON {type(data).__name__}, not an object", hint=_TEMPLATE_HINT)
    return data


def _validated(model: type[_M], data: dict[str, Any]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise InputDataError("; ".join(problems), hint=_TEMPLATE_HINT) from None


def delivery_id(*parts: str) -> str:
    """``Issue:ISS-1:2025-03-04 09:15:02.123456[:field]``; a hash when longer than 200 characters."""
    readable = ":".join(parts)
    if len(readable) <= MAX_DELIVERY_ID_CHARS and readable.isprintable():
        return readable
    return f"{parts[0]}:sha256:{hashlib.sha256(readable.encode('utf-8')).hexdigest()}"


class _Text(HTMLParser):
    """Text of an HTML fragment: block elements become line breaks, scripts and styles vanish."""

    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    )
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS and tag != "br":  # <br> and <br/> are one break
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain text of ERPNext's Text Editor HTML (``<div class="ql-editor ...">``, ``<p>``, ``&amp;``)."""
    parser = _Text()
    parser.feed(fragment)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).replace("\xa0", " ").splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _users(options: Mapping[str, str]) -> frozenset[str]:
    return frozenset(u.strip().lower() for u in options.get("api_user", "").split(",") if u.strip())


def _assignees(value: str | list[str] | None) -> list[str]:
    """``_assign`` as sent: a JSON text (``'["a@x.com"]'``, how Frappe stores it), a list, or null."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputDataError("_assign: not a JSON list of users", hint=_ASSIGN_HINT) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputDataError("_assign: not a JSON list of users", hint=_ASSIGN_HINT)
    return [v for v in value if v.strip()]


def _ticket(tenant: str, issue: IssuePayload) -> Event:
    subject = (issue.subject or "").strip()
    body = html_to_text(issue.description or "")
    if not subject and not body:
        raise InputDataError("subject, description: both are empty; an Issue needs a subject")
    metadata: dict[str, Any] = {"doctype": ISSUE, "name": issue.name}
    for key in ("issue_type", "priority", "status"):
        value = getattr(issue, key)
        if value:
            metadata[key] = value
    if len(body) > MAX_BODY_CHARS:
        body, metadata["truncated"] = body[:MAX_BODY_CHARS], True
    ticket = Ticket(
        subject=subject[:MAX_SUBJECT_CHARS],
        body=body,
        requester=(issue.raised_by or "").strip() or None,
        source=SOURCE,
        external_id=issue.name,
        metadata=metadata,
    )
    return Event(tenant, SOURCE, delivery_id(ISSUE, issue.name, issue.modified), "ticket", ticket)


def _routed_values(issue: IssuePayload, options: Mapping[str, str]) -> list[tuple[str, str]]:
    """(policy key, value) for each routed field with a value, in a fixed order."""
    sent = {**issue.model_dump(by_alias=True), **(issue.model_extra or {})}
    found: list[tuple[str, str]] = []

    def take(key: str, raw: Any) -> None:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)
        if isinstance(raw, str) and raw.strip():
            found.append((key, raw))

    take("issue_type", issue.issue_type)
    take("priority", issue.priority)
    for key in ("queue", "group"):
        fieldname = options.get(f"{key}_field", "").strip()
        if fieldname:
            take(key, sent.get(fieldname))
    assignees = _assignees(issue.assign)
    if len(assignees) == 1:
        take("assignee", assignees[0])
    for fieldname in (f.strip() for f in options.get("extra_fields", "").split(",")):
        if fieldname and fieldname not in ("issue_type", "priority"):
            take(fieldname, sent.get(fieldname))
    return found


def _issue(tenant: str, data: dict[str, Any], options: Mapping[str, str]) -> Inbound:
    issue = _validated(IssuePayload, data)
    if issue.event == "after_insert" or (issue.event in UPDATE_EVENTS and issue.creation == issue.modified):
        return Inbound(events=(_ticket(tenant, issue),))
    if issue.event not in UPDATE_EVENTS:
        return Inbound(ignored=f"Issue {issue.event} events are not used (send after_insert and on_update)")
    ours = _users(options)
    if not ours:
        return Inbound(
            ignored="Issue updates are ignored until the policy sets options.api_user (the ERPNext user "
            "of deskpilot's API key), so deskpilot's own changes are not taken for corrections"
        )
    author = (issue.modified_by or "").strip()
    if not author:
        raise InputDataError("modified_by: missing; corrections need an author", hint=_TEMPLATE_HINT)
    if author.lower() in ours:
        return Inbound(ignored=f"Issue {issue.name} was last changed by deskpilot's API user")
    changes = tuple(
        Event(
            tenant,
            SOURCE,
            delivery_id(ISSUE, issue.name, issue.modified, key),
            "field_change",
            FieldChange(external_id=issue.name, field=key, value=value, author=author),
        )
        for key, value in _routed_values(issue, options)
    )
    if not changes:
        return Inbound(ignored=f"Issue {issue.name} has no routed field with a value")
    return Inbound(events=changes)


def _todo(tenant: str, data: dict[str, Any], options: Mapping[str, str]) -> Inbound:
    todo = _validated(ToDoPayload, data)
    if todo.event != "after_insert":
        return Inbound(ignored=f"ToDo {todo.event} events are not used (only new assignments)")
    if todo.reference_type != ISSUE or not todo.reference_name:
        return Inbound(ignored=f"ToDo {todo.name} is not an assignment of an Issue")
    if (todo.status or "Open") != "Open" or not (todo.allocated_to or "").strip():
        return Inbound(ignored=f"ToDo {todo.name} is not an open assignment")
    if todo.assignment_rule:
        return Inbound(ignored=f"ToDo {todo.name} was made by Assignment Rule {todo.assignment_rule!r}")
    ours = _users(options)
    if not ours:
        return Inbound(
            ignored="assignments are ignored until the policy sets options.api_user (the ERPNext user "
            "of deskpilot's API key), so deskpilot's own assignments are not taken for corrections"
        )
    author = (todo.assigned_by or todo.modified_by or "").strip()
    if not author:
        raise InputDataError("assigned_by: missing; corrections need an author", hint=_TEMPLATE_HINT)
    if author.lower() in ours:
        return Inbound(ignored=f"ToDo {todo.name} was assigned by deskpilot's API user")
    assignee = (todo.allocated_to or "").strip()
    change = FieldChange(external_id=todo.reference_name, field="assignee", value=assignee, author=author)
    event = Event(tenant, SOURCE, delivery_id(TODO, todo.name, todo.modified), "field_change", change)
    return Inbound(events=(event,))


def parse(tenant: str, body: bytes, options: Mapping[str, str]) -> Inbound:
    """One Frappe webhook delivery -> what it means. InputDataError names the bad key."""
    data = _load(body)
    doctype = data.get("doctype")
    if doctype is None:
        raise InputDataError(
            'doctype: missing; add "doctype": {{ doc.doctype | tojson }}', hint=_TEMPLATE_HINT
        )
    if doctype == ISSUE:
        return _issue(tenant, data, options)
    if doctype == TODO:
        return _todo(tenant, data, options)
    return Inbound(ignored=f"{doctype!s:.140} documents are not used (deskpilot reads Issue and ToDo)")


# --- outbound ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One REST request: ``params`` go in the query string, ``json`` is the body."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What a ``route`` action does to one Issue, in order.

    ``comment`` is posted only when ``find_comment`` finds no comment containing ``marker``.
    """

    issue: str
    update: PlannedCall | None
    assign: PlannedCall | None
    find_comment: PlannedCall | None
    comment: PlannedCall | None
    marker: str

    def calls(self) -> list[PlannedCall]:
        return [c for c in (self.update, self.assign, self.find_comment, self.comment) if c is not None]


def marker(idempotency_key: str) -> str:
    return f"{MARKER_PREFIX}{idempotency_key}"


def comment_html(note: str, mark: str) -> str:
    """The comment's content: the note, then the marker on its own line (both HTML-escaped)."""
    paragraphs = [p.strip() for p in note.split("\n\n") if p.strip()]
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return f"{body}<p>{html.escape(mark)}</p>"


def issue_name(action: Action) -> str:
    """The Issue's name: the action's external id, else the one the ticket arrived with."""
    if action.external_id:
        return action.external_id
    meta = action.context.get("ticket_metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if isinstance(name, str) and name:
        return name
    raise InputDataError(
        f"ticket {action.ticket_id} has no ERPNext Issue name",
        hint="only tickets that came from the ERPNext webhook can be routed in ERPNext",
    )


def _fieldname(key: str, options: Mapping[str, str]) -> str:
    if key in ("queue", "group"):
        fieldname = options.get(f"{key}_field", "").strip()
        if not fieldname:
            raise ConfigError(
                f"the policy routes '{key}' to ERPNext but its options have no {key}_field",
                hint=f"set options.{key}_field to the Issue field that holds it (e.g. a custom Link field)",
            )
    else:
        fieldname = key
    if not _FIELDNAME.fullmatch(fieldname):
        raise ConfigError(
            f"{fieldname!r} is not an ERPNext fieldname",
            hint="use the field's name as in Customize Form (lowercase, e.g. issue_type, custom_team)",
        )
    return fieldname


def plan_route(action: Action, options: Mapping[str, str]) -> RoutePlan:
    """The calls for one ``route`` action. ConfigError/InputDataError when it cannot be done."""
    if action.kind != "route":
        raise InputDataError(f"ERPNext cannot perform {action.kind!r} actions (only 'route')")
    name = issue_name(action)
    resource = f"/api/resource/{ISSUE}/{quote(name, safe='')}"
    values: dict[str, Any] = {}
    assignee: str | None = None
    for key, value in action.fields.items():
        if key == "assignee":
            assignee = str(value)
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InputDataError(f"fields.{key}: {type(value).__name__} is not an ERPNext field value")
        values[_fieldname(key, options)] = value
    update = PlannedCall("PUT", resource, json=values) if values else None
    assign = None
    if assignee:
        assign = PlannedCall(
            "POST",
            "/api/method/frappe.desk.form.assign_to.add",
            json={"doctype": ISSUE, "name": name, "assign_to": [assignee]},
        )
    mark = marker(action.idempotency_key)
    note = action.context.get("note")
    find_comment = comment = None
    if isinstance(note, str) and note.strip():
        filters = [
            ["reference_doctype", "=", ISSUE],
            ["reference_name", "=", name],
            ["comment_type", "=", "Comment"],
            ["content", "like", f"%{mark}%"],
        ]
        find_comment = PlannedCall(
            "GET",
            "/api/resource/Comment",
            params={
                "filters": json.dumps(filters),
                "fields": json.dumps(["name", "content"]),
                "limit_page_length": "20",
            },
        )
        comment = PlannedCall(
            "POST",
            "/api/resource/Comment",
            json={
                "comment_type": "Comment",
                "reference_doctype": ISSUE,
                "reference_name": name,
                "content": comment_html(note, mark),
            },
        )
    return RoutePlan(name, update, assign, find_comment, comment, mark)
