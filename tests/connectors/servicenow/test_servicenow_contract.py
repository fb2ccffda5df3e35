"""The shared connector contract (deskpilot.connectors.testing), run against the ServiceNow connector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from support.servicenow_standin import ServiceNowStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.servicenow import ServiceNowClient, sign
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action

FIXTURES = Path(__file__).parent / "fixtures"
USER, PASSWORD = "deskpilot.integration", "contract-pw"


class TestServiceNowContract(ConnectorContract):
    name = "servicenow"
    options = MappingProxyType({"integration_user": USER})

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return sign(secret, body, timestamp=int(now)), ""

    def ticket_delivery(self) -> bytes:
        return (FIXTURES / "insert.json").read_bytes()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]]:
        """401 from a wrong password, 404 from a deleted incident, the rest injected."""
        sn = ServiceNowStandin(users={USER: PASSWORD}).start()
        sys_id = sn.add_record(short_description="VPN down")
        password = PASSWORD
        if status == 401:
            password = "wrong"
        elif status == 404:
            sys_id = "0" * 32
        else:
            sn.fail_next(1, status, retry_after)
        client = ServiceNowClient(sn.url, f"{USER}:{password}", timeout=5)
        action = Action(
            "contract",
            "itsm",
            "servicenow",
            "route",
            1,
            sys_id,
            {"group": "287ebd7da9fe198100f92cc8d1d2154e"},
            "contract:ticket:1:itsm",
            {"note": "routed by the contract"},
        )
        return client, action, sn.stop
