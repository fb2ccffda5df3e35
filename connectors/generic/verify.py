"""The generic webhook protocol: how any system signs a delivery to deskpilot.

Endpoint: ``POST /webhooks/{tenant}/generic/{source}`` with a JSON body (see ``convert.py``)
and three headers:

``X-Deskpilot-Timestamp``
    The time of signing, whole unix seconds (``1700000000``).
``X-Deskpilot-Signature``
    ``v1=<hex>``, where ``hex = HMAC-SHA256(secret, b"v1:" + timestamp + b":" + raw_body)``
    in lowercase hexadecimal (64 digits), over the exact bytes sent. Several signatures may be
    comma-separated (``v1=<hex>,v1=<hex>``) while a secret is rotated; one match is enough.
    Entries with another scheme than ``v1`` are ignored, so a ``v2`` can be added later.
``X-Deskpilot-Delivery``
    The sender's unique id for this delivery, 1-200 printable ASCII characters. A retry of the
    same delivery reuses it; deskpilot stores a delivery once and answers retries the same.

Replay window: a delivery is refused when ``|now - timestamp| > tolerance`` (default 300 s,
``DESKPILOT_WEBHOOK_TOLERANCE_S``); a sender re-signs each retry with the current time. The
delivery id is not signed (as with Stripe and Slack): within the window, deduplication rests
on it, so a sender that needs a stronger guarantee also puts its own id in the signed body.

Example with a shell::

    ts=$(date +%s); body='{"type":"ticket","ticket":{"subject":"VPN down","body":"..."}}'
    sig=$(printf 'v1:%s:%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    curl -H "X-Deskpilot-Timestamp: $ts" -H "X-Deskpilot-Signature: v1=$sig" \\
         -H "X-Deskpilot-Delivery: $(uuidgen)" -H 'Content-Type: application/json' \\
         --data "$body" https://deskpilot.example/webhooks/acme/generic/shop

``sign`` below builds these headers for Python senders and for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Mapping

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, header
from deskpilot.errors import AuthError, ConfigError, InputDataError

TIMESTAMP_HEADER = "X-Deskpilot-Timestamp"
SIGNATURE_HEADER = "X-Deskpilot-Signature"
DELIVERY_HEADER = "X-Deskpilot-Delivery"
SCHEME = "v1"
MAX_SIGNATURES = 8

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_DELIVERY = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,198}[\x21-\x7e])?")


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The v1 signature (hex) of ``body`` sent at ``timestamp``."""
    if not secret:
        raise ConfigError("the webhook secret is empty", hint="set a long random secret per tenant")
    message = b"v1:" + str(timestamp).encode("ascii") + b":" + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(
    secret: str, body: bytes, *, timestamp: int | None = None, delivery_id: str | None = None
) -> dict[str, str]:
    """All three headers for ``body``: now (unless ``timestamp``) and a fresh id (unless given)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, ts, body)}",
        DELIVERY_HEADER: delivery_id if delivery_id is not None else uuid.uuid4().hex,
    }


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _candidates(value: str) -> list[str]:
    entries = [entry.strip() for entry in value.split(",")]
    if len(entries) > MAX_SIGNATURES:
        raise AuthError(f"{SIGNATURE_HEADER} holds {len(entries)} signatures; send at most {MAX_SIGNATURES}")
    found: list[str] = []
    for entry in entries:
        scheme, sep, digest = entry.partition("=")
        if not sep:
            raise AuthError(
                f"{SIGNATURE_HEADER} entry {_shown(entry)} is not scheme=hex; send v1=<64 hex digits>"
            )
        if scheme.strip() != SCHEME:
            continue
        digest = digest.strip()
        if not _HEX.fullmatch(digest):
            raise AuthError(
                f"{SIGNATURE_HEADER} v1 value {_shown(digest)} is not 64 hex digits (HMAC-SHA256)"
            )
        found.append(digest.lower())
    if not found:
        raise AuthError(f"{SIGNATURE_HEADER} has no v1 signature; send v1=<64 hex digits>")
    return found


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise AuthError unless ``body`` carries a valid, current v1 signature made with ``secret``.

    The signature is checked before the window, so only a holder of the secret learns that a
    delivery is merely stale.
    """
    timestamp = header(headers, TIMESTAMP_HEADER)
    signed = header(headers, SIGNATURE_HEADER)
    missing = [
        name for name, value in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signed)) if not value
    ]
    if timestamp is None or signed is None or missing:
        raise AuthError(f"missing {' and '.join(missing)} header", hint="see the generic webhook protocol")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthError(
            f"{TIMESTAMP_HEADER} must be whole unix seconds (e.g. 1700000000), got {_shown(timestamp)}"
        )
    expected = signature(secret, timestamp, body)
    matched = False
    for candidate in _candidates(signed):
        matched |= hmac.compare_digest(expected, candidate)  # no early exit: constant time per entry
    if not matched:
        raise AuthError(
            f"{SIGNATURE_HEADER} does not match the body",
            hint='sign b"v1:" + timestamp + b":" + raw body with HMAC-SHA256 and the tenant\'s secret',
        )
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old, outside the {tolerance_s:g} s replay window",
            hint="sign every delivery, retries included, with the current time",
        )
    if -age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future, outside the {tolerance_s:g} s window",
            hint="check the sender's clock (NTP)",
        )


def delivery_id(headers: Mapping[str, str]) -> str:
    """The ``X-Deskpilot-Delivery`` id; InputDataError when missing or malformed."""
    value = header(headers, DELIVERY_HEADER)
    if value is None or value == "":
        raise InputDataError(
            f"missing {DELIVERY_HEADER} header",
            hint="send a unique id per delivery and reuse it when retrying the same delivery",
        )
    if not _DELIVERY.fullmatch(value):
        raise InputDataError(
            f"{DELIVERY_HEADER} {_shown(value)} must be 1-200 printable ASCII characters "
            "without leading or trailing spaces"
        )
    return value
