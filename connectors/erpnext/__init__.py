"""The ERPNext / Frappe connector: Issue webhooks in, Issue updates, assignments and comments out.

Inbound scheme in ``verify.py``, payloads and the REST mapping in ``convert.py``, HTTP in
``client.py``; the setup page is ``docs/connectors/erpnext.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, client_factory, register
from deskpilot.connectors.erpnext import convert, verify
from deskpilot.connectors.erpnext.client import ErpnextClient
from deskpilot.connectors.erpnext.verify import sign

__all__ = ["INFO", "ErpnextClient", "ErpnextConnector", "sign"]


@dataclass(frozen=True, slots=True)
class ErpnextConnector:
    """Inbound half: ``X-Frappe-Webhook-Signature`` check, then Issue/ToDo payload -> events."""

    @property
    def name(self) -> str:
        return convert.SOURCE

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
        """Frappe signs without a timestamp: ``now``/``tolerance_s`` do not apply (see verify.py)."""
        verify.verify(headers, body, secret=secret)

    def parse(
        self, tenant: str, route: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]
    ) -> Inbound:
        """``route`` is empty (``/webhooks/{tenant}/erpnext``); ``options`` are the policy's."""
        return convert.parse(tenant, body, options)


INFO = ConnectorInfo(
    name="erpnext",
    title="ERPNext / Frappe (Issue doctype)",
    webhook="erpnext",
    secrets='DESKPILOT_WEBHOOK_SECRETS={"<tenant>/erpnext": "<Webhook Secret>"}; '
    'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "<api_key>:<api_secret>"}; '
    "policy options.api_user = the API key's user",
    docs="docs/connectors/erpnext.md",
)

register("erpnext", connector=ErpnextConnector, client=client_factory(ErpnextClient), info=INFO)
