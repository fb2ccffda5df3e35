"""The Odoo client against a real local stand-in Odoo (JSON-2 and JSON-RPC), no mocks."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from support.odoo_standin import OdooStandin

import deskpilot
from deskpilot.connectors import ActionFailedError, action_client
from deskpilot.connectors.odoo import OdooClient
from deskpilot.errors import ConfigError
from deskpilot.types import Action

KEY = "0f3c9d1e2b7a4c8e9f6a5b4c3d2e1f0a9b8c7d6e"
FIXTURES = Path(__file__).parent / "fixtures"
NOTE = "deskpilot routed this ticket to Network: intent=network at 0.93 (threshold 0.60)."
APIS = ["json2", "jsonrpc"]


@pytest.fixture
def odoo() -> Iterator[OdooStandin]:
    with OdooStandin(api_key=KEY, uid=7, database="acme") as server:
        server.add("helpdesk.team", 1, name="Customer Care")
        server.add("helpdesk.team", 3, name="Network")
        server.add("helpdesk.tag", 5, name="vpn")
        server.add("helpdesk.tag", 6, name="remote")
        server.add_user(9, "marc")
        ticket = server.create_ticket(
            "VPN keeps disconnecting", "<p>Drops every 5 min</p>", "ana@example.com"
        )
        assert ticket == 42
        yield server


def options(api: str, **extra: str) -> dict[str, str]:
    return {"api": api, "database": "acme", "api_user_id": "7", **extra}


def client(odoo: OdooStandin, api: str, *, key: str = KEY, timeout: float = 5, **extra: str) -> OdooClient:
    return OdooClient(odoo.url, key, timeout, options(api, **extra))


def action(
    key: str = "acme:ticket:12:helpdesk", fields: dict[str, Any] | None = None, note: str = NOTE
) -> Action:
    return Action(
        tenant="acme",
        system="helpdesk",
        connector="odoo",
        kind="route",
        ticket_id=12,
        external_id="42",
        fields={"queue": "3", "priority": "2", "tags": "5"} if fields is None else fields,
        idempotency_key=key,
        context={"note": note, "ticket_metadata": {"model": "helpdesk.ticket", "id": 42}, "triage": False},
    )


def failure(odoo_client: OdooClient, act: Action | None = None) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        odoo_client.act(act or action())
    assert KEY not in str(info.value)  # never the key, whatever went wrong
    return info.value


# --- the happy path, both APIs -----------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_fields_are_written_and_the_note_is_posted(odoo: OdooStandin, api: str) -> None:
    with client(odoo, api) as odoo_client:
        summary = odoo_client.act(action())
    assert summary == {
        "api": api,
        "model": "helpdesk.ticket",
        "id": 42,
        "written": {"team_id": 3, "priority": "2", "tag_ids": [[4, 5]]},
        "note": "posted",
        "message_id": 101,
    }
    ticket = odoo.ticket(42)
    assert ticket is not None
    assert (ticket["team_id"], ticket["priority"], ticket["tag_ids"], ticket["write_uid"]) == (3, "2", [5], 7)
    assert odoo.notes("helpdesk.ticket", 42) == [f"<p>{NOTE}<br><br>[deskpilot:acme:ticket:12:helpdesk]</p>"]
    [message] = odoo.records["mail.message"].values()
    assert (message["message_type"], message["subtype_xmlid"], message["author_uid"]) == (
        "comment",
        "mail.mt_note",
        7,
    )
    assert odoo.call_names() == [
        "helpdesk.ticket.write",
        "mail.message.search_read",
        "helpdesk.ticket.message_post",
    ]
    assert {c.api for c in odoo.calls} == {api}


@pytest.mark.parametrize("api", APIS)
def test_the_note_is_posted_once_when_the_action_runs_again(odoo: OdooStandin, api: str) -> None:
    with client(odoo, api) as odoo_client:
        first = odoo_client.act(action())
        again = odoo_client.act(action())  # e.g. the worker died before recording success
        other = odoo_client.act(action("acme:ticket:13:helpdesk", {"queue": "1"}))
    assert (first["note"], again["note"], other["note"]) == ("posted", "already posted", "posted")
    assert again["message_id"] == first["message_id"] == 101 and other["message_id"] == 102
    assert len(odoo.notes("helpdesk.ticket", 42)) == 2
    assert odoo.ticket(42)["team_id"] == 1  # type: ignore[index]
    assert odoo.ticket(42)["tag_ids"] == [5]  # type: ignore[index]  # linking twice is a no-op


def test_json2_requests_have_odoos_documented_shape(odoo: OdooStandin) -> None:
    with client(odoo, "json2") as odoo_client:
        odoo_client.act(action())
    write, search, post = odoo.requests
    assert [r.path for r in odoo.requests] == [
        "/json/2/helpdesk.ticket/write",
        "/json/2/mail.message/search_read",
        "/json/2/helpdesk.ticket/message_post",
    ]
    for seen in odoo.requests:
        assert seen.headers["authorization"] == f"bearer {KEY}"
        assert seen.headers["x-odoo-database"] == "acme"
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["user-agent"] == f"deskpilot/{deskpilot.__version__}"
    assert json.loads(write.body) == {
        "ids": [42],
        "vals": {"team_id": 3, "priority": "2", "tag_ids": [[4, 5]]},
    }
    assert json.loads(search.body) == {
        "domain": [
            ["model", "=", "helpdesk.ticket"],
            ["res_id", "=", 42],
            ["body", "ilike", "[deskpilot:acme:ticket:12:helpdesk]"],
        ],
        "fields": ["id", "body"],
    }
    assert json.loads(post.body) == {
        "ids": [42],
        "body": f"{NOTE}\n\n[deskpilot:acme:ticket:12:helpdesk]",
        "message_type": "comment",
        "subtype_xmlid": "mail.mt_note",
    }


def test_json2_without_a_database_option_sends_no_database_header(odoo: OdooStandin) -> None:
    with OdooClient(odoo.url, KEY, 5, {"api_user_id": "7"}) as odoo_client:
        odoo_client.act(action())
    assert all("x-odoo-database" not in r.headers for r in odoo.requests)


def test_jsonrpc_calls_execute_kw_with_the_key_as_password(odoo: OdooStandin) -> None:
    with client(odoo, "jsonrpc") as odoo_client:
        odoo_client.act(action())
    assert {r.path for r in odoo.requests} == {"/jsonrpc"}
    write = json.loads(odoo.requests[0].body)
    assert write["jsonrpc"] == "2.0" and write["method"] == "call"
    assert write["params"] == {
        "service": "object",
        "method": "execute_kw",
        "args": [
            "acme",
            7,
            KEY,
            "helpdesk.ticket",
            "write",
            [[42]],
            {"vals": {"team_id": 3, "priority": "2", "tag_ids": [[4, 5]]}},
        ],
    }
    assert all("authorization" not in r.headers for r in odoo.requests)
    assert [json.loads(r.body)["id"] for r in odoo.requests] == [1, 2, 3]


def test_jsonrpc_finds_the_uid_once_with_the_login(odoo: OdooStandin) -> None:
    with OdooClient(
        odoo.url, KEY, 5, {"api": "jsonrpc", "database": "acme", "login": "deskpilot-bot"}
    ) as odoo_client:
        odoo_client.act(action())
        odoo_client.act(action())
    methods = [json.loads(r.body)["params"]["method"] for r in odoo.requests]
    assert methods.count("authenticate") == 1 and methods[0] == "authenticate"
    assert json.loads(odoo.requests[0].body)["params"]["args"] == ["acme", "deskpilot-bot", KEY, {}]
    assert {c.uid for c in odoo.calls} == {7}


def test_jsonrpc_with_a_wrong_login_is_permanent(odoo: OdooStandin) -> None:
    with OdooClient(
        odoo.url, KEY, 5, {"api": "jsonrpc", "database": "acme", "login": "nobody"}
    ) as odoo_client:
        error = failure(odoo_client)
    assert error.transient is False
    assert (
        error.message == "Odoo refused login 'nobody' with the API key (common.authenticate returned False)"
    )
    assert odoo.calls == []


def test_odoo_17_has_jsonrpc_but_no_json2(odoo: OdooStandin) -> None:
    with OdooStandin(api_key=KEY, version=17) as old:
        old.add("helpdesk.team", 3, name="Network")
        old.add("helpdesk.tag", 5, name="vpn")
        old.create_ticket("VPN", "<p>x</p>")
        with client(old, "json2") as modern:
            error = failure(modern)
        assert (error.transient, error.upstream_status) == (False, 404)
        assert (
            error.hint == "Odoo before 19 has no /json/2 API: set options.api: jsonrpc (and options.database)"
        )
        with client(old, "jsonrpc") as legacy:
            assert legacy.act(action())["note"] == "posted"


# --- errors --------------------------------------------------------------------------------------
def test_a_wrong_api_key_is_permanent_and_not_echoed(odoo: OdooStandin) -> None:
    with client(odoo, "json2", key="wrong-key") as odoo_client:
        error = failure(odoo_client)
    assert (error.transient, error.upstream_status, error.retry_after) == (False, 401, None)
    assert (
        error.message
        == "Odoo helpdesk.ticket.write answered 401: werkzeug.exceptions.Unauthorized: Invalid apikey"
    )
    assert error.hint is not None and "API key" in error.hint and "wrong-key" not in str(error)
    assert [r.status for r in odoo.requests] == [401]
    assert odoo.ticket(42)["team_id"] is False  # type: ignore[index]
    with client(odoo, "jsonrpc", key="wrong-key") as rpc:
        rpc_error = failure(rpc)
    assert (rpc_error.transient, rpc_error.upstream_status) == (False, None)
    assert (
        rpc_error.message == "Odoo helpdesk.ticket.write failed: odoo.exceptions.AccessDenied: Access Denied"
    )


def test_error_bodies_match_the_documented_shapes(odoo: OdooStandin) -> None:
    import httpx

    documented_json2 = json.loads((FIXTURES / "json2_error_401.json").read_bytes())
    documented_rpc = json.loads((FIXTURES / "jsonrpc_error_access_denied.json").read_bytes())
    with httpx.Client() as http:
        answer = http.post(f"{odoo.url}/json/2/helpdesk.ticket/write", json={"ids": [42], "vals": {}})
        rpc = http.post(
            f"{odoo.url}/jsonrpc",
            json={
                "jsonrpc": "2.0",
                "method": "call",
                "id": 3,
                "params": {
                    "service": "object",
                    "method": "execute_kw",
                    "args": ["acme", 7, "bad", "helpdesk.ticket", "write", [[42]], {}],
                },
            },
        )
    assert answer.status_code == 401 and set(answer.json()) == set(documented_json2)
    assert {k: answer.json()[k] for k in ("name", "message", "arguments")} == {
        k: documented_json2[k] for k in ("name", "message", "arguments")
    }
    assert rpc.status_code == 200
    body = rpc.json()
    assert set(body) == set(documented_rpc) and set(body["error"]) == set(documented_rpc["error"])
    assert {k: body["error"]["data"][k] for k in ("name", "message", "arguments")} == {
        k: documented_rpc["error"]["data"][k] for k in ("name", "message", "arguments")
    }


@pytest.mark.parametrize("api", APIS)
def test_a_deleted_record_is_permanent(odoo: OdooStandin, api: str) -> None:
    del odoo.records["helpdesk.ticket"][42]
    with client(odoo, api) as odoo_client:
        error = failure(odoo_client)
    assert error.transient is False
    assert error.upstream_status == (404 if api == "json2" else None)
    assert "odoo.exceptions.MissingError: Record does not exist or has been deleted." in error.message
    assert error.hint == "the record was deleted in Odoo"
    assert odoo.notes("helpdesk.ticket", 42) == []


@pytest.mark.parametrize("api", APIS)
def test_a_record_odoo_has_not_committed_yet_is_retried(odoo: OdooStandin, api: str) -> None:
    """Odoo posts the webhook before its transaction commits: the record may not be visible yet."""
    now = datetime(2024, 5, 2, 10, 15, 44, tzinfo=UTC).timestamp()
    fresh = action()
    fresh.context["ticket_metadata"]["create_date"] = "2024-05-02 10:15:42"  # 2 s before "now"
    row = odoo.records["helpdesk.ticket"].pop(42)  # not committed: invisible to other transactions
    with OdooClient(odoo.url, KEY, 5, options(api), clock=lambda: now) as odoo_client:
        error = failure(odoo_client, fresh)
        assert (error.transient, error.retry_after) == (True, 5.0)
        assert error.message.endswith(
            "(created 2 s ago: Odoo sends its webhook before it commits, so this is retried)"
        )
        odoo.records["helpdesk.ticket"][42] = row  # Odoo commits
        assert odoo_client.act(fresh)["note"] == "posted"
    old = action()
    old.context["ticket_metadata"]["create_date"] = "2024-05-02 09:00:00"  # long ago: really deleted
    del odoo.records["helpdesk.ticket"][42]
    with OdooClient(odoo.url, KEY, 5, options(api), clock=lambda: now) as odoo_client:
        assert failure(odoo_client, old).transient is False


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("odoo.exceptions.AccessError", 403),
        ("odoo.exceptions.ValidationError", 422),
        ("odoo.exceptions.UserError", 422),
        ("builtins.ValueError", 500),
    ],
)
def test_odoo_exceptions_that_would_fail_again_are_permanent(
    odoo: OdooStandin, api: str, name: str, status: int
) -> None:
    odoo.fail_next_error(
        1, name, "You are not allowed to modify 'Helpdesk Ticket' (helpdesk.ticket) records."
    )
    with client(odoo, api) as odoo_client:
        error = failure(odoo_client)
    assert error.transient is False
    assert error.upstream_status == (status if api == "json2" else None)
    assert f"{name}: You are not allowed" in error.message


@pytest.mark.parametrize("api", APIS)
def test_values_odoo_refuses_are_permanent(odoo: OdooStandin, api: str) -> None:
    with client(odoo, api) as odoo_client:
        missing_team = failure(odoo_client, action(fields={"queue": "99"}))
        bad_priority = failure(odoo_client, action(fields={"priority": "9"}))
        unknown_field = failure(odoo_client, action(fields={"x_sla": "gold"}))
    assert "odoo.exceptions.ValidationError" in missing_team.message and missing_team.transient is False
    assert (
        "Wrong value for helpdesk.ticket.priority: '9'" in bad_priority.message and not bad_priority.transient
    )
    assert (
        "Invalid field 'x_sla' on model 'helpdesk.ticket'" in unknown_field.message
        and not unknown_field.transient
    )
    if api == "json2":
        assert (missing_team.upstream_status, bad_priority.upstream_status) == (422, 500)


@pytest.mark.parametrize("api", APIS)
def test_429_is_transient_with_retry_after(odoo: OdooStandin, api: str) -> None:
    odoo.fail_next(1, status=429, retry_after=7)
    with client(odoo, api) as odoo_client:
        error = failure(odoo_client)
        assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 7.0)
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
        odoo.fail_next(1, status=429, retry_after=when)
        dated = failure(odoo_client)
        assert dated.retry_after is not None and 80 <= dated.retry_after <= 91
        assert odoo_client.act(action())["note"] == "posted"
    assert len(odoo.notes("helpdesk.ticket", 42)) == 1


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient_and_the_retry_posts_one_note(odoo: OdooStandin, api: str, status: int) -> None:
    odoo.fail_next(1, status=status)
    with client(odoo, api) as odoo_client:
        error = failure(odoo_client)
        assert (error.transient, error.upstream_status, error.retry_after) == (True, status, None)
        assert odoo.calls == []  # nothing reached the ORM
        odoo_client.act(action())
    assert len(odoo.notes("helpdesk.ticket", 42)) == 1


@pytest.mark.parametrize("api", APIS)
def test_a_failure_between_write_and_note_is_retried_without_a_second_note(
    odoo: OdooStandin, api: str
) -> None:
    with client(odoo, api) as odoo_client:
        odoo_client.act(action())  # posted
        odoo.fail_next(1, status=503)  # the next attempt dies on its first call
        assert failure(odoo_client).transient is True
        odoo.fail_next_error(1, "psycopg2.errors.SerializationFailure", "could not serialize access")
        serialization = failure(odoo_client)
        assert serialization.transient is True and "SerializationFailure" in serialization.message
        assert odoo_client.act(action())["note"] == "already posted"
    assert len(odoo.notes("helpdesk.ticket", 42)) == 1


@pytest.mark.parametrize("api", APIS)
def test_a_timeout_is_transient(api: str) -> None:
    with OdooStandin(api_key=KEY, delay_s=1.0) as slow, client(slow, api, timeout=0.2) as odoo_client:
        error = failure(odoo_client)
    assert error.transient is True and "timed out" in error.message and error.upstream_status is None


@pytest.mark.parametrize("api", APIS)
def test_connection_refused_is_transient(api: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OdooClient(f"http://127.0.0.1:{port}", KEY, 2, options(api)) as odoo_client:
        error = failure(odoo_client)
    assert error.transient is True and "ConnectError" in error.message


def test_databases_must_match(odoo: OdooStandin) -> None:
    with OdooStandin(api_key=KEY, database="acme", other_databases=("acme-staging",)) as shared:
        shared.add("helpdesk.team", 3, name="Network")
        shared.add("helpdesk.tag", 5, name="vpn")
        shared.create_ticket("VPN", "<p>x</p>")
        with OdooClient(shared.url, KEY, 5, {"api_user_id": "7"}) as no_header:
            assert failure(no_header).upstream_status == 404  # several databases, none named
        with client(shared, "json2") as named:
            assert named.act(action())["note"] == "posted"
    with client(odoo, "jsonrpc", database="nope") as wrong:
        error = failure(wrong)
    assert error.transient is False and 'database "nope" does not exist' in error.message


# --- construction --------------------------------------------------------------------------------
def test_the_registered_factory_builds_a_client(odoo: OdooStandin) -> None:
    built = action_client("odoo", url=odoo.url, token=KEY, timeout=5, options=options("json2"))
    try:
        assert isinstance(built, OdooClient)
        assert built.act(action())["note"] == "posted"
    finally:
        built.close()
    with pytest.raises(ConfigError, match="no Odoo API key"):
        action_client("odoo", url=odoo.url, token=None, timeout=5, options={})


@pytest.mark.parametrize(
    ("url", "opts", "message"),
    [
        ("ftp://odoo.example", {}, "is not an http(s) URL"),
        ("https://odoo.example", {"api": "jsonrpc", "api_user_id": "7"}, "options.database"),
        ("https://odoo.example", {"api": "jsonrpc", "database": "acme"}, "options.api_user_id"),
        ("https://odoo.example", {"api_user": "7"}, "did you mean 'api_user_id'?"),
    ],
)
def test_bad_configuration_is_refused_at_construction(url: str, opts: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        OdooClient(url, KEY, 5, opts)
    assert message in str(info.value)
