"""What every connector provides, and a registry so the gateway and workers look them up by name.

Inbound, a :class:`Connector` checks that a raw webhook delivery is authentic (``verify``) and
turns it into an :class:`~deskpilot.types.Event` (``to_event``, pure). Outbound, an
:class:`ActionClient` performs one :class:`~deskpilot.types.Action` per call; retries with
backoff belong to the job queue, which reads ``ActionError.transient`` and ``retry_after``.
Connector modules load lazily on first lookup, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from deskpilot.errors import ActionError, AuthError, ConfigError, InputDataError
from deskpilot.types import Action, Event, Feedback

DEFAULT_TOLERANCE_S = 300


class Connector(Protocol):
    """Inbound half of an outside system: authenticate a delivery, then convert it."""

    @property
    def name(self) -> str: ...

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: str,
        now: float | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        """Raise AuthError (missing, malformed, expired or forged) unless the delivery is authentic."""
        ...

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The sender's id for this delivery, the same on its retries (the inbox dedupes on it)."""
        ...

    def to_event(self, tenant: str, source: str, headers: Mapping[str, str], body: bytes) -> Event:
        """Convert a verified delivery; raise InputDataError naming what to send instead."""
        ...


class ActionClient(Protocol):
    """Outbound half: one attempt at one action, idempotent on ``action.idempotency_key``."""

    def act(self, action: Action) -> dict[str, Any]:
        """Perform the action; return a summary of the system's answer; raise ActionFailedError."""
        ...

    def close(self) -> None: ...


class ActionFailedError(ActionError):
    """An action failed. ``retry_after`` (seconds) is the system's own hint, when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        hint: str | None = None,
        upstream_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, transient=transient, hint=hint)
        self.upstream_status = upstream_status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ExternalFeedback(Feedback):
    """Feedback that may name its ticket by the outside system's id instead of deskpilot's."""

    external_id: str | None = None


class ClientFactory(Protocol):
    def __call__(
        self, *, url: str, token: str | None, timeout: float, secret: str | None = None
    ) -> ActionClient: ...


# name -> module that registers it on import; later connectors add a line here.
_BUILTIN = {"generic": "deskpilot.connectors.generic"}
_INBOUND: dict[str, Callable[[], Connector]] = {}
_OUTBOUND: dict[str, ClientFactory] = {}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup; AuthError if it came twice with different values."""
    wanted = name.lower()
    values = {value for key, value in headers.items() if key.lower() == wanted}
    if len(values) > 1:
        raise AuthError(f"{name} header sent more than once with different values; send it once")
    return values.pop() if values else None


def register(
    name: str, *, connector: Callable[[], Connector] | None = None, client: ClientFactory | None = None
) -> None:
    """Called by a connector module at import time."""
    if connector is not None:
        _INBOUND[name] = connector
    if client is not None:
        _OUTBOUND[name] = client


def known_connectors() -> list[str]:
    return sorted(set(_BUILTIN) | set(_INBOUND) | set(_OUTBOUND))


def _load(name: str) -> None:
    module = _BUILTIN.get(name)
    if module is not None:
        importlib.import_module(module)


def get_connector(name: str) -> Connector:
    """The inbound connector called ``name``; InputDataError listing the known ones otherwise."""
    _load(name)
    factory = _INBOUND.get(name)
    if factory is None:
        raise InputDataError(
            f"unknown connector {name!r}", hint=f"known connectors: {', '.join(known_connectors())}"
        )
    return factory()


def action_client(
    connector: str, *, url: str, token: str | None, timeout: float, secret: str | None = None
) -> ActionClient:
    """An outbound client for ``connector``; ConfigError listing the known ones otherwise."""
    _load(connector)
    factory = _OUTBOUND.get(connector)
    if factory is None:
        raise ConfigError(
            f"unknown connector {connector!r} for actions",
            hint=f"known connectors: {', '.join(known_connectors())}",
        )
    return factory(url=url, token=token, timeout=timeout, secret=secret)
