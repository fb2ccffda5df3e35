"""Reads behind the review console: the inbox, the triage queue, usage and feedback figures.

Every function takes the signed-in person's ``tenant_id`` and filters on it first; nothing
here writes (corrections go through :func:`deskpilot.store.workflow.record_feedback`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from .documents import DOCUMENT_SOURCE
from .models import DecisionRecord, DocumentRecord, FeedbackRecord, TicketRecord

MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class InboxFilters:
    """What the inbox's GET query asks for; ``None`` means no filter."""

    q: str | None = None
    label: str | None = None
    source: str | None = None
    kind: str | None = None  # "ticket" or "document"
    state: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    date_from: date | None = None
    date_to: date | None = None
    abstained_only: bool = False
    before_id: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class DecisionView:
    id: int
    task: str
    label: str | None
    predicted_label: str | None
    score: float | None
    threshold: float | None
    abstained: bool
    destination: str | None
    adapter_version: str | None
    overrides: list[str]
    explanation: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    created_at: datetime
    source: str
    subject: str
    body: str
    state: str
    document: str | None
    decisions: list[DecisionView] = field(default_factory=list)

    @property
    def abstained(self) -> bool:
        return any(d.abstained for d in self.decisions)


def decision_view(row: DecisionRecord) -> DecisionView:
    rules = row.overrides.get("rules", []) if isinstance(row.overrides, dict) else []
    return DecisionView(
        id=row.id,
        task=row.task,
        label=row.label,
        predicted_label=row.predicted_label,
        score=row.score,
        threshold=row.threshold,
        abstained=row.abstained,
        destination=row.destination,
        adapter_version=row.adapter_version,
        overrides=[str(r) for r in rules] if isinstance(rules, list) else [],
        explanation=dict(row.explanation or {}),
    )


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _inbox_query(tenant_id: int, f: InboxFilters) -> Select[TicketRecord]:
    query = select(TicketRecord).where(TicketRecord.tenant_id == tenant_id)
    if f.q:
        pattern = _like(f.q)
        query = query.where(
            or_(
                TicketRecord.subject.ilike(pattern, escape="\\"),
                TicketRecord.body.ilike(pattern, escape="\\"),
            )
        )
    if f.source:
        query = query.where(TicketRecord.source == f.source)
    if f.kind == "document":
        query = query.where(TicketRecord.source == DOCUMENT_SOURCE)
    elif f.kind == "ticket":
        query = query.where(TicketRecord.source != DOCUMENT_SOURCE)
    if f.state:
        query = query.where(TicketRecord.state == f.state)
    if f.date_from:
        query = query.where(TicketRecord.created_at >= _day_start(f.date_from))
    if f.date_to:
        query = query.where(TicketRecord.created_at < _day_start(f.date_to + timedelta(days=1)))
    conditions = []
    if f.label:
        conditions.append(or_(DecisionRecord.label == f.label, DecisionRecord.predicted_label == f.label))
    if f.min_score is not None:
        conditions.append(DecisionRecord.score >= f.min_score)
    if f.max_score is not None:
        conditions.append(DecisionRecord.score <= f.max_score)
    if f.abstained_only:
        conditions.append(DecisionRecord.abstained.is_(True))
    if conditions:
        query = query.where(
            exists().where(
                DecisionRecord.ticket_id == TicketRecord.id,
                DecisionRecord.tenant_id == tenant_id,
                *conditions,
            )
        )
    if f.before_id:
        query = query.where(TicketRecord.id < f.before_id)
    return query.order_by(TicketRecord.id.desc()).limit(max(1, min(f.limit, MAX_PAGE)))


def inbox(session: Session, tenant_id: int, filters: InboxFilters) -> list[InboxRow]:
    """The newest tickets (documents included: each has a ticket) that match, with decisions."""
    tickets = list(session.scalars(_inbox_query(tenant_id, filters)))
    return _rows(session, tenant_id, tickets)


