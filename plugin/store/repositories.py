"""Queries the rest of deskpilot uses. Each takes a Session; the caller owns the transaction.

Every lookup is scoped by tenant: a slug or id from the authenticated principal, never from
the row being fetched. Functions that read return ``None`` or empty for unknown tenants;
functions that write validate their input and raise :class:`InputDataError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from deskpilot.errors import AdapterNotFoundError, InputDataError
from deskpilot.types import Prediction

from .models import (
    ADAPTER_STATUSES,
    API_KEY_SCOPES,
    AdapterRecord,
    ApiKey,
    PredictionRecord,
    Tenant,
    utcnow,
)

KEY_PREFIX = "dpk_"
KEY_DISPLAY_CHARS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_KEY_CHARS = 256
_MAX_NAME_CHARS = 100
_SLUG = re.compile(r"[a-z0-9_-]{1,63}")
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the only source of tenant identity past authentication."""

    tenant_id: int
    tenant: str
    key_id: int
    key_name: str
    scopes: frozenset[str]


# validation -----------------------------------------------------------------------------


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise InputDataError(
            f"invalid tenant {slug!r}",
            hint="use 1-63 lowercase letters, digits, '-' or '_'",
        )
    return slug


def _validate_name(value: str, what: str, limit: int = _MAX_NAME_CHARS) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InputDataError(f"{what} must be a non-empty string of at most {limit} characters")
    return value


def _validate_scopes(scopes: Sequence[str]) -> str:
    if isinstance(scopes, str):  # "read" would otherwise become {"r", "e", "a", "d"}
        scopes = [scopes]
    chosen = set(scopes)
    unknown = sorted(s for s in chosen if s not in API_KEY_SCOPES)
    if unknown or not chosen:
        raise InputDataError(
            f"invalid scopes {sorted(map(str, chosen))!r}",
            hint=f"choose one or more of {', '.join(API_KEY_SCOPES)}",
        )
    return ",".join(s for s in API_KEY_SCOPES if s in chosen)


def _validate_status(status: str) -> str:
    if status not in ADAPTER_STATUSES:
        raise InputDataError(
            f"invalid adapter status {status!r}", hint=f"one of {', '.join(ADAPTER_STATUSES)}"
        )
    return status


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# tenants ---------------------------------------------------------------------------------


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which has ``on_conflict_*``; None where the dialect lacks it."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    return None


def get_tenant(session: Session, slug: str) -> Tenant | None:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        return None
    return session.scalars(select(Tenant).where(Tenant.slug == slug)).one_or_none()


def get_or_create_tenant(session: Session, slug: str, name: str | None = None) -> Tenant:
    """Race-free: concurrent first requests for one tenant both get the same row."""
    validate_slug(slug)
    if name is not None:
        _validate_name(name, "tenant name", 200)
    existing = get_tenant(session, slug)
    if existing is not None:
        return existing
    dialect_insert = _insert(session)
    if dialect_insert is None:
        tenant = Tenant(slug=slug, name=name or slug)
        session.add(tenant)
        session.flush()
        return tenant
    stmt = dialect_insert(Tenant).values(slug=slug, name=name or slug, created_at=utcnow())
    session.execute(stmt.on_conflict_do_nothing(index_elements=[Tenant.slug]))
    return session.scalars(select(Tenant).where(Tenant.slug == slug)).one()


def _tenant_id(session: Session, slug: str) -> int | None:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        return None
    return session.scalars(select(Tenant.id).where(Tenant.slug == slug)).one_or_none()


_TENANT_ID = select(Tenant.__table__.c.id).where(Tenant.__table__.c.slug == bindparam("slug"))


def tenant_id_for(session: Session, slug: str) -> int:
    """The tenant's id, creating the tenant on first use: one prepared lookup on the hot path."""
    found = session.connection().execute(_TENANT_ID, {"slug": validate_slug(slug)}).scalar_one_or_none()
    return int(found) if found is not None else get_or_create_tenant(session, slug).id


# API keys --------------------------------------------------------------------------------


