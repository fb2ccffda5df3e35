"""Console fixtures: a migrated SQLite store with seeded tenants, users and decisions.

Migrating and seeding take a while on a busy machine, so they run once per session into a
template home, and each test gets its own copy (database file and adapter registry).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import Seeded, StaticPredictor, seed
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database

SECRET = "console-test-secret"


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Seeded]:
    home = tmp_path_factory.mktemp("console-template")
    settings = Settings(env="test", home=home, workers=0, secret_key=SECRET, database_url=None)
    database = Database(settings.db_url)
    try:
        database.migrate()
        seeded = seed(database, settings)
    finally:
        database.dispose()  # checkpoints SQLite's write-ahead log into the file
    return home, seeded


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template_home: tuple[Path, Seeded]) -> Settings:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    shutil.copytree(template_home[0], home)
    return Settings(env="test", home=home, workers=0, secret_key=SECRET)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.db_url)
    yield db
    db.dispose()


@pytest.fixture
def seeded(database: Database, template_home: tuple[Path, Seeded]) -> Seeded:
    return template_home[1]


@pytest.fixture
def app(settings: Settings, database: Database, seeded: Seeded) -> FastAPI:
    return create_app(settings, predictor=StaticPredictor(), database=database)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
