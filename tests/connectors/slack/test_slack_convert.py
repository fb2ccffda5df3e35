"""Pure conversions: Slack payloads in their documented shapes -> events; decisions -> Block Kit."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest

from deskpilot.connectors.base import Inbound
from deskpilot.connectors.slack import SlackConnector, SlackOptions
from deskpilot.connectors.slack.convert import (
    ACTION_CORRECT,
    ACTION_ROUTE,
    MARKER_EVENT_TYPE,
    PlannedCall,
    decision_message,
    find_posted,
    lookup_call,
    plain_text,
    plan,
    thread_of,
)
from deskpilot.errors import InputDataError
from deskpilot.types import Action, Feedback, Query, Ticket

Load = Callable[[str], dict[str, Any]]
OPTIONS = {"channels": "C0HELP, C0OTHER", "bot_user_id": "U0DESKBOT", "labels": "network,billing,access"}
THREAD = "C0HELP:1700000000.000001"


def parse(route: str, body: bytes, options: dict[str, str] | None = None) -> Inbound:
    return SlackConnector().parse("acme", route, {}, body, OPTIONS if options is None else options)


def event_body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def interaction_body(data: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(data)}).encode()


# --- Events API ------------------------------------------------------------------------------
def test_url_verification_answers_the_challenge_with_200(payload: Load) -> None:
    inbound = parse("events", event_body(payload("url_verification")))
    assert inbound == Inbound(
        reply={"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}, status=200
    )


def test_a_channel_message_becomes_a_ticket_named_by_channel_and_ts(payload: Load) -> None:
    inbound = parse("events", event_body(payload("event_message")))
    assert inbound.status == 200 and inbound.reply is None and inbound.ignored is None
    [event] = inbound.events
    assert (event.tenant, event.source, event.delivery_id, event.kind) == (
        "acme",
        "slack",
        "Ev0PV52K21",
        "ticket",
    )
    assert event.payload == Ticket(
        subject="VPN drops every 10 minutes & I can't reach the intranet (https://intranet.acme.example)",
        body=(
            "VPN drops every 10 minutes & I can't reach the intranet (https://intranet.acme.example)\n"
            "Since this morning, on the office wifi. @U0BOB has the same problem."
        ),
        requester="U0ANA",
        source="slack",
        external_id=THREAD,
        metadata={
            "channel": "C0HELP",
            "ts": "1700000000.000001",
            "thread_ts": "1700000000.000001",
            "user": "U0ANA",
            "team": "T0ACME",
        },
    )


def test_the_subject_is_the_first_line_cut_to_120_characters(payload: Load) -> None:
    data = payload("event_message")
    data["event"]["text"] = "\n\n  " + "x" * 200 + "\nsecond line"
    [event] = parse("events", event_body(data)).events
    assert isinstance(event.payload, Ticket)
    assert event.payload.subject == "x" * 119 + "…" and len(event.payload.subject) == 120
    assert event.payload.body == "x" * 200 + "\nsecond line"


@pytest.mark.parametrize(
    ("fixture", "options", "reason"),
    [
        ("event_message_changed", OPTIONS, "message subtype 'message_changed' is not a new message"),
        ("event_bot_message", OPTIONS, "message subtype 'bot_message' is not a new message"),
        ("event_own_post", OPTIONS, "a bot's message"),
        ("event_thread_reply", OPTIONS, "a reply in a thread, not a new message"),
        ("event_app_mention", OPTIONS, "event type 'app_mention' is not used"),
        ("event_message", {"channels": "C0OTHER"}, "channel 'C0HELP' is not one of the configured channels"),
        ("event_message", {}, "no channels are configured"),
    ],
)
def test_what_is_not_a_new_ticket_is_acknowledged_and_ignored(
    payload: Load, fixture: str, options: dict[str, str], reason: str
) -> None:
    inbound = parse("events", event_body(payload(fixture)), options)
    assert inbound.events == () and inbound.reply is None and inbound.status == 200
    assert inbound.ignored is not None and inbound.ignored.startswith(reason)


def test_our_own_bot_user_is_ignored_even_without_a_bot_id(payload: Load) -> None:
    data = payload("event_message")
    data["event"]["user"] = "U0DESKBOT"
    assert parse("events", event_body(data)).ignored == "our own message"
    assert len(parse("events", event_body(data), {"channels": "C0HELP"}).events) == 1  # option unset


def test_empty_text_and_unused_envelopes_are_ignored(payload: Load) -> None:
    data = payload("event_message")
    data["event"]["text"] = "  \n "
    assert parse("events", event_body(data)).ignored == "a message without text"
    limited = {
        "token": "x",
        "type": "app_rate_limited",
        "team_id": "T0ACME",
        "minute_rate_limited": 1518467820,
    }
    assert parse("events", event_body(limited)).ignored == "Events API type 'app_rate_limited' is not used"


def test_a_file_share_message_is_a_ticket(payload: Load) -> None:
    data = payload("event_message")
    data["event"]["subtype"] = "file_share"
    assert [e.kind for e in parse("events", event_body(data)).events] == ["ticket"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'{"type": "url_verification"}', "challenge: missing or not a non-empty string"),
        (b'{"type": "event_callback", "event": {}}', "event_id: missing or not a non-empty string"),
        (b'{"type": "event_callback", "event_id": "Ev1", "event": []}', "event: missing or not an object"),
        (b"\xff", "body is not UTF-8 (byte 0)"),
    ],
)
def test_malformed_event_bodies_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse("events", body)
    assert str(info.value).startswith(problem)
    assert info.value.status == 422


def test_a_ticket_event_without_ts_names_the_field(payload: Load) -> None:
    data = payload("event_message")
    del data["event"]["ts"]
    data["event"].pop("thread_ts", None)
    with pytest.raises(InputDataError, match=r"^event\.ts: missing"):
        parse("events", event_body(data))


def test_an_unknown_route_is_refused() -> None:
    with pytest.raises(InputDataError, match="unknown Slack route 'shortcuts'"):
        parse("shortcuts", b"{}")


def test_plain_text_reads_mrkdwn_as_a_person_does() -> None:
    assert plain_text("a &lt;b&gt; &amp; c") == "a <b> & c"
    assert plain_text("hi <@U123> and <@U456|bob> in <#C1|general>") == "hi @U123 and @bob in #general"
    assert plain_text("<!here> see <https://x.example> or <https://y.example|docs>") == (
        "@here see https://x.example or docs (https://y.example)"
    )
    assert plain_text("<!subteam^S1|@oncall> <mailto:a@b.example|a@b.example>") == (
        "@oncall a@b.example (mailto:a@b.example)"
    )
    assert plain_text("no markup at all") == "no markup at all"


# --- slash command ---------------------------------------------------------------------------
def test_a_slash_command_is_a_query_answered_ephemerally_at_once(payload: Load) -> None:
    inbound = parse("commands", urlencode(payload("slash_command")).encode())
    assert inbound.status == 200
    assert inbound.reply == {"response_type": "ephemeral", "text": "Classifying…"}
    [event] = inbound.events
    assert (event.source, event.kind, event.delivery_id) == (
        "slack",
        "query",
        "13345224609.738474920.8088930838d88f008e0",
    )
    assert event.payload == Query(
        text="my invoice shows the wrong VAT number",
        author="U0ANA",
        reply_url="https://hooks.slack.com/commands/T0ACME/1234567890/ABCDEFghijklmnop",
        metadata={
            "command": "/deskpilot",
            "channel_id": "C0HELP",
            "team_id": "T0ACME",
            "enterprise_id": "E0ACME",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        },
    )


def test_an_empty_command_gets_usage_and_no_event(payload: Load) -> None:
    form = payload("slash_command") | {"text": "   "}
    inbound = parse("commands", urlencode(form).encode())
    assert inbound.events == () and inbound.status == 200
    assert inbound.reply is not None and inbound.reply["response_type"] == "ephemeral"
    assert inbound.reply["text"].startswith("Usage: /deskpilot")


def test_ssl_check_is_acknowledged() -> None:
    inbound = parse("commands", b"ssl_check=1&token=gIkuvaNzQIHg97ATvDxqgjtO")
    assert inbound == Inbound(status=200, ignored="ssl_check")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"response_url": ""}, "response_url: missing"),
        ({"response_url": "file:///etc/passwd"}, "response_url: not an http(s) URL"),
        ({"user_id": ""}, "user_id: missing"),
        ({"trigger_id": ""}, "trigger_id: missing"),
    ],
)
def test_bad_commands_name_the_field(payload: Load, change: dict[str, str], problem: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse("commands", urlencode(payload("slash_command") | change).encode())
    assert str(info.value).startswith(problem)


def test_a_form_field_sent_twice_is_refused() -> None:
    with pytest.raises(InputDataError, match="form field 'text' sent more than once"):
        parse("commands", b"text=a&text=b&user_id=U1")


# --- interactivity ---------------------------------------------------------------------------
def test_the_correct_button_confirms_the_label_it_carries(payload: Load) -> None:
    inbound = parse("interactivity", interaction_body(payload("block_actions_correct")))
    assert inbound.status == 200 and inbound.reply is None
    [event] = inbound.events
    assert (event.source, event.kind, event.delivery_id) == (
        "slack",
        "feedback",
        "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
    )
    assert event.payload == Feedback(task="intent", label="network", author="U0BOB", external_id=THREAD)


def test_the_route_select_corrects_to_the_chosen_label(payload: Load) -> None:
    [event] = parse("interactivity", interaction_body(payload("block_actions_route"))).events
    assert event.payload == Feedback(task="intent", label="billing", author="U0BOB", external_id=THREAD)
    assert event.delivery_id == "12321423423.333649436676.aa8c1bb837935619ccad0f624c448f01"


def test_other_interactions_are_ignored(payload: Load) -> None:
    data = payload("block_actions_correct")
    data["actions"][0]["action_id"] = "someone_elses_button"
    assert parse("interactivity", interaction_body(data)).ignored == (
        "no deskpilot button or select in this interaction"
    )
    view = {"type": "view_submission", "user": {"id": "U0BOB"}, "view": {}}
    assert (
        parse("interactivity", interaction_body(view)).ignored
        == "interaction type 'view_submission' is not used"
    )


def test_two_of_our_actions_in_one_payload_get_distinct_delivery_ids(payload: Load) -> None:
    data = payload("block_actions_correct")
    data["actions"].append(payload("block_actions_route")["actions"][0])
    events = parse("interactivity", interaction_body(data)).events
    trigger = data["trigger_id"]
    assert [e.delivery_id for e in events] == [f"{trigger}:0", f"{trigger}:1"]
    assert [e.payload.label for e in events if isinstance(e.payload, Feedback)] == ["network", "billing"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.pop("user"), "payload.user.id: missing"),
        (lambda p: p.update(actions={}), "payload.actions: missing or not a list"),
        (lambda p: p["actions"][0].update(value="not json"), "actions[].value is not JSON"),
        (
            lambda p: p["actions"][0].update(value='{"task": "intent"}'),
            "actions[].value.external_id: missing",
        ),
        (lambda p: p.pop("trigger_id") and p["actions"][0].pop("action_ts"), "payload.trigger_id: missing"),
    ],
)
def test_bad_interactions_name_the_field(
    payload: Load, change: Callable[[dict[str, Any]], Any], problem: str
) -> None:
    data = payload("block_actions_correct")
    change(data)
    with pytest.raises(InputDataError) as info:
        parse("interactivity", interaction_body(data))
    assert str(info.value).startswith(problem)


def test_without_trigger_id_the_action_ts_names_the_delivery(payload: Load) -> None:
    data = payload("block_actions_correct")
    del data["trigger_id"]
    [event] = parse("interactivity", interaction_body(data)).events
    assert event.delivery_id == "1700000050.123456"


def test_interactivity_needs_the_payload_field() -> None:
    with pytest.raises(InputDataError, match="form field payload: missing"):
        parse("interactivity", b"other=1")


# --- outbound: the decision message ----------------------------------------------------------
def action(**context: Any) -> Action:
    base: dict[str, Any] = {
        "note": "deskpilot routed this ticket. intent: network at 0.91, model v1",
        "ticket_metadata": {"channel": "C0HELP", "ts": "1700000000.000001", "thread_ts": "1700000000.000001"},
        "decisions": [{"task": "intent", "label": "network", "score": 0.91, "abstained": False}],
        "triage": False,
    }
    return Action(
        tenant="acme",
        system="chat",
        connector="slack",
        kind="route",
        ticket_id=12,
        external_id=THREAD,
        fields={"queue": "network-team", "assignee": "U0NETLEAD"},
        idempotency_key="acme:ticket:12:chat",
        context=base | context,
    )


def test_the_decision_message_has_the_decision_note_buttons_marker_and_metadata() -> None:
    message = decision_message(action(), SlackOptions.from_mapping(OPTIONS))
    assert message["text"] == "deskpilot: routed to queue network-team, assignee U0NETLEAD"
    assert message["metadata"] == {
        "event_type": MARKER_EVENT_TYPE,
        "event_payload": {"idempotency_key": "acme:ticket:12:chat", "ticket_id": 12, "external_id": THREAD},
    }
    summary, note, actions, context = message["blocks"]
    assert summary == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Routed*: queue `network-team` · assignee <@U0NETLEAD>\n• intent: *network* (91%)",
        },
    }
    assert note == {
        "type": "section",
        "text": {"type": "plain_text", "text": action().context["note"], "emoji": False},
    }
    assert actions["type"] == "actions"
    assert json.loads(actions["block_id"]) == {"task": "intent", "external_id": THREAD}
    button, select = actions["elements"]
    assert button["type"] == "button" and button["action_id"] == ACTION_CORRECT
    assert button["text"]["text"] == "Correct" and button["style"] == "primary"
    assert json.loads(button["value"]) == {"task": "intent", "label": "network", "external_id": THREAD}
    assert select["type"] == "static_select" and select["action_id"] == ACTION_ROUTE
    assert select["placeholder"]["text"] == "Route to…"
    assert [o["value"] for o in select["options"]] == ["network", "billing", "access"]
    assert context == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "deskpilot [deskpilot:acme:ticket:12:chat]"}],
    }


def test_an_unsure_decision_has_no_correct_button_and_says_triage() -> None:
    unsure = action(
        triage=True, decisions=[{"task": "intent", "label": None, "score": 0.3, "abstained": True}]
    )
    message = decision_message(unsure, SlackOptions.from_mapping(OPTIONS))
    assert message["blocks"][0]["text"]["text"].startswith("*Sent to triage*: queue `network-team`")
    assert "• intent: unsure" in message["blocks"][0]["text"]["text"]
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["type"] for e in actions["elements"]] == ["static_select"]


def test_without_labels_there_is_no_select_and_the_task_option_picks_the_corrected_task() -> None:
    two = action(
        decisions=[
            {"task": "intent", "label": "network", "score": 0.9, "abstained": False},
            {"task": "priority", "label": "high", "score": 0.8, "abstained": False},
        ]
    )
    message = decision_message(two, SlackOptions.from_mapping({"task": "priority"}))
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert json.loads(button["value"]) == {"task": "priority", "label": "high", "external_id": THREAD}
    nothing = decision_message(action(decisions=[]), SlackOptions())
    assert [b["type"] for b in nothing["blocks"]] == ["section", "section", "context"]


def test_mrkdwn_in_field_values_is_escaped_and_long_labels_are_cut_in_the_select() -> None:
    evil = replace(action(), fields={"queue": "<!channel> & co"})
    message = decision_message(evil, SlackOptions.from_mapping({"labels": "x" * 100}))
    assert "queue `&lt;!channel&gt; &amp; co`" in message["blocks"][0]["text"]["text"]
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    [option] = actions["elements"][1]["options"]
    assert option["value"] == "x" * 100 and option["text"]["text"] == "x" * 74 + "…"


def test_the_thread_comes_from_ticket_metadata_or_the_external_id() -> None:
    assert thread_of(action()).external_id == THREAD
    assert thread_of(action(ticket_metadata={})).external_id == THREAD
    orphan = replace(action(ticket_metadata={}), external_id="JIRA-12")
    with pytest.raises(InputDataError, match="has no Slack channel and thread"):
        thread_of(orphan)


def test_the_plan_posts_in_the_thread_or_updates_the_earlier_post() -> None:
    opts = SlackOptions.from_mapping(OPTIONS)
    message = decision_message(action(), opts)
    assert lookup_call(thread_of(action())) == PlannedCall(
        "conversations.replies",
        {"channel": "C0HELP", "ts": "1700000000.000001", "include_all_metadata": True, "limit": 200},
    )
    [post] = plan(action(), opts, None)
    assert post == PlannedCall(
        "chat.postMessage",
        {"channel": "C0HELP", "thread_ts": "1700000000.000001", **message, "unfurl_links": False},
    )
    [update] = plan(action(), opts, "1700000001.000002")
    assert update == PlannedCall("chat.update", {"channel": "C0HELP", "ts": "1700000001.000002", **message})


def test_find_posted_matches_metadata_or_marker_of_our_bot_only() -> None:
    key = "acme:ticket:1:chat"
    ours = {"type": "message", "user": "U0DESKBOT", "ts": "2.0"}
    by_meta = ours | {
        "metadata": {"event_type": MARKER_EVENT_TYPE, "event_payload": {"idempotency_key": key}}
    }
    by_marker = ours | {
        "blocks": [{"type": "context", "elements": [{"text": f"deskpilot [deskpilot:{key}]"}]}]
    }
    parent = {"type": "message", "user": "U0ANA", "ts": "1.0", "text": f"[deskpilot:{key}]"}
    assert find_posted([parent, by_meta], key, "U0DESKBOT") == "2.0"
    assert find_posted([parent, by_marker], key, "U0DESKBOT") == "2.0"
    assert find_posted([parent], key, "U0DESKBOT") is None  # a person quoting the marker
    assert find_posted([parent], key, None) == "1.0"  # without bot_user_id any author counts
    longer = ours | {"text": "[deskpilot:acme:ticket:12:chat]"}
    assert find_posted([longer], key, "U0DESKBOT") is None  # key 1 is not key 12
    other = by_meta | {
        "metadata": {"event_type": MARKER_EVENT_TYPE, "event_payload": {"idempotency_key": "x"}}
    }
    assert find_posted([other, "junk", {"ts": 3}], key, "U0DESKBOT") is None


def test_a_button_from_our_message_round_trips_into_feedback(payload: Load) -> None:
    """The value we write is the value Slack sends back: no drift between the two halves."""
    message = decision_message(action(), SlackOptions.from_mapping(OPTIONS))
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    data = payload("block_actions_route")
    data["actions"][0]["block_id"] = actions["block_id"]
    data["actions"][0]["selected_option"]["value"] = actions["elements"][1]["options"][2]["value"]
    [event] = parse("interactivity", interaction_body(data)).events
    assert event.payload == Feedback(task="intent", label="access", author="U0BOB", external_id=THREAD)


def test_options_are_read_once_trimmed_and_deduplicated() -> None:
    opts = SlackOptions.from_mapping(
        {"channels": " C1 ,C2,,C1", "labels": "a, b ,a," + "z" * 151, "task": " "}
    )
    assert opts == SlackOptions(channels=frozenset({"C1", "C2"}), labels=("a", "b"))
    many = SlackOptions.from_mapping({"labels": ",".join(f"l{i}" for i in range(150))})
    assert len(many.labels) == 100
