"""A third-party connector in a dozen lines, loaded through the ``deskpilot.connectors``
entry point group in the tests (the worked example of docs/connectors/plugins.md).

Inbound: JSON ``{"id", "kind": "ticket"|"change", ...}`` authenticated by the header
``X-Fakedesk-Token`` (the tenant's secret). Outbound: the generic REST client.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from deskpilot.connectors.base import ConnectorInfo, Inbound, header
from deskpilot.connectors.base import register as register_connector
from deskpilot.connectors.generic.client import GenericClient
from deskpilot.errors import AuthError, InputDataError
from deskpilot.types import Event, FieldChange, Ticket

NAME = "fakedesk"


class FakeDesk:
    name = NAME

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: str,
        route: str = "",
        now: float | None = None,
        tolerance_s: float = 300,
    ) -> None:
        token = header(headers, "X-Fakedesk-Token")
        if not token or not hmac.compare_digest(token.encode(), secret.encode()):
            raise AuthError("missing or wrong X-Fakedesk-Token")

    def parse(
        self, tenant: str, route: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]
    ) -> Inbound:
        try:
            data: dict[str, Any] = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InputDataError("body is not JSON") from None
        if data.get("author") == options.get("bot"):
            return Inbound(ignored="our own change")
        if data.get("kind") == "change":
            change = FieldChange(str(data["ticket"]), data["field"], str(data["value"]), data["author"])
            return Inbound(events=(Event(tenant, NAME, str(data["id"]), "field_change", change),))
        ticket = Ticket(data["subject"], data["body"], source=NAME, external_id=str(data["ticket"]))
        return Inbound(events=(Event(tenant, NAME, str(data["id"]), "ticket", ticket),))


def _client(
    *,
    url: str,
    token: str | None,
    timeout: float,
    secret: str | None = None,
    options: Mapping[str, str] | None = None,
) -> GenericClient:
    return GenericClient(url, token, timeout, secret)


def register() -> None:
    """The entry point: ``[project.entry-points."deskpilot.connectors"] fakedesk = "pkg.mod:register"``."""
    info = ConnectorInfo(
        NAME, "Fake desk (example plugin)", "fakedesk", "X-Fakedesk-Token", "docs/connectors/plugins.md"
    )
    register_connector(NAME, connector=FakeDesk, client=_client, info=info)
