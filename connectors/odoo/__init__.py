"""The Odoo connector (Odoo 17-19): automation-rule webhooks in, ``write`` + internal note out.

Inbound: ``POST /webhooks/{tenant}/odoo/{token}`` from a *Send Webhook Notification* action,
authenticated by the token (``verify.py``), converted by ``convert.py``. Outbound: the JSON-2
API (Odoo 19+) or JSON-RPC ``execute_kw`` (Odoo 17, 18), in ``client.py``. Setup:
``docs/connectors/odoo.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, register
from deskpilot.connectors.odoo import convert, verify
from deskpilot.connectors.odoo.client import OdooClient
from deskpilot.connectors.odoo.options import OdooOptions
from deskpilot.errors import ConfigError

__all__ = ["INFO", "OdooClient", "OdooConnector", "OdooOptions"]


@dataclass(frozen=True, slots=True)
class OdooConnector:
    """Inbound half: the URL token authenticates, the notice becomes a ticket or field changes."""

    @property
    def name(self) -> str:
        return "odoo"

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: str,
        route: str = "",
        now: float | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        verify.verify(headers, body, secret=secret, route=route, now=now, tolerance_s=tolerance_s)

    def parse(
        self, tenant: str, route: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]
    ) -> Inbound:
        """``route`` is the token (already verified); ``options`` the policy's odoo options."""
        return convert.parse(tenant, body, OdooOptions.from_mapping(options))


def _client(
    *,
    url: str,
    token: str | None,
    timeout: float,
    secret: str | None = None,
    options: Mapping[str, str] | None = None,
) -> OdooClient:
    if not token:
        raise ConfigError(
            "no Odoo API key for this system",
            hint="name a credential in the policy (credentials: odoo-acme) and set "
            'DESKPILOT_CONNECTOR_SECRETS=\'{"odoo-acme": "<API key>"}\'',
        )
    return OdooClient(url, token, timeout, options)


INFO = ConnectorInfo(
    name="odoo",
    title="Odoo 17-19 (Helpdesk or any model)",
    webhook="odoo/{token}",
    secrets='DESKPILOT_WEBHOOK_SECRETS={"<tenant>/odoo": "<URL token>"}; '
    'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "<Odoo API key>"}',
    docs="docs/connectors/odoo.md",
)

register("odoo", connector=OdooConnector, client=_client, info=INFO)
