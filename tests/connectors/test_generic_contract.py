"""The generic connector passes the contract every connector must pass."""

from __future__ import annotations

import json
from collections.abc import Callable

from support.helpdesk_standin import HelpdeskStandin

from deskpilot.connectors.base import ActionClient, action_client
from deskpilot.connectors.generic import sign
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action


class TestGenericContract(ConnectorContract):
    name = "generic"
    source = "shop"  # /webhooks/{tenant}/generic/{source}

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return sign(secret, body, timestamp=int(now), delivery_id="dlv-contract"), "shop"

    def ticket_delivery(self) -> bytes:
        ticket = {"subject": "Invoice wrong", "body": "please fix", "external_id": "S-1"}
        return json.dumps({"type": "ticket", "ticket": ticket}).encode()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]]:
        desk = HelpdeskStandin(token="t").start()
        desk.fail_next(1, status=status, retry_after=retry_after)
        client = action_client("generic", url=desk.url, token="t", timeout=2)
        action = Action("acme", "helpdesk", "generic", "route", 1, "T-1", {"queue": "b"}, "k-1")
        return client, action, desk.stop
