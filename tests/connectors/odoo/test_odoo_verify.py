"""Odoo's webhook is unsigned: the URL token is the credential. What it guards, and what it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.odoo import OdooConnector
from deskpilot.connectors.odoo.verify import tokens
from deskpilot.errors import AuthError, ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "Yc4mZ1t0kq6u8N3pD2rB9vL5xW7sE0aH"
BODY = (FIXTURES / "ticket_created.json").read_bytes()
HEADERS = {"Content-Type": "application/json", "User-Agent": "python-requests/2.31.0"}


def check(
    route: str, *, secret: str = TOKEN, body: bytes = BODY, headers: dict[str, str] | None = None
) -> None:
    OdooConnector().verify(HEADERS if headers is None else headers, body, secret=secret, route=route)


def refused(route: str, *, secret: str = TOKEN) -> AuthError:
    with pytest.raises(AuthError) as info:
        check(route, secret=secret)
    assert info.value.status == 401
    return info.value


def test_the_tenants_token_is_accepted_through_the_registry() -> None:
    connector = get_connector("odoo")
    assert connector.name == "odoo"
    connector.verify(HEADERS, BODY, secret=TOKEN, route=TOKEN)
    check(f"{TOKEN}/")  # a trailing slash in the URL Odoo was given


def test_wrong_token_is_refused_without_echoing_either_token() -> None:
    guess = "Yc4mZ1t0kq6u8N3pD2rB9vL5xW7sE0aX"  # one character off
    error = refused(guess)
    assert error.message == "the token in the webhook URL is not the tenant's token"
    assert guess not in str(error) and TOKEN not in str(error)


@pytest.mark.parametrize("route", ["", "/", "   "])
def test_missing_token_is_refused(route: str) -> None:
    assert refused(route).message == "missing token in the webhook URL"


@pytest.mark.parametrize("route", [TOKEN[:-1], TOKEN + "x", f"{TOKEN}/extra", TOKEN.lower(), "x" * 600])
def test_prefixes_extensions_and_other_spellings_are_refused(route: str) -> None:
    assert "not the tenant's token" in refused(route).message


def test_a_rotation_accepts_the_new_and_the_old_token_only() -> None:
    secret = f"new-{TOKEN}, {TOKEN}"
    check(f"new-{TOKEN}", secret=secret)
    check(TOKEN, secret=secret)
    refused("new", secret=secret)
    assert tokens(secret) == [f"new-{TOKEN}", TOKEN]


@pytest.mark.parametrize("secret", ["", " , ", ","])
def test_an_empty_secret_is_a_configuration_error_not_an_open_door(secret: str) -> None:
    with pytest.raises(ConfigError, match="token is empty"):
        check("", secret=secret)
    with pytest.raises(ConfigError):
        check("anything", secret=secret)


def test_no_headers_are_required() -> None:
    """Odoo's action sends only Content-Type; nothing else can be asked of it."""
    check(TOKEN, headers={})


def test_the_body_is_not_signed_so_a_tampered_body_passes_the_token_check() -> None:
    """The scheme cannot detect tampering (documented); the token is what must stay secret."""
    tampered = BODY.replace(b"VPN keeps disconnecting", b"Please wire 10k to ...")
    check(TOKEN, body=tampered)
    with pytest.raises(AuthError):
        check("", body=tampered)


def test_there_is_no_timestamp_to_expire_replays_are_deduplicated_instead() -> None:
    """A notice from last year is accepted by verify; the inbox drops a replay by its delivery id."""
    OdooConnector().verify(HEADERS, BODY, secret=TOKEN, route=TOKEN, now=4_000_000_000.0, tolerance_s=1)
    first = OdooConnector().parse("acme", TOKEN, HEADERS, BODY, {})
    again = OdooConnector().parse("acme", TOKEN, HEADERS, BODY, {})
    assert [e.delivery_id for e in first.events] == [e.delivery_id for e in again.events]
    assert first.events[0].delivery_id == "helpdesk.ticket:42:2024-05-02 10:15:42"
