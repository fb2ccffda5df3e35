"""Slack payloads <-> deskpilot, as pure functions (no I/O, no clock).

Inbound (``parse``, one function per Request URL; shapes as documented by Slack):

``events`` (https://docs.slack.dev/apis/events-api/), JSON:
    ``url_verification`` -> reply ``{"challenge": ...}`` (200). ``event_callback`` with a
    ``message`` event (https://docs.slack.dev/reference/events/message/) posted by a person
    as a new top-level message in one of ``options["channels"]`` -> a ``ticket`` event,
    ``delivery_id`` = the envelope's ``event_id`` (the same on Slack's retries, so the inbox
    stores it once). Ignored, with the reason: other event types, message subtypes (edits,
    deletions, joins, ``bot_message``), anything with a ``bot_id``, our own bot user's
    messages (``options["bot_user_id"]``), thread replies, other channels, empty text.
``commands`` (https://docs.slack.dev/interactivity/implementing-slash-commands/), form:
    ``/deskpilot <text>`` -> a ``query`` event answered at ``response_url``, and at once the
    ephemeral reply ``Classifying…`` (200); ``delivery_id`` = ``trigger_id``.
``interactivity`` (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload/),
    form field ``payload`` = JSON: a ``block_actions`` click on our decision message's
    "Correct" button or "Route to…" select -> a ``feedback`` event (task, label, the clicking
    user, the ticket's ``external_id``); ``delivery_id`` = ``trigger_id``.

Outbound (``decision_message``, ``thread_of``, ``find_posted``, ``plan``): one ``route``
action becomes one Block Kit message in the ticket's thread; see ``client.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deskpilot.connectors.base import Inbound
from deskpilot.connectors.slack.message import (
    ACTION_CORRECT,
    ACTION_ROUTE,
    MARKER_EVENT_TYPE,
    PlannedCall,
    decision_message,
    find_posted,
    lookup_call,
    plan,
    thread_of,
)
from deskpilot.connectors.slack.options import SlackOptions
from deskpilot.errors import InputDataError
from deskpilot.types import Event, Feedback, Query, Ticket

__all__ = [
    "ACTION_CORRECT",
    "ACTION_ROUTE",
    "MARKER_EVENT_TYPE",
    "MAX_SUBJECT_CHARS",
    "PlannedCall",
    "SlackOptions",
    "decision_message",
    "find_posted",
    "lookup_call",
    "parse",
    "parse_command",
    "parse_events",
    "parse_interaction",
    "plain_text",
    "plan",
    "thread_of",
]

SOURCE = "slack"
MAX_SUBJECT_CHARS = 120
ROUTES = ("events", "commands", "interactivity")
TICKET_SUBTYPES = (None, "file_share")  # a person's new message, with or without files
CLASSIFYING = {"response_type": "ephemeral", "text": "Classifying…"}
USAGE = {
    "response_type": "ephemeral",
    "text": "Usage: /deskpilot <a ticket's text> — I say where it would go.",
}

_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def parse(tenant: str, route: str, body: bytes, options: Mapping[str, str]) -> Inbound:
    """Dispatch on the Request URL's last segment: ``events``, ``commands``, ``interactivity``."""
    opts = SlackOptions.from_mapping(options)
    if route == "events":
        return parse_events(tenant, body, opts)
    if route == "commands":
        return parse_command(tenant, body)
    if route == "interactivity":
        return parse_interaction(tenant, body)
    raise InputDataError(
        f"unknown Slack route {route!r} (known: {', '.join(ROUTES)})",
        hint="point the app at /webhooks/{tenant}/slack/events, /slack/commands or /slack/interactivity",
    )


# --- helpers ------------------------------------------------------------------------------
def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"body is not UTF-8 (byte {exc.start})") from None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputDataError(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"{what} is a JSON {type(data).__name__}, not an object")
    return data


