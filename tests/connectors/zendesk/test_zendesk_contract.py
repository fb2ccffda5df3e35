"""The shared connector contract, run against the Zendesk connector and its stand-in server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from support.zendesk_standin import ZendeskStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.connectors.zendesk import ZendeskClient, sign
from deskpilot.types import Action

FIXTURES = Path(__file__).parent / "fixtures"


class TestZendeskContract(ConnectorContract):
    name = "zendesk"
    options: Mapping[str, str] = MappingProxyType({"bot_user_id": "9001"})

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return sign(secret, body, timestamp=now), ""

    def ticket_delivery(self) -> bytes:
        return (FIXTURES / "event_ticket_created.json").read_bytes()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]] | None:
        zd = ZendeskStandin().start()
        zd.add_ticket(35436, subject="VPN keeps disconnecting", description="VPN drops.")
        zd.fail_next(1, status, retry_after=retry_after)
        action = Action(
            tenant="contract",
            system="zendesk",
            connector="zendesk",
            kind="route",
            ticket_id=1,
            external_id="35436",
            fields={"group": "360001"},
            idempotency_key="contract:ticket:1:zendesk",
        )
        return ZendeskClient(zd.url, zd.credential, timeout=5), action, zd.stop
