"""Jira Cloud: signed issue webhooks in, routed fields and an internal comment out.

Inbound ``POST /webhooks/{tenant}/jira`` (``verify.py``: ``X-Hub-Signature``; ``convert.py``:
events); outbound ``client.JiraClient`` (REST v3). Setup: ``docs/connectors/jira.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, client_factory, register
from deskpilot.connectors.jira import convert, verify
from deskpilot.connectors.jira.client import JiraClient
from deskpilot.connectors.jira.verify import sign
from deskpilot.errors import InputDataError

__all__ = ["INFO", "JiraClient", "JiraConnector", "sign"]


class JiraConnector:
    """Inbound half. Jira has a single webhook path, so ``route`` is always ``""``."""

    @property
    def name(self) -> str:
        return "jira"

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
                f"unknown Jira webhook path .../jira/{route}",
                hint="point the Jira webhook at /webhooks/{tenant}/jira",
            )
        return convert.parse(tenant, headers, body, options)


INFO = ConnectorInfo(
    name="jira",
    title="Jira Cloud",
    webhook="jira",
    secrets=(
        'DESKPILOT_WEBHOOK_SECRETS={"<tenant>/jira": "<webhook secret>"}; '
        'DESKPILOT_CONNECTOR_SECRETS={"<credentials>": "email:api_token"}'
    ),
    docs="docs/connectors/jira.md",
)

register("jira", connector=JiraConnector, client=client_factory(JiraClient), info=INFO)
