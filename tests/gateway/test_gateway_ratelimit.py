"""Rate limits: per API key, per webhook source, per address for failed authentications; memory and Redis."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, assert_error, auth
from pydantic import SecretStr

from deskpilot.config import Settings
from deskpilot.connectors.generic.verify import sign
from deskpilot.errors import ConfigError
from deskpilot.gateway import create_app, deps
from deskpilot.store import Database, create_api_key

SECRET = "acme-webhook-secret-0123456789"
REDIS_URL = os.environ.get("DESKPILOT_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"


def limited(settings: Settings, **limits: str) -> Settings:
    values: dict[str, Any] = {
        "rate_limit_per_key": "0",
        "rate_limit_webhook": "0",
        "rate_limit_auth_failures": "0",
        "webhook_secrets": {"acme": SecretStr(SECRET)},
        **limits,
    }
    return settings.model_copy(update=values)


@pytest.fixture
def make_client(database: Database) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings, predictor=FakePredictor(), database=database))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def deliver(client: TestClient, source: str = "shop", secret: str = SECRET) -> Any:
    ticket = {"type": "ticket", "ticket": {"subject": f"VPN {uuid.uuid4().hex}", "body": "The VPN drops."}}
    raw = json.dumps(ticket).encode()
    headers = {"Content-Type": "application/json", **sign(secret, raw)}
    return client.post(f"/webhooks/acme/generic/{source}", content=raw, headers=headers)


def assert_limited(response: Any, setting: str, rate: str) -> None:
    error = assert_error(response, 429, "rate_limited")
    assert rate in str(error["message"]), error
    assert setting in str(error["hint"]), error
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60


def test_per_key_limit(make_client: Any, settings: Settings, keys: Keys) -> None:
    client = make_client(limited(settings, rate_limit_per_key="3/minute"))
    for _ in range(3):
        assert client.get("/v1/jobs", headers=auth(keys.acme)).status_code == 200
    assert_limited(
        client.get("/v1/jobs", headers=auth(keys.acme)), "DESKPILOT_RATE_LIMIT_PER_KEY", "3 per 1 minute"
    )
    # every route behind the key counts against the same budget
    assert_limited(
        client.get("/v1/adapters", headers=auth(keys.acme)), "DESKPILOT_RATE_LIMIT_PER_KEY", "3 per"
    )
    # other keys, of this tenant or another, have budgets of their own
    assert client.get("/v1/jobs", headers=auth(keys.acme_read)).status_code == 200
    assert client.get("/v1/jobs", headers=auth(keys.globex)).status_code == 200


def test_limits_are_off_when_empty_or_zero(make_client: Any, settings: Settings, keys: Keys) -> None:
    client = make_client(limited(settings, rate_limit_per_key="", rate_limit_auth_failures="0"))
    for _ in range(40):
        assert client.get("/v1/jobs", headers=auth(keys.acme)).status_code == 200
        assert client.get("/v1/jobs", headers=auth("dpk_wrong")).status_code == 401


def test_bad_key_flood_is_stopped_per_address_before_the_lookup(
    make_client: Any, settings: Settings, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real_lookup = deps._lookup

    def counting_lookup(database: Database, key: str) -> Any:
        lookups.append(key)
        return real_lookup(database, key)

    monkeypatch.setattr(deps, "_lookup", counting_lookup)
    client = make_client(limited(settings, rate_limit_auth_failures="5/minute"))
    for i in range(5):
        assert_error(client.get("/v1/jobs", headers=auth(f"dpk_guess{i}")), 401)
    assert len(lookups) == 5
    for i in range(20):
        assert_limited(
            client.get("/v1/jobs", headers=auth(f"dpk_more{i}")),
            "DESKPILOT_RATE_LIMIT_AUTH_FAILURES",
            "5 per 1 minute",
        )
    assert len(lookups) == 5  # refused before the database was asked
    # the address is blocked, whatever key it now sends, until the window passes
    assert_error(client.get("/v1/jobs", headers=auth(keys.acme)), 429, "rate_limited")
    # health probes need no key and are never limited
    assert client.get("/healthz").status_code == 200


def test_missing_and_malformed_keys_count_as_failures(make_client: Any, settings: Settings) -> None:
    client = make_client(limited(settings, rate_limit_auth_failures="2/minute"))
    assert_error(client.get("/v1/jobs"), 401)
    assert_error(client.get("/v1/jobs", headers={"Authorization": "Basic abc"}), 401)
    assert_error(client.get("/v1/jobs", headers=auth("dpk_x")), 429, "rate_limited")


def test_per_webhook_source_limit(make_client: Any, settings: Settings) -> None:
    client = make_client(limited(settings, rate_limit_webhook="2/minute"))
    assert deliver(client).status_code == 202
    assert deliver(client).status_code == 202
    assert_limited(deliver(client), "DESKPILOT_RATE_LIMIT_WEBHOOK", "2 per 1 minute")
    # another source of the same tenant has its own budget
    assert deliver(client, source="crm").status_code == 202


def test_forged_webhooks_do_not_use_up_the_source_but_block_the_sender(
    make_client: Any, settings: Settings
) -> None:
    client = make_client(
        limited(settings, rate_limit_webhook="2/minute", rate_limit_auth_failures="3/minute")
    )
    for _ in range(3):
        assert_error(deliver(client, secret="forged-secret-xxxxxxxxxxxx"), 401)
    assert_error(deliver(client, secret="forged-secret-xxxxxxxxxxxx"), 429, "rate_limited")
    # the source's own budget is untouched: a real sender elsewhere still gets through
    other = make_client(limited(settings, rate_limit_webhook="2/minute", rate_limit_auth_failures="3/minute"))
    assert deliver(other).status_code == 202


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit_per_key", "lots"),
        ("rate_limit_webhook", "-5/minute"),
        ("rate_limit_auth_failures", "10/fortnight"),
        ("rate_limit_storage_url", "mongodb://x"),
    ],
)
def test_bad_limit_settings_refuse_to_start(
    settings: Settings, database: Database, field: str, value: str
) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(settings.model_copy(update={field: value}), predictor=FakePredictor(), database=database)
    assert "DESKPILOT_RATE_LIMIT" in info.value.message


def test_unreachable_store_lets_requests_through(
    make_client: Any, settings: Settings, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A limit defends against abuse; a dead counter store must not become an outage."""
    client = make_client(
        limited(settings, rate_limit_per_key="1/minute", rate_limit_storage_url="redis://127.0.0.1:1/0")
    )
    with caplog.at_level(logging.WARNING, logger="deskpilot.gateway"):
        for _ in range(3):
            assert client.get("/v1/jobs", headers=auth(keys.acme)).status_code == 200
    assert "rate limit store unavailable" in caplog.text


