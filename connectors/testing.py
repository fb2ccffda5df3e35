"""A contract every connector passes, ours or a third party's: subclass it in a test module.

    from deskpilot.connectors.testing import ConnectorContract

    class TestAcmeDeskContract(ConnectorContract):
        name = "acmedesk"

        def sign(self, body, *, secret, now):
            return {"X-Acme-Signature": ...}, ""      # headers and the webhook sub-path

        def ticket_delivery(self):
            return b'{"ticket": {...}}'                 # a body that is one new ticket

pytest collects the ``test_*`` methods. Outbound checks run when :meth:`failing_action` is
given (a client pointed at a server that answers the given status): transient errors must be
retryable, permanent ones not. Requires pytest (a test dependency, not a runtime one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from deskpilot.connectors.base import (
    ActionClient,
    ActionFailedError,
    Connector,
    connector_info,
    get_connector,
    known_connectors,
)
from deskpilot.errors import AuthError, DeskpilotError, InputDataError
from deskpilot.types import Action, Ticket

TENANT = "contract"


class ConnectorContract:
    name: str = ""
    secret: str = "contract-secret-0123456789"
    has_timestamp: bool = True  # False where the scheme signs no time (Jira, ERPNext, Odoo)
    options: Mapping[str, str] = {}
    source: str | None = None  # the events' source when it is not the connector's name (generic)

    # hooks -----------------------------------------------------------------------------
    def sign(self, body: bytes, *, secret: str, now: float) -> tuple[dict[str, str], str]:
        """Headers that authenticate ``body`` with ``secret`` at time ``now``, and the sub-path."""
        raise NotImplementedError

    def ticket_delivery(self) -> bytes:
        """A raw webhook body that is exactly one new ticket."""
        raise NotImplementedError

    def failing_action(
        self, status: int, retry_after: str | None
    ) -> tuple[ActionClient, Action, Callable[[], None]] | None:
        """A client whose next call answers ``status``, an action for it, and a cleanup."""
        return None

    # helpers ---------------------------------------------------------------------------
    def connector(self) -> Connector:
        return get_connector(self.name)

    def _parse(self, body: bytes, headers: Mapping[str, str], route: str) -> Any:
        return self.connector().parse(TENANT, route, headers, body, dict(self.options))

    # the contract ----------------------------------------------------------------------
    def test_registered_with_setup_docs(self) -> None:
        assert self.name in known_connectors()
        info = connector_info(self.name)
        assert info is not None and info.name == self.name
        assert info.webhook and info.secrets and info.docs, info

    def test_a_signed_delivery_is_authentic(self) -> None:
        body = self.ticket_delivery()
        headers, route = self.sign(body, secret=self.secret, now=time.time())
        self.connector().verify(headers, body, secret=self.secret, route=route)

    def test_another_secret_is_refused(self) -> None:
        body = self.ticket_delivery()
        headers, route = self.sign(body, secret="another-secret-9876543210", now=time.time())
        with pytest.raises(AuthError):
            self.connector().verify(headers, body, secret=self.secret, route=route)

    def test_a_tampered_body_is_refused(self) -> None:
        body = self.ticket_delivery()
        headers, route = self.sign(body, secret=self.secret, now=time.time())
        tampered = body.replace(b"}", b" }", 1) if b"}" in body else body + b" "
        if route and route == self.secret:  # token-in-URL schemes sign nothing: nothing to tamper
            pytest.skip("the scheme authenticates the URL, not the body")
        with pytest.raises(AuthError):
            self.connector().verify(headers, tampered, secret=self.secret, route=route)

    def test_missing_credentials_are_refused(self) -> None:
        body = self.ticket_delivery()
        with pytest.raises(AuthError):
            self.connector().verify({}, body, secret=self.secret, route="")

    def test_an_old_delivery_is_refused(self) -> None:
        if not self.has_timestamp:
            pytest.skip("the scheme signs no time; retries are deduplicated on the delivery id")
        body = self.ticket_delivery()
        headers, route = self.sign(body, secret=self.secret, now=time.time() - 3600)
        with pytest.raises(AuthError):
            self.connector().verify(headers, body, secret=self.secret, route=route)

    def test_a_ticket_delivery_is_one_ticket_event(self) -> None:
        body = self.ticket_delivery()
        headers, route = self.sign(body, secret=self.secret, now=time.time())
        inbound = self._parse(body, headers, route)
        assert len(inbound.events) == 1, inbound
        event = inbound.events[0]
        source = self.source or self.name
        assert (event.tenant, event.source, event.kind) == (TENANT, source, "ticket")
        assert isinstance(event.delivery_id, str) and 0 < len(event.delivery_id) <= 200
        assert isinstance(event.payload, Ticket) and event.payload.external_id
        assert event.payload.source == source
        assert (event.payload.subject or event.payload.body).strip()

    def test_a_retry_has_the_same_delivery_id(self) -> None:
        body = self.ticket_delivery()
        first_headers, route = self.sign(body, secret=self.secret, now=time.time())
        retry_headers, _ = self.sign(body, secret=self.secret, now=time.time() + 1)
        first = self._parse(body, first_headers, route).events[0]
        retry = self._parse(body, retry_headers, route).events[0]
        assert first.delivery_id == retry.delivery_id

    def test_garbage_is_a_clear_input_error(self) -> None:
        headers, route = self.sign(b"\xff not a payload", secret=self.secret, now=time.time())
        with pytest.raises(InputDataError) as caught:
            self._parse(b"\xff not a payload", headers, route)
        assert caught.value.message

    @pytest.mark.parametrize(
        ("status", "retry_after", "transient"),
        [(429, "7", True), (503, None, True), (500, None, True), (401, None, False), (404, None, False)],
    )
    def test_outbound_errors_say_whether_a_retry_can_help(
        self, status: int, retry_after: str | None, transient: bool
    ) -> None:
        made = self.failing_action(status, retry_after)
        if made is None:
            pytest.skip("no failing_action hook")
        client, action, cleanup = made
        try:
            with pytest.raises(ActionFailedError) as caught:
                client.act(action)
        finally:
            client.close()
            cleanup()
        assert caught.value.transient is transient, caught.value
        assert isinstance(caught.value, DeskpilotError) and caught.value.message
        if retry_after is not None:
            assert caught.value.retry_after == float(retry_after)
