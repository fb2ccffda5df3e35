"""The Zendesk client against a real local stand-in of the Zendesk REST API (no mocks)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
from support.zendesk_standin import ZendeskStandin

from deskpilot.connectors import ActionFailedError, action_client, connector_info
from deskpilot.connectors.zendesk import INFO, ZendeskClient
from deskpilot.connectors.zendesk.client import account_url, authorization
from deskpilot.errors import ConfigError
from deskpilot.types import Action

TOKEN = "zd-api-token-5f2a"
NOTE = "intent: network (0.91 >= threshold 0.50); priority: high by rule 'vip'."
KEY = "acme:ticket:12:zendesk"


def action(key: str = KEY, *, ticket: str = "35436", **fields: Any) -> Action:
    return Action(
        tenant="acme",
        system="zendesk",
        connector="zendesk",
        kind="route",
        ticket_id=12,
        external_id=ticket,
        fields=fields or {"group": "360001", "priority": "high", "tags": "vpn"},
        idempotency_key=key,
        context={"note": NOTE, "ticket_metadata": {"zendesk_ticket_id": ticket}, "triage": False},
    )


@pytest.fixture
def zd() -> Iterator[ZendeskStandin]:
    with ZendeskStandin(email="deskpilot@acme.test", api_token=TOKEN, oauth_token="oauth-xyz") as server:
        server.add_ticket(
            35436, subject="VPN keeps disconnecting", description="VPN drops every few minutes."
        )
        yield server


@pytest.fixture
def client(zd: ZendeskStandin) -> Iterator[ZendeskClient]:
    with ZendeskClient(zd.url, zd.credential, timeout=5) as http:
        yield http


def failure(client: ZendeskClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert TOKEN not in str(info.value)
    return info.value


def test_route_sets_fields_and_adds_one_private_marked_note(
    zd: ZendeskStandin, client: ZendeskClient
) -> None:
    summary = client.act(action())
    assert summary == {
        "status": 200,
        "ticket_id": "35436",
        "updated": ["additional_tags", "group_id", "priority"],
        "comment": "added",
        "audit_id": summary["audit_id"],
        "already_applied": False,
    }
    assert isinstance(summary["audit_id"], int)
    assert [(r.method, r.path) for r in zd.requests] == [
        ("GET", "/api/v2/tickets/35436.json"),
        ("GET", "/api/v2/tickets/35436/comments.json"),
        ("PUT", "/api/v2/tickets/35436.json"),
    ]
    assert zd.requests[1].query == {"page[size]": "100", "sort": "-created_at"}
    expected_auth = "Basic " + base64.b64encode(f"deskpilot@acme.test/token:{TOKEN}".encode()).decode()
    assert all(r.headers["authorization"] == expected_auth for r in zd.requests)
    assert zd.updates == [
        {
            "group_id": 360001,
            "priority": "high",
            "additional_tags": ["vpn"],
            "comment": {"body": f"{NOTE}\n\n[deskpilot:{KEY}]", "public": False},
            "safe_update": True,
            "updated_stamp": "2024-05-06T09:00:01Z",
        }
    ]
    ticket = zd.ticket(35436)
    assert ticket is not None
    assert (ticket["group_id"], ticket["priority"], ticket["tags"]) == (360001, "high", ["vpn"])
    notes = [c for c in zd.comments_of(35436) if not c["public"]]
    assert [(c["author_id"], c["body"]) for c in notes] == [(zd.bot_user_id, f"{NOTE}\n\n[deskpilot:{KEY}]")]
    assert zd.unknown_keys == []


def test_running_the_same_action_again_writes_nothing(zd: ZendeskStandin, client: ZendeskClient) -> None:
    client.act(action())
    again = client.act(action())
    assert again["already_applied"] is True and again["comment"] == "present" and again["updated"] == []
    assert [r.method for r in zd.requests] == ["GET", "GET", "PUT", "GET", "GET"]
    assert len(zd.updates) == 1
    assert sum(f"deskpilot:{KEY}" in c["body"] for c in zd.comments_of(35436)) == 1


def test_a_rerun_after_a_lost_answer_restores_fields_without_a_second_note(
    zd: ZendeskStandin, client: ZendeskClient
) -> None:
    client.act(action())
    zd.agent_update(35436, 7001, priority="low")  # someone changed it before our retry ran
    again = client.act(action())
    assert again["updated"] == ["priority"] and again["comment"] == "present"
    assert zd.updates[-1] == {
        "priority": "high",
        "safe_update": True,
        "updated_stamp": "2024-05-06T09:00:03Z",
    }
    assert sum(f"deskpilot:{KEY}" in c["body"] for c in zd.comments_of(35436)) == 1


def test_a_concurrent_edit_is_a_409_that_is_retried_and_then_succeeds(
    zd: ZendeskStandin, client: ZendeskClient
) -> None:
    zd.change_before_next_put(35436, 7001, status="open")
    error = failure(client, action())
    assert error.transient is True and error.upstream_status == 409
    assert str(error).startswith(
        "PUT /api/v2/tickets/35436.json answered 409: UpdateConflict; Safe Update prevented"
    )
    ticket = zd.ticket(35436)
    assert ticket is not None and ticket["group_id"] is None and zd.updates == []
    summary = client.act(action())  # the job queue's retry reads the new updated_at
    assert summary["comment"] == "added" and len(zd.updates) == 1
    ticket = zd.ticket(35436)
    assert ticket is not None and (ticket["status"], ticket["group_id"]) == ("open", 360001)


def test_the_marker_is_found_on_a_later_comments_page(zd: ZendeskStandin, client: ZendeskClient) -> None:
    client.act(action())
    for i in range(230):  # the conversation goes on: our note is now three pages back
        zd._comment(35436, 5001, f"reply {i}", public=True, when=f"2024-05-07T00:{i // 60:02d}:{i % 60:02d}Z")
    again = client.act(action())
    assert again["comment"] == "present" and again["already_applied"] is True
    pages = [r for r in zd.requests if r.path.endswith("/comments.json")][1:]
    assert len(pages) == 3 and "page[after]" in pages[1].query


def test_internal_note_can_be_turned_off(zd: ZendeskStandin) -> None:
    with ZendeskClient(zd.url, zd.credential, timeout=5, options={"internal_note": "false"}) as http:
        summary = http.act(action())
    assert summary["comment"] == "off" and "comment" not in zd.updates[0]
    assert [c["public"] for c in zd.comments_of(35436)] == [True]


def test_wrong_credentials_are_permanent_with_zendesks_message(zd: ZendeskStandin) -> None:
    with ZendeskClient(zd.url, "deskpilot@acme.test/token:wrong", timeout=5) as http:
        error = failure(http, action())
    assert error.transient is False and error.upstream_status == 401
    assert str(error) == (
        "GET /api/v2/tickets/35436.json answered 401: Couldn't authenticate you "
        "(check the Zendesk credential (agent email/token:api token) and the agent's role)"
    )
    assert "wrong" not in str(error)


def test_an_oauth_bearer_token_works(zd: ZendeskStandin) -> None:
    with ZendeskClient(zd.url, "bearer:oauth-xyz", timeout=5) as http:
        assert http.act(action())["comment"] == "added"
    assert zd.requests[0].headers["authorization"] == "Bearer oauth-xyz"


def test_an_unknown_ticket_is_permanent(zd: ZendeskStandin, client: ZendeskClient) -> None:
    error = failure(client, action(ticket="99999"))
    assert error.transient is False and error.upstream_status == 404
    assert str(error) == "GET /api/v2/tickets/99999.json answered 404: RecordNotFound; Not found"


def test_an_unknown_group_is_a_permanent_record_invalid(zd: ZendeskStandin, client: ZendeskClient) -> None:
    error = failure(client, action(group="424242"))
    assert error.transient is False and error.upstream_status == 422
    assert str(error) == (
        "PUT /api/v2/tickets/35436.json answered 422: RecordInvalid; Record validation errors; "
        "group_id: Group: is invalid"
    )


def test_a_closed_ticket_is_permanent(zd: ZendeskStandin, client: ZendeskClient) -> None:
    zd.agent_update(35436, 7001, status="closed")
    error = failure(client, action())
    assert error.upstream_status == 422 and not error.transient
    assert "status: Status: closed prevents ticket update" in str(error)


def test_a_policy_field_zendesk_cannot_take_fails_before_any_request(
    zd: ZendeskStandin, client: ZendeskClient
) -> None:
    error = failure(client, action(queue="billing"))
    assert error.transient is False and error.upstream_status is None
    assert str(error).startswith("fields.queue: Zendesk has no queues")
    assert zd.requests == []


@pytest.mark.parametrize(("method", "step"), [("GET", 0), ("PUT", 2)])
def test_rate_limits_are_transient_and_carry_retry_after(
    zd: ZendeskStandin, client: ZendeskClient, method: str, step: int
) -> None:
    zd.fail_next(1, 429, retry_after=7, method=method)
    error = failure(client, action())
    assert error.transient is True and error.upstream_status == 429 and error.retry_after == 7.0
    assert "APIRateLimitExceeded" in str(error)
    assert zd.updates == [] and len(zd.requests) == step + 1
    client.act(action())  # the retry goes through
    assert len(zd.updates) == 1


def test_retry_after_as_an_http_date_is_understood(zd: ZendeskStandin, client: ZendeskClient) -> None:
    import time

    zd.fail_next(1, 429, retry_after=formatdate(time.time() + 120, usegmt=True))
    error = failure(client, action())
    assert error.retry_after is not None and 100 < error.retry_after <= 120


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(zd: ZendeskStandin, client: ZendeskClient, status: int) -> None:
    zd.fail_next(1, status, retry_after=30)
    error = failure(client, action())
    assert error.transient is True and error.upstream_status == status and error.retry_after == 30.0


def test_a_timeout_is_transient() -> None:
    with ZendeskStandin(api_token=TOKEN, delay_s=2.0) as slow:
        slow.add_ticket(35436, subject="s", description="d")
        with ZendeskClient(slow.url, slow.credential, timeout=0.2) as http:
            error = failure(http, action())
    assert error.transient is True and "timed out" in str(error)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ZendeskClient(f"http://127.0.0.1:{port}", f"a@b.test/token:{TOKEN}", timeout=2) as http:
        error = failure(http, action())
    assert error.transient is True and "ConnectError" in str(error)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "no Zendesk credential for this system"),
        ("  ", "no Zendesk credential for this system"),
        ("s3cr3t-just-a-token", "the Zendesk credential is not in the form <agent email>/token:<api token>"),
        ("agent@example.com:s3cr3t-password", "the Zendesk credential is not in the form"),
        ("agent@example.com/token:", "the Zendesk credential is not in the form"),
        ("bearer:", "the Zendesk credential 'bearer:' has no token after it"),
    ],
)
def test_malformed_credentials_are_configuration_errors_that_do_not_echo_them(
    token: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        authorization(token)
    assert str(info.value).startswith(message)
    assert "s3cr3t" not in str(info.value)


def test_account_urls_are_normalised_and_checked() -> None:
    assert account_url("https://acme.zendesk.com/") == "https://acme.zendesk.com"
    assert account_url("https://acme.zendesk.com/api/v2") == "https://acme.zendesk.com"
    with pytest.raises(ConfigError, match="is not an http"):
        account_url("acme.zendesk.com")


def test_the_registry_builds_the_client_with_policy_options(zd: ZendeskStandin) -> None:
    http = action_client(
        "zendesk", url=zd.url, token=zd.credential, timeout=5, options={"bot_user_id": "9001"}
    )
    try:
        assert isinstance(http, ZendeskClient) and http.options == {"bot_user_id": "9001"}
        assert http.act(action())["comment"] == "added"
    finally:
        http.close()
    assert connector_info("zendesk") == INFO
    assert INFO.webhook == "zendesk" and INFO.docs == "docs/connectors/zendesk.md"