def create_api_key(
    session: Session, tenant: str, name: str, scopes: Sequence[str] = ("read", "write")
) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext key; the plaintext is shown once and never stored."""
    _validate_name(name, "key name")
    scope_text = _validate_scopes(scopes)
    owner = get_or_create_tenant(session, tenant)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=owner.id,
        name=name,
        prefix=plaintext[:KEY_DISPLAY_CHARS],
        key_hash=_sha256(plaintext),
        scopes=scope_text,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate_key(session: Session, plaintext: str) -> Principal | None:
    """The principal for a live key, or None. Lookup is by hash, so timing reveals nothing."""
    if not isinstance(plaintext, str) or not plaintext.startswith(KEY_PREFIX):
        return None
    if len(plaintext) > _MAX_KEY_CHARS:
        return None
    digest = _sha256(plaintext)
    row = session.execute(
        select(ApiKey, Tenant.slug)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == digest, _live(utcnow()))
    ).one_or_none()
    if row is None:
        return None
    key, slug = row
    if not hmac.compare_digest(key.key_hash, digest):
        return None
    now = utcnow()
    # Writing on every request would turn each read into a write; a minute is precise enough.
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.flush()
    return Principal(
        tenant_id=key.tenant_id,
        tenant=slug,
        key_id=key.id,
        key_name=key.name,
        scopes=key.scope_set,
    )


def _live(now: datetime) -> Any:
    """A key is live until its ``revoked_at``: a time in the future is a rotation's grace period."""
    return or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > now)


def key_state(key: ApiKey, now: datetime | None = None) -> Literal["active", "expiring", "revoked"]:
    """``active``, ``expiring`` (rotated, still valid until ``revoked_at``) or ``revoked``."""
    if key.revoked_at is None:
        return "active"
    return "expiring" if key.revoked_at > (now or utcnow()) else "revoked"


def get_api_key(session: Session, key_id: int, tenant: str) -> ApiKey | None:
    """The key ``key_id`` if ``tenant`` owns it; another tenant's key is None, as if absent."""
    owner = _tenant_id(session, tenant)
    if owner is None or not isinstance(key_id, int):
        return None
    return session.scalars(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == owner)).one_or_none()


def revoke_api_key(session: Session, key_id: int, tenant: str) -> bool:
    """True when ``tenant`` owns the key (now revoked, or already so); False otherwise.

    Revoking a key that is in a rotation's grace period ends the grace period now.
    """
    key = get_api_key(session, key_id, tenant)
    if key is None:
        return False
    now = utcnow()
    if key.revoked_at is None or key.revoked_at > now:
        key.revoked_at = now
        session.flush()
    return True


MAX_GRACE = timedelta(days=30)


def rotate_api_key(
    session: Session, key_id: int, tenant: str, grace: timedelta = timedelta(hours=1)
) -> tuple[ApiKey, str, ApiKey] | None:
    """A new key with the old one's name and scopes; the old stays valid for ``grace``.

    No schema change: the old key's ``revoked_at`` is set to the end of the grace period,
    and authentication treats a future ``revoked_at`` as still valid. Returns (new row,
    plaintext, old row), or None when ``tenant`` has no live key ``key_id``.
    """
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InputDataError(
            f"grace period must be between 0 and {MAX_GRACE.days} days", hint="e.g. --grace-minutes 60"
        )
    old = get_api_key(session, key_id, tenant)
    now = utcnow()
    if old is None or key_state(old, now) == "revoked":
        return None
    new, plaintext = create_api_key(session, tenant, old.name, sorted(old.scope_set))
    end = now + grace
    old.revoked_at = end if old.revoked_at is None else min(old.revoked_at, end)
    session.flush()
    return new, plaintext, old


def list_api_keys(session: Session, tenant: str) -> list[ApiKey]:
    owner = _tenant_id(session, tenant)
    if owner is None:
        return []
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == owner).order_by(ApiKey.id)))


# predictions -----------------------------------------------------------------------------


def record_predictions(
    session: Session,
    tenant_id: int,
    task: str,
    texts: Sequence[str],
    predictions: Sequence[Prediction],
) -> list[int]:
    """Bulk insert, one row per text; the ids come back in the order of ``texts``."""
    _validate_name(task, "task")
    if len(texts) != len(predictions):
        raise InputDataError(f"{len(texts)} texts but {len(predictions)} predictions; they must pair up")
    if not texts:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for text, prediction in zip(texts, predictions, strict=True):
        if not isinstance(text, str):
            raise InputDataError(f"texts must be strings, got {type(text).__name__}")
        _validate_name(prediction.adapter_version, "adapter version")
        rows.append(
            {
                "tenant_id": tenant_id,
                "task": task,
                "adapter_version": prediction.adapter_version,
                "input_hash": _sha256(text),
                "label": prediction.label,
                "score": float(prediction.score),
                "abstained": bool(prediction.abstained),
                "created_at": now,
            }
        )
    stmt = insert(PredictionRecord).returning(PredictionRecord.id, sort_by_parameter_order=True)
    return list(session.scalars(stmt, rows))


