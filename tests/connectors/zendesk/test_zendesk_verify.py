"""Zendesk webhook signatures: what passes, and the exact reason each bad delivery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.zendesk import ZendeskConnector
from deskpilot.connectors.zendesk.verify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    format_timestamp,
    sign,
    signature,
    verify,
)
from deskpilot.errors import AuthError, ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # the shape of a Zendesk signing secret
STAMP = "2025-01-08T10:12:08Z"
NOW = datetime(2025, 1, 8, 10, 12, 8, tzinfo=UTC).timestamp()
BODY = (FIXTURES / "event_ticket_created.json").read_bytes()


def signed(body: bytes = BODY, *, secret: str = SECRET, stamp: str = STAMP) -> dict[str, str]:
    return sign(secret, body, timestamp=stamp)


def refused(headers: dict[str, str], body: bytes = BODY, *, now: float = NOW) -> str:
    with pytest.raises(AuthError) as info:
        verify(headers, body, secret=SECRET, now=now)
    assert info.value.status == 401
    return str(info.value)


def test_signature_is_base64_hmac_sha256_of_timestamp_then_raw_body() -> None:
    digest = hmac.new(SECRET.encode(), STAMP.encode() + BODY, hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    assert signed() == {TIMESTAMP_HEADER: STAMP, SIGNATURE_HEADER: expected}
    assert signature(SECRET, STAMP, BODY) == expected
    assert len(expected) == 44


def test_valid_delivery_passes_with_any_header_case_and_at_the_window_edges() -> None:
    verify(signed(), BODY, secret=SECRET, now=NOW)
    lowered = {k.lower(): v for k, v in signed().items()}
    verify(lowered, BODY, secret=SECRET, now=NOW + 300)
    verify(signed(), BODY, secret=SECRET, now=NOW - 300)
    get_connector("zendesk").verify(signed(), BODY, secret=SECRET, now=NOW)
    assert isinstance(get_connector("zendesk"), ZendeskConnector)


def test_sign_defaults_to_now_in_zendesks_iso_format() -> None:
    headers = sign(SECRET, BODY)
    verify(headers, BODY, secret=SECRET)  # real clock
    assert headers[TIMESTAMP_HEADER].endswith("Z") and len(headers[TIMESTAMP_HEADER]) == 20
    assert format_timestamp(NOW) == STAMP
    assert sign(SECRET, BODY, timestamp=NOW) == signed()


def test_wrong_secret_and_tampered_body_fail_as_a_mismatch() -> None:
    message = refused(signed(secret="another-webhooks-secret"))
    assert message.startswith(f"{SIGNATURE_HEADER} does not match the body")
    assert "DESKPILOT_WEBHOOK_SECRETS" in message
    assert refused(signed(), BODY.replace(b"VPN", b"VPM")) == message
    assert refused(signed(), BODY + b" ") == message  # one byte more is another body


def test_the_timestamp_is_signed_too() -> None:
    headers = signed()
    headers[TIMESTAMP_HEADER] = "2025-01-08T10:12:09Z"  # moved a second, signature unchanged
    assert refused(headers).startswith(f"{SIGNATURE_HEADER} does not match the body")


def test_body_then_timestamp_order_of_an_old_doc_revision_is_refused() -> None:
    digest = hmac.new(SECRET.encode(), BODY + STAMP.encode(), hashlib.sha256).digest()
    headers = {TIMESTAMP_HEADER: STAMP, SIGNATURE_HEADER: base64.b64encode(digest).decode()}
    assert refused(headers).startswith(f"{SIGNATURE_HEADER} does not match")


def test_expired_and_future_timestamps_are_refused_after_the_signature_check() -> None:
    old = refused(signed(), now=NOW + 301)
    assert old == f"{TIMESTAMP_HEADER} is 301 s old, outside the 300 s replay window (" + (
        "a captured delivery cannot be replayed; Zendesk re-signs its own retries)"
    )
    ahead = refused(signed(), now=NOW - 3600)
    assert ahead.startswith(f"{TIMESTAMP_HEADER} is 3600 s in the future, outside the 300 s window")
    with pytest.raises(AuthError, match="outside the 60 s replay window"):
        verify(signed(), BODY, secret=SECRET, now=NOW + 61, tolerance_s=60)
    # a stale delivery with a forged signature is reported as forged, not as stale
    assert refused(signed(secret="x"), now=NOW + 9999).startswith(f"{SIGNATURE_HEADER} does not match")


def test_a_replayed_delivery_is_refused_once_the_window_has_passed() -> None:
    captured = signed()
    verify(captured, BODY, secret=SECRET, now=NOW + 10)  # a retry inside the window: the inbox dedupes
    assert "replay window" in refused(captured, now=NOW + 600)


def test_missing_headers_are_named() -> None:
    both = refused({})
    assert both.startswith(f"missing {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} header")
    only_sig = {SIGNATURE_HEADER: signed()[SIGNATURE_HEADER]}
    assert refused(only_sig).startswith(f"missing {TIMESTAMP_HEADER} header")
    only_ts = {TIMESTAMP_HEADER: STAMP}
    assert refused(only_ts).startswith(f"missing {SIGNATURE_HEADER} header")
    assert refused({TIMESTAMP_HEADER: STAMP, SIGNATURE_HEADER: ""}).startswith(f"missing {SIGNATURE_HEADER}")


@pytest.mark.parametrize(
    ("stamp", "problem"),
    [
        ("1736331128", "is not an ISO 8601 time"),
        ("yesterday", "is not an ISO 8601 time"),
        ("2025-01-08T10:12:08", "has no time zone"),
        ("2025-01-08T10:12:08Z" + "0" * 40, "characters; Zendesk sends ISO 8601 time"),
    ],
)
def test_malformed_timestamps_are_refused_by_name(stamp: str, problem: str) -> None:
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(SECRET, stamp, BODY)}
    message = refused(headers)
    assert message.startswith(TIMESTAMP_HEADER) and problem in message


@pytest.mark.parametrize(
    "value",
    [
        hmac.new(SECRET.encode(), STAMP.encode() + BODY, hashlib.sha256).hexdigest(),  # hex, not base64
        "not base64 at all!",
        base64.b64encode(b"short").decode(),
    ],
)
def test_a_signature_that_is_not_a_base64_sha256_digest_is_refused(value: str) -> None:
    message = refused({TIMESTAMP_HEADER: STAMP, SIGNATURE_HEADER: value})
    assert "is not a base64 HMAC-SHA256 digest (44 characters)" in message


def test_a_header_sent_twice_with_different_values_is_refused() -> None:
    headers = signed()
    headers[SIGNATURE_HEADER.lower()] = base64.b64encode(b"\0" * 32).decode()
    assert "sent more than once" in refused(headers)


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="signing secret is empty"):
        verify(signed(), BODY, secret="", now=NOW)