def _form(body: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded``: each field once (Slack never repeats one)."""
    try:
        fields = parse_qs(_text(body), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=200)
    except ValueError as exc:
        raise InputDataError(f"body is not form-encoded: {exc}") from None
    repeated = sorted(k for k, v in fields.items() if len(v) > 1)
    if repeated:
        raise InputDataError(f"form field {repeated[0]!r} sent more than once")
    return {k: v[0] for k, v in fields.items()}


def _required(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputDataError(f"{where}{key}: missing or not a non-empty string")
    return value


def plain_text(text: str) -> str:
    """Slack mrkdwn as a person reads it: ``<@U1|ana>`` -> ``@ana``, ``<url|label>`` -> ``label (url)``.

    Then ``&amp;``, ``&lt;``, ``&gt;`` are unescaped (https://docs.slack.dev/messaging/formatting-message-text/).
    """

    def token(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "#")):
            return target[0] + (label or target[1:])
        if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S1|@team>, <!date^...|fallback>
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label and label != target else target

    return unescape(_LINK.sub(token, text)) if "&" in text or "<" in text else text


def _subject(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= MAX_SUBJECT_CHARS else first[: MAX_SUBJECT_CHARS - 1] + "…"


# --- events -------------------------------------------------------------------------------
def _not_a_ticket(event: Mapping[str, Any], options: SlackOptions) -> str | None:
    """Why this event is not a new ticket, or None when it is one."""
    kind = event.get("type")
    if kind != "message":
        return f"event type {kind!r} is not used (only message events become tickets)"
    subtype = event.get("subtype")
    if subtype not in TICKET_SUBTYPES:
        return f"message subtype {subtype!r} is not a new message (edits, deletions, joins, bot posts)"
    if event.get("bot_id") or event.get("bot_profile"):
        return "a bot's message"
    user = event.get("user")
    if not isinstance(user, str) or not user:
        return "a message without a user"
    if options.bot_user_id and user == options.bot_user_id:
        return "our own message"
    channel = event.get("channel")
    if not options.channels:
        return "no channels are configured (set options.channels in the policy's Slack system)"
    if channel not in options.channels:
        return f"channel {channel!r} is not one of the configured channels"
    thread_ts, ts = event.get("thread_ts"), event.get("ts")
    if thread_ts is not None and thread_ts != ts:
        return "a reply in a thread, not a new message"
    text = event.get("text")
    if not isinstance(text, str) or not text.strip():
        return "a message without text"
    return None


def parse_events(tenant: str, body: bytes, options: SlackOptions) -> Inbound:
    data = _json_object(_text(body), "body")
    kind = data.get("type")
    if kind == "url_verification":
        return Inbound(reply={"challenge": _required(data, "challenge", "")}, status=200)
    if kind != "event_callback":
        return Inbound(status=200, ignored=f"Events API type {kind!r} is not used")
    event_id = _required(data, "event_id", "")
    event = data.get("event")
    if not isinstance(event, dict):
        raise InputDataError("event: missing or not an object")
    reason = _not_a_ticket(event, options)
    if reason is not None:
        return Inbound(status=200, ignored=reason)
    channel, ts = _required(event, "channel", "event."), _required(event, "ts", "event.")
    user = _required(event, "user", "event.")
    text = plain_text(_required(event, "text", "event.")).strip()
    team = event.get("team") or data.get("team_id")
    ticket = Ticket(
        subject=_subject(text),
        body=text,
        requester=user,
        source=SOURCE,
        external_id=f"{channel}:{ts}",
        metadata={"channel": channel, "ts": ts, "thread_ts": ts, "user": user, "team": team},
    )
    return Inbound(events=(Event(tenant, SOURCE, event_id, "ticket", ticket),), status=200)


# --- slash command ------------------------------------------------------------------------
def parse_command(tenant: str, body: bytes) -> Inbound:
    form = _form(body)
    if form.get("ssl_check") == "1":  # Slack checking the certificate, nothing to do
        return Inbound(status=200, ignored="ssl_check")
    user = _required(form, "user_id", "")
    response_url = _required(form, "response_url", "")
    if urlsplit(response_url).scheme not in ("http", "https"):
        raise InputDataError("response_url: not an http(s) URL")
    trigger = _required(form, "trigger_id", "")
    text = form.get("text", "").strip()
    if not text:
        return Inbound(reply=dict(USAGE), status=200, ignored="empty command text")
    metadata = {k: form[k] for k in ("command", "channel_id", "team_id", "enterprise_id") if form.get(k)} | {
        "trigger_id": trigger
    }
    query = Query(text=plain_text(text), author=user, reply_url=response_url, metadata=metadata)
    return Inbound(
        events=(Event(tenant, SOURCE, trigger, "query", query),), reply=dict(CLASSIFYING), status=200
    )


# --- interactivity ------------------------------------------------------------------------
def _reference(raw: Any, where: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The JSON object we wrote into a button's value or an actions block's block_id."""
    if not isinstance(raw, str):
        raise InputDataError(f"{where}: missing")
    data = _json_object(raw, where)
    return {key: _required(data, key, f"{where}.") for key in keys}


def _feedback(action: Mapping[str, Any], user: str) -> Feedback | None:
    action_id = action.get("action_id")
    if action_id == ACTION_CORRECT:
        ref = _reference(action.get("value"), "actions[].value", ("task", "external_id", "label"))
        label = ref["label"]
    elif action_id == ACTION_ROUTE:
        ref = _reference(action.get("block_id"), "actions[].block_id", ("task", "external_id"))
        selected = action.get("selected_option")
        if not isinstance(selected, dict):
            raise InputDataError("actions[].selected_option: missing for the Route to… select")
        label = _required(selected, "value", "actions[].selected_option.")
    else:
        return None
    return Feedback(task=ref["task"], label=label, author=user, external_id=ref["external_id"])


def parse_interaction(tenant: str, body: bytes) -> Inbound:
    payload = _json_object(_required(_form(body), "payload", "form field "), "payload")
    kind = payload.get("type")
    if kind != "block_actions":
        return Inbound(status=200, ignored=f"interaction type {kind!r} is not used")
    user_data = payload.get("user")
    user = _required(user_data if isinstance(user_data, dict) else {}, "id", "payload.user.")
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise InputDataError("payload.actions: missing or not a list")
    found = [f for a in actions if isinstance(a, dict) and (f := _feedback(a, user)) is not None]
    if not found:
        return Inbound(status=200, ignored="no deskpilot button or select in this interaction")
    trigger = payload.get("trigger_id") or next(
        (a.get("action_ts") for a in actions if isinstance(a, dict) and a.get("action_ts")), None
    )
    if not isinstance(trigger, str) or not trigger:
        raise InputDataError("payload.trigger_id: missing (and no actions[].action_ts)")
    events = tuple(
        Event(tenant, SOURCE, trigger if len(found) == 1 else f"{trigger}:{i}", "feedback", fb)
        for i, fb in enumerate(found)
    )
    return Inbound(events=events, status=200)
