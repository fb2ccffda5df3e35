"""The shared connector contract, run against the ERPNext connector and its stand-in site."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from erpnext_payloads import API_USER, body
from support.erpnext_standin import ErpnextStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.erpnext import ErpnextClient, sign
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action


class TestErpnextContract(ConnectorContract):
    name = "erpnext"
    has_timestamp = False  # Frappe signs no time: retries and replays share a delivery id
    options: Mapping[str, str] = MappingProxyType({"api_user": API_USER, "queue_field": "custom_team"})

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return sign(secret, body), ""

    def ticket_delivery(self) -> bytes:
        return body("issue_after_insert")

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]]:
        site = ErpnextStandin().start()
        name = str(site.add_issue("VPN drops", "<p>x</p>")["name"])
        credential = site.credential
        if status == 401:  # really wrong keys, not an injected answer
            credential = f"{site.api_key}:not-the-secret"
        elif status == 404:  # an Issue that was deleted in ERPNext
            name = "ISS-2025-09999"
        else:
            site.fail_next(1, status=status, retry_after=retry_after)
        client = ErpnextClient(site.url, credential, timeout=5, options=self.options)
        action = Action(
            tenant="contract",
            system="erp",
            connector="erpnext",
            kind="route",
            ticket_id=1,
            external_id=name,
            fields={"priority": "High", "assignee": "agent@example.com"},
            idempotency_key="contract:ticket:1:erp",
            context={"note": "contract"},
        )
        return client, action, site.stop
