"""Signed generic webhooks: what passes, and the exact reason each bad delivery is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.generic.verify import delivery_id, sign, signature, verify
from deskpilot.errors import AuthError, ConfigError, InputDataError

SECRET = "s3cret-for-acme"
NOW = 1_700_000_000
BODY = b'{"type":"ticket","ticket":{"subject":"VPN down","body":"since 9am"}}'


def signed(body: bytes = BODY, *, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    return sign(secret, body, timestamp=timestamp, delivery_id="d-1")


def refused(headers: dict[str, str], body: bytes = BODY, *, secret: str = SECRET, now: float = NOW) -> str:
    with pytest.raises(AuthError) as info:
        verify(headers, body, secret=secret, now=now)
    assert info.value.status == 401
    return str(info.value)


def test_signature_is_hmac_sha256_over_v1_timestamp_and_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), b"v1:1700000000:" + BODY, hashlib.sha256).hexdigest()
    headers = signed()
    assert headers == {
        "X-Deskpilot-Timestamp": "1700000000",
        "X-Deskpilot-Signature": f"v1={expected}",
        "X-Deskpilot-Delivery": "d-1",
    }
    assert signature(SECRET, NOW, BODY) == expected


def test_valid_signature_passes_and_headers_are_case_insensitive() -> None:
    verify(signed(), BODY, secret=SECRET, now=NOW)
    lowered = {k.lower(): v for k, v in signed().items()}
    verify(lowered, BODY, secret=SECRET, now=NOW + 300)  # the window's edge is inside
    get_connector("generic").verify(signed(), BODY, secret=SECRET, now=NOW)


def test_sign_defaults_to_now_and_a_fresh_delivery_id() -> None:
    first, second = sign(SECRET, BODY), sign(SECRET, BODY)
    verify(first, BODY, secret=SECRET)
    assert first["X-Deskpilot-Delivery"] != second["X-Deskpilot-Delivery"]


def test_tampered_body_and_wrong_secret_fail_as_a_mismatch() -> None:
    message = refused(signed(), BODY.replace(b"VPN", b"VPM"))
    assert message.startswith("X-Deskpilot-Signature does not match the body")
    assert refused(signed(secret="other-secret")) == message


def test_missing_headers_are_named() -> None:
    headers = signed()
    assert refused({}).startswith("missing X-Deskpilot-Timestamp and X-Deskpilot-Signature header")
    no_sig = {k: v for k, v in headers.items() if k != "X-Deskpilot-Signature"}
    assert refused(no_sig).startswith("missing X-Deskpilot-Signature header")
    no_ts = {k: v for k, v in headers.items() if k != "X-Deskpilot-Timestamp"}
    assert refused(no_ts).startswith("missing X-Deskpilot-Timestamp header")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("X-Deskpilot-Timestamp", "1700000000.5", "X-Deskpilot-Timestamp must be whole unix seconds"),
        ("X-Deskpilot-Timestamp", "yesterday", "X-Deskpilot-Timestamp must be whole unix seconds"),
        ("X-Deskpilot-Signature", "abc123", "X-Deskpilot-Signature entry 'abc123' is not scheme=hex"),
        ("X-Deskpilot-Signature", "v1=xyz", "X-Deskpilot-Signature v1 value 'xyz' is not 64 hex digits"),
        ("X-Deskpilot-Signature", "v0=" + "a" * 64, "X-Deskpilot-Signature has no v1 signature"),
        (
            "X-Deskpilot-Signature",
            ",".join(["v1=" + "a" * 64] * 9),
            "X-Deskpilot-Signature holds 9 signatures; send at most 8",
        ),
    ],
)
def test_malformed_headers_say_what_is_wrong(name: str, value: str, expected: str) -> None:
    assert refused({**signed(), name: value}).startswith(expected)


def test_expired_and_future_timestamps_fail_with_distinct_messages() -> None:
    old = refused(signed(timestamp=NOW - 301))
    assert old.startswith("X-Deskpilot-Timestamp is 301 s old, outside the 300 s replay window")
    future = refused(signed(timestamp=NOW + 301))
    assert future.startswith("X-Deskpilot-Timestamp is 301 s in the future, outside the 300 s window")
    verify(signed(timestamp=NOW - 301), BODY, secret=SECRET, now=NOW, tolerance_s=600)


def test_stale_delivery_with_a_bad_signature_reports_the_signature() -> None:
    """Only a holder of the secret learns that a delivery is merely stale."""
    assert "does not match" in refused(signed(secret="wrong", timestamp=NOW - 1000))


def test_rotation_any_of_several_signatures_is_enough() -> None:
    old = signed(secret="old-secret")["X-Deskpilot-Signature"]
    new = signed(secret="new-secret")["X-Deskpilot-Signature"]
    headers = {**signed(), "X-Deskpilot-Signature": f"{old}, {new}"}
    verify(headers, BODY, secret="new-secret", now=NOW)
    verify(headers, BODY, secret="old-secret", now=NOW)
    assert "does not match" in refused(headers, secret="third-secret")
    future_scheme = {**signed(), "X-Deskpilot-Signature": "v2=zz," + signed()["X-Deskpilot-Signature"]}
    verify(future_scheme, BODY, secret=SECRET, now=NOW)
    upper = {
        **signed(),
        "X-Deskpilot-Signature": signed()["X-Deskpilot-Signature"].upper().replace("V1", "v1"),
    }
    verify(upper, BODY, secret=SECRET, now=NOW)


def test_duplicate_header_with_different_values_is_refused() -> None:
    class Raw(dict[str, str]):
        def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
            return [("x-deskpilot-timestamp", "1"), ("X-Deskpilot-Timestamp", "2")]

    assert "sent more than once" in refused(Raw())


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module verify.py calls into
    good = signed()["X-Deskpilot-Signature"]
    verify({**signed(), "X-Deskpilot-Signature": f"{good},v1={'b' * 64}"}, BODY, secret=SECRET, now=NOW)
    assert len(calls) == 2  # every candidate compared, no early exit after the match
    assert calls[0] == (good.removeprefix("v1="), good.removeprefix("v1="))


def test_empty_secret_is_a_config_error_not_a_pass() -> None:
    with pytest.raises(ConfigError, match="webhook secret is empty"):
        verify(signed(), BODY, secret="", now=NOW)


def test_delivery_id_is_required_and_bounded() -> None:
    assert delivery_id({"x-deskpilot-delivery": "evt_123"}) == "evt_123"
    assert delivery_id({"X-Deskpilot-Delivery": "a" * 200}) == "a" * 200
    with pytest.raises(InputDataError, match="missing X-Deskpilot-Delivery header"):
        delivery_id({})
    for bad in ("a" * 201, " padded", "tab\there", "é"):
        with pytest.raises(InputDataError, match="must be 1-200 printable ASCII characters"):
            delivery_id({"X-Deskpilot-Delivery": bad})
