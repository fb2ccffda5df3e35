"""Filing incoming documents in Odoo (JSON-2 and JSON-RPC), against the real local stand-in."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.filing_actions import file_document_action, stored_original
from support.odoo_standin import OdooStandin

from deskpilot.connectors import ActionFailedError
from deskpilot.connectors.odoo import OdooClient
from deskpilot.connectors.odoo.client import DOCUMENT_ACCESS_HINT
from deskpilot.connectors.odoo.convert import OdooCall
from deskpilot.types import Action

KEY = "0f3c9d1e2b7a4c8e9f6a5b4c3d2e1f0a9b8c7d6e"
APIS = ["json2", "jsonrpc"]
PDF = b"%PDF-1.7\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj <</Type /Catalog>> endobj\n%%EOF\n"
NOTE = "Classified as invoice at 0.97 (threshold 0.80)."
FIELDS = {
    "number": "INV-1",
    "date": "2026-03-14",
    "due_date": "2026-04-13",
    "supplier": "Acme GmbH",
    "total": "1234.50",
    "currency": "EUR",
    "vat_id": "DE123456789",
}
MOVE, TASK, ATTACHMENT = "account.move", "project.task", "ir.attachment"


@pytest.fixture
def odoo() -> Iterator[OdooStandin]:
    with OdooStandin(api_key=KEY, uid=7, database="acme") as server:
        server.add("res.partner", 14, name="Acme GmbH", vat="DE 123 456 789", active=True)
        server.add("res.partner", 15, name="Globex Ltd", vat=False, active=True)
        server.add("res.partner", 16, name="Initech AG", vat=False, active=False)  # archived
        server.add("res.partner", 17, name="Unassigned vendor", vat=False, active=True)
        server.add("project.project", 4, name="Operations")
        server.add("project.project", 5, name="Triage")
        server.add_user(9, "marc")
        yield server


def client(odoo: OdooStandin, api: str) -> OdooClient:
    return OdooClient(odoo.url, KEY, 5, {"api": api, "database": "acme", "api_user_id": "7"})


def stored(tmp_path: Path, content: bytes = PDF, name: str = "inv-1.pdf") -> dict[str, Any]:
    return stored_original(tmp_path, content, name)


def action(
    document: dict[str, Any],
    fields: dict[str, Any] | None = None,
    *,
    read: dict[str, str] | None = None,
    doctype: str | None = "invoice",
    triage: bool = False,
) -> Action:
    return file_document_action(
        "odoo",
        "odoo",
        document,
        fields,
        read=FIELDS if read is None else read,
        doctype=doctype,
        triage=triage,
        note=NOTE,
    )


def failure(odoo_client: OdooClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        odoo_client.act(act)
    assert KEY not in str(info.value)
    return info.value


@pytest.mark.parametrize("api", APIS)
def test_an_invoice_becomes_a_draft_vendor_bill_with_the_original_attached(
    odoo: OdooStandin, tmp_path: Path, api: str
) -> None:
    document = stored(tmp_path)
    with client(odoo, api) as http:
        summary = http.act(action(document))
    [bill] = odoo.records_of(MOVE)
    [attachment] = odoo.attachments_of(MOVE, bill["id"])
    assert summary == {
        "api": api,
        "kind": "purchase_invoice",
        "model": MOVE,
        "id": bill["id"],
        "created": True,
        "partner_id": 14,
        "file_existed": False,
        "file": attachment["id"],
    }
    assert (bill["move_type"], bill["state"], bill["partner_id"], bill["currency_id"]) == (
        "in_invoice",
        "draft",
        14,
        1,
    )
    assert (bill["ref"], bill["invoice_date"], bill["invoice_date_due"]) == (
        "INV-1",
        "2026-03-14",
        "2026-04-13",
    )
    assert bill["journal_id"] == 2 and bill["amount_total"] == 1234.5
    assert bill["narration"].startswith(
        f"<p>{NOTE}</p><p>Document 12: inv-1.pdf (application/pdf), invoice.</p>"
    )
    assert bill["narration"].endswith(f"<p>deskpilot:doc:{document['sha256']}</p>")
    [line] = [odoo.record("account.move.line", i) for i in bill["invoice_line_ids"]]
    assert line is not None
    assert (line["name"], line["quantity"], line["price_unit"], line["tax_ids"]) == (
        "Invoice INV-1",
        1,
        1234.5,
        [],
    )
    assert attachment["content"] == PDF
    assert attachment["checksum"] == hashlib.sha1(PDF, usedforsecurity=False).hexdigest()
    assert (attachment["name"], attachment["mimetype"], attachment["file_size"]) == (
        "inv-1.pdf",
        "application/pdf",
        len(PDF),
    )
    assert bill["message_main_attachment_id"] == attachment["id"]  # the PDF shows beside the bill
    assert odoo.call_names() == [
        "account.move.search_read",
        "res.partner.search_read",
        "res.currency.search_read",
        "account.move.create",
        "ir.attachment.search_read",
        "ir.attachment.create",
    ]
    find, partner = odoo.calls[0], odoo.calls[1]
    assert find.params["domain"] == [["narration", "ilike", f"deskpilot:doc:{document['sha256']}"]]
    assert partner.params["domain"] == [
        "|",
        ["vat", "=ilike", "D%E%1%2%3%4%5%6%7%8%9"],
        ["name", "=ilike", "Acme GmbH"],
    ]


def test_create_is_sent_as_each_api_expects(odoo: OdooStandin, tmp_path: Path) -> None:
    with client(odoo, "json2") as http:
        http.act(action(stored(tmp_path)))
    create = next(r for r in odoo.requests if r.path == "/json/2/account.move/create")
    assert list(json.loads(create.body)) == ["vals_list"]
    odoo.requests.clear()
    with client(odoo, "jsonrpc") as http:
        http.act(action(stored(tmp_path, b"%PDF-2")))
        # by name, JSON-RPC create fails inside Odoo's call_kw: why it goes positionally
        error = failure_of(http, OdooCall(TASK, "create", (), {"vals_list": [{"name": "x"}]}))
    bodies = [json.loads(r.body)["params"]["args"] for r in odoo.requests]
    args = next(a for a in bodies if a[3:5] == [ATTACHMENT, "create"])
    assert len(args[5]) == 1 and isinstance(args[5][0], list) and args[6] == {}
    assert base64.b64decode(args[5][0][0]["datas"]) == b"%PDF-2"
    assert error.message == "Odoo project.task.create failed: builtins.IndexError: tuple index out of range"


def failure_of(http: OdooClient, call: OdooCall) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        http.call(call)
    return info.value


@pytest.mark.parametrize("api", APIS)
def test_the_vendor_is_matched_by_vat_or_exact_name_only(odoo: OdooStandin, tmp_path: Path, api: str) -> None:
    with client(odoo, api) as http:
        http.act(action(stored(tmp_path, b"1"), read={"supplier": "Someone", "vat_id": "DE123456789"}))
        http.act(action(stored(tmp_path, b"2"), read={"supplier": "globex ltd"}))
        http.act(action(stored(tmp_path, b"3"), read={"supplier": "Globex%"}))  # no wildcard match
        http.act(action(stored(tmp_path, b"4"), read={"supplier": "Initech AG"}))  # archived
    assert [b["partner_id"] for b in odoo.records_of(MOVE)] == [14, 15, False, False]
    narration = odoo.records_of(MOVE)[3]["narration"]
    assert (
        "Vendor on the document: &#x27;Initech AG&#x27;, not found in Odoo; left without a vendor"
        in narration
    )


def test_an_unknown_vendor_goes_to_the_default_partner(odoo: OdooStandin, tmp_path: Path) -> None:
    fields = {"create": "purchase_invoice", "default_supplier": "17", "queue": "3", "assignee": "9"}
    with client(odoo, "json2") as http:
        summary = http.act(
            action(stored(tmp_path), fields, read={**FIELDS, "supplier": "Hooli", "vat_id": "X1"})
        )
    [bill] = odoo.records_of(MOVE)
    assert summary["partner_id"] == bill["partner_id"] == 17
    assert (bill["journal_id"], bill["invoice_user_id"]) == (3, 9)  # queue: a journal; assignee: a user
    assert "not found in Odoo; filed under partner 17: correct it." in bill["narration"]


def test_an_archived_or_unknown_currency_is_left_to_the_company(odoo: OdooStandin, tmp_path: Path) -> None:
    with client(odoo, "json2") as http:
        http.act(
            action(
                stored(tmp_path), read={**FIELDS, "currency": "CHF", "total": "?", "due_date": "2026-01-01"}
            )
        )
    [bill] = odoo.records_of(MOVE)
    assert (
        bill["currency_id"] == 1 and bill["invoice_date_due"] is False
    )  # a due date before the date: dropped
    assert "Currency &#x27;CHF&#x27; is not active in Odoo" in bill["narration"]
    assert "The total could not be read: the line&#x27;s price is 0." in bill["narration"]
    assert bill["amount_total"] == 0


@pytest.mark.parametrize("api", APIS)
def test_a_task_goes_to_the_queue_project_with_its_assignee(
    odoo: OdooStandin, tmp_path: Path, api: str
) -> None:
    document = stored(tmp_path, b"PK\x03\x04", "order.docx")
    fields = {"create": "task", "queue": "4", "assignee": 9, "priority": "1"}
    with client(odoo, api) as http:
        summary = http.act(action(document, fields, read={"number": "PO-7"}, doctype="purchase_order"))
    [task] = odoo.records_of(TASK)
    assert summary["created"] is True and "partner_id" not in summary
    assert (task["name"], task["project_id"], task["user_ids"], task["priority"]) == (
        "Purchase order: order.docx",
        4,
        [9],
        "1",
    )
    assert task["description"] == (
        f"<p>{NOTE}</p><p>Document 12: order.docx (application/pdf), purchase_order.</p>"
        f"<ul><li>Number: PO-7</li></ul><p>deskpilot:doc:{document['sha256']}</p>"
    )
    assert [a["content"] for a in odoo.attachments_of(TASK, task["id"])] == [b"PK\x03\x04"]


def test_an_abstention_is_a_task_in_the_triage_project(odoo: OdooStandin, tmp_path: Path) -> None:
    with client(odoo, "jsonrpc") as http:
        http.act(
            action(stored(tmp_path, name="scan.pdf"), {"queue": "5"}, read={}, doctype=None, triage=True)
        )
    [task] = odoo.records_of(TASK)
    assert (task["name"], task["project_id"]) == ("Unclassified document: scan.pdf", 5)
    assert odoo.records_of(MOVE) == []


@pytest.mark.parametrize("api", APIS)
def test_filing_twice_makes_one_record_and_one_attachment(
    odoo: OdooStandin, tmp_path: Path, api: str
) -> None:
    document = stored(tmp_path)
    with client(odoo, api) as http:
        first = http.act(action(document))
        odoo.calls.clear()
        again = http.act(action(document))
    assert len(odoo.records_of(MOVE)) == 1 and len(odoo.records_of(ATTACHMENT)) == 1
    first.pop("partner_id")
    assert again == {**first, "created": False, "file_existed": True}
    assert odoo.call_names() == ["account.move.search_read", "ir.attachment.search_read"]


@pytest.mark.parametrize("api", APIS)
def test_a_crash_between_create_and_attach_only_attaches_on_retry(
    odoo: OdooStandin, tmp_path: Path, api: str
) -> None:
    document = stored(tmp_path)
    odoo.fail_next_error(
        1, "psycopg2.errors.SerializationFailure", "could not serialize", model=ATTACHMENT, method="create"
    )
    with client(odoo, api) as http:
        error = failure(http, action(document))
        assert error.transient is True
        [bill] = odoo.records_of(MOVE)
        assert odoo.attachments_of(MOVE, bill["id"]) == []
        odoo.calls.clear()
        summary = http.act(action(document))
    assert (summary["id"], summary["created"], summary["file_existed"]) == (bill["id"], False, False)
    assert [a["content"] for a in odoo.attachments_of(MOVE, bill["id"])] == [PDF]
    assert "account.move.create" not in odoo.call_names()


def test_another_attachment_on_the_record_is_not_the_original(odoo: OdooStandin, tmp_path: Path) -> None:
    document = stored(tmp_path)
    with client(odoo, "json2") as http:
        http.act(action(document))
        [ours] = odoo.records_of(ATTACHMENT)
        odoo.records[ATTACHMENT][ours["id"]]["checksum"] = "0" * 40  # replaced by a person
        http.act(action(document))
    assert len(odoo.records_of(ATTACHMENT)) == 2


def test_a_missing_original_is_permanent_without_any_call(odoo: OdooStandin, tmp_path: Path) -> None:
    document = stored(tmp_path)
    Path(document["path"]).unlink()
    with client(odoo, "json2") as http:
        error = failure(http, action(document))
    assert error.transient is False and error.message.endswith("is missing")
    assert odoo.calls == [] and odoo.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"create": "task"}, "a task needs the policy's `queue` (a project id)"),
        ({"create": "task", "queue": "Operations"}, "fields.queue: 'Operations' is not an Odoo record id"),
        ({"create": "purchase_invoice", "Bad": 1}, "fields.Bad: not an Odoo field name"),
        ({"create": "invoice"}, "document 12: fields.create is 'invoice', not one of purchase_invoice, task"),
    ],
)
def test_an_impossible_plan_is_permanent_without_any_call(
    odoo: OdooStandin, tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with client(odoo, "json2") as http:
        error = failure(http, action(stored(tmp_path), fields))
    assert error.transient is False and error.message.startswith(message)
    assert odoo.requests == []


@pytest.mark.parametrize("api", APIS)
def test_server_errors_and_rate_limits_are_transient(odoo: OdooStandin, tmp_path: Path, api: str) -> None:
    with client(odoo, api) as http:
        odoo.fail_next(1, status=503)
        assert failure(http, action(stored(tmp_path))).transient is True
        odoo.fail_next(1, status=429, retry_after=6)
        error = failure(http, action(stored(tmp_path)))
        assert (error.transient, error.upstream_status, error.retry_after) == (True, 429, 6.0)
        http.act(action(stored(tmp_path)))
    assert len(odoo.records_of(MOVE)) == 1 and len(odoo.records_of(ATTACHMENT)) == 1


@pytest.mark.parametrize("api", APIS)
def test_access_errors_are_permanent_and_say_what_documents_need(
    odoo: OdooStandin, tmp_path: Path, api: str
) -> None:
    odoo.fail_next_error(
        1, "odoo.exceptions.AccessError", "You are not allowed to create 'Journal Entry'", method="create"
    )
    with client(odoo, api) as http:
        error = failure(http, action(stored(tmp_path)))
    assert error.transient is False and error.hint == DOCUMENT_ACCESS_HINT
    assert "AccessError: You are not allowed to create 'Journal Entry'" in error.message
    assert odoo.records_of(MOVE) == []


def test_an_unknown_project_is_a_permanent_validation_error(odoo: OdooStandin, tmp_path: Path) -> None:
    with client(odoo, "json2") as http:
        error = failure(http, action(stored(tmp_path), {"create": "task", "queue": "99"}))
    assert (error.transient, error.upstream_status) == (False, 422)
    assert "refers to a missing project.project record (99)" in error.message
