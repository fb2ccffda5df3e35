"""Database: URLs, migrations, drift between models and migrations, health checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from deskpilot.errors import ConfigError, InputDataError
from deskpilot.store import Base, Database, Tenant, get_or_create_tenant

TABLES = {
    "tenants",
    "api_keys",
    "adapters",
    "predictions",
    "tickets",
    "inbox_events",
    "jobs",
    "decisions",
    "outbox",
    "feedback",
    "audit_log",
    "knowledge",
    "documents",
    "console_users",
    "console_sessions",
}


def test_migrate_twice_creates_all_tables(empty_db: Database) -> None:
    assert not TABLES & set(sqlalchemy.inspect(empty_db.engine).get_table_names())
    empty_db.migrate()
    empty_db.migrate()
    tables = set(sqlalchemy.inspect(empty_db.engine).get_table_names())
    assert tables >= TABLES | {"alembic_version"}
    with empty_db.engine.connect() as connection:
        versions = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    assert [v for (v,) in versions] == ["0005"]


def test_models_match_migrations(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_ping(db: Database) -> None:
    assert db.ping() is True


def test_session_commits_and_rolls_back(db: Database) -> None:
    with db.session() as session:
        get_or_create_tenant(session, "kept")
    with pytest.raises(RuntimeError), db.session() as session:
        get_or_create_tenant(session, "dropped")
        raise RuntimeError("boom")
    with db.session() as session:
        slugs = set(session.scalars(sqlalchemy.select(Tenant.slug)))
    assert slugs == {"kept"}


def test_timestamps_are_aware_utc(db: Database) -> None:
    with db.session() as session:
        created = get_or_create_tenant(session, "clock").created_at
    with db.session() as session:
        loaded = session.scalars(sqlalchemy.select(Tenant).where(Tenant.slug == "clock")).one()
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == UTC.utcoffset(None)
    assert abs((loaded.created_at - created).total_seconds()) < 1e-3


def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(sqlalchemy.exc.StatementError) as info, db.session() as session:
        session.add(Tenant(slug="naive", name="n", created_at=datetime(2024, 1, 1)))
        session.flush()
    assert isinstance(info.value.orig, InputDataError)


def test_sqlite_wal_foreign_keys_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "deskpilot.db"
    database = Database(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        with database.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
    finally:
        database.dispose()


def test_sqlite_folder_that_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create the folder"):
        Database(f"sqlite:///{blocker / 'x.db'}")


def test_plain_postgresql_url_uses_psycopg() -> None:
    database = Database("postgresql://u:pw@127.0.0.1:5432/x")
    try:
        assert database.engine.url.drivername == "postgresql+psycopg"
        assert database.engine.pool._pre_ping  # type: ignore[attr-defined]
    finally:
        database.dispose()


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://u:s3cret@host/db"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert "s3cret" not in str(info.value)


def test_unreachable_url_is_a_config_error_without_password() -> None:
    # Port 1 on loopback refuses at once; nothing listens there.
    database = Database("postgresql://deskpilot:s3cret@127.0.0.1:1/nope")
    try:
        assert database.ping() is False
        with pytest.raises(ConfigError) as info:
            database.migrate()
        message = str(info.value)
        assert "127.0.0.1:1/nope" in message
        assert "s3cret" not in message
        with pytest.raises(ConfigError), database.session():
            pass
    finally:
        database.dispose()