def _rows(session: Session, tenant_id: int, tickets: list[TicketRecord]) -> list[InboxRow]:
    ids = [t.id for t in tickets]
    if not ids:
        return []
    decisions: dict[int, list[DecisionView]] = defaultdict(list)
    for d in session.scalars(
        select(DecisionRecord)
        .where(DecisionRecord.tenant_id == tenant_id, DecisionRecord.ticket_id.in_(ids))
        .order_by(DecisionRecord.id)
    ):
        decisions[d.ticket_id].append(decision_view(d))
    names = {
        ticket_id: filename
        for ticket_id, filename in session.execute(
            select(DocumentRecord.ticket_id, DocumentRecord.filename).where(
                DocumentRecord.tenant_id == tenant_id, DocumentRecord.ticket_id.in_(ids)
            )
        )
    }
    return [
        InboxRow(
            id=t.id,
            created_at=t.created_at,
            source=t.source,
            subject=t.subject,
            body=t.body,
            state=t.state,
            document=names.get(t.id),
            decisions=_latest_per_task(decisions.get(t.id, [])),
        )
        for t in tickets
    ]


def _latest_per_task(views: list[DecisionView]) -> list[DecisionView]:
    latest: dict[str, DecisionView] = {}
    for view in views:  # ordered by id: a later decision for a task replaces an earlier one
        latest[view.task] = view
    return list(latest.values())


def sources(session: Session, tenant_id: int) -> list[str]:
    return sorted(
        session.scalars(select(TicketRecord.source).where(TicketRecord.tenant_id == tenant_id).distinct())
    )


def decided_labels(session: Session, tenant_id: int, task: str | None = None) -> list[str]:
    """Every label decisions and corrections of the tenant have used (for one task if given)."""
    found: set[str] = set()
    decided = select(DecisionRecord.label, DecisionRecord.predicted_label).where(
        DecisionRecord.tenant_id == tenant_id
    )
    corrected = select(FeedbackRecord.label).where(FeedbackRecord.tenant_id == tenant_id)
    if task is not None:
        decided = decided.where(DecisionRecord.task == task)
        corrected = corrected.where(FeedbackRecord.task == task)
    for label, predicted in session.execute(decided.distinct()):
        found.update(x for x in (label, predicted) if x)
    found.update(x for x in session.scalars(corrected.distinct()) if x)
    return sorted(found)


def tasks(session: Session, tenant_id: int) -> list[str]:
    decided = set(session.scalars(select(DecisionRecord.task).where(DecisionRecord.tenant_id == tenant_id)))
    corrected = set(session.scalars(select(FeedbackRecord.task).where(FeedbackRecord.tenant_id == tenant_id)))
    return sorted(decided | corrected)


def ticket_feedback(session: Session, tenant_id: int, ticket_id: int) -> list[FeedbackRecord]:
    return list(
        session.scalars(
            select(FeedbackRecord)
            .where(FeedbackRecord.tenant_id == tenant_id, FeedbackRecord.ticket_id == ticket_id)
            .order_by(FeedbackRecord.id)
        )
    )


def triage_queue(session: Session, tenant_id: int, limit: int = 200) -> list[tuple[InboxRow, DecisionView]]:
    """Abstained decisions of tickets still in triage that nobody has labelled yet, newest first."""
    labelled = exists().where(
        FeedbackRecord.tenant_id == tenant_id,
        FeedbackRecord.ticket_id == DecisionRecord.ticket_id,
        FeedbackRecord.task == DecisionRecord.task,
    )
    pairs = session.execute(
        select(TicketRecord, DecisionRecord)
        .join(DecisionRecord, DecisionRecord.ticket_id == TicketRecord.id)
        .where(
            TicketRecord.tenant_id == tenant_id,
            DecisionRecord.tenant_id == tenant_id,
            TicketRecord.state == "triage",
            DecisionRecord.abstained.is_(True),
            ~labelled,
        )
        .order_by(DecisionRecord.id.desc())
        .limit(max(1, min(limit, 1000)))
    )
    out: list[tuple[InboxRow, DecisionView]] = []
    seen: set[tuple[int, str]] = set()
    for ticket, decision in pairs:
        if (ticket.id, decision.task) in seen:
            continue
        seen.add((ticket.id, decision.task))
        row = InboxRow(
            id=ticket.id,
            created_at=ticket.created_at,
            source=ticket.source,
            subject=ticket.subject,
            body=ticket.body,
            state=ticket.state,
            document=None,
        )
        out.append((row, decision_view(decision)))
    return out


