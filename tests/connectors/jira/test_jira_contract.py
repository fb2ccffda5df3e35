"""The shared connector contract, run against the Jira connector and its stand-in site."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from support.jira_standin import JiraStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.jira import JiraClient, sign
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action

FIXTURE = Path(__file__).parent / "fixtures" / "issue_created.json"


class TestJiraContract(ConnectorContract):
    name = "jira"
    has_timestamp = False  # Jira signs the body only; the body's own timestamp is checked instead
    options = MappingProxyType({"bot_account_id": "5b10ac8d82e05b22cc7d4ef5"})

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        # Jira re-sends a delivery with the same identifier: derive it from the body
        identifier = "contract-" + hashlib.sha256(body).hexdigest()[:32]
        return sign(secret, body, identifier=identifier), ""

    def ticket_delivery(self) -> bytes:
        payload = json.loads(FIXTURE.read_bytes())
        payload["timestamp"] = int(time.time() * 1000)  # fresh: verify checks it against the clock
        return json.dumps(payload).encode()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]]:
        site = JiraStandin().start()
        site.add_issue("SUP-17", "VPN drops")
        site.fail_next(1, status=status, retry_after=retry_after)
        client = JiraClient(site.url, site.credentials, timeout=5, options=dict(self.options))
        action = Action("contract", "jira", "jira", "route", 1, "SUP-17", {"priority": "High"}, "k1")
        return client, action, site.stop
