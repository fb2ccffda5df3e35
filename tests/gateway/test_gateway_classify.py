"""POST /v1/classify: answers, recording, and the 4xx a client gets for its own mistakes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, assert_error, auth
from sqlalchemy import select

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database, PredictionRecord, count_predictions


def test_classify_many(client: TestClient, keys: Keys, predictor: FakePredictor) -> None:
    texts = ["VPN drops every hour", "Invoice 4411 is wrong", "hello there"]
    response = client.post("/v1/classify", json={"task": "intent", "texts": texts}, headers=auth(keys.acme))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "intent"
    results = body["results"]
    assert [r["label"] for r in results] == ["network", "billing", "other"]
    assert [r["abstained"] for r in results] == [False, False, True]
    first = results[0]
    assert set(first) == {"label", "score", "abstained", "alternatives", "adapter_version", "prediction_id"}
    assert first["score"] == pytest.approx(0.9)
    assert first["adapter_version"] == "v1"
    assert len(first["alternatives"]) == 3
    scores = [a["score"] for a in first["alternatives"]]
    assert scores == sorted(scores, reverse=True)
    assert set(first["alternatives"][0]) == {"label", "score"}
    assert predictor.calls == [("acme", "intent", texts, None, True)]


def test_single_text_and_options(client: TestClient, keys: Keys, predictor: FakePredictor) -> None:
    body = {"task": "intent", "text": "hello", "version": "v1", "abstain": False}
    response = client.post("/v1/classify", json=body, headers=auth(keys.acme))
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["abstained"] is False
    assert predictor.calls == [("acme", "intent", ["hello"], "v1", False)]


def test_predictions_recorded_with_ids(client: TestClient, keys: Keys, database: Database) -> None:
    texts = ["vpn", "invoice"]
    response = client.post("/v1/classify", json={"task": "intent", "texts": texts}, headers=auth(keys.acme))
    ids = [r["prediction_id"] for r in response.json()["results"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2
    with database.session() as s:
        assert count_predictions(s, "acme", "intent") == 2
        assert count_predictions(s, "globex") == 0
        rows = s.scalars(select(PredictionRecord).where(PredictionRecord.id.in_(ids))).all()
        by_id = {row.id: row for row in rows}
    assert [by_id[i].label for i in ids] == ["network", "billing"]
    assert {by_id[i].adapter_version for i in ids} == {"v1"}


def test_recording_off(settings: Settings, database: Database, keys: Keys) -> None:
    settings = settings.model_copy(update={"record_predictions": False})
    app = create_app(settings, predictor=FakePredictor(), database=database)
    with TestClient(app) as client:
        response = client.post(
            "/v1/classify", json={"task": "intent", "text": "vpn"}, headers=auth(keys.acme)
        )
    assert response.json()["results"][0]["prediction_id"] is None
    with database.session() as s:
        assert count_predictions(s, "acme") == 0


def test_unknown_task_is_404_naming_task_and_how_to_train(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/classify", json={"task": "sentiment", "text": "x"}, headers=auth(keys.acme))
    error = assert_error(response, 404, "adapter_not_found")
    assert "sentiment" in str(error["message"])
    assert "deskpilot train classifier --task sentiment" in str(error["hint"])


def test_unknown_version_is_404(client: TestClient, keys: Keys) -> None:
    body = {"task": "intent", "text": "x", "version": "v9"}
    assert_error(client.post("/v1/classify", json=body, headers=auth(keys.acme)), 404, "adapter_not_found")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "intent", "texts": []}, 422, "'texts' is empty"),
        ({"task": "intent", "text": ""}, 422, "texts[0] is empty"),
        ({"task": "intent", "texts": ["ok", "   "]}, 422, "texts[1] is empty"),
        ({"task": "intent", "texts": ["a"] * 9}, 422, "the limit is 8"),
        ({"task": "intent", "text": "x" * 501}, 422, "the limit is 500"),
        ({"task": "intent", "texts": ["a"], "text": "a"}, 422, "exactly one of 'text'"),
        ({"task": "intent"}, 422, "exactly one of 'text'"),
        ({"texts": ["a"]}, 422, "body.task: Field required"),
        ({"task": "intent", "texts": "just one"}, 422, "body.texts:"),
        ({"task": "intent", "texts": ["a", 3]}, 422, "body.texts[1]:"),
        ({"task": "intent", "text": 42}, 422, "body.text:"),
        ({"task": "../secrets", "text": "a"}, 422, "body.task: task must be"),
        ({"task": "intent", "text": "a", "abstain": "no"}, 422, "body.abstain:"),
        ({"task": "intent", "text": "a", "lang": "en"}, 422, "body.lang: Extra inputs"),
        ({"task": "intent", "text": "a\u0000b"}, 422, "NUL"),
    ],
)
def test_bad_payloads_explain_themselves(
    client: TestClient, keys: Keys, body: object, status: int, needle: str
) -> None:
    error = assert_error(client.post("/v1/classify", json=body, headers=auth(keys.acme)), status)
    assert needle in str(error["message"]), error


def test_lone_surrogate_is_422(client: TestClient, keys: Keys) -> None:
    raw = b'{"task": "intent", "text": "bad \\ud800 text"}'
    response = client.post(
        "/v1/classify", content=raw, headers={**auth(keys.acme), "Content-Type": "application/json"}
    )
    error = assert_error(response, 422, "validation_error")
    assert "surrogate" in str(error["message"])


def test_not_json_is_400(client: TestClient, keys: Keys) -> None:
    response = client.post(
        "/v1/classify", content=b'{"task": ', headers={**auth(keys.acme), "Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "invalid_json")
    assert error["message"] == "request body is not valid JSON"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_wrong_content_type_is_415(client: TestClient, keys: Keys, content_type: str | None) -> None:
    headers = auth(keys.acme)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/classify", content=b'{"task": "intent", "text": "x"}', headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in str(error["hint"])


def test_json_suffix_content_type_accepted(client: TestClient, keys: Keys) -> None:
    headers = {**auth(keys.acme), "Content-Type": "application/vnd.deskpilot+json; charset=utf-8"}
    response = client.post("/v1/classify", content=b'{"task": "intent", "text": "vpn"}', headers=headers)
    assert response.status_code == 200, response.text


def test_auth_checked_before_body_fields(client: TestClient) -> None:
    """A bad body from an anonymous caller is a 401, so the schema is not probed without a key."""
    assert_error(client.post("/v1/classify", json={"nope": 1}), 401)


def test_predictor_crash_is_opaque_500(
    settings: Settings, database: Database, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    predictor = FakePredictor()

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /opt/models/acme")

    predictor.predict = explode  # type: ignore[assignment,method-assign]
    app = create_app(settings, predictor=predictor, database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/classify",
            json={"task": "intent", "text": "x"},
            headers={**auth(keys.acme), "X-Request-ID": "r-1"},
        )
    error = assert_error(response, 500, "internal_error")
    assert "internals" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "r-1"
    assert "r-1" in str(error["hint"])
    assert "secret internals" in caplog.text  # the traceback went to the log
    assert "Traceback" in caplog.text or "RuntimeError" in caplog.text


def test_database_down_is_503_not_500(
    client: TestClient, keys: Keys, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deskpilot.errors import ConfigError

    def unreachable() -> object:
        raise ConfigError("cannot connect to database 'postgresql://u:***@db/x'")

    monkeypatch.setattr(database, "session", unreachable)
    response = client.post("/v1/classify", json={"task": "intent", "text": "x"}, headers=auth(keys.acme))
    assert_error(response, 503, "not_ready")
    assert "postgresql" not in response.text
