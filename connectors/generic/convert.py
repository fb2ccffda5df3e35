"""Generic webhook bodies -> Event. Pure: bytes in, Event or InputDataError out.

The body is a UTF-8 JSON object with a ``type`` and an object of that name::

    {"type": "ticket", "ticket": {"subject": "VPN down", "body": "Since 9am ...",
                                  "requester": "ana@example.com", "external_id": "T-1042",
                                  "metadata": {"channel": "email"}}}
    {"type": "feedback", "feedback": {"external_id": "T-1042", "task": "intent",
                                      "label": "network", "author": "bob@example.com"}}

Unknown keys at the top level are ignored (senders may wrap their own envelope around it);
unknown keys inside ``ticket`` or ``feedback`` are refused, so a typo such as ``"subjet"``
fails loudly instead of silently dropping the text. A ticket needs a non-blank subject or
body; feedback names its ticket by ``ticket_id`` (deskpilot's) or ``external_id`` (yours).
Types are strict: ``"42"`` is not an integer, ``42`` is not a string.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskpilot.errors import InputDataError
from deskpilot.types import Event, Feedback, Ticket

MAX_SUBJECT_CHARS = 1_000
MAX_BODY_CHARS = 20_000
KINDS = ("ticket", "feedback")
_EXAMPLE = '{"type": "ticket", "ticket": {"subject": "...", "body": "..."}}'


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TicketIn(_Strict):
    subject: str = ""
    body: str = ""
    requester: str | None = Field(default=None, max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FeedbackIn(_Strict):
    task: str = Field(min_length=1, max_length=100)
    label: str = Field(min_length=1, max_length=200)
    author: str = Field(min_length=1, max_length=320)
    ticket_id: int | None = Field(default=None, gt=0)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    prediction_id: int | None = Field(default=None, gt=0)


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    return ".".join([prefix, *(str(part) for part in loc)])


def _invalid(prefix: str, error: ValidationError) -> InputDataError:
    problems = [f"{_path(prefix, e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)]
    return InputDataError("; ".join(problems))


def _load(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputDataError(
            f"body is not UTF-8 (byte {exc.start})", hint="encode the JSON body as UTF-8"
        ) from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", hint=f"send {_EXAMPLE}"
        ) from None
    except (RecursionError, ValueError) as exc:
        raise InputDataError(f"body is not usable JSON: {exc}", hint=f"send {_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"body is a JSON {type(data).__name__}, not an object", hint=f"send {_EXAMPLE}")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _ticket(source: str, raw: Any, max_subject: int, max_body: int) -> Ticket:
    try:
        model = TicketIn.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("ticket", exc) from None
    if len(model.subject) > max_subject:
        raise InputDataError(
            f"ticket.subject: {len(model.subject)} characters, at most {max_subject} allowed"
        )
    if len(model.body) > max_body:
        raise InputDataError(f"ticket.body: {len(model.body)} characters, at most {max_body} allowed")
    if not model.subject.strip() and not model.body.strip():
        raise InputDataError("ticket.subject, ticket.body: both are empty; send at least one")
    return Ticket(
        subject=model.subject,
        body=model.body,
        requester=model.requester,
        source=source,
        external_id=model.external_id,
        metadata=dict(model.metadata),
    )


def _feedback(raw: Any) -> Feedback:
    try:
        model = FeedbackIn.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("feedback", exc) from None
    if model.ticket_id is None and model.external_id is None:
        raise InputDataError(
            "feedback.ticket_id, feedback.external_id: neither given",
            hint="name the ticket by deskpilot's ticket_id or by your system's external_id",
        )
    return Feedback(
        task=model.task,
        label=model.label,
        author=model.author,
        prediction_id=model.prediction_id,
        ticket_id=model.ticket_id,
        external_id=model.external_id,
    )


def to_event(
    tenant: str,
    source: str,
    delivery_id: str,
    body: bytes,
    *,
    max_subject_chars: int = MAX_SUBJECT_CHARS,
    max_body_chars: int = MAX_BODY_CHARS,
) -> Event:
    """Parse one generic delivery. Messages name the JSON path (``ticket.subject: ...``)."""
    data = _load(body)
    kind = data.get("type")
    if kind not in KINDS:
        got = "missing" if "type" not in data else f"{kind!r} is not known"
        raise InputDataError(f"type: {got}", hint=f'send "type": "ticket" or "type": "feedback" ({_EXAMPLE})')
    if kind not in data:
        raise InputDataError(f'{kind}: missing; "type": "{kind}" needs a "{kind}" object beside it')
    if kind == "ticket":
        payload: Ticket | Feedback = _ticket(source, data[kind], max_subject_chars, max_body_chars)
        return Event(tenant=tenant, source=source, delivery_id=delivery_id, kind="ticket", payload=payload)
    payload = _feedback(data[kind])
    return Event(tenant=tenant, source=source, delivery_id=delivery_id, kind="feedback", payload=payload)
