"""The shared connector contract, run against the Odoo connector and its stand-in Odoo."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from support.odoo_standin import OdooStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.odoo import OdooClient
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action

KEY = "contract-odoo-api-key"


class TestOdooContract(ConnectorContract):
    name = "odoo"
    has_timestamp = False  # Odoo sends no time: replays share a delivery id (model, id, write_date)
    options: Mapping[str, str] = MappingProxyType({"api_user_id": "7"})

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return {"Content-Type": "application/json"}, secret  # the token is the URL's last segment

    def ticket_delivery(self) -> bytes:
        return (Path(__file__).parent / "fixtures" / "ticket_created.json").read_bytes()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]]:
        odoo = OdooStandin(api_key=KEY, uid=7).start()
        odoo.add("helpdesk.team", 3, name="Network")
        record = odoo.create_ticket("VPN drops", "<p>x</p>")
        key = KEY
        if status == 401:  # really a wrong key, not an injected answer
            key = "not-the-key"
        elif status == 404:  # a ticket that was deleted in Odoo
            record = 999
        else:
            odoo.fail_next(1, status=status, retry_after=retry_after)
        client = OdooClient(odoo.url, key, 5, self.options)
        action = Action(
            tenant="contract",
            system="helpdesk",
            connector="odoo",
            kind="route",
            ticket_id=1,
            external_id=str(record),
            fields={"queue": "3", "priority": "2"},
            idempotency_key="contract:ticket:1:helpdesk",
            context={"note": "contract"},
        )
        return client, action, odoo.stop
