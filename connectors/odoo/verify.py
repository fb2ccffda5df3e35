"""Odoo webhooks are unsigned: a secret token in the URL is what authenticates them.

Odoo 17-19 send webhooks from an automation rule (:menuselection:`Settings --> Technical -->
Automation Rules`, action *Send Webhook Notification*; documented at
https://www.odoo.com/documentation/17.0/applications/studio/automated_actions.html and, for
the payload, ``ir.actions.server._run_action_webhook`` in ``odoo/addons/base/models/
ir_actions.py``). The action POSTs ``Content-Type: application/json`` with the record's
selected fields plus ``_model``, ``_id`` and ``_action``, with no signature, no timestamp,
no delivery id and no custom headers, once (a one-second timeout, no retries).

So deskpilot gives each tenant a URL that carries a secret token::

    https://deskpilot.example/webhooks/<tenant>/odoo/<token>

The gateway passes the path after ``/webhooks/<tenant>/odoo/`` as ``route``; :func:`verify`
compares it, in constant time, with the tenant's secret (``DESKPILOT_WEBHOOK_SECRETS``,
keyed ``"<tenant>/odoo"`` or ``"<tenant>"``). A missing or wrong token is refused (401) and
the given value is never echoed. While a token is rotated the secret may list several tokens
separated by commas (``"new-token,old-token"``); any one of them is accepted. Use long random
tokens (``python -c "import secrets; print(secrets.token_urlsafe(32))"``): URL-safe, no commas.

What the scheme cannot give, and how deskpilot copes:

* the body is not signed, so whoever holds the token can send any record: keep the token out
  of logs and tickets, and rotate it if it leaks (Odoo shows the URL to its administrators);
* there is no timestamp, so there is no replay window: a replayed delivery is deduplicated
  instead, on ``_model`` + ``_id`` + ``write_date`` (see ``convert.py``);
* headers carry nothing to check, so none are required.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S
from deskpilot.errors import AuthError, ConfigError

MAX_TOKENS = 8
MAX_TOKEN_CHARS = 512
_HINT = "send Odoo's webhook to /webhooks/<tenant>/odoo/<token>, with the tenant's token"


def tokens(secret: str) -> list[str]:
    """The accepted tokens: the secret split on commas (a rotation lists new and old)."""
    found = [part.strip() for part in secret.split(",") if part.strip()]
    if not found:
        raise ConfigError(
            "the Odoo webhook token is empty",
            hint='set DESKPILOT_WEBHOOK_SECRETS=\'{"<tenant>/odoo": "<a long random token>"}\'',
        )
    if len(found) > MAX_TOKENS:
        raise ConfigError(f"the Odoo webhook secret lists {len(found)} tokens; keep at most {MAX_TOKENS}")
    return found


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    route: str = "",
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise AuthError unless ``route`` is one of the tenant's tokens.

    ``headers``, ``body``, ``now`` and ``tolerance_s`` are part of the connector protocol but
    unused: an Odoo delivery has neither a signature nor a timestamp.
    """
    accepted = tokens(secret)
    given = route.strip(" /")
    if not given:
        raise AuthError("missing token in the webhook URL", hint=_HINT)
    if len(given) > MAX_TOKEN_CHARS:
        raise AuthError("the token in the webhook URL is not the tenant's token", hint=_HINT)
    offered = given.encode("utf-8")
    matched = False
    for token in accepted:  # no early exit: the time taken does not tell which token is close
        matched |= hmac.compare_digest(offered, token.encode("utf-8"))
    if not matched:
        raise AuthError("the token in the webhook URL is not the tenant's token", hint=_HINT)
