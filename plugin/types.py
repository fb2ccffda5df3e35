"""Plain data shapes that cross layers. No behaviour, no heavy imports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Ticket:
    subject: str
    body: str
    requester: str | None = None
    source: str = "api"
    external_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return join_subject_body(self.subject, self.body)


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    media_type: str
    text: str
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A person changed a routed field in the outside system: a correction once mapped.

    ``field`` and ``value`` are the system's own (e.g. ``group_id`` = ``"360001"``); the
    tenant's routing policy maps them back to a task and label.
    """

    external_id: str
    field: str
    value: str
    author: str
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """A person asks deskpilot directly (e.g. a Slack slash command); answered at ``reply_url``."""

    text: str
    author: str
    reply_url: str
    metadata: dict[str, Any] = field(default_factory=dict)


EventKind = Literal["ticket", "document", "feedback", "field_change", "query"]


@dataclass(frozen=True, slots=True)
class Event:
    """One inbound delivery from an outside system, already authenticated.

    ``delivery_id`` is unique per event for its source: the inbox refuses a second copy.
    """

    tenant: str
    source: str
    delivery_id: str
    kind: EventKind
    payload: Ticket | Document | Feedback | FieldChange | Query
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Alternative:
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """One classifier answer. ``score`` is the calibrated probability of ``label``."""

    label: str
    score: float
    abstained: bool
    alternatives: tuple[Alternative, ...]
    task: str
    adapter_version: str
    threshold: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where one task's answer sends a ticket. ``target`` holds the system's own ids."""

    task: str
    label: str | None
    destination: str | None
    abstained: bool
    overrides: tuple[str, ...] = ()
    explanation: str = ""
    target: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """One change to make in an outside system, e.g. set a ticket's queue and priority.

    ``idempotency_key`` is stable for the same decision, so a retried action is recognised.
    """

    tenant: str
    system: str
    connector: str
    kind: str
    ticket_id: int
    external_id: str | None
    fields: dict[str, Any]
    idempotency_key: str
    # what a connector may need besides the fields: "note" (the decision explained in plain
    # text, for an internal comment), "ticket_metadata" (as received, e.g. a Slack channel and
    # thread), "decisions" (task, label, score, abstained), "triage" (bool)
    context: dict[str, Any] = field(default_factory=dict)


DraftMode = Literal["generated", "reused", "none"]


@dataclass(frozen=True, slots=True)
class Draft:
    """A proposed reply for a person to check. ``text`` is None when there is nothing trustworthy.

    ``sources`` are the ids of the resolved tickets it was grounded in; ``mode`` says whether
    the generator wrote it or a past answer was offered as it was.
    """

    text: str | None
    confidence: float
    sources: tuple[str, ...]
    reason: str | None = None
    mode: DraftMode = "none"
    adapter_version: str | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """What a generator produced for one prompt, and what it cost."""

    text: str
    new_tokens: int
    prompt_tokens: int
    seconds: float
    # mean log-probability of the chosen tokens: a cheap confidence signal (None if unknown)
    mean_logprob: float | None = None


@dataclass(frozen=True, slots=True)
class Feedback:
    """A correction. From an outside system the ticket is named by ``external_id``."""

    task: str
    label: str
    author: str
    prediction_id: int | None = None
    ticket_id: int | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class AdapterSummary:
    tenant: str
    task: str
    version: str
    champion: bool
    base_model: str
    labels: tuple[str, ...]
    metrics: dict[str, float | None]
    created_at: str


def join_subject_body(subject: str | None, body: str | None) -> str:
    """The text a classifier sees for a ticket: subject and body, one blank line apart."""
    parts = [p.strip() for p in (subject, body) if p and p.strip()]
    return "\n\n".join(parts)


@dataclass(frozen=True, slots=True)
class KnowledgeItem:
    """A resolved ticket for a knowledge base: the question, the reply a person sent.

    ``origin`` is "import", "feedback" (an accepted or edited draft) or "resolved"; the
    index fills ``embedding`` (float32 bytes) and ``embedding_model``.
    """

    source_id: str
    question: str
    answer: str
    label: str | None = None
    origin: str = "import"
    ticket_id: int | None = None
    embedding: bytes = b""
    embedding_model: str = ""


@dataclass(frozen=True, slots=True)
class StoredKnowledge:
    """A knowledge-base row as the store hands it back: plain values, safe after the session."""

    id: int
    source_id: str
    question: str
    answer: str
    label: str | None
    origin: str
    ticket_id: int | None
    embedding: bytes
    embedding_model: str
    created_at: datetime | None = None
