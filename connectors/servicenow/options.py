"""The policy ``options`` of a ServiceNow system, validated once, and the priority table.

ServiceNow computes an incident's priority from impact x urgency (the *Priority Lookup Rules*,
``dl_u_priority``); in the base system ``priority = impact + urgency - 1``::

                  urgency 1 High   2 Medium     3 Low
    impact 1 High     1 Critical   2 High       3 Moderate
    impact 2 Medium   2 High       3 Moderate   4 Low
    impact 3 Low      3 Moderate   4 Low        5 Planning

so deskpilot sets a priority by writing the impact/urgency pair of ``DEFAULT_PRIORITY_MAP``
(values ``1``-``5``, ServiceNow's names and the common aliases ``urgent``/``medium``), or of
``options["priority_map"]`` when the policy uses its own labels::

    priority_map: "urgent=1/1, high=1/2, medium=2/2, low=2/3"

Inbound, a person's priority change is reported in the same vocabulary: the first label of
``priority_map`` whose pair is the incident's (else whose base-table priority is the
incident's priority), and with the default table the ServiceNow priority number ``1``-``5``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from deskpilot.errors import ConfigError

DEFAULT_TABLE = "incident"
# label -> (impact, urgency), in the order inbound values are looked up
DEFAULT_PRIORITY_MAP: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1),
    ("2", 1, 2),
    ("3", 2, 2),
    ("4", 2, 3),
    ("5", 3, 3),
    ("critical", 1, 1),
    ("urgent", 1, 1),
    ("high", 1, 2),
    ("moderate", 2, 2),
    ("medium", 2, 2),
    ("low", 2, 3),
    ("planning", 3, 3),
)
KNOWN_OPTIONS = ("table", "integration_user", "priority_map", "note_lookup", "work_notes")
NoteLookup = Literal["journal", "record"]

_TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")
_ENTRY = re.compile(r"\s*([^=,\s][^=,]*?)\s*=\s*([1-9])\s*/\s*([1-9])\s*")
_EXAMPLE = 'priority_map: "urgent=1/1, high=1/2, medium=2/2, low=2/3"'


def base_priority(impact: int, urgency: int) -> int:
    """ServiceNow's base Priority Lookup Rules: 1 (critical) .. 5 (planning)."""
    return impact + urgency - 1


def parse_priority_map(text: str) -> tuple[tuple[str, int, int], ...]:
    """``"label=impact/urgency, ..."`` -> entries; ConfigError naming the bad entry."""
    entries: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        if not raw.strip():
            continue
        match = _ENTRY.fullmatch(raw)
        if match is None:
            raise ConfigError(
                f"options.priority_map entry {raw.strip()!r} is not label=impact/urgency",
                hint=f"e.g. {_EXAMPLE} (impact and urgency are ServiceNow's values 1-9)",
            )
        label = match.group(1)
        if label.lower() in seen:
            raise ConfigError(f"options.priority_map names {label!r} twice")
        seen.add(label.lower())
        entries.append((label, int(match.group(2)), int(match.group(3))))
    if not entries:
        raise ConfigError("options.priority_map is empty", hint=f"e.g. {_EXAMPLE}, or leave it out")
    return tuple(entries)


@dataclass(frozen=True, slots=True)
class ServiceNowOptions:
    """``table`` to write to; ``integration_user`` whose changes are deskpilot's own (not
    corrections); ``priority_map``; ``note_lookup`` how a retry finds its earlier work note
    (``journal``: query ``sys_journal_field``; ``record``: read the record's work notes);
    ``work_notes`` whether to post the decision's explanation at all."""

    table: str = DEFAULT_TABLE
    integration_user: str | None = None
    priority_map: tuple[tuple[str, int, int], ...] = DEFAULT_PRIORITY_MAP
    custom_priority_map: bool = False
    note_lookup: NoteLookup = "journal"
    work_notes: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, str] | None) -> ServiceNowOptions:
        """Validate the policy's options; ConfigError names the option and what it takes."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(KNOWN_OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown ServiceNow option(s) {', '.join(unknown)} in the policy",
                hint=f"known options: {', '.join(KNOWN_OPTIONS)}",
            )
        table = options.get("table", DEFAULT_TABLE).strip()
        if not _TABLE.fullmatch(table):
            raise ConfigError(
                f"options.table {table!r} is not a ServiceNow table name", hint="e.g. incident or u_ticket"
            )
        user = options.get("integration_user", "").strip() or None
        lookup = options.get("note_lookup", "journal").strip()
        if lookup not in ("journal", "record"):
            raise ConfigError(f"options.note_lookup must be journal or record, not {lookup!r}")
        notes = options.get("work_notes", "true").strip().lower()
        if notes not in ("true", "false"):
            raise ConfigError(f"options.work_notes must be true or false, not {notes!r}")
        text = options.get("priority_map")
        return cls(
            table=table,
            integration_user=user,
            priority_map=parse_priority_map(text) if text is not None else DEFAULT_PRIORITY_MAP,
            custom_priority_map=text is not None,
            note_lookup="journal" if lookup == "journal" else "record",
            work_notes=notes == "true",
        )

    def impact_urgency(self, value: str) -> tuple[int, int] | None:
        """The pair for a policy priority value (labels ignore case); None when unknown."""
        wanted = value.strip().lower()
        for label, impact, urgency in self.priority_map:
            if label.lower() == wanted:
                return impact, urgency
        return None

    def priority_labels(self) -> list[str]:
        return [label for label, _, _ in self.priority_map]

    def priority_value(self, priority: int | None, impact: int | None, urgency: int | None) -> str | None:
        """How an incident's priority is reported inbound (see the module docstring)."""
        if priority is None and impact is not None and urgency is not None:
            priority = base_priority(impact, urgency)
        if not self.custom_priority_map:
            return str(priority) if priority is not None else None
        for label, i, u in self.priority_map:
            if (i, u) == (impact, urgency):
                return label
        for label, i, u in self.priority_map:
            if priority is not None and base_priority(i, u) == priority:
                return label
        return str(priority) if priority is not None else None
