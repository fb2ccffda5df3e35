"""Tables. Every row below ``tenants`` carries ``tenant_id`` so every query can filter on it.

Changing a model needs a new migration in ``migrations/versions``; the test suite fails on drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deskpilot.errors import InputDataError

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADAPTER_STATUSES = ("candidate", "champion", "retired")
API_KEY_SCOPES = ("read", "write", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; SQLite would otherwise hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise InputDataError("a naive datetime cannot be stored; pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Tenant(id={self.id!r}, slug={self.slug!r})"


class ApiKey(Base):
    """A credential. Only the sha256 of the key is kept; ``prefix`` lets people tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String)
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, tenant_id={self.tenant_id!r}, prefix={self.prefix!r})"


class AdapterRecord(Base):
    """One trained adapter version of one task; at most one ``champion`` per tenant and task."""

    __tablename__ = "adapters"
    __table_args__ = (
        UniqueConstraint("tenant_id", "task", "version"),
        CheckConstraint("status IN ('candidate', 'champion', 'retired')", name="status"),
        Index(
            "uq_adapters_one_champion",
            "tenant_id",
            "task",
            unique=True,
            postgresql_where=text("status = 'champion'"),
            sqlite_where=text("status = 'champion'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    base_model: Mapped[str] = mapped_column(String)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return (
            f"AdapterRecord(id={self.id!r}, tenant_id={self.tenant_id!r}, task={self.task!r}, "
            f"version={self.version!r}, status={self.status!r})"
        )


class PredictionRecord(Base):
    """One served prediction. The text itself is not kept, only its sha256."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_predictions_tenant_id_task", "tenant_id", "task"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    adapter_version: Mapped[str] = mapped_column(String(100))
    input_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String)
    score: Mapped[float] = mapped_column(Float)
    abstained: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"PredictionRecord(id={self.id!r}, tenant_id={self.tenant_id!r}, task={self.task!r})"


# workflow: inbox -> tickets -> jobs -> decisions -> outbox; feedback; audit ----------------

TICKET_STATES = ("received", "processing", "routed", "triage", "failed")
JOB_STATES = ("queued", "running", "done", "dead")
OUTBOX_STATES = ("pending", "done", "dead")


class TicketRecord(Base):
    """A ticket as deskpilot knows it; ``external_id`` is the id in the system it came from."""

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_tenant_id_source_external_id", "tenant_id", "source", "external_id"),
        CheckConstraint("state IN ('received', 'processing', 'routed', 'triage', 'failed')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    subject: Mapped[str] = mapped_column(String)
    body: Mapped[str] = mapped_column(String)
    requester: Mapped[str | None] = mapped_column(String(320), default=None)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    state: Mapped[str] = mapped_column(String(16), default="received")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"TicketRecord(id={self.id!r}, tenant_id={self.tenant_id!r}, state={self.state!r})"


class InboxEvent(Base):
    """One accepted delivery. The unique key makes a retried delivery a no-op."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "delivery_id"),
        UniqueConstraint("tenant_id", "replay_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(100))
    delivery_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    # sha256 of a signed delivery's signature: the same signed bytes are accepted only once
    replay_key: Mapped[str | None] = mapped_column(String(64), default=None)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), default=None)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRecord(Base):
    """A unit of background work. The row is the truth; a broker (Celery) only rings the bell.

    A worker owns a job while ``lease_expires_at`` is in the future; a worker that dies
    loses the lease and another picks the job up again.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_run_after", "state", "run_after"),
        Index("ix_jobs_tenant_id_kind", "tenant_id", "kind"),
        CheckConstraint("state IN ('queued', 'running', 'done', 'dead')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String, default=None)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"JobRecord(id={self.id!r}, kind={self.kind!r}, state={self.state!r})"


class DecisionRecord(Base):
    """Why a ticket went where it went: model version, scores, thresholds, overrides."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_ticket_id", "ticket_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(String, default=None)
    predicted_label: Mapped[str | None] = mapped_column(String, default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    threshold: Mapped[float | None] = mapped_column(Float, default=None)
    abstained: Mapped[bool] = mapped_column(Boolean, default=False)
    adapter_version: Mapped[str | None] = mapped_column(String(100), default=None)
    destination: Mapped[str | None] = mapped_column(String, default=None)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxAction(Base):
    """A change to make in an outside system, written with the decision that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_outbox_ticket_id", "ticket_id"),
        CheckConstraint("state IN ('pending', 'done', 'dead')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(100))
    connector: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String, default=None)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)


class FeedbackRecord(Base):
    """A person's correction. ``text`` is kept: it becomes a training row."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_tenant_id_task_id", "tenant_id", "task", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), default=None)
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("decisions.id", ondelete="SET NULL"), default=None
    )
    task: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String)
    previous_label: Mapped[str | None] = mapped_column(String, default=None)
    text: Mapped[str] = mapped_column(String)
    author: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(100), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only (a database trigger refuses UPDATE and DELETE)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_tenant_id_ticket_id", "tenant_id", "ticket_id"),
        Index("ix_audit_log_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(Integer, default=None)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# responder: the knowledge base of resolved tickets ----------------------------------------

KNOWLEDGE_ORIGINS = ("import", "feedback", "resolved")


class KnowledgeEntry(Base):
    """A resolved ticket (question and accepted answer) that drafts are grounded in.

    ``source_id`` is the id a draft cites ("kb:123" or an outside system's id); it is unique per
    tenant, so an edited answer replaces the earlier one. ``embedding`` holds the question's
    float32 vector as bytes, with the encoder it came from: a changed encoder means re-embedding.
    """

    __tablename__ = "knowledge"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source_id"),
        Index("ix_knowledge_tenant_id_id", "tenant_id", "id"),
        CheckConstraint("origin IN ('import', 'feedback', 'resolved')", name="origin"),
        # ids are never reused (SQLite would hand a deleted last row's id out again): a replaced
        # entry must come back with a larger id, or an index following entries_since misses it
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), default=None)
    source_id: Mapped[str] = mapped_column(String(200))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String, default=None)
    origin: Mapped[str] = mapped_column(String(16))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_model: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"KnowledgeEntry(id={self.id!r}, tenant_id={self.tenant_id!r}, source_id={self.source_id!r})"


