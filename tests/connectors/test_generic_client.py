"""The generic outbound client against a real local stand-in helpdesk (no mocks)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpdesk_standin import HelpdeskStandin

import deskpilot
from deskpilot.connectors import ActionFailedError, action_client, get_connector, known_connectors
from deskpilot.connectors.generic import GenericClient, GenericConnector
from deskpilot.connectors.generic.client import retry_after_seconds
from deskpilot.errors import ActionError, ConfigError, InputDataError
from deskpilot.types import Action

TOKEN = "desk-token"


def action(key: str = "act-1", *, external_id: str | None = "T-1", **fields: Any) -> Action:
    return Action(
        tenant="acme",
        system="desk",
        connector="generic",
        kind="update",
        ticket_id=7,
        external_id=external_id,
        fields=fields or {"queue": "network", "priority": "high"},
        idempotency_key=key,
    )


@pytest.fixture
def desk() -> Iterator[HelpdeskStandin]:
    with HelpdeskStandin(token=TOKEN) as server:
        yield server


@pytest.fixture
def client(desk: HelpdeskStandin) -> Iterator[GenericClient]:
    with GenericClient(desk.url, TOKEN, timeout=5) as http:
        yield http


def failure(client: GenericClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert isinstance(info.value, ActionError)
    return info.value


def test_fields_are_applied_with_the_documented_request(desk: HelpdeskStandin, client: GenericClient) -> None:
    summary = client.act(action())
    assert summary == {
        "status": 200,
        "replayed": False,
        "response": {
            "ticket": {"id": "T-1", "fields": {"queue": "network", "priority": "high"}},
            "action_id": 1,
        },
    }
    assert desk.ticket("T-1") == {"queue": "network", "priority": "high"}
    [seen] = desk.requests
    assert seen.path == "/api/tickets/T-1/actions"
    assert seen.headers["idempotency-key"] == "act-1"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["user-agent"] == f"deskpilot/{deskpilot.__version__}"
    assert "x-deskpilot-signature" not in seen.headers  # no secret, no signature
    assert json.loads(seen.body) == {
        "kind": "update",
        "fields": {"queue": "network", "priority": "high"},
        "ticket_id": 7,
        "external_id": "T-1",
        "tenant": "acme",
    }
    with HelpdeskStandin() as plain, GenericClient(plain.url, None, timeout=5) as anonymous:
        anonymous.act(action())
        assert "authorization" not in plain.requests[0].headers


def test_ticket_path_without_external_id_and_with_odd_characters(
    desk: HelpdeskStandin, client: GenericClient
) -> None:
    client.act(action("k-own", external_id=None))
    client.act(action("k-odd", external_id="T/42 x?"))
    assert [r.path for r in desk.requests] == [
        "/api/tickets/deskpilot-7/actions",
        "/api/tickets/T%2F42%20x%3F/actions",
    ]
    assert [a.ticket for a in desk.applied] == ["deskpilot-7", "T/42 x?"]


def test_same_key_twice_is_applied_once(desk: HelpdeskStandin, client: GenericClient) -> None:
    first = client.act(action(queue="network"))
    again = client.act(action(queue="network"))
    assert again["replayed"] is True and first["replayed"] is False
    assert again["response"] == first["response"]
    assert desk.applied_keys() == ["act-1"]
    assert desk.replays == 1
    assert len(desk.requests) == 2
    client.act(action("act-2", queue="billing"))
    assert desk.applied_keys() == ["act-1", "act-2"]
    assert desk.ticket("T-1") == {"queue": "billing"}


def test_same_key_concurrently_is_applied_once(desk: HelpdeskStandin) -> None:
    def send() -> None:
        with GenericClient(desk.url, TOKEN, timeout=5) as own:
            own.act(action())

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert desk.applied_keys() == ["act-1"]
    assert desk.replays == 5


def test_key_reused_for_another_action_is_permanent(client: GenericClient) -> None:
    client.act(action(queue="network"))
    error = failure(client, action(queue="billing"))
    assert (error.transient, error.upstream_status) == (False, 422)
    assert "Idempotency-Key 'act-1' was used with different parameters" in error.message


def test_wrong_token_is_permanent_with_status_and_message(desk: HelpdeskStandin) -> None:
    with GenericClient(desk.url, "wrong", timeout=5) as wrong:
        error = failure(wrong, action())
    assert (error.transient, error.upstream_status, error.retry_after) == (False, 401, None)
    assert error.message == f"POST {desk.url}/tickets/T-1/actions answered 401: missing or wrong bearer token"
    assert error.hint == "check the connector token"
    assert "wrong" not in error.message.replace("missing or wrong", "")  # the token is not echoed
    assert desk.applied == []


def test_503_is_transient_and_nothing_is_applied(desk: HelpdeskStandin, client: GenericClient) -> None:
    desk.fail_next(1, status=503)
    error = failure(client, action())
    assert (error.transient, error.upstream_status, error.retry_after) == (True, 503, None)
    assert error.message.endswith("answered 503: injected failure 503")
    assert desk.applied == []
    client.act(action())  # the retry goes through, once
    assert desk.applied_keys() == ["act-1"] and desk.replays == 0


def test_429_exposes_retry_after(desk: HelpdeskStandin, client: GenericClient) -> None:
    desk.fail_next(1, status=429, retry_after=7)
    error = failure(client, action())
    assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 7.0)
    desk.fail_next(1, status=400)
    error = failure(client, action())
    assert (error.transient, error.upstream_status) == (False, 400)


def test_retry_after_as_seconds_or_http_date() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with GenericClient(f"http://127.0.0.1:{port}/api", TOKEN, timeout=5) as dead:
        error = failure(dead, action())
    assert error.transient is True and error.upstream_status is None
    assert error.message.startswith(
        f"POST http://127.0.0.1:{port}/api/tickets/T-1/actions failed: ConnectError"
    )


def test_timeout_is_transient() -> None:
    with (
        HelpdeskStandin(token=TOKEN, delay_s=2.0) as slow,
        GenericClient(slow.url, TOKEN, timeout=0.2) as http,
    ):
        error = failure(http, action())
        assert error.transient is True
        assert error.message == f"POST {slow.url}/tickets/T-1/actions timed out (ReadTimeout)"


def test_signed_requests_verify_on_the_receiving_side() -> None:
    with HelpdeskStandin(secret="shared") as desk:
        with GenericClient(desk.url, None, timeout=5, secret="shared") as good:
            good.act(action())
        with GenericClient(desk.url, None, timeout=5, secret="other") as bad:
            error = failure(bad, action("act-2"))
        seen = desk.requests[0]
    assert seen.headers["x-deskpilot-delivery"] == "act-1"
    GenericConnector().verify(seen.headers, seen.body, secret="shared")
    assert (error.transient, error.upstream_status) == (False, 401)
    assert "X-Deskpilot-Signature does not match the body" in error.message
    assert desk.applied_keys() == ["act-1"]


def test_unserialisable_fields_are_permanent(client: GenericClient) -> None:
    error = failure(client, action(when=object()))
    assert error.transient is False and error.message.startswith("action fields are not JSON")


def test_state_file_keeps_idempotency_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "desk.json"
    with HelpdeskStandin(state_file=state) as first, GenericClient(first.url, None, timeout=5) as http:
        http.act(action())
    with HelpdeskStandin(state_file=state) as second, GenericClient(second.url, None, timeout=5) as http:
        assert http.act(action())["replayed"] is True
        http.act(action("act-2"))
        assert second.applied_keys() == ["act-1", "act-2"] and second.replays == 1
        assert second.ticket("T-1") == {"queue": "network", "priority": "high"}
    assert [a["key"] for a in json.loads(state.read_text())["applied"]] == ["act-1", "act-2"]
    assert [p.name for p in tmp_path.iterdir()] == ["desk.json"]  # no temp files left


def test_get_ticket_and_unknown_paths(desk: HelpdeskStandin, client: GenericClient) -> None:
    import httpx

    client.act(action())
    with httpx.Client() as http:
        assert http.get(f"{desk.url}/tickets/T-1").json() == {"id": "T-1", "fields": action().fields}
        assert http.get(f"{desk.url}/tickets/nope").status_code == 404
        assert http.post(f"{desk.url}/nothing", content=b"{}").status_code == 404
        bad = http.post(
            f"{desk.url}/tickets/T-1/actions", content=b"[]", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert (bad.status_code, bad.json()["error"]["message"]) == (400, "body must be a JSON object")


def test_registry_knows_generic_and_names_the_known_ones() -> None:
    assert "generic" in known_connectors()
    assert get_connector("generic").name == "generic"
    with pytest.raises(InputDataError) as unknown:
        get_connector("fax")
    assert str(unknown.value).startswith("unknown connector 'fax' (known connectors: ")
    assert "generic" in str(unknown.value)
    with pytest.raises(
        ConfigError, match=r"unknown connector 'fax' for actions \(known connectors: .*generic"
    ):
        action_client("fax", url="http://127.0.0.1:1", token=None, timeout=1)
    outbound = action_client("generic", url="http://127.0.0.1:1/api", token=None, timeout=1)
    assert isinstance(outbound, GenericClient)
    outbound.close()
    with pytest.raises(ConfigError, match="is not an http"):
        GenericClient("ftp://desk", None, timeout=1)
