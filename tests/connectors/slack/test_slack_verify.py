"""Slack request signing: requests signed by slack_sdk pass; each bad one is refused precisely."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from deskpilot.connectors import get_connector
from deskpilot.connectors.slack import SlackConnector, sign
from deskpilot.connectors.slack.verify import verify
from deskpilot.errors import AuthError, ConfigError

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the shape of a Signing Secret
NOW = 1_700_000_000
OPTIONS = {"channels": "C0HELP", "bot_user_id": "U0DESKBOT"}


def slack_headers(body: bytes, *, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    """What Slack sends, computed by slack_sdk itself (not by the code under test)."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
        "Content-Type": "application/json",
    }


def refused(headers: dict[str, str], body: bytes, *, now: float = NOW, **kwargs: Any) -> str:
    with pytest.raises(AuthError) as info:
        verify(headers, body, secret=kwargs.pop("secret", SECRET), now=now, **kwargs)
    assert info.value.status == 401
    return str(info.value)


@pytest.fixture
def body(payload: Callable[[str], dict[str, Any]]) -> bytes:
    return json.dumps(payload("event_message")).encode()


def test_slack_sdk_signature_passes_through_the_registered_connector(body: bytes) -> None:
    connector = get_connector("slack")
    assert isinstance(connector, SlackConnector) and connector.name == "slack"
    connector.verify(slack_headers(body), body, secret=SECRET, route="events", now=NOW)
    lowered = {k.lower(): v for k, v in slack_headers(body).items()}
    verify(lowered, body, secret=SECRET, now=NOW)


def test_signature_is_v0_hmac_sha256_of_version_timestamp_and_raw_body(body: bytes) -> None:
    expected = hmac.new(SECRET.encode(), f"v0:{NOW}:".encode() + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, timestamp=NOW) == {
        "X-Slack-Request-Timestamp": str(NOW),
        "X-Slack-Signature": f"v0={expected}",
    }
    # and slack_sdk's own verifier agrees with what we accept
    assert SignatureVerifier(SECRET).is_valid(body, str(NOW), f"v0={expected}") is False  # its clock: now
    headers = sign(SECRET, body)  # signed now
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    verify(headers, body, secret=SECRET)


def test_wrong_secret_and_tampered_body_are_a_mismatch(body: bytes) -> None:
    message = refused(slack_headers(body, secret="another-apps-secret"), body)
    assert message.startswith("X-Slack-Signature does not match the body")
    assert "Signing Secret" in message
    tampered = body.replace(b"VPN", b"VPM")
    assert refused(slack_headers(body), tampered) == message
    assert refused(slack_headers(body), body + b" ") == message


def test_the_window_is_five_minutes_either_way_and_configurable(body: bytes) -> None:
    verify(slack_headers(body, timestamp=NOW - 300), body, secret=SECRET, now=NOW)  # edge: inside
    verify(slack_headers(body, timestamp=NOW + 300), body, secret=SECRET, now=NOW)
    old = refused(slack_headers(body, timestamp=NOW - 301), body)
    assert old.startswith("X-Slack-Request-Timestamp is 301 s old, outside the 300 s replay window")
    future = refused(slack_headers(body, timestamp=NOW + 301), body)
    assert future.startswith("X-Slack-Request-Timestamp is 301 s in the future")
    assert "60 s replay window" in refused(slack_headers(body, timestamp=NOW - 61), body, tolerance_s=60)


def test_a_replayed_request_is_refused_after_the_window_and_deduplicated_within_it(body: bytes) -> None:
    """Within the window a replay verifies, but it names the same event: the inbox stores it once."""
    captured = slack_headers(body)
    verify(captured, body, secret=SECRET, now=NOW + 10)
    connector = SlackConnector()
    first = connector.parse("acme", "events", captured, body, OPTIONS)
    again = connector.parse("acme", "events", captured, body, OPTIONS)
    assert [e.delivery_id for e in first.events] == [e.delivery_id for e in again.events] == ["Ev0PV52K21"]
    assert "replay window" in refused(captured, body, now=NOW + 301)


def test_slack_retries_are_signed_afresh_and_carry_the_same_event_id(body: bytes) -> None:
    retry = slack_headers(body, timestamp=NOW + 60) | {
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    verify(retry, body, secret=SECRET, now=NOW + 60)
    inbound = SlackConnector().parse("acme", "events", retry, body, OPTIONS)
    assert [e.delivery_id for e in inbound.events] == ["Ev0PV52K21"]


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("X-Slack-Signature",), "missing X-Slack-Signature header"),
        (("X-Slack-Request-Timestamp",), "missing X-Slack-Request-Timestamp header"),
        (
            ("X-Slack-Signature", "X-Slack-Request-Timestamp"),
            "missing X-Slack-Request-Timestamp and X-Slack-Signature header",
        ),
    ],
)
def test_missing_headers_are_named(body: bytes, drop: tuple[str, ...], named: str) -> None:
    headers = {k: v for k, v in slack_headers(body).items() if k not in drop}
    assert refused(headers, body).startswith(named)
    blank = slack_headers(body) | dict.fromkeys(drop, "")
    assert refused(blank, body).startswith(named)


@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("X-Slack-Request-Timestamp", "1700000000.5", "X-Slack-Request-Timestamp must be whole unix seconds"),
        ("X-Slack-Request-Timestamp", "yesterday", "X-Slack-Request-Timestamp must be whole unix seconds"),
        ("X-Slack-Signature", "v1=" + "a" * 64, "X-Slack-Signature must be v0=<64 hex digits>"),
        ("X-Slack-Signature", "v0=abc", "X-Slack-Signature must be v0=<64 hex digits>"),
        ("X-Slack-Signature", "a" * 64, "X-Slack-Signature must be v0=<64 hex digits>"),
    ],
)
def test_malformed_headers_are_refused(body: bytes, header: str, value: str, problem: str) -> None:
    assert refused(slack_headers(body) | {header: value}, body).startswith(problem)


def test_a_header_sent_twice_with_different_values_is_refused(body: bytes) -> None:
    headers = slack_headers(body) | {"x-slack-signature": "v0=" + "0" * 64}
    assert "sent more than once" in refused(headers, body)


def test_uppercase_hex_is_accepted_and_non_utf8_bodies_are_refused(body: bytes) -> None:
    headers = slack_headers(body)
    headers["X-Slack-Signature"] = "v0=" + headers["X-Slack-Signature"][3:].upper()
    verify(headers, body, secret=SECRET, now=NOW)
    raw = b"payload=\xff\xfe"
    assert refused(slack_headers(b""), raw).startswith("body is not UTF-8 (byte 8)")


def test_an_empty_secret_is_a_configuration_error(body: bytes) -> None:
    with pytest.raises(ConfigError, match="signing secret is empty"):
        verify(slack_headers(body), body, secret=" ", now=NOW)
