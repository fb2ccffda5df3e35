"""Pure conversions: Jira payloads -> events, routing actions -> planned REST calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskpilot.connectors import ActionFailedError, get_connector
from deskpilot.connectors.jira import adf, convert
from deskpilot.connectors.jira.convert import PlannedCall, plan
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action, Event, FieldChange, Ticket

FIXTURES = Path(__file__).parent / "fixtures"
BOT = "5b10ac8d82e05b22cc7d4ef5"
ANA = "557058:ana-0001"
OPTIONS = {"bot_account_id": BOT, "custom_field": "customfield_10050"}
HEADERS = {"X-Atlassian-Webhook-Identifier": "6d1e5c2a-0b7f-4c55-9c8e-3f2a1b0c9d8e"}


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(raw: bytes, options: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
    return get_connector("jira").parse(
        "acme", "", HEADERS if headers is None else headers, raw, OPTIONS if options is None else options
    )


def changes(name: str, options: dict[str, str] | None = None) -> list[FieldChange]:
    inbound = parse(body(name), options)
    assert all(e.kind == "field_change" and e.source == "jira" for e in inbound.events)
    return [e.payload for e in inbound.events]


# --- inbound: tickets ------------------------------------------------------------------------
def test_issue_created_becomes_a_ticket_keyed_by_the_issue_key() -> None:
    inbound = parse(body("issue_created.json"))
    assert inbound.reply is None and inbound.ignored is None and inbound.status == 202
    assert inbound.events == (
        Event(
            tenant="acme",
            source="jira",
            delivery_id="6d1e5c2a-0b7f-4c55-9c8e-3f2a1b0c9d8e",
            kind="ticket",
            payload=Ticket(
                subject="VPN drops every few minutes since this morning",
                body="Hi team,\n\nsince 9am the *VPN* disconnects every 5 minutes on my laptop.\n"
                "I already rebooted twice.",
                requester="cy@customer.example",
                source="jira",
                external_id="SUP-17",
                metadata={"id": "10117", "key": "SUP-17", "project": "SUP", "issuetype": "Service Request"},
            ),
        ),
    )


def test_adf_description_is_flattened_and_requester_falls_back_to_the_account_id() -> None:
    [event] = parse(body("issue_created_adf.json")).events
    ticket = event.payload
    assert isinstance(ticket, Ticket)
    assert ticket.body == (
        "Hello @Bo Billing, the card was charged twice.\n"
        "- first charge 09:01\n"
        "- second charge 09:02\n"
        "  1. same amount\n"
        "TXN-99812\n"
        "See https://billing.acme.example/inv/42\n"
        "Thanks 🙏"
    )
    assert ticket.requester == ANA  # no emailAddress: profile visibility hides it
    assert (ticket.external_id, ticket.metadata["issuetype"]) == ("SUP-18", "Bug")


def test_adf_to_text_handles_tables_panels_unknown_nodes_and_deep_trees() -> None:
    doc = adf.document(
        {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Steps"}]},
        {
            "type": "table",
            "content": [
                {
                    "type": "tableRow",
                    "content": [
                        {"type": "tableHeader", "content": [adf.paragraph("host")]},
                        {"type": "tableCell", "content": [adf.paragraph("vpn-1")]},
                    ],
                }
            ],
        },
        {"type": "panel", "content": [adf.paragraph("note: urgent")]},
        {"type": "futureNode", "content": [{"type": "text", "text": "still read"}]},
        {"type": "rule"},
        {"type": "paragraph", "content": [{"type": "date", "attrs": {"timestamp": "1718000000000"}}]},
        {"type": "paragraph", "content": [{"type": "status", "attrs": {"text": "BLOCKED"}}]},
    )
    assert adf.to_text(doc) == "Steps\nhost\nvpn-1\nnote: urgent\nstill read\n1718000000000\nBLOCKED"
    deep: dict[str, Any] = {"type": "text", "text": "bottom"}
    for _ in range(500):
        deep = {"type": "blockquote", "content": [deep]}
    assert adf.to_text(adf.document(deep)) == ""  # cut off below MAX_DEPTH, no RecursionError
    assert adf.to_text("plain") == "" and adf.to_text(None) == ""
    assert convert.description_text("wiki *text*") == "wiki *text*"
    assert convert.description_text(None) == ""


def test_long_descriptions_are_cut_and_an_empty_issue_is_refused() -> None:
    data = json.loads(body("issue_created.json"))
    data["issue"]["fields"]["description"] = "x" * 50_000
    [event] = parse(json.dumps(data).encode()).events
    assert isinstance(event.payload, Ticket) and len(event.payload.body) == convert.MAX_BODY_CHARS
    data["issue"]["fields"].update(summary="  ", description=None)
    with pytest.raises(
        InputDataError, match=r"issue.fields.summary, issue.fields.description: both are empty"
    ):
        parse(json.dumps(data).encode())


def test_delivery_id_is_the_identifier_header_else_a_stable_hash() -> None:
    raw = body("issue_created.json")
    lower = parse(raw, headers={"x-atlassian-webhook-identifier": "abc-1"})
    assert lower.events[0].delivery_id == "abc-1"
    first, again = parse(raw, headers={}), parse(raw, headers={})
    assert first.events[0].delivery_id == again.events[0].delivery_id  # the same on Jira's retries
    assert first.events[0].delivery_id.startswith("jira-") and len(first.events[0].delivery_id) == 45
    other = parse(body("issue_created_adf.json"), headers={})
    assert other.events[0].delivery_id != first.events[0].delivery_id
    with pytest.raises(InputDataError, match="X-Atlassian-Webhook-Identifier must be 1-200 printable"):
        parse(raw, headers={"X-Atlassian-Webhook-Identifier": "a" * 201})


# --- inbound: corrections --------------------------------------------------------------------
def test_a_person_changing_the_priority_is_a_field_change() -> None:
    inbound = parse(body("issue_updated_priority.json"))
    assert [e.delivery_id for e in inbound.events] == ["6d1e5c2a-0b7f-4c55-9c8e-3f2a1b0c9d8e:priority"]
    assert [e.payload for e in inbound.events] == [
        FieldChange(external_id="SUP-17", field="priority", value="Highest", author=ANA, previous="High")
    ]


def test_components_labels_and_the_queue_field_use_the_policy_keys() -> None:
    assert changes("issue_updated_components.json") == [
        FieldChange("SUP-17", "components", "Billing", ANA, "Network"),
        FieldChange("SUP-17", "labels", "billing", ANA, "vip"),
        FieldChange("SUP-17", "queue", "Billing team", ANA, "Network team"),
    ]  # the status change is not a routed field
    without_custom = changes("issue_updated_components.json", {"bot_account_id": BOT})
    assert [c.field for c in without_custom] == ["components", "labels"]
    extra = changes(
        "issue_updated_components.json",
        {"bot_account_id": BOT, "feedback_fields": "customfield_10050,status"},
    )
    assert [(c.field, c.value) for c in extra] == [
        ("components", "Billing"),
        ("labels", "billing"),
        ("customfield_10050", "Billing team"),
        ("status", "In Progress"),
    ]


def test_components_value_is_the_full_set_after_the_change() -> None:
    data = json.loads(body("issue_updated_components.json"))
    data["issue"]["fields"]["components"] = [
        {"id": "10001", "name": "Billing"},
        {"id": "10003", "name": "Access"},
    ]
    [components, *_] = [e.payload for e in parse(json.dumps(data).encode()).events]
    assert (components.field, components.value) == ("components", "Billing,Access")
    del data["issue"]["fields"]["components"]  # an older payload: fall back to the items added
    [components, *_] = [e.payload for e in parse(json.dumps(data).encode()).events]
    assert components.value == "Billing"


def test_reassignment_reports_account_ids() -> None:
    assert changes("issue_updated_assignee.json") == [
        FieldChange("SUP-17", "assignee", "557058:bo-0002", ANA, BOT)
    ]
    data = json.loads(body("issue_updated_assignee.json"))
    data["changelog"]["items"][0].update(to=None, toString=None)  # unassigned: no label to learn
    assert parse(json.dumps(data).encode()).ignored == "no routed field changed"


def test_our_own_edits_apps_and_unconfigured_tenants_are_ignored() -> None:
    own = parse(body("issue_updated_by_bot.json"))
    assert own.events == () and own.ignored == "changed by deskpilot's own account (options.bot_account_id)"
    unset = parse(body("issue_updated_priority.json"), {})
    assert unset.events == ()
    assert unset.ignored == "options.bot_account_id is not set, so deskpilot's own edits cannot be told apart"
    data = json.loads(body("issue_updated_priority.json"))
    data["user"].update(accountId="557058:auto-0004", accountType="app")
    assert parse(json.dumps(data).encode()).ignored == "changed by an app or automation rule, not a person"
    del data["user"]
    assert parse(json.dumps(data).encode()).ignored == "the change names no user.accountId"


def test_events_deskpilot_does_not_use_are_acknowledged_and_ignored() -> None:
    commented = parse(body("issue_updated_commented.json"))
    assert (commented.events, commented.ignored) == ((), "no routed field changed")
    other = parse(body("comment_created.json"))
    assert (other.events, other.ignored) == ((), "webhookEvent 'comment_created' is not used by deskpilot")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff\xfe", "body is not UTF-8 (byte 0)"),
        (b"{nope", "body is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"[1]", "body is a JSON list, not a Jira webhook object"),
        (b'{"timestamp": 1}', "webhookEvent: missing; is this a Jira webhook?"),
        (
            b'{"webhookEvent": "jira:issue_created"}',
            "issue: missing; an issue event carries the issue object",
        ),
        (
            b'{"webhookEvent": "jira:issue_created", "issue": {"key": "no key", "fields": {}}}',
            "issue.key: 'no key' is not an issue key such as SUP-17",
        ),
        (
            b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "SUP-1"}}',
            "issue.fields: missing or not an object",
        ),
        (
            b'{"webhookEvent": "jira:issue_created", "issue": {"key": "SUP-1", "fields": {"summary": 5}}}',
            "issue.fields.summary: a int, not a string",
        ),
    ],
)
def test_unusable_bodies_say_what_is_wrong(raw: bytes, expected: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse(raw)
    assert str(info.value) == expected


def test_subpaths_and_option_typos_are_refused() -> None:
    with pytest.raises(InputDataError, match=r"unknown Jira webhook path \.\.\./jira/events"):
        get_connector("jira").parse("acme", "events", HEADERS, body("issue_created.json"), OPTIONS)
    with pytest.raises(ConfigError) as typo:
        parse(body("issue_updated_priority.json"), {"bot_acount_id": BOT})
    assert str(typo.value) == (
        "unknown Jira option(s) bot_acount_id (allowed: bot_account_id, custom_field, custom_field_kind, "
        "comment_visibility, feedback_fields)"
    )
    for bad, message in [
        ({"custom_field": "Support queue"}, "is not a custom field id"),
        ({"custom_field_kind": "radio"}, "custom_field_kind 'radio' is not one of select, option_id, text"),
        ({"comment_visibility": "secret"}, "comment_visibility 'secret' is not understood"),
        ({"feedback_fields": "status, bad field"}, "'bad field' are not field ids"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse(body("issue_created.json"), bad)


# --- outbound: planned calls -----------------------------------------------------------------
def action(fields: dict[str, Any] | None = None, **context: Any) -> Action:
    return Action(
        tenant="acme",
        system="jira",
        connector="jira",
        kind="route",
        ticket_id=41,
        external_id="SUP-17",
        fields={"components": "Network", "priority": "High"} if fields is None else fields,
        idempotency_key="d41-7f3a:jira",
        context=context,
    )


def test_route_is_one_edit_then_one_marked_internal_comment() -> None:
    note = "intent: network (0.93 >= 0.70).\n\nSimilar resolved: SUP-3, SUP-9."
    calls = plan(
        action(
            {
                "queue": "Network team",
                "components": "Network, Access",
                "labels": "deskpilot,vpn",
                "priority": "High",
                "assignee": "557058:ana-0001",
                "issue_type": "Task",
                "duedate": "2024-07-01",
            },
            note=note,
        ),
        OPTIONS,
    )
    assert calls[0] == PlannedCall(
        "PUT",
        "/rest/api/3/issue/SUP-17",
        {
            "fields": {
                "customfield_10050": {"value": "Network team"},
                "components": [{"name": "Network"}, {"name": "Access"}],
                "priority": {"name": "High"},
                "assignee": {"accountId": "557058:ana-0001"},
                "issuetype": {"name": "Task"},
                "duedate": "2024-07-01",
            },
            "update": {"labels": [{"add": "deskpilot"}, {"add": "vpn"}]},
        },
        purpose="fields",
    )
    comment = calls[1]
    assert (comment.method, comment.path, comment.marker) == (
        "POST",
        "/rest/api/3/issue/SUP-17/comment",
        "[deskpilot:d41-7f3a:jira]",
    )
    assert comment.json["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    assert "visibility" not in comment.json
    assert comment.json["body"] == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {
                        "type": "text",
                        "text": "deskpilot routed this issue: queue = Network team; "
                        "components = Network, Access; labels = deskpilot,vpn; priority = High; "
                        "assignee = 557058:ana-0001; "
                        "issue_type = Task; duedate = 2024-07-01",
                        "marks": [{"type": "strong"}],
                    }
                ],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "intent: network (0.93 >= 0.70)."}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Similar resolved: SUP-3, SUP-9."}]},
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "[deskpilot:d41-7f3a:jira]", "marks": [{"type": "code"}]}
                ],
            },
        ],
    }
    assert adf.to_text(comment.json["body"]).endswith("[deskpilot:d41-7f3a:jira]")


def test_custom_field_kinds_and_comment_visibility_options() -> None:
    def first(options: dict[str, str]) -> dict[str, Any]:
        fields: dict[str, Any] = plan(action({"queue": "10021"}), options)[0].json["fields"]
        return fields

    assert first({"custom_field": "customfield_10050", "custom_field_kind": "option_id"}) == {
        "customfield_10050": {"id": "10021"}
    }
    assert first({"custom_field": "customfield_10050", "custom_field_kind": "text"}) == {
        "customfield_10050": "10021"
    }
    visible = {
        "public": {},
        "role:Service Desk Team": {"visibility": {"type": "role", "value": "Service Desk Team"}},
        "group:jira-servicedesk-users": {"visibility": {"type": "group", "value": "jira-servicedesk-users"}},
        "group-id:276f955c-63d7-42c8-9520-92d01dca0625": {
            "visibility": {"type": "group", "identifier": "276f955c-63d7-42c8-9520-92d01dca0625"}
        },
    }
    for option, expected in visible.items():
        comment = plan(action(), {"comment_visibility": option})[-1].json
        assert {k: v for k, v in comment.items() if k != "body"} == expected


def test_decisions_draft_and_triage_shape_the_comment() -> None:
    decisions = [
        {"task": "intent", "label": "network", "score": 0.934, "abstained": False},
        {"task": "urgency", "label": None, "score": 0.41, "abstained": True},
    ]
    comment = plan(action(decisions=decisions, draft="Hello Cy,\n\nplease reconnect.", triage=True), {})[-1]
    text = adf.to_text(comment.json["body"])
    assert text == (
        "deskpilot sent this issue to triage: components = Network; priority = High\n"
        "intent: network (score 0.93)\nurgency: abstained (score 0.41)\n"
        "Suggested reply (draft, not sent to the customer):\n"
        "Hello Cy,\nplease reconnect.\n"
        "[deskpilot:d41-7f3a:jira]"
    )
    assert comment.json["body"]["content"][1]["content"][1] == {"type": "hardBreak"}
    only_comment = plan(action({}), {})
    assert [c.method for c in only_comment] == ["POST"]


def test_actions_jira_cannot_perform_are_permanent_errors() -> None:
    cases = [
        (
            {"queue": "Billing team"},
            {},
            "the policy routes with 'queue' but the Jira system has no options.custom_field",
        ),
        ({"group": "360001"}, OPTIONS, "Jira issues have no 'group' field"),
        ({"labels": "needs triage"}, OPTIONS, "Jira labels cannot contain spaces: 'needs triage'"),
        ({"Team Name": "x"}, OPTIONS, "policy field 'Team Name' is not a Jira field id"),
    ]
    for fields, options, message in cases:
        with pytest.raises(ActionFailedError) as info:
            plan(action(fields), options)
        assert info.value.transient is False and info.value.message.startswith(message)
    with pytest.raises(ActionFailedError, match="performs 'route' actions, not 'reply'"):
        plan(Action("acme", "jira", "jira", "reply", 41, "SUP-17", {}, "k"), {})
    no_key = Action("acme", "jira", "jira", "route", 41, None, {"priority": "High"}, "k")
    with pytest.raises(ActionFailedError, match="ticket 41 has no Jira issue key"):
        plan(no_key, {})
    from_metadata = Action(
        "acme", "jira", "jira", "route", 41, None, {}, "k", {"ticket_metadata": {"key": "SUP-99"}}
    )
    assert plan(from_metadata, {})[0].path == "/rest/api/3/issue/SUP-99/comment"