# documents: files received (uploads, email attachments), their text's fields and filing ----

DOCUMENT_STATES = ("received", "rejected", "processing", "filed", "triage", "failed")


class DocumentRecord(Base):
    """One received file. The original's bytes live in the content-addressed store under
    ``sha256``; a file already received by the tenant is not received twice (unique key).

    An accepted document also has a ticket row (``ticket_id``: source ``document``) so that its
    decision, outbox actions, feedback and audit use the same tables as tickets.
    """

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256"),
        Index("ix_documents_tenant_id_id", "tenant_id", "id"),
        CheckConstraint(
            "state IN ('received', 'rejected', 'processing', 'filed', 'triage', 'failed')", name="state"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), default=None)
    sha256: Mapped[str] = mapped_column(String(64))
    parent_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer, default=None)
    method: Mapped[str | None] = mapped_column(String(32), default=None)
    source: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default="received")
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    message: Mapped[str | None] = mapped_column(String, default=None)
    doctype: Mapped[str | None] = mapped_column(String, default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    abstained: Mapped[bool] = mapped_column(Boolean, default=False)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"DocumentRecord(id={self.id!r}, tenant_id={self.tenant_id!r}, state={self.state!r})"


# review console: people who sign in (per tenant) and their server-side sessions -----------

CONSOLE_ROLES = ("agent", "lead", "admin")


class ConsoleUser(Base):
    """A person who signs in to the review console. Only an argon2 hash of the password is kept."""

    __tablename__ = "console_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email"),
        CheckConstraint("role IN ('agent', 'lead', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)

    def __repr__(self) -> str:
        return f"ConsoleUser(id={self.id!r}, tenant_id={self.tenant_id!r}, role={self.role!r})"


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; only its keyed hash is stored."""

    __tablename__ = "console_sessions"
    __table_args__ = (UniqueConstraint("token_hash"), Index("ix_console_sessions_user_id", "user_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
