"""Slack's request signing: every Events API, slash command and interactivity request.

Slack signs each request with the app's *Signing Secret* (Basic Information -> App
Credentials), as documented at
https://docs.slack.dev/authentication/verifying-requests-from-slack/ :

``X-Slack-Request-Timestamp``
    Unix seconds when Slack sent the request (``1531420618``).
``X-Slack-Signature``
    ``v0=`` + lowercase hex ``HMAC-SHA256(signing_secret, "v0:" + timestamp + ":" + raw body)``,
    over the exact bytes received (JSON for events, ``application/x-www-form-urlencoded``
    for commands and interactivity: never re-encode the parsed form).

A request is refused when the signature does not match (wrong secret, tampered body) or when
``|now - timestamp| > tolerance`` (300 s by default, Slack's own advice), so a captured
request cannot be replayed later. Within the window a replay carries the same ``event_id``
(or ``trigger_id``) and the inbox stores it once. Slack's retries
(``X-Slack-Retry-Num``/``X-Slack-Retry-Reason``) are new, freshly signed requests with the
same ``event_id``: they pass here and are deduplicated the same way.

The HMAC is computed by ``slack_sdk.signature.SignatureVerifier.generate_signature``; the
window is checked here against our own clock (``now``) and tolerance, since the SDK's
``is_valid`` hard-codes five minutes and the wall clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from slack_sdk.signature import SignatureVerifier

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, header
from deskpilot.errors import AuthError, ConfigError

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
RETRY_NUM_HEADER = "X-Slack-Retry-Num"
RETRY_REASON_HEADER = "X-Slack-Retry-Reason"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-fA-F]{64}")
_HINT = "check the app's Signing Secret (Basic Information -> App Credentials) in DESKPILOT_WEBHOOK_SECRETS"


def _verifier(secret: str) -> SignatureVerifier:
    if not secret or not secret.strip():
        raise ConfigError("the Slack signing secret is empty", hint=_HINT)
    return SignatureVerifier(secret)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack would send with ``body`` (for tests and local replays).

    Computed over the raw bytes, so any body can be signed (slack_sdk needs UTF-8 text).
    """
    _verifier(secret)  # the same refusal of an empty secret
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode("utf-8"), b"v0:" + ts.encode("ascii") + b":" + body, hashlib.sha256)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"v0={digest.hexdigest()}"}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise AuthError unless ``body`` carries Slack's valid, current v0 signature.

    The signature is checked before the window, so only a holder of the secret learns that a
    request is merely stale.
    """
    verifier = _verifier(secret)
    timestamp = header(headers, TIMESTAMP_HEADER)
    signature = header(headers, SIGNATURE_HEADER)
    missing = [
        name for name, value in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)) if not value
    ]
    if timestamp is None or signature is None or missing:
        raise AuthError(
            f"missing {' and '.join(missing)} header",
            hint="only Slack's signed requests are accepted here; point the app's Request URLs at this path",
        )
    timestamp, signature = timestamp.strip(), signature.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthError(f"{TIMESTAMP_HEADER} must be whole unix seconds, got {_shown(timestamp)}")
    if not _SIGNATURE.fullmatch(signature):
        raise AuthError(f"{SIGNATURE_HEADER} must be v0=<64 hex digits>, got {_shown(signature)}")
    try:
        body.decode("utf-8")  # the SDK decodes before hashing; Slack only ever sends UTF-8
    except UnicodeDecodeError as exc:
        raise AuthError(f"body is not UTF-8 (byte {exc.start}); it cannot come from Slack") from None
    expected = verifier.generate_signature(timestamp=timestamp, body=body) or ""
    if not hmac.compare_digest(expected, signature.lower()):
        raise AuthError(f"{SIGNATURE_HEADER} does not match the body", hint=_HINT)
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old, outside the {tolerance_s:g} s replay window",
            hint="a replayed or long-delayed request; Slack signs every retry afresh",
        )
    if -age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future, outside the {tolerance_s:g} s window",
            hint="check this server's clock (NTP)",
        )
