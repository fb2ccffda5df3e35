"""Generic webhook bodies -> Event, and the exact InputDataError for each bad body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deskpilot.connectors import get_connector
from deskpilot.connectors.generic import GenericConnector
from deskpilot.connectors.generic.convert import to_event
from deskpilot.errors import InputDataError
from deskpilot.types import Event, Feedback, Ticket

HEADERS = {"X-Deskpilot-Delivery": "evt-1"}


def event(body: bytes | dict[str, Any], **limits: int) -> Event:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return to_event("acme", "shop", "evt-1", raw, **limits)


def refused(body: bytes | dict[str, Any], **limits: int) -> str:
    with pytest.raises(InputDataError) as info:
        event(body, **limits)
    assert info.value.status == 422
    return str(info.value)


def test_ticket_becomes_an_event_with_the_source() -> None:
    body = {
        "type": "ticket",
        "envelope": {"sender": "shop v2"},  # unknown top-level keys are allowed
        "ticket": {
            "subject": "VPN down",
            "body": "Since 9am — no access",
            "requester": "ana@example.com",
            "external_id": "T-1042",
            "metadata": {"channel": "email", "tags": ["vpn"]},
        },
    }
    got = get_connector("generic").to_event("acme", "shop", HEADERS, json.dumps(body).encode())
    assert got == Event(
        tenant="acme",
        source="shop",
        delivery_id="evt-1",
        kind="ticket",
        payload=Ticket(
            subject="VPN down",
            body="Since 9am — no access",
            requester="ana@example.com",
            source="shop",
            external_id="T-1042",
            metadata={"channel": "email", "tags": ["vpn"]},
        ),
    )


def test_subject_or_body_alone_is_enough() -> None:
    only_body = event({"type": "ticket", "ticket": {"body": "printer jams"}})
    assert only_body.payload == Ticket(subject="", body="printer jams", source="shop")
    only_subject = event({"type": "ticket", "ticket": {"subject": "printer jams"}})
    assert only_subject.payload == Ticket(subject="printer jams", body="", source="shop")


def test_feedback_by_external_or_own_ticket_id() -> None:
    by_external = event(
        {
            "type": "feedback",
            "feedback": {"external_id": "T-1", "task": "intent", "label": "net", "author": "bo"},
        }
    )
    assert by_external.kind == "feedback"
    assert by_external.payload == Feedback(task="intent", label="net", author="bo", external_id="T-1")
    by_id = event(
        {"type": "feedback", "feedback": {"ticket_id": 7, "task": "t", "label": "l", "author": "a"}}
    )
    assert isinstance(by_id.payload, Feedback)
    assert by_id.payload == Feedback(task="t", label="l", author="a", ticket_id=7)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe{}", "body is not UTF-8 (byte 0)"),
        (
            b'{"type": "ticket",',
            "body is not JSON: Expecting property name enclosed in double quotes at line 1",
        ),
        (b"", "body is not JSON: Expecting value at line 1 column 1"),
        (b'{"type": NaN}', "body is not usable JSON: NaN is not valid JSON"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'"ticket"', "body is a JSON str, not an object"),
        (b'{"ticket": {"subject": "x"}}', 'type: missing (send "type": "ticket" or "type": "feedback"'),
        (b'{"type": "document"}', "type: 'document' is not known"),
        (b'{"type": "ticket"}', 'ticket: missing; "type": "ticket" needs a "ticket" object beside it'),
        (b'{"type": "ticket", "ticket": "VPN"}', "ticket: Input should be a valid dictionary"),
    ],
)
def test_unusable_bodies_say_what_to_send(body: bytes, expected: str) -> None:
    assert refused(body).startswith(expected)


def test_field_errors_name_the_json_path() -> None:
    assert refused({"type": "ticket", "ticket": {"subjet": "typo", "body": "x"}}) == (
        "ticket.subjet: Extra inputs are not permitted"
    )
    assert (
        refused({"type": "ticket", "ticket": {"subject": 42}})
        == "ticket.subject: Input should be a valid string"
    )
    assert refused({"type": "ticket", "ticket": {"subject": "x", "metadata": []}}).startswith(
        "ticket.metadata: Input should be a valid dictionary"
    )
    assert refused(
        {"type": "feedback", "feedback": {"ticket_id": "7", "task": "t", "label": "l", "author": "a"}}
    ) == ("feedback.ticket_id: Input should be a valid integer")
    assert refused({"type": "feedback", "feedback": {"external_id": "T", "task": "t", "label": "l"}}) == (
        "feedback.author: Field required"
    )


def test_blank_ticket_and_anonymous_feedback_are_refused() -> None:
    assert refused({"type": "ticket", "ticket": {"subject": "  ", "body": "\n"}}) == (
        "ticket.subject, ticket.body: both are empty; send at least one"
    )
    assert refused({"type": "feedback", "feedback": {"task": "t", "label": "l", "author": "a"}}).startswith(
        "feedback.ticket_id, feedback.external_id: neither given"
    )


def test_length_limits_default_and_configurable() -> None:
    assert refused({"type": "ticket", "ticket": {"subject": "s", "body": "x" * 20_001}}) == (
        "ticket.body: 20001 characters, at most 20000 allowed"
    )
    assert refused({"type": "ticket", "ticket": {"subject": "s" * 1_001}}) == (
        "ticket.subject: 1001 characters, at most 1000 allowed"
    )
    event({"type": "ticket", "ticket": {"subject": "s" * 1_000, "body": "x" * 20_000}})
    assert refused({"type": "ticket", "ticket": {"body": "x" * 11}}, max_body_chars=10) == (
        "ticket.body: 11 characters, at most 10 allowed"
    )
    small = GenericConnector(max_subject_chars=3)
    with pytest.raises(InputDataError, match=r"ticket\.subject: 4 characters, at most 3 allowed"):
        small.to_event("acme", "shop", HEADERS, b'{"type": "ticket", "ticket": {"subject": "abcd"}}')


def test_to_event_needs_the_delivery_header() -> None:
    with pytest.raises(InputDataError, match="missing X-Deskpilot-Delivery header"):
        GenericConnector().to_event("acme", "shop", {}, b'{"type": "ticket", "ticket": {"body": "x"}}')
