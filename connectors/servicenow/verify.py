"""ServiceNow webhook authentication: what the Business Rule signs, and how deskpilot checks it.

ServiceNow has no outbound webhook signing of its own, so deskpilot defines the scheme and the
Business Rule in ``docs/connectors/servicenow.md`` implements it with the platform's own
scripting APIs. ``POST /webhooks/{tenant}/servicenow`` over HTTPS, with a per-tenant shared
secret (``DESKPILOT_WEBHOOK_SECRETS='{"<tenant>/servicenow": "..."}'``), authenticated in one
of two ways:

1. **Signed (recommended)**

   ``X-Deskpilot-Timestamp``
       The time of signing, whole unix seconds (``1700000000``).
   ``X-Deskpilot-Signature``
       ``v1=<base64(HMAC-SHA256(secret, "v1:" + timestamp + ":" + raw_body))>``.
       Base64 because that is what the platform computes:
       ``new GlideCertificateEncryption().generateMac(GlideStringUtil.base64Encode(secret),
       "HmacSHA256", data)`` takes the key base64-encoded and returns the MAC in base64
       (https://www.servicenow.com/docs/r/api-reference/server-api-reference/c_GlideCertificateEncryptionAPI.html).
       The same MAC as 64 hex digits is accepted too (``openssl dgst -sha256 -hmac``), and
       several comma-separated ``v1=`` entries while a secret is rotated (one match is enough).
       The script escapes every non-ASCII character of the JSON as ``\\uXXXX``, so the string
       it signs and the bytes it sends are the same whatever charset the instance uses.

   A delivery is refused when ``|now - timestamp| > tolerance`` (300 s by default,
   ``DESKPILOT_WEBHOOK_TOLERANCE_S``).

2. **Shared token** (for instances whose scripts may not call GlideCertificateEncryption)

   ``X-Deskpilot-Token``
       The secret itself, compared in constant time. It proves nothing about the body or its
       age, so it is only as safe as the channel: HTTPS only (the endpoint must never be
       plain http), and a captured request can be replayed as long as the secret is valid.
       An ``X-Deskpilot-Timestamp`` sent with it is checked against the window (to refuse
       deliveries that sat in the ECC queue too long), but an attacker could change it.

Replays: the delivery id is derived from the signed body (``sys_id`` + ``sys_updated_on`` +
``sys_mod_count``, see ``convert.delivery_key``), so the same bytes sent again are the same
delivery and the inbox stores them once; a replay after the window fails the timestamp check.
The signature is checked before the window, so only a holder of the secret learns that a
delivery is merely stale. ``sign`` builds the headers for Python senders and for tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, header
from deskpilot.errors import AuthError, ConfigError

TIMESTAMP_HEADER = "X-Deskpilot-Timestamp"
SIGNATURE_HEADER = "X-Deskpilot-Signature"
TOKEN_HEADER = "X-Deskpilot-Token"
SCHEME = "v1"
MAX_SIGNATURES = 8

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{43}=")
_HINT = 'sign "v1:" + timestamp + ":" + raw body with HMAC-SHA256 and the tenant\'s ServiceNow secret'


def _key(secret: str) -> bytes:
    if not secret:
        raise ConfigError(
            "the ServiceNow webhook secret is empty",
            hint='set DESKPILOT_WEBHOOK_SECRETS={"<tenant>/servicenow": "<a long random secret>"}',
        )
    return secret.encode("utf-8")


def mac(secret: str, timestamp: int | str, body: bytes) -> bytes:
    """The raw HMAC-SHA256 of ``body`` sent at ``timestamp`` (32 bytes)."""
    message = b"v1:" + str(timestamp).encode("ascii") + b":" + body
    return hmac.new(_key(secret), message, hashlib.sha256).digest()


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The v1 signature as the Business Rule sends it: base64, 44 characters."""
    return base64.b64encode(mac(secret, timestamp, body)).decode("ascii")


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers the Business Rule sends with ``body``, signed now unless ``timestamp``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: f"{SCHEME}={signature(secret, ts, body)}"}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _candidates(value: str) -> list[bytes]:
    """The v1 MACs in a signature header, decoded from base64 or hex."""
    entries = [entry.strip() for entry in value.split(",")]
    if len(entries) > MAX_SIGNATURES:
        raise AuthError(f"{SIGNATURE_HEADER} holds {len(entries)} signatures; send at most {MAX_SIGNATURES}")
    found: list[bytes] = []
    for entry in entries:
        scheme, sep, digest = entry.partition("=")
        if not sep:
            raise AuthError(
                f"{SIGNATURE_HEADER} entry {_shown(entry)} is not scheme=value; send v1=<base64 HMAC-SHA256>"
            )
        if scheme.strip() != SCHEME:
            continue  # a later scheme (v2) is not ours to judge
        digest = digest.strip()
        try:
            if _BASE64.fullmatch(digest):
                found.append(base64.b64decode(digest, validate=True))
                continue
            if _HEX.fullmatch(digest):
                found.append(bytes.fromhex(digest))
                continue
        except (binascii.Error, ValueError):
            pass
        raise AuthError(
            f"{SIGNATURE_HEADER} v1 value {_shown(digest)} is neither base64 (44 characters) nor 64 hex "
            "digits of an HMAC-SHA256"
        )
    if not found:
        raise AuthError(f"{SIGNATURE_HEADER} has no v1 signature; send v1=<base64 HMAC-SHA256>")
    return found


