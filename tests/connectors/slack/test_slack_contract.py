"""The shared connector contract, run against the Slack connector and the stand-in Slack."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from support.slack_standin import BOT_USER_ID, DEFAULT_TOKEN, SlackStandin

from deskpilot.connectors.base import ActionClient
from deskpilot.connectors.slack import SlackClient, sign
from deskpilot.connectors.testing import ConnectorContract
from deskpilot.types import Action

FIXTURES = Path(__file__).parent / "fixtures"


class TestSlackContract(ConnectorContract):
    name = "slack"
    options: ClassVar[Mapping[str, str]] = {"channels": "C0HELP", "bot_user_id": BOT_USER_ID}

    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        return sign(secret, body, timestamp=int(now)), "events"

    def ticket_delivery(self) -> bytes:
        return (FIXTURES / "event_message.json").read_bytes()

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]] | None:
        slack = SlackStandin().start()
        ts = slack.post_user_message("C0HELP", "VPN drops")
        channel, token = "C0HELP", DEFAULT_TOKEN
        if status == 401:  # Slack answers a bad token with HTTP 200 and "invalid_auth"
            token = "xoxb-revoked"
        elif status == 404:  # ... and an unknown channel with HTTP 200 and "channel_not_found"
            channel = "C0GONE"
        else:
            slack.fail_next(1, status, retry_after)
        action = Action(
            tenant="contract",
            system="chat",
            connector="slack",
            kind="route",
            ticket_id=1,
            external_id=f"{channel}:{ts}",
            fields={"queue": "network-team"},
            idempotency_key="contract:ticket:1:chat",
            context={"ticket_metadata": {"channel": channel, "ts": ts}, "note": json.dumps({"n": 1})},
        )
        return SlackClient(slack.url, token, timeout=5, options=self.options), action, slack.stop
