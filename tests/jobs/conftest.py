"""Job-queue fixtures: a migrated database on SQLite and PostgreSQL.

``db`` runs each test on SQLite and on a fresh PostgreSQL schema (as tests/store does); the
schema's URL (``pg_url``) is one a worker subprocess can use too. Without a server the
PostgreSQL half skips, unless ``DESKPILOT_REQUIRE_SERVICES=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy
from jobs_support import BACKENDS, postgres_url, unavailable
from sqlalchemy.exc import SQLAlchemyError

from deskpilot.store import Database


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[sqlalchemy.Engine]:
    admin = Database(postgres_url())
    engine = admin.engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except SQLAlchemyError:
        admin.dispose()
        unavailable(f"PostgreSQL not reachable at {admin.safe_url}")
    yield engine
    admin.dispose()


@pytest.fixture
def pg_url(postgres_admin: sqlalchemy.Engine) -> Iterator[str]:
    """A URL (usable by other processes) of a fresh, empty PostgreSQL schema."""
    schema = f"test_jobs_{secrets.token_hex(6)}"
    with postgres_admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    base = postgres_url()
    joiner = "&" if "?" in base else "?"
    yield f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"
    with postgres_admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'deskpilot.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database: SQLite, then a fresh PostgreSQL schema."""
    database = Database(db_url)
    database.migrate()
    yield database
    database.dispose()
