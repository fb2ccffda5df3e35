"""Gateway fixtures: a fake Predictor, a real SQLite store in tmp_path, keys for two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database, create_api_key, revoke_api_key


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    return Settings(
        env="test", home=tmp_path, max_batch_texts=8, max_text_chars=500, max_body_bytes=16_384, workers=0
    )


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.db_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def keys(database: Database) -> Keys:
    with database.session() as s:
        _, acme = create_api_key(s, "acme", "ci")
        _, acme_read = create_api_key(s, "acme", "dashboard", scopes=("read",))
        _, acme_write = create_api_key(s, "acme", "ingest", scopes=("write",))
        _, globex = create_api_key(s, "globex", "ci")
        row, revoked = create_api_key(s, "acme", "old")
        s.flush()
        revoke_api_key(s, row.id, "acme")
    return Keys(acme, acme_read, acme_write, globex, revoked)


@pytest.fixture
def predictor() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def app(settings: Settings, predictor: FakePredictor, database: Database) -> FastAPI:
    return create_app(settings, predictor=predictor, database=database)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
