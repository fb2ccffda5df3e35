"""Bodies of the workflow API: tickets, webhooks, feedback, jobs and the audit log.

Responses are built from store rows with ``build``; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from deskpilot.gateway.schemas import _check_name, _check_text
from deskpilot.store.models import (
    AuditEntry,
    DecisionRecord,
    FeedbackRecord,
    JobRecord,
    OutboxAction,
    TicketRecord,
)
from deskpilot.store.workflow import Accepted

MAX_ID = 2**63 - 1  # larger ids cannot exist and would overflow the database's integer
MAX_SUBJECT_CHARS = 1_000
MAX_REQUESTER_CHARS = 320
MAX_EXTERNAL_ID_CHARS = 200
SOURCE_PATTERN = re.compile(r"[a-z0-9_-]{1,100}")
SOURCE_RULE = "1-100 lowercase letters, digits, '-' or '_'"
JobState = Literal["queued", "running", "done", "dead"]


def _clean(value: str | None, where: str) -> str | None:
    if value is not None:
        _check_text(value, where)
    return value


# tickets ---------------------------------------------------------------------------------


class TicketIn(BaseModel):
    """A ticket to route. ``body`` is limited by ``DESKPILOT_MAX_TEXT_CHARS`` (checked by the route)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "VPN drops every hour",
                    "body": "Since this morning the VPN disconnects every hour.",
                    "requester": "ana@example.com",
                    "source": "email",
                    "external_id": "T-1042",
                    "metadata": {"channel": "email"},
                }
            ]
        },
    )

    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS, description="A subject, a body or both")
    body: str = Field(default="", description="At most DESKPILOT_MAX_TEXT_CHARS characters")
    requester: str | None = Field(default=None, max_length=MAX_REQUESTER_CHARS, description="Who asked")
    source: str = Field(default="api", description=f"The system it came from: {SOURCE_RULE}")
    external_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_EXTERNAL_ID_CHARS, description="Its id in that system"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Anything else; kept as given")

    @field_validator("subject", "body", "requester", "external_id")
    @classmethod
    def _encodable(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _clean(value, str(info.field_name))

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not SOURCE_PATTERN.fullmatch(value):
            raise ValueError(f"source must be {SOURCE_RULE}")
        return value

    @model_validator(mode="after")
    def _some_text(self) -> Self:
        if not self.subject.strip() and not self.body.strip():
            raise ValueError("subject and body are both empty; send at least one")
        return self


class TicketAccepted(BaseModel):
    """The answer to an accepted delivery: the same body every time it is delivered again."""

    ticket_id: int
    job_id: int | None = Field(description="The job that processes the ticket (GET /v1/jobs/{id})")
    state: str = Field(description="The ticket's state when it was accepted")
    duplicate: bool = Field(description="True when this delivery was accepted before; nothing new was made")

    @classmethod
    def build(cls, accepted: Accepted) -> TicketAccepted:
        original = accepted.response
        return cls(
            ticket_id=int(original.get("ticket_id", accepted.ticket_id)),
            job_id=original.get("job_id", accepted.job_id),
            state=str(original.get("state", "received")),
            duplicate=accepted.duplicate,
        )


class DecisionOut(BaseModel):
    id: int
    task: str
    label: str | None = Field(description="The label acted on (after policy overrides); null if abstained")
    predicted_label: str | None
    score: float | None
    threshold: float | None
    abstained: bool
    adapter_version: str | None
    destination: str | None
    overrides: dict[str, Any]
    explanation: dict[str, Any]
    created_at: datetime

    @classmethod
    def build(cls, row: DecisionRecord) -> DecisionOut:
        return cls(
            id=row.id,
            task=row.task,
            label=row.label,
            predicted_label=row.predicted_label,
            score=row.score,
            threshold=row.threshold,
            abstained=row.abstained,
            adapter_version=row.adapter_version,
            destination=row.destination,
            overrides=dict(row.overrides or {}),
            explanation=dict(row.explanation or {}),
            created_at=row.created_at,
        )


class ActionOut(BaseModel):
    """A change deskpilot makes in an outside system (the outbox); ``dead`` ones gave up."""

    id: int
    system: str
    connector: str
    kind: str
    fields: dict[str, Any]
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    done_at: datetime | None

    @classmethod
    def build(cls, row: OutboxAction) -> ActionOut:
        fields = (row.payload or {}).get("fields")
        return cls(
            id=row.id,
            system=row.system,
            connector=row.connector,
            kind=row.kind,
            fields=dict(fields) if isinstance(fields, dict) else {},
            state=row.state,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            done_at=row.done_at,
        )


class AuditEntryOut(BaseModel):
    id: int
    ticket_id: int | None
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: datetime

    @classmethod
    def build(cls, row: AuditEntry) -> AuditEntryOut:
        return cls(
            id=row.id,
            ticket_id=row.ticket_id,
            kind=row.kind,
            actor=row.actor,
            data=dict(row.data or {}),
            created_at=row.created_at,
        )


class TicketOut(BaseModel):
    id: int
    state: str = Field(description="received, processing, routed, triage (a person decides) or failed")
    subject: str
    body: str
    requester: str | None
    source: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    decisions: list[DecisionOut]
    actions: list[ActionOut] = Field(description="Changes to make in outside systems, with their state")
    history: list[AuditEntryOut] = Field(description="The ticket's audit log, oldest first")

    @classmethod
    def build(
        cls,
        row: TicketRecord,
        decisions: list[DecisionRecord],
        actions: list[OutboxAction],
        history: list[AuditEntry],
    ) -> TicketOut:
        return cls(
            id=row.id,
            state=row.state,
            subject=row.subject,
            body=row.body,
            requester=row.requester,
            source=row.source,
            external_id=row.external_id,
            metadata=dict(row.meta or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            decisions=[DecisionOut.build(d) for d in decisions],
            actions=[ActionOut.build(a) for a in actions],
            history=[AuditEntryOut.build(e) for e in history],
        )


class AuditLogOut(BaseModel):
    entries: list[AuditEntryOut] = Field(description="Oldest first")


# feedback --------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    """A correction: which ticket, decision or prediction, which task, the right label, who."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"ticket_id": 42, "task": "intent", "label": "network", "author": "ana@example.com"},
                {"decision_id": 7, "label": "billing", "author": "ana@example.com"},
                {"prediction_id": 9, "text": "VPN down", "task": "intent", "label": "network", "author": "b"},
            ]
        },
    )

    ticket_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="The ticket corrected")
    decision_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="The decision corrected (its ticket and task are implied)"
    )
    prediction_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="A prediction_id from POST /v1/classify; send the classified `text` with it",
    )
    task: str | None = Field(default=None, description="The task; may be left out with decision_id")
    label: str = Field(min_length=1, max_length=200, description="The right label; new labels are allowed")
    author: str = Field(min_length=1, max_length=320, description="Who made the correction")
    text: str | None = Field(
        default=None, description="The text corrected: with prediction_id, or alone without any id"
    )

    @field_validator("task")
    @classmethod
    def _task_name(cls, value: str | None) -> str | None:
        return _check_name(value, "task")

    @field_validator("label", "author", "text")
    @classmethod
    def _encodable(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _clean(value, str(info.field_name))

    @field_validator("label", "author")
    @classmethod
    def _not_blank(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is blank")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        has_ticket = self.ticket_id is not None or self.decision_id is not None
        if self.prediction_id is not None:
            if has_ticket:
                raise ValueError("prediction_id is not about a ticket: leave out ticket_id and decision_id")
            if self.text is None:
                raise ValueError("prediction_id needs the `text` that was classified (it is not stored)")
        elif has_ticket and self.text is not None:
            raise ValueError("`text` is taken from the ticket; leave it out with ticket_id or decision_id")
        elif not has_ticket and self.text is None:
            raise ValueError("say what is corrected: ticket_id, decision_id, prediction_id and text, or text")
        if self.task is None and self.decision_id is None:
            raise ValueError("task is required (it may be left out only with decision_id)")
        return self


class FeedbackOut(BaseModel):
    feedback_id: int
    task: str
    label: str
    previous_label: str | None = Field(description="What deskpilot had decided, when known")
    ticket_id: int | None
    decision_id: int | None

    @classmethod
    def build(cls, row: FeedbackRecord) -> FeedbackOut:
        return cls(
            feedback_id=row.id,
            task=row.task,
            label=row.label,
            previous_label=row.previous_label,
            ticket_id=row.ticket_id,
            decision_id=row.decision_id,
        )


# jobs ------------------------------------------------------------------------------------


class JobOut(BaseModel):
    """Background work; ``dead`` jobs are the dead letters (see ``last_error``)."""

    id: int
    kind: str
    state: str = Field(description="queued, running, done or dead")
    payload: dict[str, Any] = Field(description="What the job works on, e.g. its ticket_id")
    attempts: int
    max_attempts: int
    run_after: datetime
    last_error: str | None
    progress: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def build(cls, row: JobRecord) -> JobOut:
        return cls(
            id=row.id,
            kind=row.kind,
            state=row.state,
            payload=dict(row.payload or {}),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_after=row.run_after,
            last_error=row.last_error,
            progress=dict(row.progress or {}),
            result=dict(row.result or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


class JobsOut(BaseModel):
    jobs: list[JobOut] = Field(description="Newest first")
