"""Probes, startup wiring (lazy engine, own database), docs and secret checks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, assert_error, auth

from deskpilot.config import Settings
from deskpilot.errors import ConfigError, ModelNotFoundError
from deskpilot.gateway import create_app
from deskpilot.store import Database, create_api_key


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ready(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": True, "models": True, "queue": True}


def test_readyz_503_while_predictor_not_ready(client: TestClient, predictor: FakePredictor) -> None:
    predictor.is_ready = False
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert (body["database"], body["models"]) == (True, False)
    assert "models" in body["detail"]
    predictor.is_ready = True
    assert client.get("/readyz").status_code == 200


def test_classify_503_while_predictor_not_ready(
    client: TestClient, predictor: FakePredictor, keys: Keys
) -> None:
    predictor.is_ready = False
    body = {"task": "intent", "text": "vpn down"}
    response = client.post("/v1/classify", json=body, headers=auth(keys.acme))
    error = assert_error(response, 503, "not_ready")
    assert "loading" in str(error["message"])
    assert response.headers["retry-after"]


@pytest.mark.parametrize("failure", ["false", "raises"])
def test_readyz_503_when_database_ping_fails(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    def ping() -> bool:
        if failure == "raises":
            raise OSError("connection refused")
        return False

    monkeypatch.setattr(database, "ping", ping)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["models"]) == ("not_ready", False, True)
    assert "database" in body["detail"]
    assert body["queue"] is True  # the job table itself still answered


def test_healthz_needs_nothing_else(settings: Settings, database: Database) -> None:
    """Liveness answers even before the lifespan ran (no database, no models on app.state)."""
    app = create_app(settings, predictor=FakePredictor(), database=database)
    app.state.database = None
    client = TestClient(app)  # not entered: no lifespan
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] is False
    assert_error(client.get("/v1/adapters", headers=auth("dpk_x")), 503, "not_ready")


# --- the real wiring: own database, engine built in a thread ---------------------------


class _EngineModule:
    """A stand-in ``deskpilot.adapters.serving`` whose Engine waits until released."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.fail: Exception | None = None
        self.built: list[FakePredictor] = []
        self.module = types.ModuleType("deskpilot.adapters.serving")
        outer = self

        class Engine(FakePredictor):
            @classmethod
            def from_settings(cls, settings: Settings) -> Engine:
                assert isinstance(settings, Settings)
                if not outer.go.wait(timeout=10):
                    raise TimeoutError("the test never released the engine")
                if outer.fail is not None:
                    raise outer.fail
                engine = cls()
                outer.built.append(engine)
                return engine

        self.module.Engine = Engine  # type: ignore[attr-defined]
        self.module.build_predictor = Engine.from_settings  # type: ignore[attr-defined]


@pytest.fixture
def engine_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[_EngineModule]:
    fake = _EngineModule()
    monkeypatch.setitem(sys.modules, "deskpilot.adapters.serving", fake.module)
    yield fake
    fake.go.set()  # never leave a loader thread waiting


