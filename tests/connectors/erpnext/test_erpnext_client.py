"""The ERPNext client against a real local stand-in site (no mocks of our own code)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from support.erpnext_standin import ErpnextStandin

import deskpilot
from deskpilot.connectors import ActionFailedError, action_client
from deskpilot.connectors.erpnext import ErpnextClient
from deskpilot.connectors.erpnext.client import error_text, parse_credential, server_messages
from deskpilot.errors import ActionError, ConfigError
from deskpilot.types import Action

NOTE = "Routed to Network: model 'network' at 0.91 (threshold 0.60)."
OPTIONS = {"queue_field": "custom_team", "api_user": "deskpilot@example.com"}
FIELDS: dict[str, Any] = {
    "queue": "Network Team",
    "issue_type": "Network",
    "priority": "High",
    "assignee": "agent@example.com",
}
ADD = "/api/method/frappe.desk.form.assign_to.add"


@pytest.fixture
def site() -> Iterator[ErpnextStandin]:
    with ErpnextStandin(custom_links={"custom_team": ("Network Team", "Billing Team")}) as server:
        yield server


@pytest.fixture
def issue(site: ErpnextStandin) -> str:
    return str(site.add_issue("VPN drops every few minutes", "<p>Since 9am.</p>")["name"])


@pytest.fixture
def client(site: ErpnextStandin) -> Iterator[ErpnextClient]:
    with ErpnextClient(site.url, site.credential, timeout=5, options=OPTIONS) as http:
        yield http


def action(
    name: str, fields: dict[str, Any] | None = None, *, key: str = "acme:ticket:7:erp", note: str = NOTE
) -> Action:
    return Action(
        tenant="acme",
        system="erp",
        connector="erpnext",
        kind="route",
        ticket_id=7,
        external_id=name,
        fields=dict(FIELDS if fields is None else fields),
        idempotency_key=key,
        context={"note": note, "ticket_metadata": {"doctype": "Issue", "name": name}, "triage": False},
    )


def failure(client: ErpnextClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert isinstance(info.value, ActionError)
    return info.value


def test_a_route_action_sets_fields_assigns_and_comments(
    site: ErpnextStandin, issue: str, client: ErpnextClient
) -> None:
    summary = client.act(action(issue))
    [comment] = site.comments_on(issue)
    assert summary == {
        "issue": issue,
        "updated": {"custom_team": "Network Team", "issue_type": "Network", "priority": "High"},
        "assigned": ["agent@example.com"],
        "already_assigned": False,
        "comment": comment["name"],
        "comment_existed": False,
    }
    doc = site.issue(issue)
    assert doc is not None
    assert (doc["issue_type"], doc["priority"], doc["custom_team"]) == ("Network", "High", "Network Team")
    assert doc["modified_by"] == "deskpilot@example.com"
    assert json.loads(doc["_assign"]) == ["agent@example.com"]
    assert site.todos[0]["assigned_by"] == "deskpilot@example.com"
    assert comment["comment_type"] == "Comment" and comment["reference_doctype"] == "Issue"
    assert comment["content"] == (
        "<p>Routed to Network: model &#x27;network&#x27; at 0.91 (threshold 0.60).</p>"
        "<p>deskpilot:acme:ticket:7:erp</p>"
    )
    assert site.calls() == [
        ("PUT", f"/api/resource/Issue/{issue}"),
        ("POST", ADD),
        ("GET", "/api/resource/Comment"),
        ("POST", "/api/resource/Comment"),
    ]
    put, add, find, post = site.requests
    assert {r.status for r in site.requests} == {200}
    assert put.headers["authorization"] == f"token {site.credential}"
    assert put.headers["user-agent"] == f"deskpilot/{deskpilot.__version__}"
    assert put.headers["content-type"] == "application/json"
    assert put.json() == {"custom_team": "Network Team", "issue_type": "Network", "priority": "High"}
    assert add.json() == {"doctype": "Issue", "name": issue, "assign_to": ["agent@example.com"]}
    assert json.loads(find.query["filters"])[-1] == ["content", "like", "%deskpilot:acme:ticket:7:erp%"]
    assert find.body == b""
    assert post.json()["reference_name"] == issue


def test_acting_twice_changes_nothing_more(site: ErpnextStandin, issue: str, client: ErpnextClient) -> None:
    first = client.act(action(issue))
    again = client.act(action(issue))
    assert len(site.comments_on(issue)) == 1
    assert site.open_assignees(issue) == ["agent@example.com"]
    assert again["comment"] == first["comment"] and again["comment_existed"] is True
    assert again["already_assigned"] is True
    assert site.calls()[4:] == [  # the second run posts no comment
        ("PUT", f"/api/resource/Issue/{issue}"),
        ("POST", ADD),
        ("GET", "/api/resource/Comment"),
    ]
    # another decision (a new key) comments again; the like filter is not fooled by wildcards
    client.act(action(issue, key="acme:ticket:7:erp2"))
    client.act(action(issue, key="acme_ticket_7_erp"))
    assert len(site.comments_on(issue)) == 3


def test_old_frappe_duplicate_todo_error_is_success(issue: str, site: ErpnextStandin) -> None:
    site.duplicate_assign = "error"
    with ErpnextClient(site.url, site.credential, timeout=5, options=OPTIONS) as http:
        http.act(action(issue))
        again = http.act(action(issue))
    assert again["already_assigned"] is True
    assert [r.status for r in site.requests if r.path == ADD] == [200, 417]
    assert site.open_assignees(issue) == ["agent@example.com"]


def test_wrong_credentials_are_permanent_and_not_echoed(site: ErpnextStandin, issue: str) -> None:
    with ErpnextClient(site.url, "3f1c0a9e2b7d4c1:wrong-secret-value", timeout=5) as wrong:
        error = failure(wrong, action(issue, {"priority": "Low"}))
    assert (error.transient, error.upstream_status, error.retry_after) == (False, 401, None)
    assert error.message == (
        f"ERPNext PUT /api/resource/Issue/{issue} answered 401 AuthenticationError: "
        "frappe.exceptions.AuthenticationError"
    )
    assert error.hint == "check the ERPNext credential (api_key:api_secret of the API user)"
    assert "wrong-secret-value" not in str(error) and site.api_secret not in str(error)
    assert site.issue(issue)["priority"] == "Medium"  # type: ignore[index]


def test_unknown_issue_is_permanent_404(site: ErpnextStandin, client: ErpnextClient) -> None:
    error = failure(client, action("ISS-2025-09999"))
    assert (error.transient, error.upstream_status) == (False, 404)
    assert error.message == (
        "ERPNext PUT /api/resource/Issue/ISS-2025-09999 answered 404 DoesNotExistError: "
        "Issue ISS-2025-09999 not found"
    )
    assert error.hint == "the Issue was deleted or renamed in ERPNext"
    assert site.comments == [] and site.todos == []


def test_unknown_link_values_are_permanent_417(
    site: ErpnextStandin, issue: str, client: ErpnextClient
) -> None:
    error = failure(client, action(issue, {"issue_type": "Nope"}))
    assert (error.transient, error.upstream_status) == (False, 417)
    assert error.message.endswith("answered 417 LinkValidationError: Could not find Issue Type: Nope")
    error = failure(client, action(issue, {"assignee": "ghost@example.com"}))
    assert (
        error.message == f"ERPNext POST {ADD} answered 417 LinkValidationError: "
        "Could not find Allocated To: ghost@example.com"
    )
    assert site.todos == []


def test_409_is_permanent(site: ErpnextStandin, issue: str, client: ErpnextClient) -> None:
    site.fail_next(1, status=409)
    error = failure(client, action(issue))
    assert (error.transient, error.upstream_status) == (False, 409)
    assert "409 DuplicateEntryError: injected DuplicateEntryError (409)" in error.message


def test_429_with_retry_after_seconds_is_transient(
    site: ErpnextStandin, issue: str, client: ErpnextClient
) -> None:
    site.fail_next(1, status=429, retry_after=7)
    error = failure(client, action(issue))
    assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 7.0)
    assert error.message == f"ERPNext PUT /api/resource/Issue/{issue} answered 429: Too Many Requests"
    client.act(action(issue))  # the retry goes through
    assert len(site.comments_on(issue)) == 1


def test_429_with_an_http_date_or_only_the_rate_limit_reset(
    site: ErpnextStandin, issue: str, client: ErpnextClient
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    site.fail_next(1, status=429, retry_after=format_datetime(when, usegmt=True))
    error = failure(client, action(issue))
    assert error.retry_after is not None and 100 < error.retry_after <= 120
    site.fail_next(1, status=429)  # no Retry-After: Frappe's X-RateLimit-Reset (60 here)
    assert failure(client, action(issue)).retry_after == 60.0


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "500 OperationalError: injected OperationalError (500)"),
        (502, "502: 502 Bad Gateway 502 Bad Gateway nginx"),
        (503, "503: 503 Service Temporarily Unavailable 503 Service Temporarily Unavailable nginx"),
        (504, "504: 504 Gateway Time-out 504 Gateway Time-out nginx"),
    ],
)
def test_5xx_is_transient(
    site: ErpnextStandin, issue: str, client: ErpnextClient, status: int, message: str
) -> None:
    site.fail_next(1, status=status)
    error = failure(client, action(issue))
    assert (error.transient, error.upstream_status, error.retry_after) == (True, status, None)
    assert error.message == f"ERPNext PUT /api/resource/Issue/{issue} answered {message}"


def test_a_failure_midway_completes_on_retry_without_duplicates(
    site: ErpnextStandin, issue: str, client: ErpnextClient
) -> None:
    client.act(action(issue, {"priority": "Low"}, key="k0", note="an earlier decision"))
    site.requests.clear()
    site.fail_next(1, status=503, method="GET", path="/api/resource/Comment")
    error = failure(client, action(issue))  # PUT and assignment done, the comment lookup fails
    assert error.transient and error.upstream_status == 503
    assert site.calls() == [
        ("PUT", f"/api/resource/Issue/{issue}"),
        ("POST", ADD),
        ("GET", "/api/resource/Comment"),
    ]
    client.act(action(issue))
    contents = [c["content"] for c in site.comments_on(issue)]
    assert [c.endswith("<p>deskpilot:acme:ticket:7:erp</p>") for c in contents] == [False, True]
    assert site.open_assignees(issue) == ["agent@example.com"]


def test_timeout_is_transient() -> None:
    with ErpnextStandin(delay_s=1.0) as slow:
        name = str(slow.add_issue("slow")["name"])
        with ErpnextClient(slow.url, slow.credential, timeout=0.2, options=OPTIONS) as http:
            error = failure(http, action(name))
    assert error.transient and error.upstream_status is None
    assert error.message == f"ERPNext PUT /api/resource/Issue/{name} timed out (ReadTimeout)"


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ErpnextClient(f"http://127.0.0.1:{port}", "k:s", timeout=2, options=OPTIONS) as http:
        error = failure(http, action("ISS-1"))
    assert error.transient and error.upstream_status is None
    assert error.message.startswith("ERPNext PUT /api/resource/Issue/ISS-1 failed: ConnectError")


def test_an_impossible_plan_is_permanent_without_any_request(site: ErpnextStandin, issue: str) -> None:
    with ErpnextClient(site.url, site.credential, timeout=5) as no_options:
        error = failure(no_options, action(issue))
    assert error.transient is False and error.upstream_status is None
    assert error.message == "the policy routes 'queue' to ERPNext but its options have no queue_field"
    assert site.requests == []


def test_credentials_and_url_are_checked_up_front() -> None:
    assert parse_credential("key:secret") == "token key:secret"
    for bad in (None, "", "no-colon", ":secret", "key:", "key: secret"):
        with pytest.raises(ConfigError) as info:
            ErpnextClient("https://erp.example.com", bad, timeout=5)
        assert "secret" not in info.value.message.replace("api_secret", "")
    with pytest.raises(ConfigError, match="is not an http"):
        ErpnextClient("erp.example.com", "k:s", timeout=5)


def test_the_registry_builds_the_client(site: ErpnextStandin, issue: str) -> None:
    http = action_client("erpnext", url=site.url + "/", token=site.credential, timeout=5, options=OPTIONS)
    try:
        assert isinstance(http, ErpnextClient) and http.base_url == site.url
        assert http.act(action(issue))["assigned"] == ["agent@example.com"]
    finally:
        http.close()


def test_frappe_error_bodies_are_read() -> None:
    import httpx

    nested = {
        "exc_type": "ValidationError",
        "exception": "frappe.exceptions.ValidationError: long traceback line",
        "_server_messages": json.dumps([json.dumps({"message": "<b>Status</b> cannot be Foo"}), "plain"]),
    }
    assert server_messages(nested) == ["<b>Status</b> cannot be Foo", "plain"]
    assert error_text(httpx.Response(417, json=nested)) == ("ValidationError", "Status cannot be Foo; plain")
    only_exception = {
        "exc_type": "PermissionError",
        "exception": "Traceback...\nfrappe.PermissionError: No access",
    }
    assert error_text(httpx.Response(403, json=only_exception)) == (
        "PermissionError",
        "frappe.PermissionError: No access",
    )
    assert error_text(httpx.Response(500, text="x" * 400))[1].endswith("...")
    assert error_text(httpx.Response(502, text=""))[1] == "Bad Gateway"
    assert server_messages({"_server_messages": "not json"}) == ["not json"]
