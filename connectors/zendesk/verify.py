"""Zendesk webhook signatures: how deskpilot knows a delivery really comes from Zendesk.

Scheme (https://developer.zendesk.com/documentation/webhooks/verifying/): every webhook
request carries two headers,

``X-Zendesk-Webhook-Signature-Timestamp``
    When Zendesk signed the request, ISO 8601 in UTC (``2021-07-25T10:00:00Z``).
``X-Zendesk-Webhook-Signature``
    ``base64(HMAC-SHA256(signing_secret, timestamp + raw_body))``: the timestamp string exactly
    as sent, immediately followed by the raw body bytes, no separator. The key is the webhook's
    signing secret as shown in Admin Center (used as its UTF-8 text, not base64-decoded).

An older revision of that page wrote the concatenation the other way round ("(BODY)(TIMESTAMP)")
and its sample vector matches that order; the current page, Zendesk's own Node example and
what Zendesk sends use ``timestamp + body``, which is what is checked here.

Replay window: a delivery is refused when its timestamp is more than ``tolerance_s`` (300 s by
default, ``DESKPILOT_WEBHOOK_TOLERANCE_S``) away from now, in either direction. Zendesk signs
each retry afresh, so a retried delivery passes; within the window a replayed copy is stored
once because its delivery id (the event ``id``, or ticket id + ``updated_at`` for a trigger
body, see ``convert.py``) is the same. The signature is checked before the window, so only a
holder of the secret learns that a delivery is merely stale.

``sign`` builds the headers the way Zendesk does, for tests and for replaying a captured body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, header
from deskpilot.errors import AuthError, ConfigError

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
DOCS = "https://developer.zendesk.com/documentation/webhooks/verifying/"
MAX_TIMESTAMP_CHARS = 40
DIGEST_BYTES = 32


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``base64(HMAC-SHA256(secret, timestamp + body))``, as Zendesk computes it."""
    if not secret:
        raise ConfigError(
            "the Zendesk webhook signing secret is empty",
            hint="copy it from Admin Center > Apps and integrations > Webhooks > (webhook) > Reveal secret",
        )
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def format_timestamp(when: float) -> str:
    """Unix seconds -> Zendesk's header form, ``2021-07-25T10:00:00Z``."""
    return datetime.fromtimestamp(int(when), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, body: bytes, *, timestamp: float | str | None = None) -> dict[str, str]:
    """Both headers for ``body``, signed now unless ``timestamp`` (unix seconds or ISO text) is given."""
    if timestamp is None:
        stamp = format_timestamp(time.time())
    elif isinstance(timestamp, str):
        stamp = timestamp
    else:
        stamp = format_timestamp(timestamp)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body)}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def parse_timestamp(value: str) -> float:
    """ISO 8601 with a zone (``Z`` or ``+00:00``) -> unix seconds; AuthError naming the problem."""
    if len(value) > MAX_TIMESTAMP_CHARS:
        raise AuthError(f"{TIMESTAMP_HEADER} is {len(value)} characters; Zendesk sends ISO 8601 time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise AuthError(
            f"{TIMESTAMP_HEADER} {_shown(value)} is not an ISO 8601 time (e.g. 2021-07-25T10:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise AuthError(f"{TIMESTAMP_HEADER} {_shown(value)} has no time zone; Zendesk sends UTC with 'Z'")
    return when.timestamp()


def _digest(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != DIGEST_BYTES:
        raise AuthError(
            f"{SIGNATURE_HEADER} {_shown(value)} is not a base64 HMAC-SHA256 digest (44 characters)",
            hint=f"see {DOCS}",
        )
    return raw


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise AuthError unless ``body`` carries a valid, current Zendesk signature made with ``secret``."""
    timestamp = header(headers, TIMESTAMP_HEADER)
    signed = header(headers, SIGNATURE_HEADER)
    pairs = ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signed))
    missing = [name for name, value in pairs if not value]
    if timestamp is None or signed is None or missing:
        raise AuthError(
            f"missing {' and '.join(missing)} header",
            hint="deliveries come from a Zendesk webhook (Admin Center > Apps and integrations > Webhooks)",
        )
    timestamp = timestamp.strip()
    when = parse_timestamp(timestamp)
    given = _digest(signed)
    expected = base64.b64decode(signature(secret, timestamp, body))
    if not hmac.compare_digest(expected, given):
        raise AuthError(
            f"{SIGNATURE_HEADER} does not match the body",
            hint="check that DESKPILOT_WEBHOOK_SECRETS holds this webhook's signing secret "
            "(a webhook's 'Test' button may sign with Zendesk's test secret instead)",
        )
    age = (time.time() if now is None else now) - when
    if age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old, outside the {tolerance_s:g} s replay window",
            hint="a captured delivery cannot be replayed; Zendesk re-signs its own retries",
        )
    if -age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future, outside the {tolerance_s:g} s window",
            hint="check this server's clock (NTP)",
        )
