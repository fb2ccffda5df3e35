"""ServiceNow conversions, both ways, without HTTP: Business Rule bodies -> events, actions -> calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskpilot.connectors.base import Inbound
from deskpilot.connectors.servicenow import ServiceNowConnector, convert
from deskpilot.connectors.servicenow.convert import PlannedCall
from deskpilot.connectors.servicenow.options import ServiceNowOptions, base_priority
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action, FieldChange, Ticket

FIXTURES = Path(__file__).parent / "fixtures"
SYS_ID = "46d44a23a9fe19810012d100cca80666"
NETWORK = "287ebd7da9fe198100f92cc8d1d2154e"
SERVICE_DESK = "8a5055c9c61122780043563ef53438e3"
BETH = "46b87022a9fe198101a78787e40d7547"
OPTIONS = {"integration_user": "deskpilot.integration"}


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw(name))
    return data


def parse(body: bytes | dict[str, Any], options: dict[str, str] | None = None, route: str = "") -> Inbound:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceNowConnector().parse("acme", route, {}, data, OPTIONS if options is None else options)


def action(fields: dict[str, Any] | None = None, **context: Any) -> Action:
    return Action(
        tenant="acme",
        system="itsm",
        connector="servicenow",
        kind="route",
        ticket_id=1,
        external_id=SYS_ID,
        fields=fields if fields is not None else {"group": NETWORK, "priority": "high"},
        idempotency_key="acme:ticket:1:itsm",
        context=context or {"note": "deskpilot: model 'network' at 0.93.", "triage": False},
    )


# --- inbound ----------------------------------------------------------------------------------
def test_an_insert_is_a_ticket() -> None:
    inbound = parse(raw("insert.json"))
    assert inbound.ignored is None and inbound.reply is None and inbound.status == 202
    (event,) = inbound.events
    assert (event.tenant, event.source, event.kind) == ("acme", "servicenow", "ticket")
    assert event.delivery_id == f"{SYS_ID}:2025-03-01 09:30:12:0:ticket"
    ticket = event.payload
    assert isinstance(ticket, Ticket)
    assert ticket.subject == "VPN drops every few minutes"
    assert ticket.body.startswith("Since this morning") and "Café wifi" in ticket.body
    assert (ticket.requester, ticket.source, ticket.external_id) == (
        "ann.lee@example.com",
        "servicenow",
        SYS_ID,
    )
    assert ticket.metadata == {
        "table": "incident",
        "sys_id": SYS_ID,
        "number": "INC0010042",
        "priority": "5",
        "impact": "3",
        "urgency": "3",
        "category": "network",
    }


def test_an_agent_reassigning_is_a_group_change() -> None:
    (event,) = parse(raw("update_group.json")).events
    assert event.kind == "field_change"
    assert event.delivery_id == f"{SYS_ID}:2025-03-01 10:02:47:3:group"
    assert event.payload == FieldChange(SYS_ID, "group", NETWORK, "beth.anglin", SERVICE_DESK)


def test_impact_and_urgency_are_one_priority_change_plus_the_assignee() -> None:
    events = parse(raw("update_priority.json")).events
    assert [e.delivery_id.rsplit(":", 1)[1] for e in events] == ["priority", "assignee"]
    assert [e.payload for e in events] == [
        FieldChange(SYS_ID, "priority", "1", "beth.anglin", "3"),
        FieldChange(SYS_ID, "assignee", BETH, "beth.anglin", None),
    ]


def test_a_priority_map_reports_priority_in_the_policy_labels() -> None:
    options = {**OPTIONS, "priority_map": "urgent=1/1, high=1/2, medium=2/2, low=2/3"}
    (priority, _) = parse(raw("update_priority.json"), options).events
    assert priority.payload == FieldChange(SYS_ID, "priority", "urgent", "beth.anglin", "medium")
    # a pair no label has: the label with the same base priority; none at all: the number
    body = fixture("update_priority.json") | {"impact": "3", "urgency": "1", "priority": "3"}
    assert parse(body, options).events[0].payload.value == "medium"
    body |= {"impact": "3", "urgency": "3", "priority": "5"}
    assert parse(body, options).events[0].payload.value == "5"


def test_priority_is_computed_when_the_rule_does_not_send_it() -> None:
    body = fixture("update_priority.json") | {"priority": None, "impact": "2", "urgency": "3", "previous": {}}
    (priority, _) = parse(body).events
    assert priority.payload == FieldChange(SYS_ID, "priority", "4", "beth.anglin", None)
    assert [base_priority(i, u) for i, u in ((1, 1), (1, 3), (2, 2), (3, 2), (3, 3))] == [1, 3, 3, 4, 5]


def test_other_watched_fields_are_reported_by_their_own_name() -> None:
    body = fixture("update_group.json") | {"changed": ["category"], "category": "database"}
    body["previous"]["category"] = "network"
    (event,) = parse(body).events
    assert event.payload == FieldChange(SYS_ID, "category", "database", "beth.anglin", "network")
    cleared = fixture("update_group.json") | {"assignment_group": None}
    assert parse(cleared).ignored == "INC0010042: no routed field changed (changed: assignment_group)"


def test_our_own_changes_are_ignored() -> None:
    inbound = parse(raw("update_by_integration.json"))
    assert inbound.events == ()
    assert inbound.ignored == "INC0010042 was updated by deskpilot's own user deskpilot.integration"
    shouting = {"integration_user": "DESKPILOT.Integration"}
    assert parse(raw("update_by_integration.json"), shouting).events == ()


def test_unrouted_changes_are_ignored() -> None:
    inbound = parse(raw("update_unrouted.json"))
    assert inbound.events == ()
    assert inbound.ignored == "INC0010042: no routed field changed (changed: short_description, state)"


def test_without_the_integration_user_updates_are_not_corrections() -> None:
    inbound = parse(raw("update_group.json"), {})
    assert inbound.events == ()
    assert inbound.ignored is not None and "options.integration_user" in inbound.ignored
    assert len(parse(raw("insert.json"), {}).events) == 1  # tickets still come in


def test_an_incident_without_text_is_ignored() -> None:
    body = fixture("insert.json") | {"short_description": "  ", "description": None}
    assert parse(body).ignored == "INC0010042 has no short_description or description to classify"


def test_long_text_is_cut_and_marked() -> None:
    body = fixture("insert.json") | {"description": "x" * 25_000}
    ticket = parse(body).events[0].payload
    assert isinstance(ticket, Ticket)
    assert len(ticket.body) == convert.MAX_BODY_CHARS and ticket.metadata["truncated"] is True


def test_the_delivery_id_follows_the_record_version() -> None:
    base = fixture("update_group.json")
    same = parse(base).events[0].delivery_id
    assert parse(dict(base)).events[0].delivery_id == same
    assert parse(base | {"sys_mod_count": "4"}).events[0].delivery_id != same
    without = {k: v for k, v in base.items() if k != "sys_mod_count"}
    assert parse(without).events[0].delivery_id == f"{SYS_ID}:2025-03-01 10:02:47:group"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "body is not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe", "body is not UTF-8"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'{"sys_id": "x"}', "event: missing"),
        (b'{"event": "delete"}', "event: 'delete' is not insert or update"),
        (b'{"event": "insert", "sys_updated_on": "x"}', "sys_id: missing"),
        (b'{"event": "insert", "sys_id": "INC0010042"}', "sys_id: 'INC0010042' is not a ServiceNow sys_id"),
        (f'{{"event": "insert", "sys_id": "{SYS_ID}"}}'.encode(), "sys_updated_on: missing"),
    ],
)
def test_bad_bodies_name_what_is_wrong(body: bytes, expected: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse(body)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"changed": "assignment_group"}, "changed: must be a list of field names"),
        ({"previous": ["x"]}, "previous: must be an object"),
        ({"short_description": 42}, "short_description: must be a string, got int"),
        ({"caller_id": {"value": "x"}}, "caller_id: must be a string, got dict"),
        ({"sys_mod_count": "three"}, "sys_mod_count: 'three' is not a whole number"),
        ({"table": "Incident!"}, "table: 'Incident!' is not a ServiceNow table name"),
    ],
)
def test_bad_values_name_their_key(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse(fixture("update_group.json") | change)
    assert str(info.value).startswith(expected)


def test_a_sub_route_is_refused() -> None:
    with pytest.raises(InputDataError, match="no ServiceNow webhook at servicenow/events"):
        parse(raw("insert.json"), route="events")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"integration_usr": "x"}, "unknown ServiceNow option(s) integration_usr"),
        ({"table": "incident; drop"}, "options.table 'incident; drop' is not a ServiceNow table name"),
        ({"note_lookup": "audit"}, "options.note_lookup must be journal or record"),
        ({"work_notes": "yes"}, "options.work_notes must be true or false"),
        ({"priority_map": "high=1"}, "options.priority_map entry 'high=1' is not label=impact/urgency"),
        ({"priority_map": "high=1/2, High=2/1"}, "options.priority_map names 'High' twice"),
        ({"priority_map": " , "}, "options.priority_map is empty"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServiceNowOptions.from_mapping(options)
    assert str(info.value).startswith(expected)


# --- outbound ---------------------------------------------------------------------------------
def test_a_route_action_is_a_note_lookup_then_one_patch() -> None:
    fields = {"group": NETWORK, "assignee": BETH, "priority": "high", "category": "network"}
    calls = convert.plan(action(fields), ServiceNowOptions.from_mapping({}))
    assert calls == [
        PlannedCall(
            "GET",
            "/api/now/table/sys_journal_field",
            (
                (
                    "sysparm_query",
                    f"element_id={SYS_ID}^element=work_notes^valueLIKE[deskpilot:acme:ticket:1:itsm]",
                ),
                ("sysparm_fields", "sys_id,value"),
                ("sysparm_limit", "1"),
            ),
        ),
        PlannedCall(
            "PATCH",
            f"/api/now/table/incident/{SYS_ID}",
            (
                ("sysparm_exclude_reference_link", "true"),
                (
                    "sysparm_fields",
                    "sys_id,number,assignment_group,assigned_to,impact,urgency,category,priority,sys_updated_on",
                ),
            ),
            {
                "assignment_group": NETWORK,
                "assigned_to": BETH,
                "impact": "1",
                "urgency": "2",
                "category": "network",
                "work_notes": "deskpilot: model 'network' at 0.93.\n\n[deskpilot:acme:ticket:1:itsm]",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("value", "pair"),
    [("1", ("1", "1")), ("2", ("1", "2")), ("3", ("2", "2")), ("4", ("2", "3")), ("5", ("3", "3")),
     ("Critical", ("1", "1")), ("urgent", ("1", "1")), ("HIGH", ("1", "2")), ("medium", ("2", "2")),
     ("moderate", ("2", "2")), ("low", ("2", "3")), ("planning", ("3", "3")), (2, ("1", "2"))],
)  # fmt: skip
def test_the_default_priority_table(value: str | int, pair: tuple[str, str]) -> None:
    body = convert.update_fields(action({"priority": value}), ServiceNowOptions.from_mapping({}))
    assert (body["impact"], body["urgency"]) == pair
    assert base_priority(int(pair[0]), int(pair[1])) in range(1, 6)


def test_a_custom_priority_map_and_explicit_impact() -> None:
    options = ServiceNowOptions.from_mapping({"priority_map": "p1=1/1, p4=3/2"})
    assert convert.update_fields(action({"priority": "P4"}), options) == {"impact": "3", "urgency": "2"}
    explicit = convert.update_fields(action({"priority": "p1", "urgency": "3"}), options)
    assert explicit == {"impact": "1", "urgency": "3"}
    with pytest.raises(InputDataError) as info:
        convert.update_fields(action({"priority": "high"}), options)
    assert str(info.value).startswith("fields.priority: 'high' is not in the priority map (p1, p4)")


def test_queue_is_the_assignment_group_unless_group_is_set() -> None:
    options = ServiceNowOptions.from_mapping({})
    assert convert.update_fields(action({"queue": NETWORK}), options) == {"assignment_group": NETWORK}
    both = convert.update_fields(action({"queue": NETWORK, "group": SERVICE_DESK}), options)
    assert both == {"assignment_group": SERVICE_DESK}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"work_notes": "hi"}, "fields.work_notes: deskpilot does not write ServiceNow field 'work_notes'"),
        ({"sys_updated_by": "x"}, "fields.sys_updated_by: deskpilot does not write"),
        ({"Bad-Name": "x"}, "fields.Bad-Name: deskpilot does not write"),
        ({"group": True}, "fields.group: True is not a string or a whole number"),
    ],
)
def test_fields_deskpilot_will_not_write(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputDataError) as info:
        convert.update_fields(action(fields), ServiceNowOptions.from_mapping({}))
    assert str(info.value).startswith(expected)


def test_without_a_note_there_is_only_the_patch() -> None:
    calls = convert.plan(action(context={"note": "  "}), ServiceNowOptions.from_mapping({}))
    assert [c.method for c in calls] == ["PATCH"]
    assert calls[0].json == {"assignment_group": NETWORK, "impact": "1", "urgency": "2"}
    off = convert.plan(action(), ServiceNowOptions.from_mapping({"work_notes": "false"}))
    assert [c.method for c in off] == ["PATCH"] and "work_notes" not in (off[0].json or {})


def test_long_notes_are_cut_and_keep_their_marker() -> None:
    assert (
        convert.note_text(action(note=" unsure ", triage=True)) == "unsure\n\n[deskpilot:acme:ticket:1:itsm]"
    )
    long = convert.note_text(action(note="y" * 10_000)) or ""
    assert long.endswith("...\n\n[deskpilot:acme:ticket:1:itsm]") and len(long) < 8_100


def test_the_record_lookup_and_another_table() -> None:
    options = ServiceNowOptions.from_mapping({"note_lookup": "record", "table": "u_ticket"})
    lookup, update = convert.plan(action(), options)
    assert lookup == PlannedCall(
        "GET",
        f"/api/now/table/u_ticket/{SYS_ID}",
        (("sysparm_fields", "work_notes"), ("sysparm_display_value", "true")),
    )
    assert update.path == f"/api/now/table/u_ticket/{SYS_ID}"


def test_markers_of_odd_keys_are_hashed() -> None:
    assert convert.marker("acme:ticket:7:itsm") == "[deskpilot:acme:ticket:7:itsm]"
    hashed = convert.marker("a^b LIKE c")
    assert hashed.startswith("[deskpilot:sha256-") and "^" not in hashed and len(hashed) == 51
    assert convert.marker("a^b LIKE c") == hashed


def test_the_sys_id_comes_from_the_ticket() -> None:
    assert convert.target_sys_id(action()) == SYS_ID
    with pytest.raises(InputDataError, match="ticket 1 has no ServiceNow sys_id"):
        convert.target_sys_id(Action(**_replace(external_id="INC0010042")))
    from_meta = _replace(external_id=None, context={"ticket_metadata": {"sys_id": NETWORK}})
    assert convert.target_sys_id(Action(**from_meta)) == NETWORK


def _replace(**changes: Any) -> dict[str, Any]:
    base = action()
    values = {name: getattr(base, name) for name in Action.__dataclass_fields__}
    return values | changes


def test_note_found_reads_each_answer_shape() -> None:
    options = ServiceNowOptions.from_mapping({})
    journal = convert.plan_note_lookup(action(), options)
    assert journal is not None
    answer = fixture("table_api_journal_query_response.json")
    assert convert.note_found(journal, answer, "acme:ticket:1:itsm")
    assert not convert.note_found(journal, answer, "acme:ticket:1:other")
    assert not convert.note_found(journal, {"result": []}, "acme:ticket:1:itsm")
    record = convert.plan_note_lookup(action(), ServiceNowOptions.from_mapping({"note_lookup": "record"}))
    assert record is not None
    text = "2025-03-01 09:30:15 - Deskpilot (Work notes)\nrouted\n\n[deskpilot:acme:ticket:1:itsm]\n\n"
    assert convert.note_found(record, {"result": {"work_notes": text}}, "acme:ticket:1:itsm")
    both = {"result": {"work_notes": {"display_value": text, "value": ""}}}
    assert convert.note_found(record, both, "acme:ticket:1:itsm")
    assert not convert.note_found(record, {"result": {"work_notes": ""}}, "acme:ticket:1:itsm")


def test_values_that_cannot_be_labels_are_not_corrections() -> None:
    base = fixture("update_group.json")
    for value in ({"link": "x", "value": "y"}, "x" * 201, True):
        body = base | {"changed": ["u_notes"], "u_notes": value}
        assert parse(body).ignored == "INC0010042: no routed field changed (changed: u_notes)"
    body = base | {"changed": ["u_team", "description"], "u_team": 7, "description": "changed text"}
    (event,) = parse(body).events
    assert event.payload == FieldChange(SYS_ID, "u_team", "7", "beth.anglin", None)
