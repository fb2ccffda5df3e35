"""What every connector provides, and a registry so the gateway and workers look them up by name.

Inbound, a :class:`Connector` checks that a raw webhook delivery is authentic (``verify``) and
says what it means (``parse``, pure): an :class:`Inbound` with the events to store (tickets,
corrections, field changes, queries) and, where the system expects one, the immediate answer
(Slack's url_verification challenge, an ephemeral slash-command reply). Outbound, an
:class:`ActionClient` performs one :class:`~deskpilot.types.Action` per call; retries with
backoff belong to the job queue, which reads ``ActionError.transient`` and ``retry_after``.

Built-in connectors load lazily on first lookup; third-party ones register through the entry
point group ``deskpilot.connectors`` (each entry point names a module that calls
:func:`register` when imported, or a callable that does). Importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from deskpilot.errors import ActionError, AuthError, ConfigError, InputDataError
from deskpilot.types import Action, Event

DEFAULT_TOLERANCE_S = 300


@dataclass(frozen=True, slots=True)
class Inbound:
    """What one verified delivery means.

    ``events`` are stored (each deduplicated on its ``delivery_id``); ``reply`` is the JSON
    body to answer with instead of the default summary (``status`` with it), e.g. Slack's
    ``{"challenge": ...}``. No events and no reply: acknowledged and ignored (a bot's own
    message, an event type we do not use), with ``ignored`` saying why.
    """

    events: tuple[Event, ...] = ()
    reply: dict[str, Any] | None = None
    status: int = 202
    ignored: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """For ``deskpilot connectors list`` and the docs: what a connector needs to work."""

    name: str
    title: str
    webhook: str  # the inbound path under /webhooks/{tenant}/, e.g. "slack/events"
    secrets: str  # what to put in DESKPILOT_WEBHOOK_SECRETS / _CONNECTOR_SECRETS
    docs: str = ""  # a README page, e.g. docs/connectors/slack.md


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
        route: str = "",
        now: float | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        """Raise AuthError (missing, malformed, expired or forged) unless the delivery is authentic.

        ``route`` is the path after ``/webhooks/{tenant}/{name}/`` (Slack's ``events``, Odoo's
        token), ``""`` when there is none.
        """
        ...

    def parse(
        self,
        tenant: str,
        route: str,
        headers: Mapping[str, str],
        body: bytes,
        options: Mapping[str, str],
    ) -> Inbound:
        """Convert a verified delivery; raise InputDataError naming what to send instead.

        ``options`` are the tenant's policy options for this system (e.g. the bot's own user
        id, whose changes are not corrections).
        """
        ...


class ActionClient(Protocol):
    """Outbound half: one attempt at one action, idempotent on ``action.idempotency_key``.

    A system without idempotency keys is made idempotent by the client (e.g. read the
    ticket first and skip a comment whose marker is already there).
    """

    def act(self, action: Action) -> dict[str, Any]:
        """Perform the action; return a summary of the system's answer; raise ActionFailedError."""
        ...

    def close(self) -> None: ...


class QueryReplier(Protocol):
    """Clients of systems that ask deskpilot directly (:class:`~deskpilot.types.Query`)."""

    def reply(self, url: str, message: dict[str, Any]) -> dict[str, Any]: ...


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


class ClientFactory(Protocol):
    def __call__(
        self,
        *,
        url: str,
        token: str | None,
        timeout: float,
        secret: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> ActionClient: ...


# name -> module that registers it on import
_BUILTIN = {
    name: f"deskpilot.connectors.{name}"
    for name in ("generic", "slack", "jira", "zendesk", "servicenow", "erpnext", "odoo")
}
ENTRY_POINT_GROUP = "deskpilot.connectors"
_INBOUND: dict[str, Callable[[], Connector]] = {}
_OUTBOUND: dict[str, ClientFactory] = {}
_INFO: dict[str, ConnectorInfo] = {}
_plugins_loaded = False


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup; AuthError if it came twice with different values."""
    wanted = name.lower()
    values = {value for key, value in headers.items() if key.lower() == wanted}
    if len(values) > 1:
        raise AuthError(f"{name} header sent more than once with different values; send it once")
    return values.pop() if values else None


def client_factory(make: Callable[..., ActionClient]) -> ClientFactory:
    """The :class:`ClientFactory` of a client built as ``make(url, token, timeout, options=options)``:
    most connectors' (the webhook secret is an inbound matter)."""

    def factory(
        *,
        url: str,
        token: str | None,
        timeout: float,
        secret: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> ActionClient:
        return make(url, token, timeout, options=options)

    return factory


def register(
    name: str,
    *,
    connector: Callable[[], Connector] | None = None,
    client: ClientFactory | None = None,
    info: ConnectorInfo | None = None,
) -> None:
    """Called by a connector module at import time (ours, or a third party's entry point)."""
    if connector is not None:
        _INBOUND[name] = connector
    if client is not None:
        _OUTBOUND[name] = client
    if info is not None:
        _INFO[name] = info


def _load_plugins() -> None:
    """Import the entry points of group ``deskpilot.connectors`` once; a broken one is skipped."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            if callable(loaded) and not isinstance(loaded, type):
                loaded()
        except Exception as exc:  # one broken plugin must not take the others down
            import logging

            logging.getLogger("deskpilot.connectors").warning(
                "connector plugin %r (%s) failed to load: %s", entry.name, entry.value, exc
            )


def known_connectors() -> list[str]:
    _load_plugins()
    return sorted(set(_BUILTIN) | set(_INBOUND) | set(_OUTBOUND))


def _load(name: str) -> None:
    module = _BUILTIN.get(name)
    if module is not None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real import error inside the connector
                raise
    if name not in _INBOUND and name not in _OUTBOUND:
        _load_plugins()


def connector_info(name: str) -> ConnectorInfo | None:
    _load(name)
    return _INFO.get(name)


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
    connector: str,
    *,
    url: str,
    token: str | None,
    timeout: float,
    secret: str | None = None,
    options: Mapping[str, str] | None = None,
) -> ActionClient:
    """An outbound client for ``connector``; ConfigError listing the known ones otherwise."""
    _load(connector)
    factory = _OUTBOUND.get(connector)
    if factory is None:
        raise ConfigError(
            f"unknown connector {connector!r} for actions",
            hint=f"known connectors: {', '.join(known_connectors())}",
        )
    return factory(url=url, token=token, timeout=timeout, secret=secret, options=dict(options or {}))
