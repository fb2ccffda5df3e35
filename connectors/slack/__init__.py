"""Slack: channel messages become tickets, decisions answer in the thread, buttons correct them.

Inbound, three Request URLs under ``/webhooks/{tenant}/slack/``: ``events`` (Events API),
``commands`` (``/deskpilot``) and ``interactivity`` (the buttons); all signed with the app's
Signing Secret (``verify.py``) and converted by pure functions (``convert.py``). Outbound,
``SlackClient`` (``client.py``) posts or updates one Block Kit message per decision
(``message.py``) through ``slack_sdk.WebClient``. Setup: docs/connectors/slack.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, client_factory, register
from deskpilot.connectors.slack import convert, verify
from deskpilot.connectors.slack.client import SlackClient
from deskpilot.connectors.slack.options import SlackOptions
from deskpilot.connectors.slack.verify import sign

__all__ = ["INFO", "SlackClient", "SlackConnector", "SlackOptions", "sign"]


@dataclass(frozen=True, slots=True)
class SlackConnector:
    """Inbound half: ``route`` is ``events``, ``commands`` or ``interactivity``."""

    @property
    def name(self) -> str:
        return "slack"

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
        return convert.parse(tenant, route, body, options)


INFO = ConnectorInfo(
    name="slack",
    title="Slack (Events API, slash command, interactivity)",
    webhook="slack/{events|commands|interactivity}",
    secrets=(
        'DESKPILOT_WEBHOOK_SECRETS={"<tenant>/slack": "<Signing Secret>"}; '
        'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "xoxb-<bot token>"}'
    ),
    docs="docs/connectors/slack.md",
)

register("slack", connector=SlackConnector, client=client_factory(SlackClient), info=INFO)
