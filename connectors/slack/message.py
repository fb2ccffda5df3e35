"""One ``route`` action -> one Block Kit message in the ticket's Slack thread. Pure.

The message (https://docs.slack.dev/reference/block-kit/blocks/) has

1. a section saying what was decided: "Routed" or "Sent to triage", then each policy field as
   ``key value`` (``queue``, ``group``, ``assignee``, any destination ``fields`` key; an
   ``assignee`` that is a Slack user id is shown as a mention, which notifies that person),
   then one line per task decision (label and score, or "unsure");
2. a section with ``context["note"]``, the plain-text explanation of the decision;
3. an actions block whose ``block_id`` is ``{"task", "external_id"}`` as JSON, with the
   "Correct" button (value ``{"task", "label", "external_id"}``, only when the corrected task
   has a label) and the "Route to…" static select listing ``options["labels"]``;
4. a context line with the marker ``[deskpilot:<idempotency key>]``.

It also carries Slack message metadata ``{"event_type": "deskpilot_decision", "event_payload":
{"idempotency_key", "ticket_id", "external_id"}}`` (https://docs.slack.dev/messaging/message-metadata/),
which ``find_posted`` looks for (or the marker) so that a retried action updates the message
it already posted instead of posting a second one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

from deskpilot.connectors.slack.options import SlackOptions
from deskpilot.errors import InputDataError
from deskpilot.types import Action

MARKER_EVENT_TYPE = "deskpilot_decision"
ACTION_CORRECT = "deskpilot_correct"
ACTION_ROUTE = "deskpilot_route"
MAX_SECTION_CHARS = 3000  # Block Kit: a section's text
MAX_BLOCK_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_OPTION_TEXT = 75
REPLIES_PAGE = 200

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One Slack Web API call as data: ``method`` (e.g. ``chat.postMessage``) and its arguments."""

    method: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Thread:
    """Where a ticket lives in Slack: its channel and the ts of the message that opened it."""

    channel: str
    ts: str

    @property
    def external_id(self) -> str:
        return f"{self.channel}:{self.ts}"


def thread_of(action: Action) -> Thread:
    """The ticket's thread, from ``ticket_metadata`` (channel, thread_ts/ts) or ``external_id``."""
    meta = action.context.get("ticket_metadata") or {}
    channel = meta.get("channel") if isinstance(meta, dict) else None
    ts = (meta.get("thread_ts") or meta.get("ts")) if isinstance(meta, dict) else None
    if not (channel and ts) and action.external_id and ":" in action.external_id:
        channel, _, ts = action.external_id.partition(":")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        raise InputDataError(
            f"ticket {action.ticket_id} has no Slack channel and thread to answer in",
            hint="the Slack connector replies in the thread of tickets that came from Slack "
            "(ticket metadata channel and ts, or external_id 'CHANNEL:TS')",
        )
    return Thread(channel, ts)


def marker(idempotency_key: str) -> str:
    return f"[deskpilot:{idempotency_key}]"


def _escape(text: str) -> str:
    """mrkdwn control characters (https://docs.slack.dev/messaging/formatting-message-text/)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(key: str, value: Any) -> str:
    text = str(value)
    if key == "assignee" and _USER_ID.fullmatch(text):
        return f"<@{text}>"
    return f"`{_escape(text)}`"


def _decision_line(decision: Any) -> str | None:
    if not isinstance(decision, dict) or not decision.get("task"):
        return None
    task = _escape(str(decision["task"]))
    label, score = decision.get("label"), decision.get("score")
    if decision.get("abstained") or not label:
        return f"• {task}: unsure"
    shown = f" ({score:.0%})" if isinstance(score, int | float) and not isinstance(score, bool) else ""
    return f"• {task}: *{_escape(str(label))}*{shown}"


def corrected(action: Action, options: SlackOptions) -> tuple[str | None, str | None]:
    """(task, label) that the buttons correct: ``options.task`` or the first decision's task."""
    decisions = [d for d in action.context.get("decisions") or [] if isinstance(d, dict)]
    task = options.task or (str(decisions[0]["task"]) if decisions and decisions[0].get("task") else None)
    found = next((d for d in decisions if d.get("task") == task), None)
    if found is None or found.get("abstained") or not found.get("label"):
        return task, None
    return task, str(found["label"])


