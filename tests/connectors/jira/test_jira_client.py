"""The Jira client against a real local stand-in site (sockets, Jira's shapes and errors; no mocks)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.jira_standin import JiraStandin

from deskpilot.connectors import (
    ActionFailedError,
    action_client,
    connector_info,
    get_connector,
    known_connectors,
)
from deskpilot.connectors.jira import JiraClient, JiraConnector, adf
from deskpilot.connectors.jira.client import authorization, error_text, retry_after
from deskpilot.errors import ActionError, ConfigError
from deskpilot.types import Action

OPTIONS = {"bot_account_id": "5b10ac8d82e05b22cc7d4ef5", "custom_field": "customfield_10050"}
ISSUE = "/rest/api/3/issue/SUP-17"
COMMENTS = f"{ISSUE}/comment"


def action(key: str = "d41:jira", *, external_id: str = "SUP-17", **fields: Any) -> Action:
    return Action(
        tenant="acme",
        system="jira",
        connector="jira",
        kind="route",
        ticket_id=41,
        external_id=external_id,
        fields=fields
        or {"queue": "Network team", "components": "Network", "priority": "High", "labels": "vpn"},
        idempotency_key=key,
        context={"note": "intent: network at 0.93 (threshold 0.70)"},
    )


@pytest.fixture
def site() -> Iterator[JiraStandin]:
    with JiraStandin() as jira:
        jira.add_issue("SUP-17", "VPN drops every few minutes", "since 9am", labels=["customer"])
        yield jira


@pytest.fixture
def client(site: JiraStandin) -> Iterator[JiraClient]:
    with JiraClient(site.url, site.credentials, timeout=5, options=OPTIONS) as jira:
        yield jira


def failure(client: JiraClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert isinstance(info.value, ActionError)
    return info.value


def marked(site: JiraStandin, key: str = "SUP-17") -> list[dict[str, Any]]:
    return [c for c in site.comments(key) if "[deskpilot:" in adf.to_text(c["body"])]


def test_route_sets_the_fields_and_adds_one_internal_comment(site: JiraStandin, client: JiraClient) -> None:
    summary = client.act(action())
    assert summary == {
        "issue": "SUP-17",
        "updated": ["components", "customfield_10050", "labels", "priority"],
        "comment": {"id": "20001", "created": True},
    }
    issue = site.issue("SUP-17")
    assert [c["name"] for c in issue["components"]] == ["Network"]
    assert issue["priority"]["name"] == "High"
    assert issue["customfield_10050"]["value"] == "Network team"
    assert issue["labels"] == ["customer", "vpn"]  # added, the person's label kept
    assert site.calls() == [("PUT", ISSUE, 204), ("GET", COMMENTS, 200), ("POST", COMMENTS, 201)]
    put, get, post = site.requests
    assert put.headers["authorization"] == "Basic " + base64.b64encode(site.credentials.encode()).decode()
    assert put.headers["content-type"] == "application/json"
    assert get.query == {"startAt": "0", "maxResults": "100", "orderBy": "-created"}
    assert post.json()["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    [comment] = site.comments("SUP-17")
    assert comment["jsdPublic"] is False  # JSM internal note
    assert comment["author"]["accountId"] == OPTIONS["bot_account_id"]
    assert adf.to_text(comment["body"]) == (
        "deskpilot routed this issue: queue = Network team; components = Network; priority = High; "
        "labels = vpn\nintent: network at 0.93 (threshold 0.70)\n[deskpilot:d41:jira]"
    )
    history = site.issues["SUP-17"].history
    assert [h["author"] for h in history] == [OPTIONS["bot_account_id"]]


def test_running_the_same_action_twice_comments_once(site: JiraStandin, client: JiraClient) -> None:
    client.act(action())
    again = client.act(action())
    assert again["comment"] == {"id": "20001", "created": False}
    assert len(site.comments("SUP-17")) == 1
    assert site.calls()[3:] == [("PUT", ISSUE, 204), ("GET", COMMENTS, 200)]  # no second POST
    assert len(site.issues["SUP-17"].history) == 1  # the repeated edit changed nothing
    client.act(action("d42:jira", priority="Highest"))  # another decision: its own comment
    assert len(marked(site)) == 2


def test_the_marker_is_found_on_a_later_page(site: JiraStandin, client: JiraClient) -> None:
    client.act(action())
    for i in range(120):  # people keep commenting: ours is now on page 3 (newest first, 50 a page)
        site.add_comment("SUP-17", f"update {i}")
    assert client.act(action())["comment"] == {"id": "20001", "created": False}
    pages = [r.query["startAt"] for r in site.requests if r.method == "GET"][1:]
    assert pages == ["0", "50", "100"]
    assert len(marked(site)) == 1 and len(site.comments("SUP-17")) == 121


def test_a_comment_whose_response_was_lost_is_not_posted_again() -> None:
    with JiraStandin(reply_delay_s={"POST": 2.0}) as site:
        site.add_issue("SUP-17", "VPN drops")
        with JiraClient(site.url, site.credentials, timeout=0.5, options=OPTIONS) as slow:
            error = failure(slow, action())
            assert (
                error.transient is True and error.message == f"Jira POST {COMMENTS} timed out (ReadTimeout)"
            )
            site.reply_delay_s.clear()
            assert slow.act(action())["comment"]["created"] is False  # the retry finds it
        assert len(site.comments("SUP-17")) == 1


def test_wrong_credentials_are_permanent_and_not_echoed(site: JiraStandin) -> None:
    with JiraClient(site.url, "deskpilot-bot@acme.example:wrong-token", timeout=5, options=OPTIONS) as wrong:
        error = failure(wrong, action())
    assert (error.transient, error.upstream_status, error.retry_after) == (False, 401, None)
    assert (
        error.message
        == f"Jira PUT {ISSUE} answered 401: Client must be authenticated to access this resource."
    )
    assert error.hint is not None and "email:api_token" in error.hint
    assert "wrong-token" not in str(error)
    assert site.issue("SUP-17")["priority"]["name"] == "Medium" and site.comments("SUP-17") == []


def test_unknown_issue_is_permanent_with_jiras_message(client: JiraClient) -> None:
    error = failure(client, action(external_id="SUP-404"))
    assert (error.transient, error.upstream_status) == (False, 404)
    assert error.message == (
        "Jira PUT /rest/api/3/issue/SUP-404 answered 404: "
        "Issue does not exist or you do not have permission to see it."
    )


def test_invalid_values_are_permanent_and_nothing_is_applied(site: JiraStandin, client: JiraClient) -> None:
    error = failure(client, action(components="Network,Plumbing", priority="Urgent"))
    assert (error.transient, error.upstream_status) == (False, 400)
    assert error.message == (
        f"Jira PUT {ISSUE} answered 400: components: Component name 'Plumbing' is not valid; "
        "priority: The priority selected is invalid."
    )
    assert site.issue("SUP-17")["components"] == [] and site.comments("SUP-17") == []
    unknown = failure(client, action(customfield_99999="x"))
    assert unknown.message.endswith(
        "customfield_99999: Field 'customfield_99999' cannot be set. "
        "It is not on the appropriate screen, or unknown."
    )
    nobody = failure(client, action(assignee="557058:nobody"))
    assert nobody.message.endswith("assignee: User '557058:nobody' cannot be assigned issues.")


def test_429_is_transient_with_retry_after_and_the_retry_applies_once(
    site: JiraStandin, client: JiraClient
) -> None:
    site.fail_next(1, status=429, retry_after=7)
    error = failure(client, action())
    assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 7.0)
    assert error.message == f"Jira PUT {ISSUE} answered 429: Rate limit exceeded."
    assert site.issue("SUP-17")["components"] == []
    client.act(action())
    assert len(marked(site)) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_the_comment_is_transient_and_the_retry_comments_once(
    site: JiraStandin, client: JiraClient, status: int
) -> None:
    site.fail_next(1, status=status, method="POST")
    error = failure(client, action())
    assert (error.transient, error.upstream_status) == (True, status)
    assert site.issue("SUP-17")["priority"]["name"] == "High"  # the edit went through before it
    client.act(action())
    assert len(site.comments("SUP-17")) == 1
    site.fail_next(1, status=503, retry_after="Wed, 21 Oct 2099 07:28:00 GMT", method="GET")
    error = failure(client, action())
    assert error.transient is True and error.retry_after is not None and error.retry_after > 3600


def test_timeout_and_connection_refused_are_transient() -> None:
    with JiraStandin(delay_s=2.0) as slow:
        slow.add_issue("SUP-17", "VPN drops")
        with JiraClient(slow.url, slow.credentials, timeout=0.2, options=OPTIONS) as http:
            error = failure(http, action())
    assert error.transient is True and error.message == f"Jira PUT {ISSUE} timed out (ReadTimeout)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with JiraClient(f"http://127.0.0.1:{port}", "a@b.c:t", timeout=2, options=OPTIONS) as dead:
        error = failure(dead, action())
    assert error.transient is True and error.upstream_status is None
    assert error.message.startswith(f"Jira PUT {ISSUE} failed: ConnectError")


def test_comment_visibility_role_and_bearer_tokens() -> None:
    with JiraStandin(bearer="oauth-access-token") as site:
        site.add_issue("SUP-17", "VPN drops")
        options = {**OPTIONS, "comment_visibility": "role:Service Desk Team"}
        with JiraClient(site.url, "bearer:oauth-access-token", timeout=5, options=options) as oauth:
            oauth.act(action())
        [comment] = site.comments("SUP-17")
        assert comment["visibility"] == {"type": "role", "value": "Service Desk Team"}
        assert "properties" not in comment and comment["jsdPublic"] is True
        assert site.requests[0].headers["authorization"] == "Bearer oauth-access-token"
        options["comment_visibility"] = "role:Nobody"
        with JiraClient(site.url, "bearer:oauth-access-token", timeout=5, options=options) as oauth:
            error = failure(oauth, action("d43:jira"))
        assert error.message.endswith(
            "commentLevel: You are currently not a member of the project role: Nobody."
        )


def test_configuration_errors_are_raised_at_construction() -> None:
    with pytest.raises(ConfigError, match="has no credentials"):
        JiraClient("https://acme.atlassian.net", None, timeout=1)
    with pytest.raises(ConfigError) as bad:
        JiraClient("https://acme.atlassian.net", "just-a-token-secret", timeout=1)
    assert "not in the form email:api_token" in str(bad.value) and "just-a-token-secret" not in str(bad.value)
    with pytest.raises(ConfigError, match="is not an http"):
        JiraClient("ftp://acme", "a@b.c:t", timeout=1)
    with pytest.raises(ConfigError, match="unknown Jira option"):
        JiraClient("https://acme.atlassian.net", "a@b.c:t", timeout=1, options={"bot": "x"})
    assert authorization("bearer:xyz") == "Bearer xyz"


def test_error_text_and_rate_limit_reset() -> None:
    request = httpx.Request("PUT", "https://acme.atlassian.net/rest/api/3/issue/SUP-1")
    long = httpx.Response(400, json={"errorMessages": ["x" * 400], "errors": {}}, request=request)
    assert error_text(long) == "x" * 300 + "..."
    html = httpx.Response(502, text="<html>\n  Bad   gateway </html>", request=request)
    assert error_text(html) == "<html> Bad gateway </html>"
    reset = httpx.Response(429, headers={"X-RateLimit-Reset": "2024-06-10T08:00:30Z"}, request=request)
    assert retry_after(reset, now=1718006400.0) == 30.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": "5"}, request=request)) == 5.0
    assert retry_after(httpx.Response(429, headers={"X-RateLimit-Reset": "soon"}, request=request)) is None
    assert retry_after(httpx.Response(429, request=request)) is None


def test_registry_builds_the_jira_halves(site: JiraStandin) -> None:
    assert "jira" in known_connectors()
    assert isinstance(get_connector("jira"), JiraConnector) and get_connector("jira").name == "jira"
    info = connector_info("jira")
    assert info is not None and (info.webhook, info.docs) == ("jira", "docs/connectors/jira.md")
    outbound = action_client("jira", url=site.url, token=site.credentials, timeout=5, options=OPTIONS)
    try:
        assert isinstance(outbound, JiraClient)
        assert outbound.act(action())["comment"]["created"] is True
    finally:
        outbound.close()
