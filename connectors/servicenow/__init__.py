"""The ServiceNow connector: a Business Rule posts signed records in, the Table API routes them.

Inbound protocol and signature: ``verify.py``; payload -> events and action -> Table API
calls: ``convert.py`` (pure); options and the priority table: ``options.py``; HTTP:
``client.py``. Setup, with the Business Rule script to paste: ``docs/connectors/servicenow.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, client_factory, register
from deskpilot.connectors.servicenow import convert, verify
from deskpilot.connectors.servicenow.client import ServiceNowClient
from deskpilot.connectors.servicenow.options import ServiceNowOptions
from deskpilot.connectors.servicenow.verify import sign
from deskpilot.errors import InputDataError

__all__ = ["INFO", "ServiceNowClient", "ServiceNowConnector", "ServiceNowOptions", "sign"]


@dataclass(frozen=True, slots=True)
class ServiceNowConnector:
    """Inbound half: ``POST /webhooks/{tenant}/servicenow`` (no sub-route)."""

    @property
    def name(self) -> str:
        return "servicenow"

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
        verify.verify(headers, body, secret=secret, now=now, tolerance_s=tolerance_s)

    def parse(
        self, tenant: str, route: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]
    ) -> Inbound:
        if route:
            raise InputDataError(
                f"no ServiceNow webhook at servicenow/{route}",
                hint="the Business Rule posts to /webhooks/<tenant>/servicenow",
            )
        return convert.parse(tenant, body, ServiceNowOptions.from_mapping(options))


INFO = ConnectorInfo(
    name="servicenow",
    title="ServiceNow (Business Rule webhook + Table API)",
    webhook="servicenow",
    secrets=(
        'DESKPILOT_WEBHOOK_SECRETS={"<tenant>/servicenow": "<secret shared with the Business Rule>"}; '
        'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "user:password" or "bearer:<oauth token>"}'
    ),
    docs="docs/connectors/servicenow.md",
)

register("servicenow", connector=ServiceNowConnector, client=client_factory(ServiceNowClient), info=INFO)
