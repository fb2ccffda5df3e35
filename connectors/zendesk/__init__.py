"""The Zendesk connector: signed webhooks in, ticket updates with a private note out.

``verify.py`` documents the signature, ``convert.py`` the accepted bodies (event subscriptions
and deskpilot's trigger template) and the action mapping, ``client.py`` the REST calls. Setup:
``docs/connectors/zendesk.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, client_factory, register
from deskpilot.connectors.zendesk import convert, verify
from deskpilot.connectors.zendesk.client import ZendeskClient
from deskpilot.connectors.zendesk.verify import sign
from deskpilot.errors import InputDataError

__all__ = ["INFO", "ZendeskClient", "ZendeskConnector", "sign"]


@dataclass(frozen=True, slots=True)
class ZendeskConnector:
    """Inbound half: ``POST /webhooks/{tenant}/zendesk`` (no route after it)."""

    @property
    def name(self) -> str:
        return "zendesk"

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
        if route.strip("/"):
            raise InputDataError(
                f"no Zendesk endpoint at zendesk/{route}",
                hint=f"point the webhook at /webhooks/{tenant}/zendesk",
            )
        return convert.parse(tenant, body, options)


INFO = ConnectorInfo(
    name="zendesk",
    title="Zendesk Support",
    webhook="zendesk",
    secrets=(
        'DESKPILOT_WEBHOOK_SECRETS={"<tenant>/zendesk": "<webhook signing secret>"}; '
        'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "<agent email>/token:<api token>"}'
    ),
    docs="docs/connectors/zendesk.md",
)

register("zendesk", connector=ZendeskConnector, client=client_factory(ZendeskClient), info=INFO)
