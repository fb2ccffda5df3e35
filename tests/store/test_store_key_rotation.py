"""Key rotation in the store, on SQLite and PostgreSQL: a future revoked_at is a grace period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from deskpilot.errors import InputDataError
from deskpilot.store import (
    ApiKey,
    Database,
    authenticate_key,
    create_api_key,
    key_state,
    revoke_api_key,
    rotate_api_key,
)
from deskpilot.store.models import utcnow


def test_rotation_keeps_the_old_key_until_the_grace_period_ends(db: Database) -> None:
    with db.session() as s:
        old, old_plain = create_api_key(s, "acme", "ci", scopes=("read", "admin"))
        old_id = old.id
    with db.session() as s:
        rotated = rotate_api_key(s, old_id, "acme", timedelta(minutes=10))
        assert rotated is not None
        new, new_plain, old_row = rotated
        assert (new.name, new.scopes) == ("ci", "read,admin") and new.id != old_id
        assert key_state(old_row) == "expiring" and key_state(new) == "active"
    with db.session() as s:
        assert authenticate_key(s, old_plain) is not None
        assert authenticate_key(s, new_plain) is not None
        s.execute(
            update(ApiKey).where(ApiKey.id == old_id).values(revoked_at=utcnow() - timedelta(seconds=1))
        )
    with db.session() as s:
        assert authenticate_key(s, old_plain) is None
        assert authenticate_key(s, new_plain) is not None
        assert rotate_api_key(s, old_id, "acme") is None  # a revoked key cannot be rotated


def test_a_second_rotation_never_extends_the_first_grace_period(db: Database) -> None:
    with db.session() as s:
        key, _ = create_api_key(s, "acme", "ci")
        first = rotate_api_key(s, key.id, "acme", timedelta(minutes=5))
        assert first is not None
        deadline = first[2].revoked_at
        second = rotate_api_key(s, key.id, "acme", timedelta(days=2))
        assert second is not None and second[2].revoked_at == deadline


def test_revoke_ends_the_grace_period_and_tenants_are_kept_apart(db: Database) -> None:
    with db.session() as s:
        key, plain = create_api_key(s, "acme", "ci")
        assert rotate_api_key(s, key.id, "globex") is None
        assert not revoke_api_key(s, key.id, "globex")
        assert rotate_api_key(s, key.id, "acme", timedelta(hours=1)) is not None
        assert revoke_api_key(s, key.id, "acme")
        assert authenticate_key(s, plain) is None
        with pytest.raises(InputDataError):
            rotate_api_key(s, key.id, "acme", timedelta(minutes=-1))
