"""Pure conversions: Odoo webhook notices -> events, routing actions -> Odoo calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskpilot.connectors import ActionFailedError
from deskpilot.connectors.odoo import OdooConnector, OdooOptions
from deskpilot.connectors.odoo.convert import (
    OdooCall,
    authenticate_request,
    html_to_text,
    json2_request,
    jsonrpc_request,
    marked_message,
    note_marker,
    plan_route,
    write_values,
)
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action, FieldChange, Ticket

FIXTURES = Path(__file__).parent / "fixtures"
OPTIONS = {"api_user_id": "7"}
DESCRIPTION_TEXT = (
    "Since this morning the VPN drops every five minutes & I lose my RDP session.\n\nThanks,\nAna"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(body: bytes | dict[str, Any], options: dict[str, str] | None = None) -> Any:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return OdooConnector().parse("acme", "token", {}, raw, OPTIONS if options is None else options)


def notice(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture("ticket_created.json"))
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


# --- inbound: tickets ------------------------------------------------------------------------
def test_a_created_ticket_becomes_one_ticket_event() -> None:
    inbound = parse(fixture("ticket_created.json"))
    assert (inbound.status, inbound.reply, inbound.ignored) == (202, None, None)
    [event] = inbound.events
    assert (event.tenant, event.source, event.kind) == ("acme", "odoo", "ticket")
    assert event.delivery_id == "helpdesk.ticket:42:2024-05-02 10:15:42"
    assert event.payload == Ticket(
        subject="VPN keeps disconnecting",
        body=DESCRIPTION_TEXT,
        requester="ana.lopez@example.com",
        source="odoo",
        external_id="42",
        metadata={"model": "helpdesk.ticket", "id": 42, "create_date": "2024-05-02 10:15:42"},
    )


def test_a_configured_model_and_fields_with_microsecond_dates() -> None:
    options = {"model": "project.task", "requester_field": "partner_email", "api_user_id": "7"}
    [event] = parse(fixture("task_created.json"), options).events
    assert event.delivery_id == "project.task:318:2024-06-11 08:02:19.482113"
    assert isinstance(event.payload, Ticket)
    assert event.payload.subject == "Wrong VAT number on invoice"
    assert event.payload.body == "The invoice PDF shows the wrong VAT number.\nCustomer: Deco Addict"
    assert event.payload.requester is None  # partner_email is false
    assert event.payload.metadata == {
        "model": "project.task",
        "id": 318,
        "create_date": "2024-06-11 08:02:19.482113",
    }
    custom = {"model": "project.task", "subject_field": "description", "body_field": "name"}
    [swapped] = parse(fixture("task_created.json"), custom).events
    assert isinstance(swapped.payload, Ticket)
    assert swapped.payload.body == "Wrong VAT number on invoice"


def test_html_becomes_readable_text() -> None:
    assert html_to_text("<p>One&nbsp;two&amp;three</p><p></p><p></p><ul><li>a</li><li>b</li></ul>") == (
        "One two&three\n\na\n\nb"
    )
    assert html_to_text("<div>x<script>alert(1)</script><style>p{}</style>y<br/>z</div>") == "xy\nz"
    assert html_to_text("plain text, no tags") == "plain text, no tags"
    assert html_to_text("<p>  spaced \n  out  </p>") == "spaced out"
    assert html_to_text("line one\nline two\n\n\nthree") == "line one\nline two\n\nthree"
    assert html_to_text("Tom &amp; Jerry") == "Tom & Jerry"


def test_long_text_is_cut_not_refused_because_odoo_never_resends() -> None:
    [event] = parse(notice(name="S" * 1500, description="<p>" + "b" * 25_000 + "</p>")).events
    assert isinstance(event.payload, Ticket)
    assert (len(event.payload.subject), len(event.payload.body)) == (1000, 20_000)
    [no_mail] = parse(notice(partner_email="x" * 400 + "@example.com")).events
    assert isinstance(no_mail.payload, Ticket) and no_mail.payload.requester is None


def test_a_creation_notice_from_a_rule_that_sends_no_text_is_ignored() -> None:
    inbound = parse(notice(name=..., description=...))
    assert inbound.events == () and inbound.ignored is not None
    assert "creation notice without name or description" in inbound.ignored


def test_a_ticket_without_any_text_is_refused() -> None:
    with pytest.raises(InputDataError, match="name, description: both are empty"):
        parse(notice(name=False, description="<p> </p>"))


# --- inbound: corrections --------------------------------------------------------------------
def test_a_persons_change_becomes_field_changes_in_policy_terms() -> None:
    inbound = parse(fixture("team_changed.json"))
    assert [e.kind for e in inbound.events] == ["field_change"] * 3
    assert [e.payload for e in inbound.events] == [
        FieldChange(external_id="42", field="queue", value="4", author="odoo:user:2"),
        FieldChange(external_id="42", field="assignee", value="9", author="odoo:user:2"),
        FieldChange(external_id="42", field="priority", value="2", author="odoo:user:2"),
    ]
    assert [e.delivery_id for e in inbound.events] == [
        "helpdesk.ticket:42:queue=4",
        "helpdesk.ticket:42:assignee=9",
        "helpdesk.ticket:42:priority=2",
    ]
    assert {e.source for e in inbound.events} == {"odoo"}


def test_classic_read_pairs_are_understood() -> None:
    [event] = parse(fixture("team_changed_classic_read.json")).events
    assert event.payload == FieldChange(external_id="42", field="queue", value="4", author="odoo:user:2")


def test_deskpilots_own_writes_are_not_corrections() -> None:
    inbound = parse(fixture("own_update.json"))
    assert inbound.events == ()
    assert inbound.ignored == "update by deskpilot's own API user 7"


def test_without_api_user_id_no_update_is_taken_for_a_correction() -> None:
    inbound = parse(fixture("team_changed.json"), {})
    assert inbound.events == ()
    assert inbound.ignored is not None and "options.api_user_id is not set" in inbound.ignored


def test_cleared_and_absent_fields_are_skipped_and_custom_fields_are_read() -> None:
    inbound = parse(notice(write_date="2024-05-02 11:00:00", team_id=False, user_id=..., priority="3"))
    assert [(e.payload.field, e.payload.value) for e in inbound.events] == [("priority", "3")]
    options = {"api_user_id": "7", "team_field": "x_queue_id", "priority_field": "", "group_field": "x_grp"}
    changed = parse(notice(write_date="2024-05-02 11:00:00", x_queue_id=[12, "L2"], x_grp=5), options)
    assert [(e.payload.field, e.payload.value) for e in changed.events] == [("queue", "12"), ("group", "5")]
    nothing = parse(notice(write_date="2024-05-02 11:00:00", team_id=False, user_id=False, priority=False))
    assert nothing.events == () and nothing.ignored is not None


def test_an_update_without_write_uid_names_the_field_to_add() -> None:
    with pytest.raises(InputDataError) as info:
        parse(notice(write_date="2024-05-02 11:00:00", write_uid=...))
    assert info.value.message == "write_uid: missing"
    assert info.value.hint is not None and "Last Updated by" in info.value.hint


# --- inbound: refusals -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"write_date": ...}, "write_date: missing"),
        ({"create_date": ...}, "create_date: missing"),
        ({"write_date": "yesterday"}, "write_date: 'yesterday' is not a date and time"),
        ({"write_date": 1714644942}, "write_date: 1714644942 is not a date and time"),
        (
            {"_model": "crm.lead"},
            "_model: 'crm.lead' is not the model this tenant routes ('helpdesk.ticket')",
        ),
        ({"_model": ...}, "_model: missing"),
        ({"_id": ..., "id": ...}, "_id: missing"),
        ({"_id": "42"}, "_id: '42' is not a record id"),
        ({"_id": True}, "_id: True is not a record id"),
        ({"id": 43}, "id: 43 differs from _id 42"),
        ({"name": 42}, "name: int where text was expected"),
    ],
)
def test_a_wrong_notice_names_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputDataError) as info:
        parse(notice(**changes))
    assert info.value.message.startswith(message)
    assert info.value.status == 422


def test_date_fields_hint_names_odoos_labels() -> None:
    with pytest.raises(InputDataError) as info:
        parse(notice(create_date=...))
    assert info.value.hint is not None and "create_date (Created on)" in info.value.hint


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "body is not UTF-8"),
        (b"{", "body is not JSON"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b"NaN", "body is a JSON float, not an object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        parse(raw)


def test_delivery_ids_stay_within_the_inbox_column() -> None:
    model = "x_" + "m" * 190
    [event] = parse(notice(_model=model), {"model": model}).events
    assert event.delivery_id.startswith("sha256:") and len(event.delivery_id) == 71


# --- options ---------------------------------------------------------------------------------
def test_options_are_validated_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        OdooOptions.from_mapping({"api_user": "7"})
    assert "options.api_user" in info.value.message and "did you mean 'api_user_id'?" in info.value.message
    for bad, text in [
        ({"api": "xmlrpc"}, "options.api"),
        ({"api_user_id": "seven"}, "not an Odoo user id"),
        ({"model": "Helpdesk Ticket"}, "options.model"),
        ({"team_field": "Team"}, "options.team_field"),
        ({"subject_field": ""}, "must name a field"),
        ({"database": "a b"}, "options.database"),
    ]:
        with pytest.raises(ConfigError, match=text):
            OdooOptions.from_mapping(bad)
    parsed = OdooOptions.from_mapping({"api_user_id": "7", "api": "jsonrpc", "database": "acme"})
    assert (parsed.uid, parsed.api_user_id, parsed.api) == (7, 7, "jsonrpc")
    assert OdooOptions.from_mapping({"uid": "9", "api_user_id": "7"}).uid == 9


# --- outbound --------------------------------------------------------------------------------
def action(fields: dict[str, Any] | None = None, **context: Any) -> Action:
    return Action(
        tenant="acme",
        system="helpdesk",
        connector="odoo",
        kind="route",
        ticket_id=12,
        external_id="42",
        fields={"queue": "3", "priority": "2"} if fields is None else fields,
        idempotency_key="acme:ticket:12:helpdesk",
        context={"note": "Routed to Network: intent=network at 0.93.", **context},
    )


DEFAULT = OdooOptions()


def test_policy_fields_map_to_odoo_values() -> None:
    fields = {"queue": "3", "assignee": 9, "priority": "2", "tags": "5, 6", "stage_id": "2", "x_sla": "gold"}
    assert write_values(fields, DEFAULT) == {
        "team_id": 3,
        "user_id": 9,
        "priority": "2",
        "tag_ids": [[4, 5], [4, 6]],
        "stage_id": 2,
        "x_sla": "gold",
    }
    assert write_values({"x_tag_ids": 8}, DEFAULT) == {"x_tag_ids": [[4, 8]]}
    custom = OdooOptions.from_mapping({"team_field": "x_queue_id", "group_field": "x_group_id"})
    assert write_values({"queue": "3", "group": "4"}, custom) == {"x_queue_id": 3, "x_group_id": 4}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"queue": "Network"}, "destination field 'queue': 'Network' is not an Odoo record id"),
        ({"queue": "3,4"}, "destination field 'queue': '3,4' names 2 records, not one"),
        ({"group": "4"}, "the policy sets 'group' but options.group_field of the odoo system is empty"),
        ({"Team": "3"}, "destination field 'Team' is not an Odoo field name"),
        ({"queue": "3", "team_id": "4"}, "the policy sets Odoo field 'team_id' twice"),
        ({"tags": ""}, "destination field 'tags': no record id given"),
    ],
)
def test_fields_that_cannot_be_written_are_permanent_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionFailedError) as info:
        write_values(fields, DEFAULT)
    assert info.value.message.startswith(message)
    assert info.value.transient is False


def test_a_route_plan_writes_then_posts_the_note_once() -> None:
    plan = plan_route(action(), DEFAULT)
    marker = "[deskpilot:acme:ticket:12:helpdesk]"
    assert (plan.model, plan.record_id, plan.marker) == ("helpdesk.ticket", 42, marker)
    assert plan.write == OdooCall(
        "helpdesk.ticket", "write", (42,), {"vals": {"team_id": 3, "priority": "2"}}
    )
    assert plan.find_note == OdooCall(
        "mail.message",
        "search_read",
        (),
        {
            "domain": [["model", "=", "helpdesk.ticket"], ["res_id", "=", 42], ["body", "ilike", marker]],
            "fields": ["id", "body"],
        },
    )
    assert plan.post_note == OdooCall(
        "helpdesk.ticket",
        "message_post",
        (42,),
        {
            "body": f"Routed to Network: intent=network at 0.93.\n\n{marker}",
            "message_type": "comment",
            "subtype_xmlid": "mail.mt_note",
        },
    )
    assert plan.created_at is None  # no create_date in the ticket's metadata
    created = plan_route(action(ticket_metadata={"create_date": "2024-05-02 10:15:42"}), DEFAULT)
    assert created.created_at == datetime(2024, 5, 2, 10, 15, 42, tzinfo=UTC)
    bare = plan_route(action(note=""), DEFAULT)
    assert (bare.find_note, bare.post_note, bare.marker) == (None, None, None)
    note_only = plan_route(action({}), DEFAULT)
    assert note_only.write is None and note_only.post_note is not None


def test_the_record_comes_from_the_external_id_or_the_metadata() -> None:
    meta = {"model": "helpdesk.ticket", "id": 42}
    plain = Action("acme", "h", "odoo", "route", 12, None, {"queue": "3"}, "k", {"ticket_metadata": meta})
    assert plan_route(plain, DEFAULT).record_id == 42
    for broken, text in [
        (Action("acme", "h", "odoo", "route", 12, None, {"queue": "3"}, "k"), "has no Odoo record id"),
        (Action("acme", "h", "odoo", "route", 12, "T-9", {"queue": "3"}, "k"), "has no Odoo record id"),
        (Action("acme", "h", "odoo", "reply", 12, "42", {}, "k"), "cannot perform 'reply' actions"),
        (
            Action(
                "acme", "h", "odoo", "route", 12, "42", {}, "k", {"ticket_metadata": {"model": "crm.lead"}}
            ),
            "came from Odoo model 'crm.lead'",
        ),
    ]:
        with pytest.raises(ActionFailedError, match=text) as info:
            plan_route(broken, DEFAULT)
        assert info.value.transient is False


def test_requests_are_rendered_for_json2_and_jsonrpc() -> None:
    call = OdooCall("helpdesk.ticket", "write", (42,), {"vals": {"team_id": 3}})
    planned = json2_request(call)
    assert (planned.method, planned.path) == ("POST", "/json/2/helpdesk.ticket/write")
    assert planned.json == {"ids": [42], "vals": {"team_id": 3}}
    model_call = OdooCall("mail.message", "search_read", (), {"domain": [], "fields": ["id"]})
    assert json2_request(model_call).json == {"domain": [], "fields": ["id"]}
    rpc = jsonrpc_request(call, database="acme", uid=7, api_key="sekret", request_id=5)
    assert (rpc.method, rpc.path) == ("POST", "/jsonrpc")
    assert rpc.json == {
        "jsonrpc": "2.0",
        "method": "call",
        "params": {
            "service": "object",
            "method": "execute_kw",
            "args": ["acme", 7, "sekret", "helpdesk.ticket", "write", [[42]], {"vals": {"team_id": 3}}],
        },
        "id": 5,
    }
    assert jsonrpc_request(model_call, database="acme", uid=7, api_key="k").json["params"]["args"][5] == []
    assert "sekret" not in repr(rpc)  # the key travels in the body: the body is kept out of reprs
    auth = authenticate_request(database="acme", login="bot", api_key="sekret")
    assert auth.json["params"] == {
        "service": "common",
        "method": "authenticate",
        "args": ["acme", "bot", "sekret", {}],
    }


def test_only_an_exact_marker_counts_as_already_posted() -> None:
    marker = note_marker("acme:ticket:1:odoo")
    assert marker == "[deskpilot:acme:ticket:1:odoo]"
    rows = [
        {"id": 5, "body": "<p>[deskpilot:acme:ticket:1:odoo2]</p>"},  # what ilike also finds
        {"id": 6, "body": "<p>[deskpilotXacme:ticket:1:odoo]</p>"},  # '_'/'%' would match this
        {"id": 7, "body": "<p>Routed.<br><br>[deskpilot:acme:ticket:1:odoo]</p>"},
    ]
    assert marked_message(rows, marker) == 7
    assert marked_message(rows[:2], marker) is None
    assert marked_message({"not": "a list"}, marker) is None
