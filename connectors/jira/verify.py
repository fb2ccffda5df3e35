"""Jira Cloud webhook authentication: ``X-Hub-Signature`` plus a freshness check.

Scheme (https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks):
a webhook registered with a *Secret* (Jira settings > System > WebHooks) is delivered with

``X-Hub-Signature``
    ``sha256=<hex>`` (WebSub ``method=signature``), where ``hex`` is
    ``HMAC-SHA256(secret, raw_body)`` in hexadecimal, over the exact bytes received.
``X-Atlassian-Webhook-Identifier``
    Unique per delivery within the site and the same on Jira's retries: the inbox
    deduplicates on it (see ``convert.delivery_id``). It is not signed.

Jira signs no timestamp, so replay protection has two parts:

1. the inbox refuses a second delivery with the same identifier (Jira's own retries);
2. the signed body's ``timestamp`` (milliseconds since the epoch, the time of the event) must
   lie within ``tolerance_s`` of now, in either direction. A captured delivery replayed later
   under a new identifier is refused once it is older than the window. Jira retries keep
   the original body, so a retry that comes after the window is refused too, and so are
   *Secondary*-flow events (bulk changes), which Jira may deliver up to 15 minutes late:
   raise ``DESKPILOT_WEBHOOK_TOLERANCE_S`` (e.g. 1800) if that matters more to you than a
   shorter replay window.

The signature is checked before the timestamp, so only a holder of the secret learns that a
delivery is merely stale. ``sign`` builds the headers for tests and for local replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, header
from deskpilot.errors import AuthError, ConfigError

SIGNATURE_HEADER = "X-Hub-Signature"
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
METHOD = "sha256"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``, as Jira computes it."""
    if not secret:
        raise ConfigError(
            "the Jira webhook secret is empty",
            hint='set DESKPILOT_WEBHOOK_SECRETS={"<tenant>/jira": "<the secret typed into Jira>"}',
        )
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, identifier: str | None = None) -> dict[str, str]:
    """The headers Jira sends with ``body``: signature, identifier (fresh unless given), flow."""
    return {
        SIGNATURE_HEADER: f"{METHOD}={signature(secret, body)}",
        IDENTIFIER_HEADER: identifier if identifier is not None else str(uuid.uuid4()),
        "X-Atlassian-Webhook-Flow": "Primary",
        "Content-Type": "application/json; charset=utf-8",
    }


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _digest(value: str) -> str:
    method, sep, digest = value.strip().partition("=")
    if not sep:
        raise AuthError(
            f"{SIGNATURE_HEADER} {_shown(value)} is not method=signature; Jira sends sha256=<64 hex digits>"
        )
    if method.strip().lower() != METHOD:
        raise AuthError(
            f"{SIGNATURE_HEADER} uses method {_shown(method.strip())}; only sha256 is accepted",
        )
    digest = digest.strip()
    if len(digest) != 64 or not set(digest) <= _HEX_DIGITS:
        raise AuthError(f"{SIGNATURE_HEADER} sha256 value {_shown(digest)} is not 64 hex digits")
    return digest.lower()


def event_timestamp_ms(body: bytes) -> int | None:
    """The payload's ``timestamp`` (ms); None when the body is not a JSON object (parse says why).

    AuthError when it is an object without a usable ``timestamp``: freshness cannot be checked.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AuthError(
            "the payload has no numeric 'timestamp' (ms since the epoch): its freshness cannot be checked",
            hint="Jira issue webhooks always carry one; is this delivery really from Jira?",
        )
    return value


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise AuthError unless ``body`` is signed with ``secret`` and its event time is current."""
    given = header(headers, SIGNATURE_HEADER)
    if not given:
        raise AuthError(
            f"missing {SIGNATURE_HEADER} header",
            hint="give the Jira webhook a Secret (Jira settings > System > WebHooks > Edit)",
        )
    expected = signature(secret, body)
    if not hmac.compare_digest(expected, _digest(given)):
        raise AuthError(
            f"{SIGNATURE_HEADER} does not match the body",
            hint="the secret in DESKPILOT_WEBHOOK_SECRETS must be the one typed into the Jira webhook",
        )
    stamp = event_timestamp_ms(body)
    if stamp is None:
        return
    age = (time.time() if now is None else now) - stamp / 1000.0
    if age > tolerance_s:
        raise AuthError(
            f"payload timestamp is {age:.0f} s old, outside the {tolerance_s:g} s replay window",
            hint="a replayed or very late delivery; raise DESKPILOT_WEBHOOK_TOLERANCE_S for late retries",
        )
    if -age > tolerance_s:
        raise AuthError(
            f"payload timestamp is {-age:.0f} s in the future, outside the {tolerance_s:g} s window",
            hint="check this server's clock (NTP)",
        )
