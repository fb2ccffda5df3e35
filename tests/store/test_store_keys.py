"""API keys and tenants: creation, authentication, revocation, isolation between tenants."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy

from deskpilot.errors import InputDataError
from deskpilot.store import (
    ApiKey,
    Database,
    authenticate_key,
    create_api_key,
    get_or_create_tenant,
    get_tenant,
    list_api_keys,
    revoke_api_key,
)


def test_key_round_trip(db: Database) -> None:
    with db.session() as session:
        key, plaintext = create_api_key(session, "acme", "ci", scopes=["write", "read"])
    assert plaintext.startswith("dpk_") and len(plaintext) > 40
    assert key.prefix == plaintext[:12]
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    with db.session() as session:
        principal = authenticate_key(session, plaintext)
    assert principal is not None
    assert principal.tenant == "acme"
    assert principal.key_id == key.id
    assert principal.key_name == "ci"
    assert principal.scopes == frozenset({"read", "write"})
    with db.session() as session:
        assert get_tenant(session, "acme") is not None
        assert get_tenant(session, "acme").id == principal.tenant_id  # type: ignore[union-attr]


@pytest.mark.parametrize("attempt", ["", "dpk_", "dpk_wrong", "nope", "dpk_" + "x" * 1000])
def test_wrong_key_is_none(db: Database, attempt: str) -> None:
    with db.session() as session:
        create_api_key(session, "acme", "ci")
        assert authenticate_key(session, attempt) is None


def test_plaintext_is_never_stored(db: Database) -> None:
    with db.session() as session:
        _, plaintext = create_api_key(session, "acme", "ci", scopes=["admin"])
        authenticate_key(session, plaintext)
    secret_part = plaintext.removeprefix("dpk_")
    with db.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT * FROM api_keys")).all()
    assert rows
    for row in rows:
        for value in row:
            assert secret_part[8:] not in str(value)


def test_last_used_at_moves_at_most_once_a_minute(db: Database) -> None:
    with db.session() as session:
        key, plaintext = create_api_key(session, "acme", "ci")
        assert key.last_used_at is None
        authenticate_key(session, plaintext)
        first = key.last_used_at
        assert first is not None
        authenticate_key(session, plaintext)
        assert key.last_used_at == first
        key.last_used_at = first - timedelta(minutes=2)
        authenticate_key(session, plaintext)
        assert key.last_used_at > first - timedelta(minutes=1)


def test_revoked_key_is_refused(db: Database) -> None:
    with db.session() as session:
        key, plaintext = create_api_key(session, "acme", "ci")
    with db.session() as session:
        assert revoke_api_key(session, key.id, "acme") is True
        assert revoke_api_key(session, key.id, "acme") is True  # idempotent
    with db.session() as session:
        assert authenticate_key(session, plaintext) is None
        (listed,) = list_api_keys(session, "acme")
        assert listed.revoked_at is not None


def test_tenants_cannot_see_or_revoke_each_others_keys(db: Database) -> None:
    with db.session() as session:
        key_a, plaintext_a = create_api_key(session, "tenant-a", "a")
        key_b, _ = create_api_key(session, "tenant-b", "b")
    with db.session() as session:
        assert [k.id for k in list_api_keys(session, "tenant-a")] == [key_a.id]
        assert [k.id for k in list_api_keys(session, "tenant-b")] == [key_b.id]
        assert revoke_api_key(session, key_a.id, "tenant-b") is False
        assert revoke_api_key(session, key_a.id, "no-such-tenant") is False
        assert revoke_api_key(session, 10_000, "tenant-a") is False
        assert list_api_keys(session, "no-such-tenant") == []
    with db.session() as session:
        principal = authenticate_key(session, plaintext_a)
    assert principal is not None and principal.tenant == "tenant-a"


def test_get_or_create_tenant_is_idempotent(db: Database) -> None:
    with db.session() as session:
        first = get_or_create_tenant(session, "acme", "Acme Corp")
        again = get_or_create_tenant(session, "acme", "ignored")
    assert first.id == again.id
    assert again.name == "Acme Corp"
    with db.session() as session:
        assert get_or_create_tenant(session, "acme").id == first.id
        assert session.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize("slug", ["", "Acme", "a b", "a.b", "x" * 64, "ünï"])
def test_bad_slug_is_input_error(db: Database, slug: str) -> None:
    with db.session() as session:
        with pytest.raises(InputDataError):
            get_or_create_tenant(session, slug)
        with pytest.raises(InputDataError):
            create_api_key(session, slug, "k")
        assert get_tenant(session, slug) is None


@pytest.mark.parametrize("scopes", [[], ["root"], ["read", "delete"], "admin,read"])
def test_bad_scopes_are_input_error(db: Database, scopes: list[str] | str) -> None:
    with db.session() as session, pytest.raises(InputDataError):
        create_api_key(session, "acme", "k", scopes=scopes)


def test_single_scope_string_is_one_scope(db: Database) -> None:
    with db.session() as session:
        key, _ = create_api_key(session, "acme", "k", scopes="admin")
    assert key.scopes == "admin"
