"""ServiceNow webhook authentication: the Business Rule's signature, and the token fallback."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.servicenow import ServiceNowConnector, convert, sign
from deskpilot.connectors.servicenow.options import ServiceNowOptions
from deskpilot.connectors.servicenow.verify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOKEN_HEADER,
    signature,
    verify,
)
from deskpilot.errors import AuthError, ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "sn-webhook-secret-7f3a"
NOW = 1_740_820_000
BODY = (FIXTURES / "insert.json").read_bytes()


def glide_generate_mac(key_base64: str, algorithm: str, data: str) -> str:
    """What ``GlideCertificateEncryption.generateMac(key, algorithm, data)`` computes, as documented:
    the key arrives base64-encoded, the MAC leaves base64-encoded."""
    assert algorithm == "HmacSHA256"
    key = base64.b64decode(key_base64)
    return base64.b64encode(hmac.new(key, data.encode("utf-8"), hashlib.sha256).digest()).decode()


def business_rule_headers(secret: str, body: bytes, ts: int) -> dict[str, str]:
    """The two headers exactly as the Business Rule script builds them."""
    key = base64.b64encode(secret.encode("utf-8")).decode()  # GlideStringUtil.base64Encode(secret)
    mac = glide_generate_mac(key, "HmacSHA256", "v1:" + str(ts) + ":" + body.decode("ascii"))
    return {"X-Deskpilot-Timestamp": str(ts), "X-Deskpilot-Signature": "v1=" + mac}


def refused(headers: dict[str, str], body: bytes = BODY, *, now: float = NOW, secret: str = SECRET) -> str:
    with pytest.raises(AuthError) as info:
        verify(headers, body, secret=secret, now=now)
    return str(info.value)


def test_the_business_rule_signature_is_accepted() -> None:
    assert BODY.isascii()  # the rule escapes non-ASCII, so the signed string is the sent bytes
    headers = business_rule_headers(SECRET, BODY, NOW)
    assert verify(headers, BODY, secret=SECRET, now=NOW) == "signature"
    assert headers == sign(SECRET, BODY, timestamp=NOW)  # our helper signs the same way
    assert len(headers[SIGNATURE_HEADER]) == len("v1=") + 44


def test_the_signature_is_the_documented_hmac() -> None:
    expected = hmac.new(SECRET.encode(), b"v1:1740820000:" + BODY, hashlib.sha256).digest()
    assert base64.b64decode(signature(SECRET, NOW, BODY)) == expected


def test_hex_signatures_and_rotation_lists_are_accepted() -> None:
    mac = hmac.new(SECRET.encode(), b"v1:%d:" % NOW + BODY, hashlib.sha256).hexdigest()
    hex_headers = {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"v1={mac.upper()}"}
    assert verify(hex_headers, BODY, secret=SECRET, now=NOW) == "signature"
    old = sign("the-old-secret", BODY, timestamp=NOW)[SIGNATURE_HEADER]
    new = sign(SECRET, BODY, timestamp=NOW)[SIGNATURE_HEADER]
    rotating = {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: f"{old}, v2=ignored, {new}"}
    assert verify(rotating, BODY, secret=SECRET, now=NOW) == "signature"
    assert verify(rotating, BODY, secret="the-old-secret", now=NOW) == "signature"


def test_wrong_secret_is_refused() -> None:
    message = refused(sign("not-the-secret", BODY, timestamp=NOW))
    assert message.startswith(f"{SIGNATURE_HEADER} does not match the body")
    assert SECRET not in message


def test_tampered_body_is_refused() -> None:
    headers = sign(SECRET, BODY, timestamp=NOW)
    tampered = BODY.replace(b'"urgency": "3"', b'"urgency": "1"')
    assert tampered != BODY
    assert "does not match the body" in refused(headers, tampered)
    assert "does not match the body" in refused(headers, BODY + b" ")


def test_a_changed_timestamp_breaks_the_signature() -> None:
    headers = sign(SECRET, BODY, timestamp=NOW)
    headers[TIMESTAMP_HEADER] = str(NOW + 1)
    assert "does not match the body" in refused(headers)


def test_expired_and_future_timestamps_are_refused() -> None:
    headers = sign(SECRET, BODY, timestamp=NOW - 301)
    assert "301 s old, outside the 300 s replay window" in refused(headers)
    assert verify(sign(SECRET, BODY, timestamp=NOW - 300), BODY, secret=SECRET, now=NOW) == "signature"
    assert "in the future" in refused(sign(SECRET, BODY, timestamp=NOW + 400))
    stale = sign(SECRET, BODY, timestamp=NOW - 1000)
    assert verify(stale, BODY, secret=SECRET, now=NOW, tolerance_s=1800) == "signature"


def test_a_replay_is_the_same_delivery_and_refused_after_the_window() -> None:
    headers = sign(SECRET, BODY, timestamp=NOW)
    connector = ServiceNowConnector()
    first = connector.parse("acme", "", headers, BODY, {})
    connector.verify(headers, BODY, secret=SECRET, now=NOW + 60)  # inside the window: authentic...
    again = connector.parse("acme", "", headers, BODY, {})
    # ...and the same delivery id, which the inbox stores once
    assert [e.delivery_id for e in again.events] == [e.delivery_id for e in first.events]
    assert first.events[0].delivery_id == "46d44a23a9fe19810012d100cca80666:2025-03-01 09:30:12:0:ticket"
    assert "replay window" in refused(headers, now=NOW + 301)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, f"missing {SIGNATURE_HEADER} (with {TIMESTAMP_HEADER}) or {TOKEN_HEADER} header"),
        ({SIGNATURE_HEADER: "v1=" + "A" * 43 + "="}, f"missing {TIMESTAMP_HEADER} header"),
        ({TIMESTAMP_HEADER: str(NOW)}, f"missing {SIGNATURE_HEADER}"),
        ({TIMESTAMP_HEADER: "yesterday", SIGNATURE_HEADER: "v1=x"}, "must be whole unix seconds"),
        ({TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "deadbeef"}, "is not scheme=value"),
        (
            {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "v1=abc"},
            "neither base64 (44 characters) nor 64 hex",
        ),
        ({TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "v2=" + "a" * 64}, "has no v1 signature"),
        ({TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: ",".join(["v1=x"] * 9)}, "at most 8"),
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str], expected: str) -> None:
    assert expected in refused(headers)


def test_header_names_are_case_insensitive_and_duplicates_refused() -> None:
    headers = {k.lower(): v for k, v in sign(SECRET, BODY, timestamp=NOW).items()}
    assert verify(headers, BODY, secret=SECRET, now=NOW) == "signature"
    headers["X-DESKPILOT-TIMESTAMP"] = str(NOW - 5)
    assert "sent more than once" in refused(headers)


def test_token_mode() -> None:
    assert verify({TOKEN_HEADER: SECRET}, BODY, secret=SECRET, now=NOW) == "token"
    assert verify({TOKEN_HEADER: f" {SECRET} "}, BODY, secret=SECRET, now=NOW) == "token"
    message = refused({TOKEN_HEADER: SECRET + "x"})
    assert message.startswith(f"{TOKEN_HEADER} does not match")
    assert SECRET not in message
    assert "replay window" in refused({TOKEN_HEADER: SECRET, TIMESTAMP_HEADER: str(NOW - 900)})
    fresh = {TOKEN_HEADER: SECRET, TIMESTAMP_HEADER: str(NOW - 10)}
    assert verify(fresh, BODY, secret=SECRET, now=NOW) == "token"


def test_a_signature_is_judged_even_when_a_token_comes_with_it() -> None:
    headers = {**sign("wrong", BODY, timestamp=NOW), TOKEN_HEADER: SECRET}
    assert "does not match the body" in refused(headers)


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="secret is empty"):
        verify(sign(SECRET, BODY, timestamp=NOW), BODY, secret="", now=NOW)


def test_the_registered_connector_verifies() -> None:
    connector = get_connector("servicenow")
    assert connector.name == "servicenow"
    connector.verify(sign(SECRET, BODY, timestamp=NOW), BODY, secret=SECRET, now=NOW)
    with pytest.raises(AuthError):
        connector.verify({}, BODY, secret=SECRET, now=NOW)
    record = convert.read_record(BODY)
    assert convert.delivery_key(record) == "46d44a23a9fe19810012d100cca80666:2025-03-01 09:30:12:0"
    assert ServiceNowOptions.from_mapping({}).table == "incident"
