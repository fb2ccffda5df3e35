"""The real slack_sdk WebClient/WebhookClient against a stand-in Slack on a loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from support.slack_standin import BOT_USER_ID, DEFAULT_TOKEN, SlackStandin

from deskpilot.connectors import ActionFailedError, action_client, connector_info, known_connectors
from deskpilot.connectors.slack import INFO, SlackClient
from deskpilot.connectors.slack import message as slack_message
from deskpilot.connectors.slack.client import _api_failure, retry_after_seconds
from deskpilot.errors import ActionError, ConfigError
from deskpilot.types import Action

OPTIONS = {"channels": "C0HELP", "bot_user_id": BOT_USER_ID, "labels": "network,billing"}


def action(ts: str, key: str = "acme:ticket:7:chat", channel: str = "C0HELP", **fields: Any) -> Action:
    return Action(
        tenant="acme",
        system="chat",
        connector="slack",
        kind="route",
        ticket_id=7,
        external_id=f"{channel}:{ts}",
        fields=fields or {"queue": "network-team"},
        idempotency_key=key,
        context={
            "note": "deskpilot routed this ticket. intent: network at 0.93, model v1",
            "ticket_metadata": {"channel": channel, "ts": ts, "thread_ts": ts, "user": "U0ANA"},
            "decisions": [{"task": "intent", "label": "network", "score": 0.93, "abstained": False}],
            "triage": False,
        },
    )


@pytest.fixture
def client(slack: SlackStandin) -> Iterator[SlackClient]:
    with SlackClient(slack.url, DEFAULT_TOKEN, timeout=5, options=OPTIONS) as made:
        yield made


def failure(client: SlackClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    assert isinstance(info.value, ActionError)
    assert DEFAULT_TOKEN not in str(info.value)
    return info.value


def test_the_decision_is_posted_in_the_tickets_thread(slack: SlackStandin, client: SlackClient) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops every 10 minutes")
    summary = client.act(action(ts))
    [reply] = slack.replies("C0HELP", ts)
    assert summary == {
        "status": 200,
        "method": "chat.postMessage",
        "replayed": False,
        "channel": "C0HELP",
        "ts": reply["ts"],
        "thread_ts": ts,
    }
    assert reply["user"] == BOT_USER_ID and reply["thread_ts"] == ts
    assert reply["text"] == "deskpilot: routed to queue network-team"
    assert reply["metadata"]["event_payload"]["idempotency_key"] == "acme:ticket:7:chat"
    assert [b["type"] for b in reply["blocks"]] == ["section", "section", "actions", "context"]
    lookup, post = slack.calls
    assert (lookup.method, post.method) == ("conversations.replies", "chat.postMessage")
    assert lookup.args["channel"] == "C0HELP" and lookup.args["ts"] == ts
    assert lookup.args["include_all_metadata"] == "1"  # form-encoded by slack_sdk
    assert post.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert post.headers["content-type"].startswith("application/json")
    assert post.args["thread_ts"] == ts and post.args["unfurl_links"] is False


def test_acting_twice_updates_the_same_message_instead_of_posting_again(
    slack: SlackStandin, client: SlackClient
) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    first = client.act(action(ts))
    second = client.act(action(ts, queue="network-oncall"))  # e.g. the policy changed in between
    [reply] = slack.replies("C0HELP", ts)
    assert second == first | {"method": "chat.update", "replayed": True}
    assert reply["ts"] == first["ts"] and reply["text"] == "deskpilot: routed to queue network-oncall"
    assert "edited" in reply
    assert [c.method for c in slack.calls] == [
        "conversations.replies",
        "chat.postMessage",
        "conversations.replies",
        "chat.update",
    ]
    client.act(action(ts, key="acme:ticket:7:other"))  # another key is another message
    assert len(slack.replies("C0HELP", ts)) == 2


def test_the_earlier_post_is_found_on_a_later_page(
    slack: SlackStandin, client: SlackClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    client.act(action(ts))
    for i in range(5):  # more answers in the thread after our post
        slack.bot_post(channel="C0HELP", thread_ts=ts, text=f"reply {i}")
    monkeypatch.setattr(slack_message, "REPLIES_PAGE", 2)
    summary = client.act(action(ts))
    assert summary["replayed"] is True and len(slack.replies("C0HELP", ts)) == 6
    lookups = slack.calls_to("conversations.replies")[1:]
    assert [c.args.get("cursor") is not None for c in lookups] == [False]  # found on page 1 (oldest first)
    # now our post is the last of three pages
    slack2_ts = slack.post_user_message("C0HELP", "printer jam")
    for i in range(4):
        slack.bot_post(channel="C0HELP", thread_ts=slack2_ts, text=f"early {i}")
    slack.bot_post(
        channel="C0HELP",
        thread_ts=slack2_ts,
        text="deskpilot: routed",
        metadata={"event_type": "deskpilot_decision", "event_payload": {"idempotency_key": "k-late"}},
    )
    before = len(slack.calls)
    assert client.act(action(slack2_ts, key="k-late"))["replayed"] is True
    pages = [c for c in slack.calls[before:] if c.method == "conversations.replies"]
    assert len(pages) == 3 and pages[-1].args["cursor"]


def test_a_wrong_token_is_permanent_with_a_hint_and_slack_s_error(slack: SlackStandin) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    with SlackClient(slack.url, "xoxb-wrong-token", timeout=5, options=OPTIONS) as wrong:
        error = failure(wrong, action(ts))
    assert error.transient is False and error.upstream_status == 200
    assert error.message == "Slack conversations.replies failed: invalid_auth"
    assert error.hint is not None and "bot token" in error.hint
    assert "xoxb-wrong-token" not in str(error)
    assert slack.replies("C0HELP", ts) == []


def test_unknown_channel_and_thread_are_permanent(slack: SlackStandin, client: SlackClient) -> None:
    error = failure(client, action("1700000000.000001", channel="C0GONE"))
    assert (error.transient, error.message) == (
        False,
        "Slack conversations.replies failed: channel_not_found",
    )
    assert error.hint is not None and "/invite" in error.hint
    error = failure(client, action("1699999999.000001"))
    assert (error.transient, error.message) == (False, "Slack conversations.replies failed: thread_not_found")


def test_an_unknown_method_is_a_permanent_404(slack: SlackStandin, client: SlackClient) -> None:
    with pytest.raises(SlackApiError) as info:
        client._web.api_call("chat.scheduleMessage", json={"channel": "C0HELP"})
    response = info.value.response
    assert response.status_code == 404
    assert response.data == {"ok": False, "error": "unknown_method", "req_method": "chat.scheduleMessage"}
    error = _api_failure("chat.scheduleMessage", response)
    assert (error.transient, error.upstream_status) == (False, 404)
    assert error.message == "Slack chat.scheduleMessage failed: unknown_method (HTTP 404)"


def test_rate_limits_are_transient_with_retry_after_and_not_retried_by_the_sdk(
    slack: SlackStandin, client: SlackClient
) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    slack.fail_next(1, 429, retry_after=7)
    error = failure(client, action(ts))
    assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 7.0)
    assert error.message == "Slack conversations.replies failed: ratelimited (HTTP 429)"
    assert len(slack.calls) == 1  # slack_sdk's retry handlers are off: the job queue decides
    assert client.act(action(ts))["method"] == "chat.postMessage"
    assert len(slack.replies("C0HELP", ts)) == 1


def test_a_rate_limit_on_the_post_itself_posts_nothing(slack: SlackStandin, client: SlackClient) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    slack.fail_next(1, 429, retry_after=30, method="chat.postMessage")
    error = failure(client, action(ts))
    assert (error.upstream_status, error.retry_after) == (429, 30.0)
    assert error.message == "Slack chat.postMessage failed: ratelimited (HTTP 429)"
    assert slack.replies("C0HELP", ts) == []
    client.act(action(ts))  # the job queue's retry
    assert len(slack.replies("C0HELP", ts)) == 1


def test_server_errors_and_transient_slack_errors_are_transient(
    slack: SlackStandin, client: SlackClient
) -> None:
    ts = slack.post_user_message("C0HELP", "VPN drops")
    slack.fail_next(1, 503)
    error = failure(client, action(ts))
    assert (error.transient, error.upstream_status) == (True, 503)
    assert error.message == (
        "Slack conversations.replies failed: Received a response in a non-JSON format: "
        "<html><body>upstream unavailable</body></html> (HTTP 503)"
    )
    slack.fail_next(1, 200, error="internal_error")
    error = failure(client, action(ts))
    assert (error.transient, error.upstream_status) == (True, 200)
    assert error.message == "Slack conversations.replies failed: internal_error"
    slack.fail_next(1, 200, error="missing_scope")
    assert failure(client, action(ts)).transient is False


def test_a_timeout_is_transient() -> None:
    with (
        SlackStandin(delay_s=3) as slow,
        SlackClient(slow.url, DEFAULT_TOKEN, timeout=0.3, options=OPTIONS) as client,
    ):
        started = time.monotonic()
        error = failure(client, action("1700000000.000001"))
        assert time.monotonic() - started < 2.5
    assert error.transient is True and "timed out" in error.message.lower()


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with SlackClient(f"http://127.0.0.1:{port}/api/", DEFAULT_TOKEN, timeout=2, options=OPTIONS) as client:
        error = failure(client, action("1700000000.000001"))
    assert error.transient is True and "ConnectionRefusedError" in error.message


def test_a_ticket_from_elsewhere_cannot_be_answered_in_slack(client: SlackClient) -> None:
    orphan = replace(action("1"), external_id="JIRA-7", context={"ticket_metadata": {}})
    error = failure(client, orphan)
    assert error.transient is False and "has no Slack channel and thread" in error.message


# --- slash command answers through response_url ----------------------------------------------
def test_reply_posts_to_the_response_url(slack: SlackStandin, client: SlackClient) -> None:
    url = slack.response_url()
    answer = client.reply(url, {"response_type": "ephemeral", "text": "intent: billing (billing 0.90)"})
    assert answer == {"status": 200, "body": "ok"}
    assert slack.hook_posts == [{"response_type": "ephemeral", "text": "intent: billing (billing 0.90)"}]
    [call] = slack.calls
    assert "authorization" not in call.headers  # a response_url needs no token


def test_response_url_errors_are_mapped_and_never_show_the_url(
    slack: SlackStandin, client: SlackClient
) -> None:
    url = slack.response_url()
    for _ in range(5):
        client.reply(url, {"text": "ok"})
    with pytest.raises(ActionFailedError) as used:
        client.reply(url, {"text": "sixth"})
    assert (used.value.transient, used.value.upstream_status) == (False, 404)
    assert used.value.message == "Slack response_url on 127.0.0.1 answered 404: used_url"
    gone = url.rsplit("/", 2)[0] + "/nope/nope"
    with pytest.raises(ActionFailedError, match="404: expired_url"):
        client.reply(gone, {"text": "late"})
    fresh = slack.response_url()
    slack.fail_next(1, 429, retry_after=3)
    with pytest.raises(ActionFailedError) as limited:
        client.reply(fresh, {"text": "x"})
    assert (limited.value.transient, limited.value.retry_after) == (True, 3.0)
    assert fresh.rsplit("/", 1)[1] not in str(limited.value)
    slack.fail_next(1, 500)
    with pytest.raises(ActionFailedError) as broken:
        client.reply(fresh, {"text": "x"})
    assert broken.value.transient is True
    with pytest.raises(ActionFailedError, match="not an http"):
        client.reply("ftp://hooks.slack.com/x", {"text": "x"})


# --- registration and configuration ----------------------------------------------------------
def test_the_connector_is_registered_with_its_client_and_info(slack: SlackStandin) -> None:
    assert "slack" in known_connectors()
    assert connector_info("slack") == INFO and INFO.docs == "docs/connectors/slack.md"
    made = action_client("slack", url=slack.url, token=DEFAULT_TOKEN, timeout=3, options=OPTIONS)
    assert isinstance(made, SlackClient) and made.options.bot_user_id == BOT_USER_ID
    made.close()


def test_missing_token_or_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no Slack bot token"):
        SlackClient("https://slack.com/api/", None, timeout=3)
    with pytest.raises(ConfigError, match="not an http"):
        SlackClient("slack.com/api", "xoxb-1", timeout=3)
    assert SlackClient(None, "xoxb-1", timeout=3)._web.base_url == "https://slack.com/api/"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_auth_test_tells_the_bot_user_id_and_a_missing_token_is_not_authed(slack: SlackStandin) -> None:
    """The setup page tells admins to read bot_user_id from auth.test; both answers as Slack's."""
    me = WebClient(token=DEFAULT_TOKEN, base_url=slack.url, retry_handlers=[]).auth_test()
    assert (me["ok"], me["user_id"], me["team_id"]) == (True, BOT_USER_ID, "T0ACME")
    with pytest.raises(SlackApiError) as info:
        WebClient(token=None, base_url=slack.url, retry_handlers=[]).auth_test()
    error = _api_failure("auth.test", info.value.response)
    assert (error.message, error.transient, error.upstream_status) == (
        "Slack auth.test failed: not_authed",
        False,
        200,
    )
    assert error.hint is not None and "bot token" in error.hint
