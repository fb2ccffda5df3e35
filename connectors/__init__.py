"""Outside systems (Slack, Jira, Zendesk, ...). Never imports torch.

``get_connector(name)`` gives the inbound half (verify + convert a webhook delivery),
``action_client(name, ...)`` the outbound one; see ``base.py`` for the protocols.
"""

from __future__ import annotations

from deskpilot.connectors.base import (
    ActionClient,
    ActionFailedError,
    Connector,
    ConnectorInfo,
    Inbound,
    action_client,
    connector_info,
    get_connector,
    known_connectors,
    register,
)

__all__ = [
    "ActionClient",
    "ActionFailedError",
    "Connector",
    "ConnectorInfo",
    "Inbound",
    "action_client",
    "connector_info",
    "get_connector",
    "known_connectors",
    "register",
]
