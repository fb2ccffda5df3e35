"""People who sign in to the review console, and their sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults, which follow RFC 9106's advice);
a sign-in with an unknown email still pays for one hash check, so timing does not tell
which emails exist. A session is a random token in a cookie; only its keyed hash
(HMAC-SHA256 with the server's secret) is stored, so a copy of the database opens no session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from deskpilot.errors import ConflictError, InputDataError, NotFoundError

from .models import CONSOLE_ROLES, ConsoleSession, ConsoleUser, Tenant, utcnow
from .repositories import get_or_create_tenant, get_tenant

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
SESSION_TTL = timedelta(hours=12)
# a session's last_seen_at is written at most this often: a page view is not a write
SEEN_RESOLUTION = timedelta(minutes=5)
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class ConsoleIdentity:
    """Who a console request acts for: the only source of tenant identity past sign-in."""

    user_id: int
    tenant_id: int
    tenant: str
    email: str
    name: str
    role: str
    session_id: int

    @property
    def can_manage_models(self) -> bool:
        return self.role in ("lead", "admin")


def validate_email(email: str) -> str:
    value = email.strip().lower() if isinstance(email, str) else ""
    if not _EMAIL.fullmatch(value):
        raise InputDataError(f"invalid email {email!r}", hint="use an address like ana@example.com")
    return value


def validate_role(role: str) -> str:
    if role not in CONSOLE_ROLES:
        raise InputDataError(f"invalid role {role!r}", hint=f"one of {', '.join(CONSOLE_ROLES)}")
    return role


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InputDataError(
            f"a password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            hint="use a passphrase of a few words",
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(validate_password(password))


# users -----------------------------------------------------------------------------------


def create_user(
    session: Session, tenant: str, email: str, password: str, *, role: str = "agent", name: str = ""
) -> ConsoleUser:
    owner = get_or_create_tenant(session, tenant)
    address = validate_email(email)
    validate_role(role)
    if len(name) > 200:
        raise InputDataError("a name has at most 200 characters")
    if find_user(session, owner.id, address) is not None:
        raise ConflictError(
            f"tenant {tenant!r} already has a user {address}",
            hint="change it with `deskpilot users set-role` or `deskpilot users set-password`",
        )
    user = ConsoleUser(
        tenant_id=owner.id, email=address, name=name.strip(), role=role, password_hash=hash_password(password)
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, tenant_id: int, email: str) -> ConsoleUser | None:
    address = email.strip().lower() if isinstance(email, str) else ""
    return session.scalars(
        select(ConsoleUser).where(ConsoleUser.tenant_id == tenant_id, ConsoleUser.email == address)
    ).one_or_none()


def list_users(session: Session, tenant: str) -> list[ConsoleUser]:
    owner = get_tenant(session, tenant)
    if owner is None:
        return []
    return list(
        session.scalars(select(ConsoleUser).where(ConsoleUser.tenant_id == owner.id).order_by(ConsoleUser.id))
    )


def _existing(session: Session, tenant: str, email: str) -> ConsoleUser:
    owner = get_tenant(session, tenant)
    user = find_user(session, owner.id, email) if owner is not None else None
    if user is None:
        raise NotFoundError(
            f"tenant {tenant!r} has no user {email}", hint="`deskpilot users list --tenant NAME`"
        )
    return user


def set_role(session: Session, tenant: str, email: str, role: str) -> ConsoleUser:
    user = _existing(session, tenant, email)
    user.role = validate_role(role)
    session.flush()
    return user


def set_password(session: Session, tenant: str, email: str, password: str) -> ConsoleUser:
    """A new password also signs the user out everywhere."""
    user = _existing(session, tenant, email)
    user.password_hash = hash_password(password)
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    session.flush()
    return user


def set_disabled(session: Session, tenant: str, email: str, disabled: bool) -> ConsoleUser:
    """A disabled user cannot sign in, and their open sessions end now."""
    user = _existing(session, tenant, email)
    user.disabled_at = utcnow() if disabled else None
    if disabled:
        session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user.id))
    session.flush()
    return user


def authenticate_user(session: Session, tenant: str, email: str, password: str) -> ConsoleUser | None:
    """The user for a right password, else None; every miss costs one argon2 check."""
    owner = get_tenant(session, tenant) if isinstance(tenant, str) else None
    user = find_user(session, owner.id, email) if owner is not None else None
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        ok = isinstance(password, str) and len(password) <= MAX_PASSWORD_CHARS
        ok = ok and _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


# sessions --------------------------------------------------------------------------------


def token_hash(token: str, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), token.encode("utf-8"), hashlib.sha256).hexdigest()


def open_session(session: Session, user: ConsoleUser, secret: str, *, ttl: timedelta = SESSION_TTL) -> str:
    """A new session for ``user``; returns the token for the cookie (shown once, stored hashed)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
    session.add(
        ConsoleSession(
            tenant_id=user.tenant_id,
            user_id=user.id,
            token_hash=token_hash(token, secret),
            created_at=now,
            expires_at=now + ttl,
            last_seen_at=now,
        )
    )
    session.flush()
    return token


def session_identity(session: Session, token: str, secret: str) -> ConsoleIdentity | None:
    """Who holds this token, or None when it is unknown, expired or its user is disabled."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = session.execute(
        select(ConsoleSession, ConsoleUser, Tenant.slug)
        .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
        .join(Tenant, Tenant.id == ConsoleUser.tenant_id)
        .where(ConsoleSession.token_hash == token_hash(token, secret))
    ).one_or_none()
    if row is None:
        return None
    found, user, slug = row
    now = utcnow()
    if found.expires_at <= now or user.disabled_at is not None or found.tenant_id != user.tenant_id:
        return None
    if now - found.last_seen_at >= SEEN_RESOLUTION:
        found.last_seen_at = now
        session.flush()
    return ConsoleIdentity(
        user_id=user.id,
        tenant_id=user.tenant_id,
        tenant=slug,
        email=user.email,
        name=user.name or user.email,
        role=user.role,
        session_id=found.id,
    )


def close_session(session: Session, token: str, secret: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token, secret)))