# --- Redis: counters shared by several gateway processes ---------------------------------------


@pytest.fixture
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        reason = f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
        if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} and DESKPILOT_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    return REDIS_URL


@pytest.mark.services
def test_redis_store_shares_counters_between_gateways(
    make_client: Any, settings: Settings, database: Database, redis_url: str
) -> None:
    with database.session() as s:
        _, key = create_api_key(s, "acme", f"redis-{uuid.uuid4().hex[:8]}")  # a fresh key: fresh counters
    shared = limited(settings, rate_limit_per_key="4/minute", rate_limit_storage_url=redis_url)
    first, second = make_client(shared), make_client(shared)
    assert first.get("/v1/jobs", headers=auth(key)).status_code == 200
    assert second.get("/v1/jobs", headers=auth(key)).status_code == 200
    assert first.get("/v1/jobs", headers=auth(key)).status_code == 200
    assert second.get("/v1/jobs", headers=auth(key)).status_code == 200
    assert_limited(first.get("/v1/jobs", headers=auth(key)), "DESKPILOT_RATE_LIMIT_PER_KEY", "4 per 1 minute")
    assert_error(second.get("/v1/jobs", headers=auth(key)), 429, "rate_limited")


def test_app_fixture_uses_the_default_limits(app: FastAPI) -> None:
    limiter = app.state.rate_limiter
    assert limiter.per_key is not None and limiter.per_key.describe() == "600 per 1 minute"
    assert limiter.webhook is not None and limiter.webhook.describe() == "1200 per 1 minute"
