"""How ERPNext / Frappe signs a webhook delivery, and how deskpilot checks it.

A Frappe *Webhook* record with **Enable Security** checked and a **Webhook Secret** sends

``X-Frappe-Webhook-Signature``
    ``base64(HMAC-SHA256(webhook_secret, raw_body))``: 44 characters of standard base64 over
    the exact bytes sent (Frappe signs ``json.dumps(data)`` and sends ``json.dumps(data)``).

See https://docs.frappe.io/framework/user/en/guides/integration/webhooks ("Webhook Security")
and ``frappe/integrations/doctype/webhook/webhook.py`` (``get_webhook_headers``).

There is no timestamp, nonce or delivery id in the scheme, so ``now``/``tolerance_s`` do not
apply and no age window is enforced. Replays are harmless instead of refused: the converter
derives each event's delivery id from the document's name and ``modified`` stamp, so the same
signed bytes (a replay, or one of Frappe's own three tries) map to the same delivery id and the
inbox stores them once. Why not refuse an old ``modified``? It is a naive local datetime in the
site's time zone (unknown here), and a legitimate delivery can be late: Frappe sends webhooks
from a background queue that may be backed up or stopped for hours, and an admin may resend a
failed one from the *Webhook Request Log*. Refusing those would lose real tickets; accepting a
replay only re-presents a document version we already stored.

``sign`` builds the header for tests and for senders other than Frappe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from deskpilot.connectors.base import header
from deskpilot.errors import AuthError, ConfigError

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"
DIGEST_BYTES = 32  # SHA-256
_HINT = (
    "in the Webhook record check 'Enable Security' and set 'Webhook Secret' to the tenant's "
    "secret in DESKPILOT_WEBHOOK_SECRETS"
)


def signature(secret: str, body: bytes) -> str:
    """The header value Frappe sends for ``body``: base64 of the HMAC-SHA256 digest."""
    if not secret:
        raise ConfigError("the ERPNext webhook secret is empty", hint="set a long random secret per tenant")
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The headers a Frappe webhook with security enabled sends for ``body``."""
    return {SIGNATURE_HEADER: signature(secret, body), "Content-Type": "application/json"}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 20 else value[:20] + "...")


def _decoded(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(
            f"{SIGNATURE_HEADER} {_shown(value)} is not base64", hint="send base64(HMAC-SHA256(secret, body))"
        ) from None
    if len(raw) != DIGEST_BYTES:
        raise AuthError(
            f"{SIGNATURE_HEADER} decodes to {len(raw)} bytes, not the {DIGEST_BYTES} of an HMAC-SHA256",
            hint="send base64(HMAC-SHA256(secret, body))",
        )
    return raw


def verify(headers: Mapping[str, str], body: bytes, *, secret: str) -> None:
    """Raise AuthError unless ``body`` carries Frappe's signature made with ``secret``."""
    value = header(headers, SIGNATURE_HEADER)
    if value is None or not value.strip():
        raise AuthError(f"missing {SIGNATURE_HEADER} header", hint=_HINT)
    given = _decoded(value.strip())
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest() if secret else b""
    if not secret or not hmac.compare_digest(expected, given):
        raise AuthError(
            f"{SIGNATURE_HEADER} does not match the body",
            hint="the Webhook Secret in ERPNext must equal the tenant's secret, and the body must "
            "reach deskpilot unchanged (no proxy re-encoding it)",
        )
