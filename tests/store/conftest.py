"""Store fixtures: every test using ``empty_db`` or ``db`` runs on SQLite and on PostgreSQL.

PostgreSQL tests each get a fresh schema, so they can run beside each other and leave nothing
behind. Without a server they skip, unless ``DESKPILOT_REQUIRE_SERVICES=1`` (CI) makes that fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from deskpilot.store import Database

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


def postgres_url() -> str:
    return os.environ.get("DESKPILOT_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _unavailable(reason: str) -> None:
    if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and DESKPILOT_REQUIRE_SERVICES=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sqlalchemy.Engine]:
    """One engine for creating and dropping schemas; probed once per session."""
    admin = Database(postgres_url())
    engine = admin.engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except SQLAlchemyError:
        admin.dispose()
        _unavailable(f"PostgreSQL not reachable at {admin.safe_url}")
    yield engine
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables yet."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'store' / 'deskpilot.db'}")
        yield database
        database.dispose()
        return
    admin: sqlalchemy.Engine = request.getfixturevalue("postgres_admin")
    schema = f"test_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    database = Database(postgres_url(), connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def db(empty_db: Database) -> Database:
    """A migrated database."""
    empty_db.migrate()
    return empty_db
