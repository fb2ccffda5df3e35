"""Zendesk conversions, both ways, without HTTP: documented payloads in, planned REST calls out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.zendesk import convert
from deskpilot.connectors.zendesk.convert import PlannedCall, parse
from deskpilot.errors import InputDataError
from deskpilot.types import Action, FieldChange, Ticket

FIXTURES = Path(__file__).parent / "fixtures"
BOT = {"bot_user_id": "9001"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def edited(name: str, **changes: Any) -> bytes:
    """A fixture with top-level keys, or ``detail.x`` / ``event.x`` / ``ticket.x`` keys, replaced."""
    data = json.loads(fixture(name))
    for key, value in changes.items():
        outer, _, inner = key.partition("__")
        if inner:
            data[outer][inner] = value
        else:
            data[outer] = value
    return json.dumps(data).encode()


def bad(body: bytes, options: dict[str, str] | None = None) -> str:
    with pytest.raises(InputDataError) as info:
        parse("acme", body, options or BOT)
    assert info.value.status == 422
    return str(info.value)


# --- inbound: event subscriptions -------------------------------------------------------------
def test_ticket_created_event_becomes_a_ticket_deduplicated_on_the_event_id() -> None:
    inbound = parse("acme", fixture("event_ticket_created.json"), BOT)
    (event,) = inbound.events
    assert (event.tenant, event.source, event.kind) == ("acme", "zendesk", "ticket")
    assert event.delivery_id == "cbe4028c-7239-495d-b020-f22348516046"
    assert event.payload == Ticket(
        subject="VPN keeps disconnecting",
        body="Since this morning the VPN drops every few minutes when I work from home.",
        requester=None,
        source="zendesk",
        external_id="35436",
        metadata={
            "zendesk_ticket_id": "35436",
            "zendesk_event_id": "cbe4028c-7239-495d-b020-f22348516046",
            "requester_id": "8447388090494",
            "brand_id": "8447346621310",
            "organization_id": "8447346622462",
            "form_id": "8646151517822",
            "priority": "low",
            "status": "new",
            "type": "incident",
            "tags": ["remote_work"],
            "via_channel": "web_service",
        },
    )
    assert inbound.reply is None and inbound.ignored is None and inbound.status == 202


@pytest.mark.parametrize(
    ("name", "change"),
    [
        (
            "event_group_assignment_changed.json",
            FieldChange("35436", "group", "360002", "zendesk-user:7001", previous="360001"),
        ),
        (
            "event_priority_changed.json",
            FieldChange("35436", "priority", "urgent", "zendesk-user:7002", previous="high"),
        ),
        (
            "event_agent_assignment_changed.json",
            FieldChange("35436", "assignee", "7002", "zendesk-user:7001", previous=None),
        ),
    ],
)
def test_a_persons_change_of_a_routed_field_is_a_field_change(name: str, change: FieldChange) -> None:
    (event,) = parse("acme", fixture(name), BOT).events
    assert event.kind == "field_change" and event.source == "zendesk"
    assert event.payload == change
    assert event.delivery_id == json.loads(fixture(name))["id"]


def test_the_group_changed_alias_is_read_like_group_assignment_changed() -> None:
    body = edited("event_group_assignment_changed.json", type="zen:event-type:ticket.group_changed")
    (event,) = parse("acme", body, BOT).events
    assert isinstance(event.payload, FieldChange) and event.payload.field == "group"


def test_changes_by_deskpilots_own_user_or_by_zendesk_itself_are_not_corrections() -> None:
    ours = edited("event_group_assignment_changed.json", detail__actor_id="9001")
    inbound = parse("acme", ours, BOT)
    assert inbound.events == () and inbound.ignored == "change made by deskpilot's own Zendesk user 9001"
    system = parse("acme", edited("event_priority_changed.json", detail__actor_id="-1"), BOT)
    assert system.events == () and system.ignored is not None and "trigger or automation" in system.ignored
    # without the option, the same change counts (the policy should set bot_user_id)
    assert len(parse("acme", ours, {}).events) == 1


def test_event_types_deskpilot_does_not_use_are_acknowledged_and_ignored() -> None:
    comment = parse("acme", fixture("event_comment_added.json"), BOT)
    assert comment.events == ()
    assert (
        comment.ignored == "Zendesk event type 'zen:event-type:ticket.comment_added' is not used by deskpilot"
    )
    user = parse("acme", b'{"type": "zen:event-type:user.created", "id": "x", "detail": {}}', BOT)
    assert user.events == () and user.ignored is not None and "user.created" in user.ignored
    other = parse("acme", b'{"type": "conditional_ticket_events", "id": "x"}', BOT)
    assert other.events == () and other.ignored is not None


def test_a_cleared_group_is_ignored() -> None:
    body = edited("event_group_assignment_changed.json", event={"current": None, "previous": "360001"})
    inbound = parse("acme", body, BOT)
    assert (
        inbound.events == () and inbound.ignored == "group was cleared on ticket 35436; nothing to learn from"
    )


def test_event_problems_name_the_json_path() -> None:
    name = "event_ticket_created.json"
    assert bad(edited(name, id="")) == "id: missing or empty"
    assert bad(edited(name, detail__id="abc")).startswith(
        "detail.id: 'abc' is not a Zendesk ticket id (digits)"
    )
    assert bad(edited(name, detail="x")) == "detail: expected an object, got a JSON str"
    assert (
        bad(edited(name, subject="zen:ticket:1"))
        == "subject: 'zen:ticket:1' does not name ticket 35436 (detail.id)"
    )
    assert bad(edited(name, detail__subject={"a": 1})) == "detail.subject: expected a string, got a JSON dict"
    both_empty = edited(name, detail__subject="", detail__description=" ")
    assert bad(both_empty) == "detail.subject, detail.description: both are empty; a ticket needs text"
    assert (
        bad(edited("event_priority_changed.json", event=[])) == "event: expected an object, got a JSON list"
    )


def test_very_long_text_is_clipped_and_flagged() -> None:
    body = edited("event_ticket_created.json", detail__description="x" * 30_000)
    (event,) = parse("acme", body, BOT).events
    assert isinstance(event.payload, Ticket)
    assert len(event.payload.body) == convert.MAX_BODY_CHARS and event.payload.metadata["truncated"] is True


# --- inbound: deskpilot's trigger template ----------------------------------------------------
def test_trigger_ticket_created_becomes_a_ticket_with_the_requesters_email() -> None:
    (event,) = parse("acme", fixture("trigger_ticket_created.json"), BOT).events
    assert event.kind == "ticket"
    assert event.payload == Ticket(
        subject="Invoice 2024-118 charged twice",
        body="Hello, my card was charged twice for invoice 2024-118. Please refund one of the payments.",
        requester="maria@globex.example",
        source="zendesk",
        external_id="35437",
        metadata={
            "zendesk_ticket_id": "35437",
            "via_channel": "Web form",
            "updated_at": "2025-01-08T12:00Z",
            "priority": "normal",
            "tags": ["billing", "web_form"],
        },
    )
    assert event.delivery_id.startswith("zendesk:35437:2025-01-08T12:00Z:ticket.created:")


def test_trigger_ticket_updated_reports_every_routed_field_it_carries() -> None:
    body = fixture("trigger_ticket_updated.json")
    events = parse("acme", body, BOT).events
    assert [e.payload for e in events] == [
        FieldChange("35437", "group", "360002", "zendesk-user:7001", previous=None),
        FieldChange("35437", "priority", "high", "zendesk-user:7001", previous=None),
    ]  # assignee_id is empty in the fixture: not reported
    ids = [e.delivery_id for e in events]
    assert ids[0].endswith(":group") and ids[1].endswith(":priority") and len(set(ids)) == 2
    # a retry of the same delivery keeps its ids; another update in the same minute gets new ones
    assert [e.delivery_id for e in parse("acme", body, BOT).events] == ids
    other = edited("trigger_ticket_updated.json", ticket__priority="Urgent")
    assert not set(ids) & {e.delivery_id for e in parse("acme", other, BOT).events}


def test_trigger_group_changed_reports_only_the_group() -> None:
    (event,) = parse("acme", fixture("trigger_group_changed.json"), BOT).events
    assert event.payload == FieldChange("35437", "group", "360002", "zendesk-user:7001", previous=None)


def test_trigger_changes_by_the_bot_are_ignored_and_empty_ones_explained() -> None:
    ours = edited("trigger_ticket_updated.json", ticket__updated_by="9001")
    assert parse("acme", ours, BOT).ignored == "change made by deskpilot's own Zendesk user 9001"
    empty = edited("trigger_group_changed.json", ticket__group_id="")
    inbound = parse("acme", empty, BOT)
    assert (
        inbound.events == ()
        and inbound.ignored == "ticket.group_changed for ticket 35437 carries no value in ticket.group_id"
    )


def test_trigger_problems_name_the_json_path() -> None:
    assert bad(edited("trigger_ticket_created.json", event="ticket.deleted")).startswith(
        "event: 'ticket.deleted' is not known (use one of ticket.created, ticket.updated"
    )
    unrendered = edited("trigger_ticket_created.json", ticket__id="{{ticket.id}}")
    assert bad(unrendered).startswith("ticket.id: '{{ticket.id}}' is not a Zendesk ticket id (digits)")
    assert bad(b'{"event": "ticket.created"}').startswith("ticket: missing")
    assert bad(edited("trigger_ticket_created.json", ticket__subject=["x"])) == (
        "ticket.subject: expected a string, got a JSON list"
    )


@pytest.mark.parametrize(
    ("body", "start"),
    [
        (b"\xff\xfe", "body is not UTF-8 (byte 0)"),
        (
            b'{"event": "ticket.created", "ticket": {"subject": "a "quoted" word"}}',
            "body is not JSON: Expecting",
        ),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'{"hello": "world"}', "body has neither a Zendesk event 'type' nor a trigger 'event'"),
    ],
)
def test_bodies_that_are_not_zendesk_deliveries_are_refused(body: bytes, start: str) -> None:
    assert bad(body).startswith(start)


def test_the_connector_has_no_sub_routes() -> None:
    connector = get_connector("zendesk")
    assert connector.parse("acme", "", {}, fixture("event_ticket_created.json"), BOT).events
    with pytest.raises(InputDataError, match="no Zendesk endpoint at zendesk/events"):
        connector.parse("acme", "events", {}, fixture("event_ticket_created.json"), BOT)


# --- outbound ---------------------------------------------------------------------------------
def action(fields: dict[str, Any] | None = None, **context: Any) -> Action:
    return Action(
        tenant="acme",
        system="zendesk",
        connector="zendesk",
        kind="route",
        ticket_id=12,
        external_id="35436",
        fields=fields
        if fields is not None
        else {"group": "360001", "priority": "high", "tags": "vpn network"},
        idempotency_key="acme:ticket:12:zendesk",
        context=context or {"note": "intent: network (0.91 >= 0.50)."},
    )


TICKET = {
    "id": 35436,
    "group_id": None,
    "priority": None,
    "tags": ["remote_work"],
    "updated_at": "2025-01-08T10:12:07Z",
}


def test_policy_fields_map_onto_zendesk_ticket_properties() -> None:
    fields = {
        "group": "360001",
        "assignee": 7002,
        "priority": "HIGH",
        "type": "Incident",
        "tags": "VPN, network  vpn",
        "custom_360005": "gold",
        "custom_12": 3,
    }
    assert convert.update_fields(fields) == {
        "group_id": 360001,
        "assignee_id": 7002,
        "priority": "high",
        "type": "incident",
        "additional_tags": ["network", "vpn"],
        "custom_fields": [{"id": 12, "value": 3}, {"id": 360005, "value": "gold"}],
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"queue": "billing"},
            "fields.queue: Zendesk has no queues (route with `group: <group id>` in the policy)",
        ),
        ({"group": "Billing"}, "fields.group: 'Billing' is not a Zendesk id (digits, e.g. 360001234567)"),
        ({"priority": "p1"}, "fields.priority: 'p1' is not one of urgent, high, normal, low"),
        ({"type": "bug"}, "fields.type: 'bug' is not one of problem, incident, question, task"),
        ({"status": "solved"}, "fields.status: not a field deskpilot can set in Zendesk"),
    ],
)
def test_fields_zendesk_cannot_take_are_refused_by_name(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InputDataError) as info:
        convert.update_fields(fields)
    assert str(info.value).startswith(message)


def test_plan_is_one_put_with_the_changes_a_private_marked_note_and_safe_update() -> None:
    calls = convert.plan_update(action(), current=TICKET, marker_present=False)
    assert calls == [
        PlannedCall(
            "PUT",
            "/api/v2/tickets/35436.json",
            json={
                "ticket": {
                    "group_id": 360001,
                    "priority": "high",
                    "additional_tags": ["network", "vpn"],
                    "comment": {
                        "body": "intent: network (0.91 >= 0.50).\n\n[deskpilot:acme:ticket:12:zendesk]",
                        "public": False,
                    },
                    "safe_update": True,
                    "updated_stamp": "2025-01-08T10:12:07Z",
                }
            },
        )
    ]


def test_plan_sends_only_what_is_missing_and_nothing_when_all_is_there() -> None:
    routed = {**TICKET, "group_id": 360001, "tags": ["network", "remote_work", "vpn"]}
    (call,) = convert.plan_update(action(), current=routed, marker_present=True)
    assert call.json == {
        "ticket": {"priority": "high", "safe_update": True, "updated_stamp": TICKET["updated_at"]}
    }
    done = {**routed, "priority": "high"}
    assert convert.plan_update(action(), current=done, marker_present=True) == []


def test_options_turn_the_note_and_safe_update_off() -> None:
    options = {"internal_note": "false", "safe_update": "no"}
    (call,) = convert.plan_update(action(), current=TICKET, marker_present=False, options=options)
    assert call.json == {
        "ticket": {"group_id": 360001, "priority": "high", "additional_tags": ["network", "vpn"]}
    }
    with pytest.raises(InputDataError, match=r"options\.safe_update: 'maybe' is not true or false"):
        convert.plan_update(action(), current=TICKET, marker_present=False, options={"safe_update": "maybe"})


def test_without_a_note_the_comment_summarises_the_decisions() -> None:
    act = action(
        decisions=[
            {"task": "intent", "label": "network", "score": 0.912, "abstained": False},
            {"task": "urgency", "label": None, "score": 0.31, "abstained": True},
        ]
    )
    assert convert.comment_body(act) == (
        "deskpilot routed this ticket: group=360001, priority=high, tags=vpn network.\n"
        "- intent: network (0.91)\n"
        "- urgency: unsure, sent to triage\n\n"
        "[deskpilot:acme:ticket:12:zendesk]"
    )


def test_the_marker_is_found_in_any_comment_text_form() -> None:
    mark = convert.marker("acme:ticket:12:zendesk")
    assert convert.has_marker([{"body": "x"}, {"html_body": f"<p>[{mark}]</p>"}], mark)
    assert not convert.has_marker([{"body": "deskpilot:acme:ticket:13:zendesk"}], mark)


def test_the_zendesk_ticket_comes_from_the_external_id_or_the_ticket_metadata() -> None:
    assert convert.target_ticket(action()) == "35436"
    from_meta = replace(action(), external_id=None, context={"ticket_metadata": {"zendesk_ticket_id": "77"}})
    assert convert.target_ticket(from_meta) == "77"
    nowhere = replace(action(), external_id="T-1", context={})
    with pytest.raises(InputDataError, match="ticket 12 has no Zendesk ticket id"):
        convert.target_ticket(nowhere)


def test_reads_are_the_ticket_then_its_comments_newest_first() -> None:
    assert convert.read_calls("35436") == [
        PlannedCall("GET", "/api/v2/tickets/35436.json"),
        PlannedCall(
            "GET", "/api/v2/tickets/35436/comments.json", params={"page[size]": "100", "sort": "-created_at"}
        ),
    ]
