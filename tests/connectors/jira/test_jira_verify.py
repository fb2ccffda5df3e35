"""Jira's X-Hub-Signature webhooks: what passes, and the exact reason each bad delivery is refused."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.jira.verify import sign, signature, verify
from deskpilot.errors import AuthError, ConfigError

SECRET = "jira-webhook-secret-for-acme"
BODY = (Path(__file__).parent / "fixtures" / "issue_created.json").read_bytes()
EVENT_S = json.loads(BODY)["timestamp"] / 1000  # the payload's timestamp, in seconds
NOW = EVENT_S + 2  # delivered two seconds after the event


def refused(headers: dict[str, str], body: bytes = BODY, *, secret: str = SECRET, now: float = NOW) -> str:
    with pytest.raises(AuthError) as info:
        get_connector("jira").verify(headers, body, secret=secret, now=now)
    assert info.value.status == 401
    return str(info.value)


def test_signature_is_hmac_sha256_of_the_raw_body_in_websub_form() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    headers = sign(SECRET, BODY, identifier="2b7a4f1e-5c3d-4e8a-9b10-7c6d5e4f3a21")
    assert headers["X-Hub-Signature"] == f"sha256={expected}"
    assert headers["X-Atlassian-Webhook-Identifier"] == "2b7a4f1e-5c3d-4e8a-9b10-7c6d5e4f3a21"
    assert signature(SECRET, BODY) == expected
    assert (
        sign(SECRET, BODY)["X-Atlassian-Webhook-Identifier"]
        != sign(SECRET, BODY)["X-Atlassian-Webhook-Identifier"]
    )


def test_valid_delivery_passes_with_any_header_case_and_route() -> None:
    verify(sign(SECRET, BODY), BODY, secret=SECRET, now=NOW)
    lowered = {k.lower(): v for k, v in sign(SECRET, BODY).items()}
    get_connector("jira").verify(lowered, BODY, secret=SECRET, route="", now=NOW)
    upper = {"X-Hub-Signature": "SHA256=" + signature(SECRET, BODY).upper()}
    verify(upper, BODY, secret=SECRET, now=NOW)


def test_wrong_secret_and_tampered_body_are_a_mismatch() -> None:
    message = refused(sign("another-secret", BODY))
    assert message.startswith("X-Hub-Signature does not match the body")
    assert "DESKPILOT_WEBHOOK_SECRETS" in message
    tampered = BODY.replace(b"VPN drops", b"VPN works")
    assert refused(sign(SECRET, BODY), tampered).startswith("X-Hub-Signature does not match the body")
    # re-serialised JSON (same data, other bytes) is not the signed body either
    reserialised = json.dumps(json.loads(BODY)).encode()
    assert reserialised != BODY
    assert refused(sign(SECRET, BODY), reserialised).startswith("X-Hub-Signature does not match")


def test_missing_and_malformed_headers_are_named() -> None:
    assert refused({}).startswith("missing X-Hub-Signature header (give the Jira webhook a Secret")
    assert refused({"X-Hub-Signature": ""}).startswith("missing X-Hub-Signature header")
    assert refused({"X-Hub-Signature": "abc"}).startswith(
        "X-Hub-Signature 'abc' is not method=signature; Jira sends sha256=<64 hex digits>"
    )
    sha1 = "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert refused({"X-Hub-Signature": sha1}) == "X-Hub-Signature uses method 'sha1'; only sha256 is accepted"
    assert (
        refused({"X-Hub-Signature": "sha256=xyz"})
        == "X-Hub-Signature sha256 value 'xyz' is not 64 hex digits"
    )


def test_expired_and_future_event_timestamps_are_refused_after_the_signature() -> None:
    headers = sign(SECRET, BODY)
    old = refused(headers, now=EVENT_S + 301)
    assert old.startswith("payload timestamp is 301 s old, outside the 300 s replay window")
    future = refused(headers, now=EVENT_S - 301)
    assert future.startswith("payload timestamp is 301 s in the future, outside the 300 s window")
    verify(headers, BODY, secret=SECRET, now=EVENT_S + 301, tolerance_s=1800)  # a wider window passes
    verify(headers, BODY, secret=SECRET, now=EVENT_S + 300)  # the edge is inside
    # only a holder of the secret learns that a delivery is merely stale
    assert "does not match" in refused(sign("wrong", BODY), now=EVENT_S + 10_000)


def test_replay_is_caught_by_the_window_even_under_a_new_identifier() -> None:
    """The identifier is not signed: a captured body re-sent later with a fresh one is too old."""
    first = sign(SECRET, BODY, identifier="original")
    verify(first, BODY, secret=SECRET, now=NOW)
    replay = {**first, "X-Atlassian-Webhook-Identifier": "forged-new-id"}
    assert "replay window" in refused(replay, now=EVENT_S + 3600)


def test_signed_body_without_a_timestamp_cannot_be_checked_for_freshness() -> None:
    body = json.dumps({"webhookEvent": "jira:issue_created", "issue": {}}).encode()
    message = refused(sign(SECRET, body), body)
    assert message.startswith("the payload has no numeric 'timestamp'")
    as_text = json.dumps({"webhookEvent": "jira:issue_created", "timestamp": "1718000000000"}).encode()
    assert refused(sign(SECRET, as_text), as_text).startswith("the payload has no numeric 'timestamp'")
    # a signed body that is not JSON passes authentication; parse() then says what is wrong
    verify(sign(SECRET, b"not json"), b"not json", secret=SECRET, now=NOW)


def test_duplicate_signature_headers_with_different_values_are_refused() -> None:
    class Raw(dict[str, str]):
        def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
            return [("x-hub-signature", "sha256=" + "a" * 64), ("X-Hub-Signature", "sha256=" + "b" * 64)]

    assert "sent more than once" in refused(Raw())


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify(sign(SECRET, BODY), BODY, secret=SECRET, now=NOW)
    assert calls == [(signature(SECRET, BODY), signature(SECRET, BODY))]


def test_empty_secret_is_a_config_error_not_a_pass() -> None:
    with pytest.raises(ConfigError, match="the Jira webhook secret is empty"):
        verify(sign(SECRET, BODY), BODY, secret="", now=NOW)
