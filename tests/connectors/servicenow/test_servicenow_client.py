"""The ServiceNow client against a real local stand-in instance (Table API over sockets, no mocks)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.servicenow_standin import ServiceNowStandin

from deskpilot.connectors import ActionFailedError, action_client, connector_info, known_connectors
from deskpilot.connectors.servicenow import ServiceNowClient
from deskpilot.errors import ActionError, ConfigError
from deskpilot.types import Action

FIXTURES = Path(__file__).parent / "fixtures"
USER, PASSWORD = "deskpilot.integration", "pa:ss-w0rd"
CREDENTIAL = f"{USER}:{PASSWORD}"
NETWORK = "287ebd7da9fe198100f92cc8d1d2154e"
BETH = "46b87022a9fe198101a78787e40d7547"
NOTE = "deskpilot routed this incident: intent 'network' at 0.93."


@pytest.fixture
def sn() -> Iterator[ServiceNowStandin]:
    with ServiceNowStandin(users={USER: PASSWORD}, tokens={"oauth-abc": USER}) as server:
        yield server


@pytest.fixture
def sys_id(sn: ServiceNowStandin) -> str:
    return sn.add_record(short_description="VPN drops", caller_id="ann@example.com")


@pytest.fixture
def client(sn: ServiceNowStandin) -> Iterator[ServiceNowClient]:
    with ServiceNowClient(sn.url, CREDENTIAL, timeout=5) as http:
        yield http


def action(sys_id: str, key: str = "acme:ticket:1:itsm", **fields: Any) -> Action:
    return Action(
        tenant="acme",
        system="itsm",
        connector="servicenow",
        kind="route",
        ticket_id=1,
        external_id=sys_id,
        fields=fields or {"group": NETWORK, "assignee": BETH, "priority": "high"},
        idempotency_key=key,
        context={"note": NOTE, "ticket_metadata": {"sys_id": sys_id}, "triage": False},
    )


def failure(client: ServiceNowClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert isinstance(info.value, ActionError)
    assert PASSWORD not in str(info.value) and CREDENTIAL not in str(info.value)
    return info.value


def test_fields_and_the_work_note_are_applied(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient
) -> None:
    summary = client.act(action(sys_id))
    record = sn.record(sys_id)
    assert (record["assignment_group"], record["assigned_to"]) == (NETWORK, BETH)
    assert (record["impact"], record["urgency"], record["priority"]) == ("1", "2", "2")
    assert (record["sys_updated_by"], record["sys_mod_count"]) == (USER, "1")
    assert sn.work_notes(sys_id) == [f"{NOTE}\n\n[deskpilot:acme:ticket:1:itsm]"]
    assert summary == {
        "status": 200,
        "table": "incident",
        "sys_id": sys_id,
        "number": record["number"],
        "set": {"assignment_group": NETWORK, "assigned_to": BETH, "impact": "1", "urgency": "2"},
        "priority": "2",
        "work_note": "added",
        "ignored_fields": [],
    }
    lookup, patch = sn.seen()
    assert (lookup.method, lookup.path) == ("GET", "/api/now/table/sys_journal_field")
    assert lookup.query["sysparm_query"] == (
        f"element_id={sys_id}^element=work_notes^valueLIKE[deskpilot:acme:ticket:1:itsm]"
    )
    assert (patch.method, patch.path, patch.status) == ("PATCH", f"/api/now/table/incident/{sys_id}", 200)
    assert patch.json()["work_notes"].endswith("[deskpilot:acme:ticket:1:itsm]")
    expected_auth = "Basic " + base64.b64encode(CREDENTIAL.encode()).decode()
    assert patch.headers["authorization"] == expected_auth
    assert patch.headers["content-type"] == "application/json"
    assert patch.headers["user-agent"].startswith("deskpilot/")


def test_the_same_action_twice_adds_its_note_once(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient
) -> None:
    first = client.act(action(sys_id))
    second = client.act(action(sys_id))
    assert (first["work_note"], second["work_note"]) == ("added", "already there")
    assert len(sn.work_notes(sys_id)) == 1
    patches = sn.seen("PATCH")
    assert len(patches) == 2 and "work_notes" not in patches[1].json()
    assert patches[1].json() == {k: v for k, v in patches[0].json().items() if k != "work_notes"}
    # another decision for the same incident is another note
    client.act(action(sys_id, key="acme:ticket:1:itsm:again"))
    assert len(sn.work_notes(sys_id)) == 2


def test_a_patch_that_failed_is_retried_with_its_note(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient
) -> None:
    sn.fail_next(1, 502, method="PATCH")
    assert failure(client, action(sys_id)).transient
    assert sn.work_notes(sys_id) == [] and sn.record(sys_id)["assignment_group"] == ""
    assert client.act(action(sys_id))["work_note"] == "added"
    assert len(sn.work_notes(sys_id)) == 1


def test_the_record_lookup_is_idempotent_too(sn: ServiceNowStandin, sys_id: str) -> None:
    with ServiceNowClient(sn.url, CREDENTIAL, timeout=5, options={"note_lookup": "record"}) as client:
        assert client.act(action(sys_id))["work_note"] == "added"
        assert client.act(action(sys_id))["work_note"] == "already there"
    assert len(sn.work_notes(sys_id)) == 1
    lookup = sn.seen("GET")[0]
    assert lookup.path == f"/api/now/table/incident/{sys_id}"
    assert lookup.query == {"sysparm_fields": "work_notes", "sysparm_display_value": "true"}


def test_a_bearer_token_works(sn: ServiceNowStandin, sys_id: str) -> None:
    with ServiceNowClient(sn.url, "bearer:oauth-abc", timeout=5) as client:
        client.act(action(sys_id))
    assert sn.seen("PATCH")[0].headers["authorization"] == "Bearer oauth-abc"


def test_fields_the_table_lacks_are_reported(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="deskpilot.connectors.servicenow"):
        summary = client.act(action(sys_id, group=NETWORK, u_team="blue"))
    assert summary["ignored_fields"] == ["u_team"]
    assert sn.record(sys_id)["assignment_group"] == NETWORK
    assert "ServiceNow ignored field(s) u_team of incident INC" in caplog.text


def test_401_is_permanent(sn: ServiceNowStandin, sys_id: str) -> None:
    with ServiceNowClient(sn.url, f"{USER}:wrong", timeout=5) as client:
        error = failure(client, action(sys_id))
    assert not error.transient and error.upstream_status == 401
    assert "answered 401: User Not Authenticated: Required to provide Auth information" in str(error)
    assert error.hint is not None and "credential" in error.hint
    assert sn.work_notes(sys_id) == []


def test_404_is_permanent(sn: ServiceNowStandin, client: ServiceNowClient) -> None:
    missing = "0" * 32
    error = failure(client, action(missing))
    assert not error.transient and error.upstream_status == 404
    assert str(error).startswith(
        f"ServiceNow PATCH /api/now/table/incident/{missing} answered 404: No Record found"
    )


def test_403_is_permanent(sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient) -> None:
    sn.forbid("PATCH", "incident")
    error = failure(client, action(sys_id))
    assert not error.transient and error.upstream_status == 403
    assert "Operation Failed: ACL Exception Update Failed due to security constraints" in str(error)


@pytest.mark.parametrize("retry_after", ["7", "http-date"])
def test_429_is_transient_with_retry_after(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient, retry_after: str
) -> None:
    value = formatdate(time.time() + 30, usegmt=True) if retry_after == "http-date" else "7"
    sn.fail_next(1, 429, value)
    error = failure(client, action(sys_id))
    assert error.transient and error.upstream_status == 429
    assert "Rate limit exceeded: Rate limit of 100 requests per hour for Table API exceeded" in str(error)
    assert error.retry_after is not None
    if retry_after == "7":
        assert error.retry_after == 7
    else:
        assert 20 <= error.retry_after <= 31
    assert client.act(action(sys_id))["work_note"] == "added"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient, status: int) -> None:
    sn.fail_next(1, status)
    error = failure(client, action(sys_id))
    assert error.transient and error.upstream_status == status and error.retry_after is None


def test_a_page_instead_of_json_is_transient(
    sn: ServiceNowStandin, sys_id: str, client: ServiceNowClient
) -> None:
    sn.fail_next(1, 503, html=True)
    assert "Your instance is hibernating" in str(failure(client, action(sys_id)))
    sn.fail_next(1, 200, html=True)
    error = failure(client, action(sys_id))
    assert error.transient and "answered 200 without JSON" in str(error)


def test_a_timeout_is_transient(sys_id: str) -> None:
    with ServiceNowStandin(users={USER: PASSWORD}, delay_s=1.0) as slow:
        slow_id = slow.add_record(short_description="slow")
        with ServiceNowClient(slow.url, CREDENTIAL, timeout=0.2) as client:
            error = failure(client, action(slow_id))
    assert error.transient and "timed out" in str(error)


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ServiceNowClient(f"http://127.0.0.1:{port}", CREDENTIAL, timeout=2) as client:
        error = failure(client, action("a" * 32))
    assert error.transient and "ConnectError" in str(error)


def test_a_ticket_from_elsewhere_is_permanent(client: ServiceNowClient, sn: ServiceNowStandin) -> None:
    foreign = Action("acme", "itsm", "servicenow", "route", 9, "ZD-1234", {"group": NETWORK}, "k")
    error = failure(client, foreign)
    assert not error.transient and "ticket 9 has no ServiceNow sys_id" in str(error)
    assert sn.seen() == []


@pytest.mark.parametrize(
    ("url", "token", "options", "expected"),
    [
        ("http://sn.test", None, {}, "no ServiceNow credential is configured"),
        ("http://sn.test", "just-a-password", {}, "not 'user:password' or 'bearer:<token>'"),
        ("http://sn.test", "bearer:", {}, "has no token after 'bearer:'"),
        ("ftp://sn.test", CREDENTIAL, {}, "is not an http(s) URL"),
        ("https://sn.test/api/now/table", CREDENTIAL, {}, "points into the API"),
        ("https://sn.test", CREDENTIAL, {"tabel": "incident"}, "unknown ServiceNow option(s) tabel"),
    ],
)
def test_configuration_errors(url: str, token: str | None, options: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceNowClient(url, token, timeout=1, options=options)
    assert expected in str(info.value)
    assert "just-a-password" not in str(info.value) and PASSWORD not in str(info.value)


def test_the_registry_builds_the_client(sn: ServiceNowStandin, sys_id: str) -> None:
    assert "servicenow" in known_connectors()
    info = connector_info("servicenow")
    assert info is not None and info.webhook == "servicenow" and info.docs == "docs/connectors/servicenow.md"
    client = action_client(
        "servicenow", url=sn.url, token=CREDENTIAL, timeout=5, options={"table": "incident"}
    )
    try:
        assert isinstance(client, ServiceNowClient)
        assert client.act(action(sys_id))["work_note"] == "added"
    finally:
        client.close()


def test_the_standin_answers_in_the_documented_shapes(sn: ServiceNowStandin, sys_id: str) -> None:
    """The stand-in's bodies have the keys of the documented examples (fixtures)."""
    auth = (USER, PASSWORD)
    with httpx.Client(base_url=sn.url, timeout=5) as http:
        denied = http.get(f"/api/now/table/incident/{sys_id}", auth=(USER, "nope"))
        missing = http.get(f"/api/now/table/incident/{'0' * 32}", auth=auth)
        fields = "sys_id,number,assignment_group,impact,urgency,priority,sys_updated_on"
        patched = http.patch(
            f"/api/now/table/incident/{sys_id}",
            params={"sysparm_exclude_reference_link": "true", "sysparm_fields": fields},
            json={"assignment_group": NETWORK, "impact": "2", "urgency": "2"},
            auth=auth,
        )
        linked = http.get(
            f"/api/now/table/incident/{sys_id}", params={"sysparm_fields": "assignment_group"}, auth=auth
        )
    for response, name in ((denied, "401"), (missing, "404")):
        assert response.json() == json.loads((FIXTURES / f"table_api_error_{name}.json").read_text())
    assert denied.headers["WWW-Authenticate"] == 'BASIC realm="Service-now"'
    documented = json.loads((FIXTURES / "table_api_patch_response.json").read_text())
    assert patched.status_code == 200 and set(patched.json()["result"]) == set(documented["result"])
    assert patched.json()["result"]["priority"] == "3"
    assert linked.json()["result"]["assignment_group"] == {
        "link": f"{sn.url}/api/now/table/sys_user/{NETWORK}",
        "value": NETWORK,
    }
