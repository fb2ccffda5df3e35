"""Filing incoming documents in ERPNext, against the real local stand-in site (no mocks)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.erpnext_standin import ErpnextStandin, parse_multipart
from support.filing_actions import file_document_action, stored_original

from deskpilot.connectors import ActionFailedError
from deskpilot.connectors.erpnext import ErpnextClient
from deskpilot.types import Action

PDF = b"%PDF-1.7\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj <</Type /Catalog>> endobj\n\r\n--not-a-boundary\r\n%%EOF\n"
NOTE = "Classified as invoice at 0.97 (threshold 0.80).\n\nFiled for Accounts Payable."
FIELDS = {
    "number": "INV-1",
    "date": "2026-03-14",
    "due_date": "2026-04-13",
    "supplier": "Acme GmbH",
    "total": "1234.50",
    "currency": "EUR",
    "vat_id": "DE123456789",
    "iban": "DE02120300000000202051",
}
PI = "Purchase Invoice"
UPLOAD = "/api/method/upload_file"


@pytest.fixture
def site() -> Iterator[ErpnextStandin]:
    with ErpnextStandin() as server:
        server.add_supplier("Acme GmbH", tax_id="DE 123 456 789")
        server.add_supplier("Unassigned Supplier")
        yield server


@pytest.fixture
def client(site: ErpnextStandin) -> Iterator[ErpnextClient]:
    with ErpnextClient(site.url, site.credential, timeout=5) as http:
        yield http


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
        "erp",
        "erpnext",
        document,
        fields,
        read=FIELDS if read is None else read,
        doctype=doctype,
        triage=triage,
        note=NOTE,
    )


def failure(client: ErpnextClient, act: Action) -> ActionFailedError:
    with pytest.raises(ActionFailedError) as info:
        client.act(act)
    return info.value


def test_an_invoice_becomes_a_draft_purchase_invoice_with_the_original_attached(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    document = stored(tmp_path)
    summary = client.act(action(document))
    [invoice] = site.records(PI)
    [attached] = site.attachments_of(PI, invoice["name"])
    assert summary == {
        "kind": "purchase_invoice",
        "doctype": PI,
        "name": invoice["name"],
        "created": True,
        "supplier": "Acme GmbH",
        "file": attached["name"],
        "file_url": "/private/files/inv-1.pdf",
        "file_existed": False,
    }
    assert invoice["name"] == "ACC-PINV-2025-00001"
    assert (invoice["docstatus"], invoice["status"], invoice["supplier"]) == (0, "Draft", "Acme GmbH")
    assert (invoice["bill_no"], invoice["bill_date"], invoice["due_date"]) == (
        "INV-1",
        "2026-03-14",
        "2026-04-13",
    )
    assert (invoice["currency"], invoice["company"], invoice["grand_total"]) == ("EUR", "Acme Ltd", 1234.5)
    [row] = invoice["items"]
    assert (row["item_name"], row["qty"], row["rate"], row["uom"]) == ("Invoice INV-1", 1.0, 1234.5, "Nos")
    assert row["expense_account"] == "Cost of Goods Sold - AL"  # the Company's default
    assert row["description"].startswith("inv-1.pdf\nNumber: INV-1\n")
    remarks = invoice["remarks"]
    assert remarks.startswith(
        "Classified as invoice at 0.97 (threshold 0.80).\nFiled for Accounts Payable.\n"
    )
    assert "IBAN: DE02120300000000202051" in remarks
    assert remarks.endswith(f"\n\ndeskpilot:doc:{document['sha256']}")
    assert attached["content"] == PDF
    assert attached["content_hash"] == hashlib.md5(PDF, usedforsecurity=False).hexdigest()
    assert (attached["is_private"], attached["file_name"], attached["folder"]) == (
        1,
        "inv-1.pdf",
        "Home/Attachments",
    )
    assert site.calls() == [
        ("GET", "/api/resource/Purchase%20Invoice"),
        ("GET", "/api/resource/Supplier"),
        ("GET", "/api/resource/Company"),
        ("POST", "/api/resource/Purchase%20Invoice"),
        ("GET", "/api/resource/File"),
        ("POST", UPLOAD),
    ]
    find, supplier, _, insert, _, upload = site.requests
    assert json.loads(find.query["filters"]) == [["remarks", "like", f"%deskpilot:doc:{document['sha256']}%"]]
    assert json.loads(supplier.query["or_filters"]) == [
        ["name", "=", "Acme GmbH"],
        ["supplier_name", "=", "Acme GmbH"],
        ["tax_id", "like", "D%E%1%2%3%4%5%6%7%8%9"],
    ]
    assert json.loads(supplier.query["filters"]) == [["disabled", "=", 0]]
    assert insert.json()["docstatus"] == 0
    assert upload.headers["authorization"] == f"token {site.credential}"
    form = parse_multipart(upload.headers["content-type"], upload.body)
    assert form.fields == {
        "is_private": "1",
        "doctype": PI,
        "docname": invoice["name"],
        "folder": "Home/Attachments",
        "file_name": "inv-1.pdf",
    }
    assert form.files["file"] == ("inv-1.pdf", PDF, "application/pdf")


def test_the_supplier_is_found_by_tax_id_or_by_name_in_any_case(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    site.add_supplier("SUP-0007", supplier_name="Globex Corporation", tax_id="GB123456789")
    client.act(action(stored(tmp_path), read={"supplier": "Globex Ltd", "vat_id": "GB 123 456 789"}))
    client.act(action(stored(tmp_path, b"%PDF-2"), read={"supplier": "acme gmbh"}))
    assert [r["supplier"] for r in site.records(PI)] == ["SUP-0007", "Acme GmbH"]


def test_an_unknown_supplier_goes_to_the_default_supplier_with_a_remark(
    site: ErpnextStandin, tmp_path: Path
) -> None:
    options = {"default_supplier": "Unassigned Supplier"}
    with ErpnextClient(site.url, site.credential, timeout=5, options=options) as http:
        summary = http.act(action(stored(tmp_path), read={"supplier": "Initech AG", "total": "10.00"}))
    [invoice] = site.records(PI)
    assert summary["supplier"] == invoice["supplier"] == "Unassigned Supplier"
    assert (
        "Supplier on the document: 'Initech AG', not found in ERPNext; filed under 'Unassigned Supplier'"
        in (invoice["remarks"])
    )
    assert len(site.attachments_of(PI, invoice["name"])) == 1


def test_without_a_default_an_unknown_supplier_is_permanent_and_creates_nothing(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    site.add_supplier("Initech AG", disabled=True)  # a disabled supplier is not used
    error = failure(client, action(stored(tmp_path), read={"supplier": "Initech AG"}))
    assert error.transient is False
    assert (
        error.message
        == "ERPNext has no enabled Supplier 'Initech AG', and the policy sets no default_supplier"
    )
    assert error.hint is not None and "default_supplier" in error.hint
    error = failure(client, action(stored(tmp_path), read={"total": "3.00"}))
    assert error.message == "the document names no supplier, and the policy sets no default_supplier"
    assert site.records(PI) == [] and site.records("File") == []


def test_the_policy_may_name_the_supplier_and_erpnext_checks_it(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    fields = {"create": "purchase_invoice", "supplier": "Unassigned Supplier", "cost_center": "Main - AL"}
    client.act(action(stored(tmp_path), fields))
    [invoice] = site.records(PI)
    assert (invoice["supplier"], invoice["cost_center"]) == ("Unassigned Supplier", "Main - AL")
    assert ("GET", "/api/resource/Supplier") not in site.calls()  # no lookup: the policy said
    fields["supplier"] = "Nobody Ltd"
    error = failure(client, action(stored(tmp_path, b"%PDF-other"), fields))
    assert (error.transient, error.upstream_status) == (False, 417)
    assert error.message.endswith("answered 417 LinkValidationError: Could not find Supplier: Nobody Ltd")


def test_expense_account_and_item_options_replace_the_company_default(
    site: ErpnextStandin, tmp_path: Path
) -> None:
    site.add_item("Services")
    with ErpnextClient(
        site.url, site.credential, 5, options={"expense_account": "Office Expenses - AL"}
    ) as http:
        http.act(action(stored(tmp_path)))
    with ErpnextClient(
        site.url, site.credential, 5, options={"item_code": "Services", "uom": "Unit"}
    ) as http:
        http.act(action(stored(tmp_path, b"%PDF-2")))
    first, second = (r["items"][0] for r in site.records(PI))
    assert first["expense_account"] == "Office Expenses - AL" and "item_code" not in first
    assert (second["item_code"], second["uom"]) == ("Services", "Unit")
    assert ("GET", "/api/resource/Company") not in site.calls()
    with ErpnextClient(site.url, site.credential, 5, options={"expense_account": "Nope - AL"}) as http:
        error = failure(http, action(stored(tmp_path, b"%PDF-3")))
    assert error.message.endswith("Could not find Row #1: Expense Head: Nope - AL")


def test_a_company_without_a_default_expense_account_says_which_option_to_set(tmp_path: Path) -> None:
    with ErpnextStandin(default_expense_account=None) as bare:
        bare.add_supplier("Acme GmbH")
        with ErpnextClient(bare.url, bare.credential, timeout=5) as http:
            error = failure(http, action(stored(tmp_path)))
        bare.add_company("Second Ltd")
        with ErpnextClient(bare.url, bare.credential, timeout=5) as http:
            several = failure(http, action(stored(tmp_path)))
        assert bare.records(PI) == []
    assert error.transient is False
    assert error.message == "ERPNext Company 'Acme Ltd' has no Default Expense Account"
    assert (
        error.hint
        == "set options.expense_account (an expense Account) or options.item_code (a non-stock Item)"
    )
    assert several.message == "ERPNext: there are several Companies: set options.company"


def test_a_due_date_before_the_invoice_date_is_left_to_erpnext(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    read = {**FIELDS, "due_date": "2026-01-01", "currency": "euro", "total": "n/a"}
    client.act(action(stored(tmp_path), read=read))
    [invoice] = site.records(PI)
    assert invoice["due_date"] == "2026-03-14"  # ERPNext's default (the bill date), not a 417
    assert invoice["currency"] == "EUR"  # the company's: "euro" is not a currency code
    assert invoice["items"][0]["rate"] == 0.0
    assert "The total could not be read: the row's rate is 0." in invoice["remarks"]


def test_a_task_is_created_in_the_destination_project_and_assigned(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    fields = {"create": "task", "queue": "Operations", "assignee": "bob@example.com", "priority": "High"}
    document = stored(tmp_path, b"PK\x03\x04 order", "PO 4711.docx")
    document["media_type"] = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    summary = client.act(action(document, fields, read={"number": "PO-4711"}, doctype="purchase_order"))
    [task] = site.records("Task")
    assert summary["assigned"] == ["bob@example.com"] and summary["created"] is True
    assert (task["subject"], task["project"], task["status"], task["priority"]) == (
        "Purchase order: PO 4711.docx",
        "Operations",
        "Open",
        "High",
    )
    assert task["description"] == (
        "<p>Classified as invoice at 0.97 (threshold 0.80).</p><p>Filed for Accounts Payable.</p>"
        f"<p>Document 12: PO 4711.docx ({document['media_type']}), "
        "purchase_order.</p><ul><li>Number: PO-4711</li></ul>"
        f"<p>deskpilot:doc:{document['sha256']}</p>"
    )
    assert site.open_assignees(task["name"]) == ["bob@example.com"]
    assert json.loads(task["_assign"]) == ["bob@example.com"]
    [attached] = site.attachments_of("Task", task["name"])
    assert attached["content"] == b"PK\x03\x04 order" and attached["file_name"] == "PO 4711.docx"


def test_an_abstention_becomes_a_task_in_the_triage_project(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    client.act(
        action(stored(tmp_path, name="scan.pdf"), {"queue": "Triage"}, read={}, doctype=None, triage=True)
    )
    [task] = site.records("Task")
    assert (task["subject"], task["project"]) == ("Unclassified document: scan.pdf", "Triage")
    assert "unclassified (triage)" in task["description"]
    assert site.records(PI) == []


def test_filing_twice_makes_one_record_and_one_file(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    document = stored(tmp_path)
    first = client.act(action(document))
    site.requests.clear()
    again = client.act(action(document))
    assert len(site.records(PI)) == 1 and len(site.records("File")) == 1
    first.pop("supplier")  # the second run looks nothing up
    assert again == {**first, "created": False, "file_existed": True}
    assert site.calls() == [("GET", "/api/resource/Purchase%20Invoice"), ("GET", "/api/resource/File")]


def test_a_crash_between_create_and_upload_only_uploads_on_retry(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    document = stored(tmp_path)
    site.fail_next(1, status=503, method="POST", path=UPLOAD)
    error = failure(client, action(document))
    assert (error.transient, error.upstream_status) == (True, 503)
    [invoice] = site.records(PI)
    assert site.attachments_of(PI, invoice["name"]) == []
    site.requests.clear()
    summary = client.act(action(document))
    assert (summary["name"], summary["created"], summary["file_existed"]) == (invoice["name"], False, False)
    assert [a["content"] for a in site.attachments_of(PI, invoice["name"])] == [PDF]
    assert ("POST", "/api/resource/Purchase%20Invoice") not in site.calls()


def test_another_file_on_the_record_does_not_count_as_the_original(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    document = stored(tmp_path)
    client.act(action(document))
    [invoice] = site.records(PI)
    [ours] = site.records("File")
    site.docs["File"][ours["name"]]["content_hash"] = "0" * 32  # as if a person replaced it
    client.act(action(document))
    names = sorted(f["file_name"] for f in site.attachments_of(PI, invoice["name"]))
    assert names == ["inv-1.pdf", f"inv-1{hashlib.md5(PDF, usedforsecurity=False).hexdigest()[-6:]}.pdf"]


def test_a_missing_or_changed_original_is_permanent_without_any_request(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path
) -> None:
    document = stored(tmp_path)
    Path(document["path"]).unlink()
    error = failure(client, action(document))
    assert error.transient is False
    assert error.message == f"the original of document 12 ({document['path']}) is missing"
    Path(document["path"]).write_bytes(b"something else")
    error = failure(client, action(document))
    assert error.transient is False and "its SHA-256 differs" in error.message
    assert site.requests == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"create": "sales_order"},
            "document 12: fields.create is 'sales_order', not one of purchase_invoice, task",
        ),
        ({}, "document 12: fields.create is None, not one of purchase_invoice, task"),
        (
            {"create": "purchase_invoice", "queue": "Accounts Payable"},
            "the policy sets `queue` for a Purchase Invoice; ERPNext files invoices by company, not queue",
        ),
        (
            {"create": "task", "Bad Field": 1},
            "fields.Bad Field: not an ERPNext fieldname (lowercase, e.g. cost_center)",
        ),
    ],
)
def test_an_impossible_plan_is_permanent_without_any_request(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    error = failure(client, action(stored(tmp_path), fields))
    assert (error.transient, error.message) == (False, message)
    assert site.requests == []


def test_an_unknown_project_is_permanent(site: ErpnextStandin, client: ErpnextClient, tmp_path: Path) -> None:
    error = failure(client, action(stored(tmp_path), {"create": "task", "queue": "Nope"}))
    assert (error.transient, error.upstream_status) == (False, 417)
    assert (
        error.message
        == "ERPNext POST /api/resource/Task answered 417 LinkValidationError: Could not find Project: Nope"
    )
    assert error.hint is not None and "Project" in error.hint


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_transient(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path, status: int
) -> None:
    site.fail_next(1, status=status, retry_after=4, method="POST")
    error = failure(client, action(stored(tmp_path)))
    assert (error.transient, error.upstream_status, error.retry_after) == (True, status, 4.0)
    assert site.records(PI) == []
    client.act(action(stored(tmp_path)))  # the retry files it
    assert len(site.records(PI)) == 1 and len(site.records("File")) == 1


def test_permission_errors_name_the_roles_documents_need(site: ErpnextStandin, tmp_path: Path) -> None:
    site.fail_next(1, status=403, method="POST")
    with ErpnextClient(site.url, site.credential, timeout=5) as http:
        error = failure(http, action(stored(tmp_path)))
    assert error.transient is False and error.hint is not None and "Purchase Invoice" in error.hint


def test_the_standin_validates_new_records_as_erpnext_v15(site: ErpnextStandin) -> None:
    headers = {"Authorization": f"token {site.credential}"}
    with httpx.Client(base_url=site.url, headers=headers) as http:
        no_supplier = http.post(
            "/api/resource/Purchase Invoice", json={"items": [{"item_name": "x", "qty": 1}]}
        )
        no_items = http.post("/api/resource/Purchase Invoice", json={"supplier": "Acme GmbH"})
        free_row = http.post(
            "/api/resource/Purchase Invoice",
            json={"supplier": "Acme GmbH", "items": [{"item_name": "Pens", "qty": 1}]},
        )
        late = http.post(
            "/api/resource/Purchase Invoice",
            json={
                "supplier": "Acme GmbH",
                "bill_date": "2026-03-14",
                "due_date": "2026-03-01",
                "items": [{"item_name": "Pens", "qty": 1, "expense_account": "Office Expenses - AL"}],
            },
        )
        no_subject = http.post("/api/resource/Task", json={"project": "Triage"})
        no_target = http.post(
            UPLOAD, data={"doctype": "Task", "docname": "TASK-1"}, files={"file": ("a.txt", b"a")}
        )
    assert (no_supplier.status_code, no_supplier.json()["exc_type"]) == (404, "DoesNotExistError")
    assert (no_items.status_code, no_items.json()["exc_type"]) == (500, "TypeError")
    assert (free_row.status_code, free_row.json()["exc_type"]) == (417, "ValidationError")
    assert "Expense account is mandatory for item Pens" in free_row.text
    assert "Due Date cannot be before Supplier Invoice Date" in late.text
    assert (no_subject.status_code, no_subject.json()["exc_type"]) == (417, "MandatoryError")
    assert no_subject.json()["exception"].endswith("[Task, TASK-2025-00001]: subject")
    assert (no_target.status_code, no_target.json()["exc_type"]) == (404, "DoesNotExistError")
    assert site.records(PI) == site.records("Task") == site.records("File") == []


@pytest.mark.parametrize(
    ("given", "filed"),
    [
        ("C:\\scans\\..\\inv 1.pdf", "inv 1.pdf"),
        ("../../etc/passwd", "passwd"),
        ("bad\x00name\r\n.pdf", "badname.pdf"),
        ("", "document-"),
        ("x" * 200 + ".pdf", "x" * 136 + ".pdf"),
    ],
)
def test_only_the_file_s_own_name_is_sent(
    site: ErpnextStandin, client: ErpnextClient, tmp_path: Path, given: str, filed: str
) -> None:
    document = stored(tmp_path, name=given)
    client.act(action(document, {"create": "task", "queue": "Triage"}))
    [task] = site.records("Task")
    [attached] = site.attachments_of("Task", task["name"])
    expected = filed + document["sha256"][:12] if filed == "document-" else filed
    assert attached["file_name"] == expected and task["subject"] == f"Invoice: {expected}"[:140]