def _check_window(timestamp: str, now: float | None, tolerance_s: float) -> None:
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {age:.0f} s old, outside the {tolerance_s:g} s replay window",
            hint="the Business Rule must sign at sending time; check the instance's ECC queue backlog",
        )
    if -age > tolerance_s:
        raise AuthError(
            f"{TIMESTAMP_HEADER} is {-age:.0f} s in the future, outside the {tolerance_s:g} s window",
            hint="check the clocks of the instance and of deskpilot (NTP)",
        )


def _timestamp(value: str) -> str:
    value = value.strip()
    if not _TIMESTAMP.fullmatch(value):
        raise AuthError(
            f"{TIMESTAMP_HEADER} must be whole unix seconds (e.g. 1700000000), got {_shown(value)}"
        )
    return value


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """Raise AuthError unless the delivery is authentic; returns how: ``"signature"`` or ``"token"``.

    With both headers the signature decides (the token is not looked at).
    """
    key = _key(secret)
    signed = header(headers, SIGNATURE_HEADER)
    token = header(headers, TOKEN_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if signed:
        if not timestamp:
            raise AuthError(
                f"missing {TIMESTAMP_HEADER} header; a signed delivery needs the time it was signed"
            )
        timestamp = _timestamp(timestamp)
        expected = mac(secret, timestamp, body)
        matched = False
        for candidate in _candidates(signed):
            matched |= hmac.compare_digest(expected, candidate)  # no early exit
        if not matched:
            raise AuthError(f"{SIGNATURE_HEADER} does not match the body", hint=_HINT)
        _check_window(timestamp, now, tolerance_s)
        return "signature"
    if token:
        # digests of equal length: the comparison time says nothing about the secret's length
        given = hashlib.sha256(token.strip().encode("utf-8")).digest()
        if not hmac.compare_digest(given, hashlib.sha256(key).digest()):
            raise AuthError(
                f"{TOKEN_HEADER} does not match the tenant's ServiceNow secret",
                hint="the REST message must send the same secret as DESKPILOT_WEBHOOK_SECRETS",
            )
        if timestamp:
            _check_window(_timestamp(timestamp), now, tolerance_s)
        return "token"
    raise AuthError(
        f"missing {SIGNATURE_HEADER} (with {TIMESTAMP_HEADER}) or {TOKEN_HEADER} header",
        hint="paste the Business Rule from docs/connectors/servicenow.md, which signs every delivery",
    )
