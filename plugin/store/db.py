"""Engine, sessions and migrations for one database URL (SQLite or PostgreSQL).

Constructing a :class:`Database` never connects: a gateway must be able to start and answer
``/readyz`` with "not ready" while its database is still coming up. A malformed URL fails at
once; an unreachable server fails on :meth:`Database.migrate` or when a session opens.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from deskpilot.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
POSTGRES_CONNECT_TIMEOUT_S = 10
# Any constant works; it only has to be the same for every deskpilot process on one server.
_MIGRATION_LOCK_KEY = 0x6465736B  # "desk"
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _scrub(raw: str) -> str:
    """A URL string with any password replaced, for messages that must not leak it."""
    return _PASSWORD_IN_URL.sub(r"\1***@", raw)


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"database URL {_scrub(url)!r} cannot be parsed",
            hint="use sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy's default for the bare name is psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets readers run beside the writer; SQLite leaves foreign keys off unless asked."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # in WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives a
        # killed process (the crash tests SIGKILL workers), only an OS crash can lose the last
        # ones; FULL costs one fsync per commit, which caps webhook ingress on a plain disk
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
    # SQLAlchemy, not the driver, starts transactions (see _sqlite_begin)
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    """Take the write lock when a transaction starts, not at its first write.

    A deferred transaction that reads and then writes fails at once with "database is
    locked" when another writer committed in between (busy_timeout cannot help there). With
    the gateway, workers and the CLI sharing one file, every unit of work here reads before
    it writes, so each waits for the lock up front instead; transactions are short.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine plus a session factory; the object the CLI and gateway share."""

    def __init__(self, url: str, *, echo: bool = False, connect_args: dict[str, Any] | None = None) -> None:
        self.url: URL = _normalise(url)
        self.safe_url: str = self.url.render_as_string(hide_password=True)
        args = dict(connect_args or {})
        options: dict[str, Any] = {"echo": echo}
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            self._ensure_sqlite_folder()
        elif backend == "postgresql":
            options["pool_pre_ping"] = True
            # Without a timeout a blackholed host hangs /readyz and startup forever.
            args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
        try:
            self.engine: sqlalchemy.Engine = sqlalchemy.create_engine(self.url, connect_args=args, **options)
        except (ArgumentError, NoSuchModuleError, ImportError, TypeError) as exc:
            raise ConfigError(
                f"database URL {self.safe_url!r} is not usable: {self._reason(exc)}",
                hint="supported: sqlite:///file.db and postgresql+psycopg://user@host/db",
            ) from exc
        if backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        # SQLite has one writer: threads of this process queue here, in order, instead of
        # sleeping in SQLite's busy-retry loop while the lock sits free (re-entrant, so a
        # session opened inside another in one thread behaves as before)
        self._writer: threading.RLock | nullcontext[None] = (
            threading.RLock() if backend == "sqlite" else nullcontext()
        )

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``: the few places that differ branch on this."""
        return self.url.get_backend_name()

    def _ensure_sqlite_folder(self) -> None:
        database = self.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder {str(folder)!r} for database {self.safe_url!r}: {exc.strerror}"
            ) from exc

    def _reason(self, exc: BaseException) -> str:
        cause = getattr(exc, "orig", None) or exc
        lines = str(cause).strip().splitlines()
        first = lines[0] if lines else type(cause).__name__
        password = self.url.password
        if password:
            first = first.replace(str(password), "***")
        return _scrub(first)

    def _unreachable(self, exc: BaseException) -> ConfigError:
        return ConfigError(
            f"cannot connect to database {self.safe_url!r}: {self._reason(exc)}",
            hint="check DESKPILOT_DATABASE_URL and that the server is running",
        )

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is already there."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("path_separator", "os")
        try:
            with self.engine.begin() as connection:
                if self.backend == "postgresql":
                    # Two replicas starting together must not both create the tables.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except (OperationalError, InterfaceError) as exc:
            raise self._unreachable(exc) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back if it raises."""
        with self._writer:
            session = self._sessions()
            try:
                try:
                    session.connection()
                except (OperationalError, InterfaceError) as exc:
                    raise self._unreachable(exc) from exc
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    def ping(self) -> bool:
        """True when a trivial query succeeds; never raises, for health checks."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown, after fork)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"