def _actions(action: Action, options: SlackOptions, external_id: str) -> ActionsBlock | None:
    task, label = corrected(action, options)
    if task is None:
        return None
    block_id = json.dumps({"task": task, "external_id": external_id}, separators=(",", ":"))
    if len(block_id) > MAX_BLOCK_ID:
        return None
    elements: list[Any] = []
    value = json.dumps({"task": task, "label": label, "external_id": external_id}, separators=(",", ":"))
    if label is not None and len(value) <= MAX_BUTTON_VALUE:
        elements.append(ButtonElement(text="Correct", action_id=ACTION_CORRECT, value=value, style="primary"))
    if options.labels:
        choices = [Option(value=item, text=_cut(item, MAX_OPTION_TEXT)) for item in options.labels]
        elements.append(StaticSelectElement(placeholder="Route to…", action_id=ACTION_ROUTE, options=choices))
    return ActionsBlock(block_id=block_id, elements=elements) if elements else None


def decision_message(action: Action, options: SlackOptions) -> dict[str, Any]:
    """``text``, ``blocks`` and ``metadata`` for chat.postMessage / chat.update."""
    thread = thread_of(action)
    external_id = action.external_id or thread.external_id
    triage = bool(action.context.get("triage"))
    headline = "Sent to triage" if triage else "Routed"
    where = " · ".join(f"{_escape(str(k))} {_shown(k, v)}" for k, v in action.fields.items())
    lines = [f"*{headline}*" + (f": {where}" if where else "")]
    lines += [line for d in action.context.get("decisions") or [] if (line := _decision_line(d))]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut("\n".join(lines), MAX_SECTION_CHARS)))
    ]
    note = str(action.context.get("note") or "").strip()
    if note:
        blocks.append(SectionBlock(text=PlainTextObject(text=_cut(note, MAX_SECTION_CHARS), emoji=False)))
    buttons = _actions(action, options, external_id)
    if buttons is not None:
        blocks.append(buttons)
    blocks.append(
        ContextBlock(
            elements=[MarkdownTextObject(text=f"deskpilot {_escape(marker(action.idempotency_key))}")]
        )
    )
    payload: dict[str, Any] = {"idempotency_key": action.idempotency_key, "ticket_id": action.ticket_id}
    if action.external_id:
        payload["external_id"] = action.external_id
    plain_where = ", ".join(f"{k} {v}" for k, v in action.fields.items())
    return {
        "text": _cut(f"deskpilot: {headline.lower()}" + (f" to {plain_where}" if plain_where else ""), 3000),
        "blocks": [block.to_dict() for block in blocks],
        "metadata": {"event_type": MARKER_EVENT_TYPE, "event_payload": payload},
    }


def lookup_call(thread: Thread, cursor: str | None = None) -> PlannedCall:
    """conversations.replies for the thread, with message metadata (to find our earlier post)."""
    args: dict[str, Any] = {
        "channel": thread.channel,
        "ts": thread.ts,
        "include_all_metadata": True,
        "limit": REPLIES_PAGE,
    }
    if cursor:
        args["cursor"] = cursor
    return PlannedCall("conversations.replies", args)


def find_posted(messages: Iterable[Any], idempotency_key: str, bot_user_id: str | None) -> str | None:
    """The ts of the message we already posted for this key (metadata first, then the marker)."""
    tags = {marker(idempotency_key), _escape(marker(idempotency_key))}
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("ts"), str):
            continue
        if bot_user_id and message.get("user") != bot_user_id:
            continue
        meta = message.get("metadata")
        if isinstance(meta, dict) and meta.get("event_type") == MARKER_EVENT_TYPE:
            payload = meta.get("event_payload")
            if isinstance(payload, dict) and payload.get("idempotency_key") == idempotency_key:
                return str(message["ts"])
        text = str(message.get("text") or "") + json.dumps(message.get("blocks") or [], ensure_ascii=False)
        if any(tag in text for tag in tags):
            return str(message["ts"])
    return None


def plan(action: Action, options: SlackOptions, existing_ts: str | None) -> list[PlannedCall]:
    """Post the decision in the thread, or update the post found by ``find_posted``."""
    thread = thread_of(action)
    message = decision_message(action, options)
    if existing_ts is not None:
        return [PlannedCall("chat.update", {"channel": thread.channel, "ts": existing_ts, **message})]
    args = {"channel": thread.channel, "thread_ts": thread.ts, **message, "unfurl_links": False}
    return [PlannedCall("chat.postMessage", args)]
