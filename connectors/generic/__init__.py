"""The generic connector: any system that signs webhooks our way and takes actions by REST.

The protocol is documented in ``verify.py`` (inbound) and ``client.py`` (outbound).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskpilot.connectors.base import DEFAULT_TOLERANCE_S, ConnectorInfo, Inbound, register
from deskpilot.connectors.generic import convert, verify
from deskpilot.connectors.generic.client import GenericClient
from deskpilot.connectors.generic.verify import sign
from deskpilot.types import Event

__all__ = ["GenericClient", "GenericConnector", "sign"]


@dataclass(frozen=True, slots=True)
class GenericConnector:
    """Inbound half; the limits are the longest subject and body accepted, in characters."""

    max_subject_chars: int = convert.MAX_SUBJECT_CHARS
    max_body_chars: int = convert.MAX_BODY_CHARS

    @property
    def name(self) -> str:
        return "generic"

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

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return verify.delivery_id(headers)

    def to_event(self, tenant: str, source: str, headers: Mapping[str, str], body: bytes) -> Event:
        return convert.to_event(
            tenant,
            source,
            verify.delivery_id(headers),
            body,
            max_subject_chars=self.max_subject_chars,
            max_body_chars=self.max_body_chars,
        )

    def parse(
        self, tenant: str, route: str, headers: Mapping[str, str], body: bytes, options: Mapping[str, str]
    ) -> Inbound:
        """``route`` is the source (``/webhooks/{tenant}/generic/{source}``)."""
        return Inbound(events=(self.to_event(tenant, route, headers, body),))


def _client(
    *,
    url: str,
    token: str | None,
    timeout: float,
    secret: str | None = None,
    options: Mapping[str, str] | None = None,
) -> GenericClient:
    return GenericClient(url, token, timeout, secret)


INFO = ConnectorInfo(
    name="generic",
    title="Generic signed webhook",
    webhook="generic/{source}",
    secrets='DESKPILOT_WEBHOOK_SECRETS={"<tenant>": "..."}; a policy system with connector: generic',
    docs="README.md#workflow-tickets-in-decisions-out-nothing-lost",
)

register("generic", connector=GenericConnector, client=_client, info=INFO)
