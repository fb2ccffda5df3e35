"""X-Frappe-Webhook-Signature: signed the way Frappe signs, refused when anything is off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from erpnext_payloads import SECRET, body, payload

from deskpilot.connectors import get_connector
from deskpilot.connectors.erpnext import ErpnextConnector, sign
from deskpilot.connectors.erpnext.verify import SIGNATURE_HEADER, signature
from deskpilot.errors import AuthError, ConfigError


def frappe_headers(secret: str, data: dict[str, object]) -> dict[str, str]:
    """Exactly Frappe's ``get_webhook_headers`` (webhook.py), independent of our ``sign``."""
    digest = hmac.new(secret.encode("utf8"), json.dumps(data).encode("utf8"), hashlib.sha256).digest()
    return {SIGNATURE_HEADER: base64.b64encode(digest).decode(), "Content-Type": "application/json"}


def refused(headers: dict[str, str], raw: bytes, secret: str = SECRET) -> AuthError:
    with pytest.raises(AuthError) as info:
        ErpnextConnector().verify(headers, raw, secret=secret)
    assert info.value.status == 401
    return info.value


def test_a_delivery_signed_like_frappe_is_accepted() -> None:
    data = payload("issue_after_insert")
    raw = json.dumps(data, default=str).encode()  # what enqueue_webhook puts on the wire
    headers = frappe_headers(SECRET, data)
    ErpnextConnector().verify(headers, raw, secret=SECRET)
    assert headers[SIGNATURE_HEADER] == sign(SECRET, raw)[SIGNATURE_HEADER] == signature(SECRET, raw)
    assert len(headers[SIGNATURE_HEADER]) == 44  # base64 of 32 bytes
    get_connector("erpnext").verify({SIGNATURE_HEADER.lower(): headers[SIGNATURE_HEADER]}, raw, secret=SECRET)


def test_a_known_vector() -> None:
    # base64(HMAC-SHA256("secret", b'{"a": 1}')), computed once with openssl:
    # printf '{"a": 1}' | openssl dgst -sha256 -hmac secret -binary | base64
    assert signature("secret", b'{"a": 1}') == "nvoUoYQQpXpDL78M441LwzM5A2pk5XuMhtoLseEi2XI="


def test_wrong_secret_is_refused() -> None:
    raw = body("issue_after_insert")
    error = refused(sign("another-tenants-secret", raw), raw)
    assert error.message == f"{SIGNATURE_HEADER} does not match the body"
    assert "Webhook Secret" in (error.hint or "")
    assert SECRET not in str(error) and "another-tenants-secret" not in str(error)


def test_tampered_body_is_refused() -> None:
    raw = body("issue_after_insert")
    headers = sign(SECRET, raw)
    tampered = raw.replace(b'"Medium"', b'"Urgent"')
    assert tampered != raw
    assert refused(headers, tampered).message == f"{SIGNATURE_HEADER} does not match the body"
    # re-encoding the same JSON differently (a proxy pretty-printing it) also breaks it
    pretty = json.dumps(json.loads(raw), indent=2).encode()
    refused(headers, pretty)


def test_missing_header_is_refused() -> None:
    raw = body("issue_after_insert")
    assert refused({}, raw).message == f"missing {SIGNATURE_HEADER} header"
    assert refused({"Content-Type": "application/json"}, raw).message == f"missing {SIGNATURE_HEADER} header"
    assert refused({SIGNATURE_HEADER: "  "}, raw).message == f"missing {SIGNATURE_HEADER} header"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", f"{SIGNATURE_HEADER} 'not base64!' is not base64"),
        (
            base64.b64encode(b"short").decode(),
            f"{SIGNATURE_HEADER} decodes to 5 bytes, not the 32 of an HMAC-SHA256",
        ),
        (
            hashlib.sha256(b"x").hexdigest(),
            f"{SIGNATURE_HEADER} decodes to 48 bytes, not the 32 of an HMAC-SHA256",
        ),
    ],
)
def test_malformed_header_is_refused_with_a_precise_message(value: str, message: str) -> None:
    assert refused({SIGNATURE_HEADER: value}, body("issue_after_insert")).message == message


def test_header_sent_twice_with_different_values_is_refused() -> None:
    raw = body("issue_after_insert")
    good = sign(SECRET, raw)[SIGNATURE_HEADER]
    error = refused({SIGNATURE_HEADER: good, SIGNATURE_HEADER.lower(): sign("x", raw)[SIGNATURE_HEADER]}, raw)
    assert "sent more than once" in error.message


def test_empty_secret_refuses_instead_of_accepting_anything() -> None:
    raw = body("issue_after_insert")
    refused(sign(SECRET, raw), raw, secret="")
    with pytest.raises(ConfigError):
        sign("", raw)


def test_no_timestamp_window_an_old_delivery_still_verifies() -> None:
    """Frappe's scheme has no timestamp: ``now``/``tolerance_s`` cannot expire anything.

    A year-late delivery (a resent Webhook Request Log entry) verifies; what stops a replay
    from doing harm is the delivery id (name + modified), tested in the convert and e2e tests.
    """
    raw = body("issue_after_insert", modified="2024-01-01 00:00:00.000000")
    headers = sign(SECRET, raw)
    ErpnextConnector().verify(headers, raw, secret=SECRET, now=4_102_444_800.0, tolerance_s=1)
    ErpnextConnector().verify(headers, raw, secret=SECRET, now=0.0, tolerance_s=1, route="ignored")


def test_replayed_bytes_verify_and_map_to_the_same_delivery_ids() -> None:
    raw = body("issue_on_update_by_agent")
    headers = sign(SECRET, raw)
    connector = ErpnextConnector()
    options = {"api_user": "deskpilot@example.com"}
    first = connector.parse("acme", "", headers, raw, options)
    connector.verify(headers, raw, secret=SECRET)  # the replay is authentic...
    again = connector.parse("acme", "", headers, raw, options)
    assert [e.delivery_id for e in again.events] == [e.delivery_id for e in first.events]  # ...and a no-op
    assert len(first.events) == 3