# figures ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Judged:
    """One decision a person has judged: the model's confidence and whether it was right."""

    task: str
    predicted: str
    score: float
    correct: bool
    abstained: bool
    day: date


def judged_decisions(
    session: Session, tenant_id: int, task: str | None = None, since: datetime | None = None
) -> list[Judged]:
    """Decisions with a later correction, judged by the newest one (confirm = right)."""
    query = (
        select(FeedbackRecord, DecisionRecord)
        .join(
            DecisionRecord,
            and_(
                DecisionRecord.tenant_id == tenant_id,
                or_(
                    DecisionRecord.id == FeedbackRecord.decision_id,
                    and_(
                        FeedbackRecord.decision_id.is_(None),
                        DecisionRecord.ticket_id == FeedbackRecord.ticket_id,
                        DecisionRecord.task == FeedbackRecord.task,
                    ),
                ),
            ),
        )
        .where(FeedbackRecord.tenant_id == tenant_id)
        .order_by(FeedbackRecord.id)
    )
    if task is not None:
        query = query.where(FeedbackRecord.task == task)
    if since is not None:
        query = query.where(FeedbackRecord.created_at >= since)
    newest: dict[int, Judged] = {}
    for fb, decision in session.execute(query):
        if decision.predicted_label is None or decision.score is None:
            continue
        newest[decision.id] = Judged(
            task=decision.task,
            predicted=decision.predicted_label,
            score=float(decision.score),
            correct=fb.label == decision.predicted_label,
            abstained=decision.abstained,
            day=fb.created_at.date(),
        )
    return list(newest.values())


@dataclass(frozen=True, slots=True)
class DayVolume:
    day: date
    tickets: int
    decided: int
    abstained: int


def daily_volumes(session: Session, tenant_id: int, since: datetime) -> list[DayVolume]:
    """Tickets received per day, and how many of their decisions abstained."""
    tickets: dict[date, int] = defaultdict(int)
    for created in session.scalars(
        select(TicketRecord.created_at).where(
            TicketRecord.tenant_id == tenant_id, TicketRecord.created_at >= since
        )
    ):
        tickets[created.date()] += 1
    decided: dict[date, int] = defaultdict(int)
    abstained: dict[date, int] = defaultdict(int)
    for created, was_abstained in session.execute(
        select(DecisionRecord.created_at, DecisionRecord.abstained).where(
            DecisionRecord.tenant_id == tenant_id, DecisionRecord.created_at >= since
        )
    ):
        decided[created.date()] += 1
        abstained[created.date()] += int(bool(was_abstained))
    days = sorted(set(tickets) | set(decided))
    return [DayVolume(d, tickets[d], decided[d], abstained[d]) for d in days]


def predicted_label_counts(
    session: Session, tenant_id: int, task: str, since: datetime | None = None
) -> dict[str, int]:
    """How often each label was predicted for ``task`` (abstentions count for their best guess)."""
    query = (
        select(DecisionRecord.predicted_label, func.count())
        .where(
            DecisionRecord.tenant_id == tenant_id,
            DecisionRecord.task == task,
            DecisionRecord.predicted_label.is_not(None),
        )
        .group_by(DecisionRecord.predicted_label)
    )
    if since is not None:
        query = query.where(DecisionRecord.created_at >= since)
    return {str(label): int(n) for label, n in session.execute(query)}


@dataclass(frozen=True, slots=True)
class ServedClass:
    """How one class fared in production: served, covered (not abstained), judged, right."""

    served: int = 0
    covered: int = 0
    judged: int = 0
    right: int = 0


def served_by_class(session: Session, tenant_id: int, task: str) -> dict[str, ServedClass]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for label, was_abstained in session.execute(
        select(DecisionRecord.predicted_label, DecisionRecord.abstained).where(
            DecisionRecord.tenant_id == tenant_id,
            DecisionRecord.task == task,
            DecisionRecord.predicted_label.is_not(None),
        )
    ):
        counts[str(label)][0] += 1
        counts[str(label)][1] += int(not was_abstained)
    for judged in judged_decisions(session, tenant_id, task):
        if not judged.abstained:  # precision is about the answers that were given
            counts[judged.predicted][2] += 1
            counts[judged.predicted][3] += int(judged.correct)
    return {label: ServedClass(*c) for label, c in counts.items()}
