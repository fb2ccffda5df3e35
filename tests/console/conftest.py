"""Console fixtures: a migrated SQLite store in tmp_path, seeded tenants, users and decisions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import Seeded, StaticPredictor, seed
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    return Settings(env="test", home=tmp_path, workers=0, secret_key="console-test-secret")


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.db_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def seeded(database: Database, settings: Settings) -> Seeded:
    return seed(database, settings)


@pytest.fixture
def app(settings: Settings, database: Database, seeded: Seeded) -> FastAPI:
    return create_app(settings, predictor=StaticPredictor(), database=database)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