def count_predictions(session: Session, tenant: str, task: str | None = None) -> int:
    owner = _tenant_id(session, tenant)
    if owner is None:
        return 0
    query = select(func.count()).select_from(PredictionRecord).where(PredictionRecord.tenant_id == owner)
    if task is not None:
        query = query.where(PredictionRecord.task == task)
    return int(session.scalar(query) or 0)


# adapters --------------------------------------------------------------------------------


def upsert_adapter(
    session: Session,
    tenant: str,
    task: str,
    version: str,
    *,
    kind: str,
    base_model: str,
    metrics: dict[str, Any],
    status: str,
) -> AdapterRecord:
    """Register or update one adapter version. ``champion`` goes through :func:`set_champion`."""
    _validate_name(task, "task")
    _validate_name(version, "adapter version")
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise InputDataError(f"invalid adapter kind {kind!r}", hint="e.g. 'classifier' or 'generator'")
    _validate_name(base_model, "base model", 500)
    _validate_status(status)
    if not isinstance(metrics, dict):
        raise InputDataError("adapter metrics must be a JSON object")
    try:
        json.dumps(metrics, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"adapter metrics are not plain JSON: {exc}") from exc
    owner = get_or_create_tenant(session, tenant)
    where = (
        AdapterRecord.tenant_id == owner.id,
        AdapterRecord.task == task,
        AdapterRecord.version == version,
    )
    record = session.scalars(select(AdapterRecord).where(*where)).one_or_none()
    if record is None:
        record = AdapterRecord(
            tenant_id=owner.id,
            task=task,
            version=version,
            kind=kind,
            base_model=base_model,
            metrics=dict(metrics),
            # A new row enters as a candidate, then set_champion promotes it and retires the old one.
            status="candidate" if status == "champion" else status,
        )
        session.add(record)
    else:
        record.kind = kind
        record.base_model = base_model
        record.metrics = dict(metrics)
        if status != "champion":
            record.status = status
    session.flush()
    if status == "champion":
        set_champion(session, tenant, task, version)
    return record


def set_champion(session: Session, tenant: str, task: str, version: str) -> None:
    """Promote one version and retire the previous champion, in the caller's transaction.

    The tenant row is locked first (PostgreSQL) so two concurrent promotions queue up instead
    of racing; a partial unique index rejects a second champion whatever happens.
    """
    owner = None
    if isinstance(tenant, str) and _SLUG.fullmatch(tenant):
        owner = session.scalars(
            select(Tenant.id).where(Tenant.slug == tenant).with_for_update()
        ).one_or_none()
    if owner is None:
        raise AdapterNotFoundError(f"no adapter {task}@{version} for tenant {tenant!r}")
    target = session.scalars(
        select(AdapterRecord).where(
            AdapterRecord.tenant_id == owner,
            AdapterRecord.task == task,
            AdapterRecord.version == version,
        )
    ).one_or_none()
    if target is None:
        raise AdapterNotFoundError(f"no adapter {task}@{version} for tenant {tenant!r}")
    if target.status == "champion":
        return
    # Retire first: the one-champion index is checked statement by statement.
    session.execute(
        update(AdapterRecord)
        .where(
            AdapterRecord.tenant_id == owner,
            AdapterRecord.task == task,
            AdapterRecord.status == "champion",
        )
        .values(status="retired")
    )
    session.execute(
        update(AdapterRecord)
        .where(AdapterRecord.id == target.id, AdapterRecord.tenant_id == owner)
        .values(status="champion")
    )


def list_adapter_records(session: Session, tenant: str, task: str | None = None) -> list[AdapterRecord]:
    owner = _tenant_id(session, tenant)
    if owner is None:
        return []
    query = select(AdapterRecord).where(AdapterRecord.tenant_id == owner)
    if task is not None:
        query = query.where(AdapterRecord.task == task)
    return list(
        session.scalars(query.order_by(AdapterRecord.task, AdapterRecord.created_at, AdapterRecord.id))
    )
