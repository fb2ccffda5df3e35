"""The ``options`` of a policy's Slack system, read once into a typed value.

All are optional strings (policy options are a string mapping):

``channels``
    Comma-separated channel ids (``C0123ABCD,C0456EFGH``) whose new messages become tickets.
    Without it no message becomes a ticket (slash commands and buttons still work).
``bot_user_id``
    The app's bot user id (``auth.test`` -> ``user_id``, e.g. ``U0BOT1234``): its messages are
    never tickets, and only its messages count when looking for an already posted decision.
``task``
    The policy task that the "Correct" button and the "Route to…" select correct; default:
    the first task in the decision.
``labels``
    Comma-separated labels listed in the "Route to…" select (at most 100, each at most 150
    characters); without it the message has no select.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_SELECT_OPTIONS = 100  # Block Kit's limit for a static_select
MAX_OPTION_VALUE = 150


def _split(value: str | None) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for part in (value or "").split(","):
        if part.strip():
            seen.setdefault(part.strip(), None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class SlackOptions:
    channels: frozenset[str] = frozenset()
    bot_user_id: str | None = None
    task: str | None = None
    labels: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, options: Mapping[str, str] | None) -> SlackOptions:
        opts = options or {}
        labels = tuple(label for label in _split(opts.get("labels")) if len(label) <= MAX_OPTION_VALUE)
        return cls(
            channels=frozenset(_split(opts.get("channels"))),
            bot_user_id=(opts.get("bot_user_id") or "").strip() or None,
            task=(opts.get("task") or "").strip() or None,
            labels=labels[:MAX_SELECT_OPTIONS],
        )
