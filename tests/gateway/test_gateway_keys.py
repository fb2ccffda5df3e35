"""API keys: hashed at rest, listed by prefix only, rotated with a grace period, revoked; API and CLI."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth
from sqlalchemy import select, update
from typer.testing import CliRunner

from deskpilot.cli import app as cli_app
from deskpilot.config import get_settings
from deskpilot.store import ApiKey, Database, authenticate_key, create_api_key, rotate_api_key
from deskpilot.store.models import utcnow


@pytest.fixture
def admin(database: Database) -> str:
    with database.session() as s:
        _, plaintext = create_api_key(s, "acme", "ops", scopes=("admin",))
    return plaintext


def key_id(database: Database, plaintext: str) -> int:
    with database.session() as s:
        principal = authenticate_key(s, plaintext)
    assert principal is not None
    return principal.key_id


def test_keys_are_sha256_at_rest_and_plaintext_is_nowhere(database: Database, keys: Keys) -> None:
    with database.session() as s:
        rows = list(s.scalars(select(ApiKey)))
    stored = {r.key_hash for r in rows}
    assert hashlib.sha256(keys.acme.encode()).hexdigest() in stored
    for row in rows:
        assert len(row.key_hash) == 64 and row.prefix.startswith("dpk_") and len(row.prefix) == 12
        for value in (row.name, row.prefix, row.key_hash, row.scopes):
            assert keys.acme not in value and keys.globex not in value


def test_list_shows_prefixes_of_own_tenant_only(client: TestClient, keys: Keys, admin: str) -> None:
    r = client.get("/v1/keys", headers=auth(admin))
    assert r.status_code == 200, r.text
    listed = r.json()["keys"]
    assert {k["name"] for k in listed} == {"ci", "dashboard", "ingest", "old", "ops"}  # acme's, not globex's
    text = r.text
    for plaintext in (keys.acme, keys.acme_read, keys.globex, admin):
        assert plaintext not in text
        assert hashlib.sha256(plaintext.encode()).hexdigest() not in text
    for k in listed:
        assert set(k) == {
            "id",
            "name",
            "prefix",
            "scopes",
            "state",
            "created_at",
            "last_used_at",
            "expires_at",
        }
    states = {k["name"]: k["state"] for k in listed}
    assert states["old"] == "revoked" and states["ci"] == "active"


@pytest.mark.parametrize("who", ["acme", "acme_read", "acme_write"])
def test_key_routes_need_admin(client: TestClient, keys: Keys, database: Database, who: str) -> None:
    key = getattr(keys, who)
    target = key_id(database, keys.acme_read)
    assert_error(client.get("/v1/keys", headers=auth(key)), 403, "forbidden")
    assert_error(client.post(f"/v1/keys/{target}/rotate", headers=auth(key)), 403, "forbidden")
    assert_error(client.delete(f"/v1/keys/{target}", headers=auth(key)), 403, "forbidden")


def test_rotate_keeps_old_key_valid_for_the_grace_period(
    client: TestClient, keys: Keys, admin: str, database: Database
) -> None:
    old_id = key_id(database, keys.acme_read)
    r = client.post(f"/v1/keys/{old_id}/rotate?grace_minutes=30", headers=auth(admin))
    assert r.status_code == 201, r.text
    body = r.json()
    new_key = body["key"]
    assert new_key.startswith("dpk_") and new_key != keys.acme_read
    assert body["new"]["name"] == "dashboard" and body["new"]["scopes"] == ["read"]
    assert body["new"]["prefix"] == new_key[:12]
    assert body["old"]["id"] == old_id and body["old"]["state"] == "expiring"
    assert body["old"]["expires_at"] is not None
    # both work during the grace period, with the same scopes
    for key in (keys.acme_read, new_key):
        assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
        assert_error(client.get("/v1/audit", headers=auth(key)), 403)
    # the grace period ends: the old key stops, the new one goes on
    with database.session() as s:
        s.execute(
            update(ApiKey).where(ApiKey.id == old_id).values(revoked_at=utcnow() - timedelta(seconds=1))
        )
    assert_error(client.get("/v1/jobs", headers=auth(keys.acme_read)), 401, "unauthorized")
    assert client.get("/v1/jobs", headers=auth(new_key)).status_code == 200
    states = {k["id"]: k["state"] for k in client.get("/v1/keys", headers=auth(admin)).json()["keys"]}
    assert states[old_id] == "revoked"


def test_rotate_with_no_grace_stops_the_old_key_at_once(
    client: TestClient, keys: Keys, admin: str, database: Database
) -> None:
    old_id = key_id(database, keys.acme)
    r = client.post(f"/v1/keys/{old_id}/rotate?grace_minutes=0", headers=auth(admin))
    assert r.status_code == 201, r.text
    assert_error(client.get("/v1/jobs", headers=auth(keys.acme)), 401)
    assert client.get("/v1/jobs", headers=auth(r.json()["key"])).status_code == 200


def test_revoke_ends_a_grace_period(client: TestClient, keys: Keys, admin: str, database: Database) -> None:
    old_id = key_id(database, keys.acme_write)
    assert client.post(f"/v1/keys/{old_id}/rotate", headers=auth(admin)).status_code == 201
    assert client.get("/v1/jobs", headers=auth(keys.acme_write)).status_code == 403  # live, but write-only
    r = client.delete(f"/v1/keys/{old_id}", headers=auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "revoked"
    assert_error(client.get("/v1/jobs", headers=auth(keys.acme_write)), 401)
    # a revoked key cannot be rotated back to life
    assert_error(client.post(f"/v1/keys/{old_id}/rotate", headers=auth(admin)), 404, "not_found")


def test_keys_of_another_tenant_are_not_found(
    client: TestClient, keys: Keys, admin: str, database: Database
) -> None:
    theirs = key_id(database, keys.globex)
    assert_error(client.post(f"/v1/keys/{theirs}/rotate", headers=auth(admin)), 404, "not_found")
    assert_error(client.delete(f"/v1/keys/{theirs}", headers=auth(admin)), 404, "not_found")
    assert_error(client.delete("/v1/keys/999999", headers=auth(admin)), 404, "not_found")
    assert client.get("/v1/jobs", headers=auth(keys.globex)).status_code == 200  # untouched


def test_rotation_and_revocation_are_audited(
    client: TestClient, keys: Keys, admin: str, database: Database
) -> None:
    old_id = key_id(database, keys.acme)
    new_id = client.post(f"/v1/keys/{old_id}/rotate", headers=auth(admin)).json()["new"]["id"]
    client.delete(f"/v1/keys/{new_id}", headers=auth(admin))
    entries = client.get("/v1/audit", headers=auth(admin)).json()["entries"]
    kinds = [e["kind"] for e in entries]
    assert "key.rotated" in kinds and "key.revoked" in kinds
    assert keys.acme not in json.dumps(entries)


@pytest.mark.parametrize("grace", ["-1", "43201", "abc"])
def test_bad_grace_is_422(client: TestClient, keys: Keys, admin: str, database: Database, grace: str) -> None:
    target = key_id(database, keys.acme)
    assert_error(client.post(f"/v1/keys/{target}/rotate?grace_minutes={grace}", headers=auth(admin)), 422)


def test_rotate_refuses_other_bodies(client: TestClient, keys: Keys, admin: str, database: Database) -> None:
    target = key_id(database, keys.acme)
    r = client.post(
        f"/v1/keys/{target}/rotate", headers={**auth(admin), "Content-Type": "text/plain"}, content=b"x"
    )
    assert_error(r, 415, "unsupported_media_type")


def test_store_rotation_rejects_out_of_range_grace(database: Database) -> None:
    from deskpilot.errors import InputDataError

    with database.session() as s:
        row, _ = create_api_key(s, "acme", "x")
        with pytest.raises(InputDataError):
            rotate_api_key(s, row.id, "acme", timedelta(days=31))
        assert rotate_api_key(s, row.id, "globex", timedelta(minutes=1)) is None


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("DESKPILOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("DESKPILOT_ENV", "test")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_rotate_list_revoke(cli_home: Path) -> None:
    code, out, _ = _cli("keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "read", "--json")
    assert code == 0
    created = json.loads(out.strip().splitlines()[-1])
    code, out, err = _cli(
        "keys", "rotate", str(created["key_id"]), "--tenant", "acme", "--grace-minutes", "5", "--json"
    )
    assert code == 0, err
    rotated = json.loads(out.strip().splitlines()[-1])
    assert (
        rotated["name"] == "ci" and rotated["scopes"] == "read" and rotated["old_key_id"] == created["key_id"]
    )
    assert rotated["key"] != created["key"]
    db = Database(f"sqlite:///{cli_home / 'deskpilot.db'}")
    try:
        with db.session() as s:
            assert authenticate_key(s, created["key"]) is not None  # grace period
            assert authenticate_key(s, rotated["key"]) is not None
    finally:
        db.dispose()
    code, out, _ = _cli("keys", "list", "--tenant", "acme", "--json")
    listed = {k["key_id"]: k for k in json.loads(out.strip().splitlines()[-1])["keys"]}
    assert listed[created["key_id"]]["state"] == "expiring" and listed[rotated["key_id"]]["state"] == "active"
    assert created["key"] not in out and rotated["key"] not in out
    code, _, _ = _cli("keys", "revoke", str(created["key_id"]), "--tenant", "acme")
    assert code == 0
    code, out, _ = _cli("keys", "list", "--tenant", "acme", "--json")
    assert {k["key_id"]: k["state"] for k in json.loads(out.strip().splitlines()[-1])["keys"]}[
        created["key_id"]
    ] == "revoked"
    # another tenant's key, or a key that does not exist: one error line, exit 2
    code, _, err = _cli("keys", "rotate", str(rotated["key_id"]), "--tenant", "globex")
    assert code == 2 and "no live API key" in err
    code, _, err = _cli("keys", "revoke", "999", "--tenant", "acme")
    assert code == 2 and "no API key 999" in err