def _wait_ready(client: TestClient, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200 or time.monotonic() > deadline:
            return dict(response.json())
        time.sleep(0.02)


def test_real_wiring_builds_engine_in_background_and_migrates(
    settings: Settings, engine_module: _EngineModule
) -> None:
    app: FastAPI = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["models"] is False
        assert loading.json()["database"] is True
        assert "loading" in loading.json()["detail"]
        with app.state.database.session() as s:  # migrated by the app itself
            _, key = create_api_key(s, "acme", "ci")
        assert_error(
            client.post("/v1/classify", json={"task": "intent", "text": "vpn"}, headers=auth(key)),
            503,
            "not_ready",
        )
        engine_module.go.set()
        assert _wait_ready(client) == {"status": "ready", "database": True, "models": True, "queue": True}
        response = client.post("/v1/classify", json={"task": "intent", "text": "vpn"}, headers=auth(key))
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["label"] == "network"
        assert (settings.home / "deskpilot.db").is_file()
    assert engine_module.built[0].closed
    assert app.state.predictor is None and app.state.database is None


def test_engine_failure_is_reported_not_crashed(
    settings: Settings, engine_module: _EngineModule, caplog: pytest.LogCaptureFixture
) -> None:
    engine_module.fail = ModelNotFoundError("base model 'x' is not in the cache")
    engine_module.go.set()
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while app.state.predictor_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "base model 'x' is not in the cache" in response.json()["detail"]
        with app.state.database.session() as s:
            _, key = create_api_key(s, "acme", "ci")
        response = client.post("/v1/classify", json={"task": "intent", "text": "vpn"}, headers=auth(key))
        error = assert_error(response, 503, "not_ready")
        assert "failed to load" in str(error["message"])
    assert "the model engine failed to load" in caplog.text


def test_passed_objects_are_not_closed(settings: Settings, database: Database) -> None:
    predictor = FakePredictor()
    with TestClient(create_app(settings, predictor=predictor, database=database)) as client:
        assert client.get("/readyz").status_code == 200
    assert not predictor.closed
    assert database.ping()


# --- docs and config ----------------------------------------------------------------------


def test_docs_and_openapi_served(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) >= {"/healthz", "/readyz", "/v1/classify", "/v1/adapters"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            assert any(code.startswith("2") for code in operation["responses"])
    classify = paths["/v1/classify"]["post"]
    for status in ("401", "403", "404", "413", "415", "422"):
        ref = classify["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert classify["security"] == [{"HTTPBearer": []}]


def test_refuses_default_secret_in_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESKPILOT_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="DESKPILOT_SECRET_KEY"):
        create_app(Settings(env="production", home=tmp_path), predictor=FakePredictor())


def test_production_with_a_real_secret_is_accepted(tmp_path: Path) -> None:
    settings = Settings(env="production", home=tmp_path, secret_key="s" * 40)  # type: ignore[arg-type]
    app = create_app(settings, predictor=FakePredictor())
    assert app.state.settings is settings


def test_gateway_import_is_light() -> None:
    """Importing and building the app never loads torch (the Engine is imported at startup)."""
    code = (
        "import sys, tempfile, pathlib\n"
        "from deskpilot.config import Settings\n"
        "from deskpilot.gateway import create_app\n"
        "create_app(Settings(env='test', home=pathlib.Path(tempfile.mkdtemp())))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the job queue part of /readyz -----------------------------------------------------------


def _not_ready(client: TestClient) -> dict[str, object]:
    response = client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    body = dict(response.json())
    assert body["status"] == "not_ready"
    return body


def test_readyz_503_when_the_job_table_is_unreadable(client: TestClient, database: Database) -> None:
    from sqlalchemy import text

    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
    try:
        body = _not_ready(client)
        assert (body["database"], body["queue"], body["models"]) == (True, False, True)
        assert "job table unreadable" in str(body["detail"])
        assert client.get("/healthz").status_code == 200  # liveness stays cheap and green
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("ALTER TABLE jobs_away RENAME TO jobs"))
    assert client.get("/readyz").status_code == 200


def test_readyz_503_when_the_embedded_workers_stopped(settings: Settings, database: Database) -> None:
    with_workers = settings.model_copy(update={"workers": 1})
    app = create_app(with_workers, predictor=FakePredictor(), database=database)
    with TestClient(app) as client:
        assert client.get("/readyz").json()["queue"] is True
        pool = app.state.worker_pool
        assert pool is not None and pool.alive()
        pool.stop()  # as if the threads had died
        body = _not_ready(client)
        assert (body["database"], body["queue"], body["models"]) == (True, False, True)
        assert "worker threads stopped" in str(body["detail"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_readyz_503_when_the_celery_broker_is_unreachable(settings: Settings, database: Database) -> None:
    celery = settings.model_copy(
        update={"queue_backend": "celery", "broker_url": f"redis://127.0.0.1:{_free_port()}/0"}
    )
    app = create_app(celery, predictor=FakePredictor(), database=database)
    with TestClient(app) as client:
        started = time.monotonic()
        body = _not_ready(client)
        assert time.monotonic() - started < 5.0  # a short timeout, not a hung probe
    assert (body["database"], body["queue"], body["models"]) == (True, False, True)
    assert "broker unreachable" in str(body["detail"])


def test_readyz_names_every_part_that_is_down(
    client: TestClient, predictor: FakePredictor, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor.is_ready = False
    monkeypatch.setattr(database, "ping", lambda: False)
    monkeypatch.setattr(database, "session", lambda: (_ for _ in ()).throw(OSError("down")))
    body = _not_ready(client)
    assert (body["database"], body["queue"], body["models"]) == (False, False, False)
    detail = str(body["detail"])
    assert "database" in detail and "job table" in detail and "models" in detail


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def test_readyz_ready_with_a_reachable_celery_broker(
    settings: Settings, database: Database, redis_server: str
) -> None:
    celery = settings.model_copy(update={"queue_backend": "celery", "broker_url": redis_server})
    app = create_app(celery, predictor=FakePredictor(), database=database)
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["queue"] is True
