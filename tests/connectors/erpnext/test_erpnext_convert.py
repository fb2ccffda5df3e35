"""Pure conversion: Frappe webhook bodies -> events, route actions -> planned REST calls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from erpnext_payloads import API_USER, body, payload, wire

from deskpilot.connectors.erpnext import ErpnextConnector
from deskpilot.connectors.erpnext.convert import (
    MAX_BODY_CHARS,
    PlannedCall,
    delivery_id,
    html_to_text,
    parse,
    plan_route,
)
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action, FieldChange, Ticket

OPTIONS = {"api_user": API_USER, "queue_field": "custom_team"}


def changes(raw: bytes, options: dict[str, str] = OPTIONS) -> list[tuple[str, str, str, str]]:
    inbound = parse("acme", raw, options)
    out = []
    for event in inbound.events:
        assert event.kind == "field_change" and isinstance(event.payload, FieldChange)
        change = event.payload
        out.append((change.external_id, change.field, change.value, change.author))
        assert change.previous is None
    return out


def bad(raw: bytes, options: dict[str, str] = OPTIONS) -> str:
    with pytest.raises(InputDataError) as info:
        parse("acme", raw, options)
    assert info.value.status == 422
    return info.value.message


# --- tickets --------------------------------------------------------------------------------
def test_after_insert_is_a_ticket() -> None:
    inbound = ErpnextConnector().parse("acme", "", {}, body("issue_after_insert"), {})
    assert (inbound.status, inbound.reply, inbound.ignored) == (202, None, None)
    [event] = inbound.events
    assert (event.tenant, event.source, event.kind) == ("acme", "erpnext", "ticket")
    assert event.delivery_id == "Issue:ISS-2025-00042:2025-03-04 09:15:02.123456"
    assert event.payload == Ticket(
        subject="VPN drops every few minutes",
        body="Since this morning the VPN drops every 5 minutes & I can't reach the ERP.\n\nThanks,\nAna",
        requester="ana@example.com",
        source="erpnext",
        external_id="ISS-2025-00042",
        metadata={"doctype": "Issue", "name": "ISS-2025-00042", "priority": "Medium", "status": "Open"},
    )


def test_on_update_fired_inside_insert_is_the_same_ticket_with_the_same_delivery_id() -> None:
    [first] = parse("acme", body("issue_after_insert"), OPTIONS).events
    [second] = parse("acme", body("issue_on_update_insert"), OPTIONS).events
    assert second.kind == "ticket"
    assert second.delivery_id == first.delivery_id  # the inbox keeps one
    assert second.payload == first.payload  # same fingerprint: a duplicate, not a conflict


def test_ticket_text_limits() -> None:
    long = "<p>" + "x" * (MAX_BODY_CHARS + 50) + "</p>"
    [event] = parse("acme", body("issue_after_insert", description=long), {}).events
    assert isinstance(event.payload, Ticket)
    assert len(event.payload.body) == MAX_BODY_CHARS
    assert event.payload.metadata["truncated"] is True
    [event] = parse("acme", body("issue_after_insert", description=None, raised_by=""), {}).events
    assert isinstance(event.payload, Ticket)
    assert (event.payload.body, event.payload.requester) == ("", None)
    message = bad(body("issue_after_insert", subject="  ", description="<p> </p>"))
    assert message == "subject, description: both are empty; an Issue needs a subject"


def test_html_to_text() -> None:
    assert html_to_text("") == ""
    assert html_to_text("plain &lt;b&gt; text") == "plain <b> text"
    assert html_to_text("<div><p>One&nbsp;two</p><ul><li>a</li><li>b</li></ul></div>") == "One two\n\na\n\nb"
    assert html_to_text("<style>p{color:red}</style><p>kept</p><script>alert(1)</script>") == "kept"
    assert html_to_text("line<br>next<br/>last") == "line\nnext\nlast"
    assert html_to_text("<p>unclosed <b>bold") == "unclosed bold"


# --- corrections ----------------------------------------------------------------------------
def test_on_update_by_a_person_reports_every_routed_field() -> None:
    inbound = parse("acme", body("issue_on_update_by_agent"), OPTIONS)
    assert changes(body("issue_on_update_by_agent")) == [
        ("ISS-2025-00042", "issue_type", "Access", "carol@example.com"),
        ("ISS-2025-00042", "priority", "High", "carol@example.com"),
        ("ISS-2025-00042", "queue", "Identity", "carol@example.com"),
        ("ISS-2025-00042", "assignee", "agent@example.com", "carol@example.com"),
    ]
    stamp = "Issue:ISS-2025-00042:2025-03-04 10:02:41.554210"
    assert [e.delivery_id for e in inbound.events] == [
        f"{stamp}:issue_type",
        f"{stamp}:priority",
        f"{stamp}:queue",
        f"{stamp}:assignee",
    ]
    assert {e.source for e in inbound.events} == {"erpnext"}


def test_which_fields_are_reported_depends_on_the_options() -> None:
    raw = body("issue_on_update_by_agent")
    assert [c[1] for c in changes(raw, {"api_user": API_USER})] == ["issue_type", "priority", "assignee"]
    with_group = {"api_user": API_USER, "group_field": "custom_team", "extra_fields": "status, subject"}
    assert [c[1:3] for c in changes(raw, with_group)] == [
        ("issue_type", "Access"),
        ("priority", "High"),
        ("group", "Identity"),
        ("assignee", "agent@example.com"),
        ("status", "Open"),
        ("subject", "VPN drops every few minutes"),
    ]
    # a queue field the template does not send, empty values and several assignees report nothing
    sparse = body(
        "issue_on_update_by_agent", issue_type=None, priority="", _assign='["a@example.com", "b@example.com"]'
    )
    assert changes(sparse, {"api_user": API_USER, "queue_field": "custom_queue"}) == []
    assert (
        parse("acme", sparse, {"api_user": API_USER}).ignored
        == "Issue ISS-2025-00042 has no routed field with a value"
    )
    # _assign also arrives as a real list when a template renders it without tojson
    as_list = body("issue_on_update_by_agent", _assign=["bob@example.com"])
    assert ("assignee", "bob@example.com") in [c[1:3] for c in changes(as_list)]


def test_our_own_changes_are_not_corrections() -> None:
    inbound = parse("acme", body("issue_on_update_by_api_user"), OPTIONS)
    assert inbound.events == ()
    assert inbound.ignored == "Issue ISS-2025-00042 was last changed by deskpilot's API user"
    several = {"api_user": "sync@example.com, DeskPilot@Example.com"}  # comma list, any case
    assert parse("acme", body("issue_on_update_by_api_user"), several).events == ()


def test_without_api_user_updates_are_ignored_with_the_reason() -> None:
    for name in ("issue_on_update_by_agent", "todo_after_insert_by_agent"):
        inbound = parse("acme", body(name), {"queue_field": "custom_team"})
        assert inbound.events == ()
        assert inbound.ignored is not None and "options.api_user" in inbound.ignored
    # tickets need no options
    assert len(parse("acme", body("issue_after_insert"), {}).events) == 1


def test_a_person_assigning_the_issue_is_an_assignee_correction() -> None:
    inbound = parse("acme", body("todo_after_insert_by_agent"), OPTIONS)
    assert changes(body("todo_after_insert_by_agent")) == [
        ("ISS-2025-00042", "assignee", "bob@example.com", "carol@example.com")
    ]
    assert inbound.events[0].delivery_id == "ToDo:8c1f0b3a6e:2025-03-04 10:05:13.002117"


@pytest.mark.parametrize(
    ("fixture", "changes_", "reason"),
    [
        ("todo_after_insert_by_rule", {}, "ToDo 2d9e41c07b was made by Assignment Rule 'Support Rotation'"),
        (
            "todo_after_insert_by_agent",
            {"assigned_by": API_USER},
            "ToDo 8c1f0b3a6e was assigned by deskpilot's API user",
        ),
        (
            "todo_after_insert_by_agent",
            {"reference_type": "Task"},
            "ToDo 8c1f0b3a6e is not an assignment of an Issue",
        ),
        ("todo_after_insert_by_agent", {"status": "Cancelled"}, "ToDo 8c1f0b3a6e is not an open assignment"),
        (
            "todo_after_insert_by_agent",
            {"event": "on_update"},
            "ToDo on_update events are not used (only new assignments)",
        ),
        ("issue_on_trash", {}, "Issue on_trash events are not used (send after_insert and on_update)"),
        (
            "issue_after_insert",
            {"doctype": "Sales Invoice"},
            "Sales Invoice documents are not used (deskpilot reads Issue and ToDo)",
        ),
    ],
)
def test_events_we_do_not_use_are_acknowledged_and_ignored(
    fixture: str, changes_: dict[str, Any], reason: str
) -> None:
    inbound = parse("acme", body(fixture, **changes_), OPTIONS)
    assert (inbound.events, inbound.reply, inbound.ignored) == ((), None, reason)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "body is not UTF-8 (byte 0)"),
        (b"name=ISS-1&subject=x", "body is not JSON: Expecting value at line 1 column 1"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (
            b'{"event": "after_insert", "name": "ISS-1"}',
            'doctype: missing; add "doctype": {{ doc.doctype | tojson }}',
        ),
        (wire({**payload("issue_after_insert"), "name": 42}), "name: Input should be a valid string"),
        (
            wire({k: v for k, v in payload("issue_after_insert").items() if k != "modified"}),
            "modified: Field required",
        ),
        (body("issue_on_update_by_agent", _assign="agent@example.com"), "_assign: not a JSON list of users"),
        (body("issue_on_update_by_agent", _assign='{"a": 1}'), "_assign: not a JSON list of users"),
        (
            body("issue_on_update_by_agent", modified_by=None),
            "modified_by: missing; corrections need an author",
        ),
        (
            body("todo_after_insert_by_agent", assigned_by=None, modified_by=None),
            "assigned_by: missing; corrections need an author",
        ),
    ],
)
def test_bad_bodies_name_what_is_wrong(raw: bytes, message: str) -> None:
    assert bad(raw) == message


def test_delivery_ids_stay_within_200_printable_characters() -> None:
    assert (
        delivery_id("Issue", "ISS-1", "2025-01-01 00:00:00.000000")
        == "Issue:ISS-1:2025-01-01 00:00:00.000000"
    )
    long = delivery_id("Issue", "x" * 140, "2025-01-01 00:00:00.000000", "custom_" + "y" * 60)
    assert long.startswith("Issue:sha256:") and len(long) == len("Issue:sha256:") + 64
    assert long == delivery_id("Issue", "x" * 140, "2025-01-01 00:00:00.000000", "custom_" + "y" * 60)
    assert delivery_id("Issue", "tab\there", "m").startswith("Issue:sha256:")


# --- outbound plan ----------------------------------------------------------------------------
def action(
    fields: dict[str, Any], *, note: str | None = "Routed to Network: model 'network' at 0.91.", **kw: Any
) -> Action:
    context: dict[str, Any] = {
        "ticket_metadata": {"doctype": "Issue", "name": "ISS-2025-00042"},
        "triage": False,
    }
    if note is not None:
        context["note"] = note
    defaults: dict[str, Any] = {
        "tenant": "acme",
        "system": "erp",
        "connector": "erpnext",
        "kind": "route",
        "ticket_id": 7,
        "external_id": "ISS-2025-00042",
        "idempotency_key": "acme:ticket:7:erp",
    }
    defaults.update(kw)
    return Action(fields=fields, context=context, **defaults)


def test_route_plan_maps_policy_keys_to_calls() -> None:
    plan = plan_route(
        action(
            {
                "queue": "Network Team",
                "issue_type": "Network",
                "priority": "High",
                "assignee": "agent@example.com",
            }
        ),
        {"queue_field": "custom_team"},
    )
    assert plan.issue == "ISS-2025-00042"
    assert plan.marker == "deskpilot:acme:ticket:7:erp"
    assert plan.update == PlannedCall(
        "PUT",
        "/api/resource/Issue/ISS-2025-00042",
        json={"custom_team": "Network Team", "issue_type": "Network", "priority": "High"},
    )
    assert plan.assign == PlannedCall(
        "POST",
        "/api/method/frappe.desk.form.assign_to.add",
        json={"doctype": "Issue", "name": "ISS-2025-00042", "assign_to": ["agent@example.com"]},
    )
    assert plan.find_comment is not None and plan.find_comment.method == "GET"
    assert plan.find_comment.path == "/api/resource/Comment"
    assert json.loads(plan.find_comment.params["filters"]) == [
        ["reference_doctype", "=", "Issue"],
        ["reference_name", "=", "ISS-2025-00042"],
        ["comment_type", "=", "Comment"],
        ["content", "like", "%deskpilot:acme:ticket:7:erp%"],
    ]
    assert json.loads(plan.find_comment.params["fields"]) == ["name", "content"]
    assert plan.comment == PlannedCall(
        "POST",
        "/api/resource/Comment",
        json={
            "comment_type": "Comment",
            "reference_doctype": "Issue",
            "reference_name": "ISS-2025-00042",
            "content": "<p>Routed to Network: model &#x27;network&#x27; at 0.91.</p>"
            "<p>deskpilot:acme:ticket:7:erp</p>",
        },
    )
    assert [c.method for c in plan.calls()] == ["PUT", "POST", "GET", "POST"]


def test_route_plan_without_note_or_fields_skips_those_calls() -> None:
    only_assignee = plan_route(action({"assignee": "triage@example.com"}, note=None), {})
    assert (only_assignee.update, only_assignee.find_comment, only_assignee.comment) == (None, None, None)
    assert [c.path for c in only_assignee.calls()] == ["/api/method/frappe.desk.form.assign_to.add"]
    only_fields = plan_route(action({"priority": "Low", "custom_sla_hours": 8}, note="  "), {})
    assert [c.method for c in only_fields.calls()] == ["PUT"]
    assert only_fields.update is not None and only_fields.update.json == {
        "priority": "Low",
        "custom_sla_hours": 8,
    }


def test_note_paragraphs_are_escaped() -> None:
    plan = plan_route(action({"priority": "Low"}, note="<b>VIP</b> & co\n\nsecond"), {})
    assert plan.comment is not None and plan.comment.json is not None
    assert plan.comment.json["content"] == (
        "<p>&lt;b&gt;VIP&lt;/b&gt; &amp; co</p><p>second</p><p>deskpilot:acme:ticket:7:erp</p>"
    )


def test_issue_name_comes_from_the_external_id_or_the_ticket_metadata() -> None:
    odd = plan_route(action({"priority": "Low"}, external_id="ISS/2025 1?"), {})
    assert odd.update is not None and odd.update.path == "/api/resource/Issue/ISS%2F2025%201%3F"
    assert odd.issue == "ISS/2025 1?"
    fallback = plan_route(action({"priority": "Low"}, external_id=None), {})
    assert fallback.issue == "ISS-2025-00042"


@pytest.mark.parametrize(
    ("act", "options", "error", "message"),
    [
        (
            action({"queue": "Network Team"}),
            {},
            ConfigError,
            "the policy routes 'queue' to ERPNext but its options have no queue_field",
        ),
        (
            action({"group": "L2"}),
            {},
            ConfigError,
            "the policy routes 'group' to ERPNext but its options have no group_field",
        ),
        (action({"Issue Type": "Bug"}), {}, ConfigError, "'Issue Type' is not an ERPNext fieldname"),
        (action({"queue": "x"}), {"queue_field": "Team"}, ConfigError, "'Team' is not an ERPNext fieldname"),
        (
            action({"priority": ["High"]}),
            {},
            InputDataError,
            "fields.priority: list is not an ERPNext field value",
        ),
        (
            action({"priority": "High"}, kind="reply"),
            {},
            InputDataError,
            "ERPNext cannot perform 'reply' actions (only 'route')",
        ),
    ],
)
def test_impossible_plans_say_why(
    act: Action, options: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        plan_route(act, options)
    assert getattr(info.value, "message", None) == message


def test_a_ticket_that_did_not_come_from_erpnext_cannot_be_routed_there() -> None:
    act = action({"priority": "Low"}, external_id=None)
    act.context.pop("ticket_metadata")
    with pytest.raises(InputDataError, match="ticket 7 has no ERPNext Issue name"):
        plan_route(act, {})
