"""Bearer keys: missing, wrong, revoked, scopes, and tenant isolation."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, assert_error, auth

ONE = {"task": "intent", "text": "my vpn is down"}


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/classify"), ("GET", "/v1/adapters")])
def test_missing_key_is_401_and_says_how_to_get_one(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json=ONE if method == "POST" else None)
    error = assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in str(error["message"])
    assert "deskpilot keys create --tenant" in str(error["hint"])


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token dpk_abc",
        "dpk_abc",
    ],
)
def test_malformed_authorization_header_is_401(client: TestClient, header: str) -> None:
    response = client.get("/v1/adapters", headers={"Authorization": header})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "key",
    [
        "dpk_wrong",
        "not-a-deskpilot-key",
        "dpk_" + "a" * 600,
        "dpk_has spaces",
        "dpk_\u00e9t\u00e9",
        "x" * 5000,
    ],
)
def test_wrong_key_is_401_and_not_echoed(
    client: TestClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.get("/v1/adapters", headers=[(b"authorization", f"Bearer {key}".encode())])
    error = assert_error(response, 401, "unauthorized")
    assert "wrong or has been revoked" in str(error["message"]) or "Bearer" in str(error["message"])
    assert key not in response.text
    assert key not in caplog.text


def test_revoked_key_is_401(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/classify", json=ONE, headers=auth(keys.revoked))
    error = assert_error(response, 401, "unauthorized")
    assert "revoked" in str(error["message"])
    assert keys.revoked not in response.text


def test_valid_key_never_logged_or_echoed(
    client: TestClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.post("/v1/classify", json=ONE, headers=auth(keys.acme))
    assert response.status_code == 200
    assert keys.acme not in response.text
    assert keys.acme not in caplog.text


def test_scope_missing_is_403(client: TestClient, keys: Keys) -> None:
    """A write-only key may classify but not list adapters."""
    error = assert_error(client.get("/v1/adapters", headers=auth(keys.acme_write)), 403, "forbidden")
    assert "'read'" in str(error["message"])
    response = client.post("/v1/classify", json=ONE, headers=auth(keys.acme_write))
    assert response.status_code == 200, response.text


def test_read_only_key_may_classify(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/classify", json=ONE, headers=auth(keys.acme_read))
    assert response.status_code == 200, response.text


def test_tenant_sees_only_its_adapters(client: TestClient, keys: Keys, predictor: FakePredictor) -> None:
    acme = client.get("/v1/adapters", headers=auth(keys.acme)).json()["adapters"]
    assert [(a["tenant"], a["task"]) for a in acme] == [("acme", "intent")]
    assert acme[0]["labels"] == ["network", "billing", "access", "other"]
    assert acme[0]["metrics"] == {"accuracy": 0.9, "macro_f1": None}
    globex = client.get("/v1/adapters", headers=auth(keys.globex)).json()["adapters"]
    assert sorted(a["task"] for a in globex) == ["intent", "priority"]
    assert {a["tenant"] for a in globex} == {"globex"}
    assert predictor.adapter_calls == ["acme", "globex"]


def test_adapters_filtered_even_if_predictor_leaks(
    client: TestClient, keys: Keys, predictor: FakePredictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    everyone = predictor.adapters("acme") + predictor.adapters("globex")
    monkeypatch.setattr(predictor, "adapters", lambda tenant: everyone)
    adapters = client.get("/v1/adapters", headers=auth(keys.acme)).json()["adapters"]
    assert {a["tenant"] for a in adapters} == {"acme"}


def test_predictor_receives_the_key_tenant(client: TestClient, keys: Keys, predictor: FakePredictor) -> None:
    client.post("/v1/classify", json=ONE, headers=auth(keys.acme))
    client.post("/v1/classify", json={"task": "priority", "text": "urgent!"}, headers=auth(keys.globex))
    assert [(c[0], c[1]) for c in predictor.calls] == [("acme", "intent"), ("globex", "priority")]


def test_other_tenants_task_is_404_for_me(client: TestClient, keys: Keys) -> None:
    response = client.post("/v1/classify", json={"task": "priority", "text": "x"}, headers=auth(keys.acme))
    error = assert_error(response, 404, "adapter_not_found")
    assert "priority" in str(error["message"])
    assert "globex" not in response.text
