"""Documents end to end: upload (or email) -> kept + extracted -> worker classifies, reads fields
-> the ERP stand-in (ERPNext, Odoo) gets a draft purchase invoice / a task with the file attached.

The doctype model is a keyword fake (the point here is the plumbing; the real classifier is
measured by ``deskpilot bench documents``); extraction, field rules, policy, store, jobs,
connectors and the stand-in servers are the real ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from doc_builders import make_email, make_pdf
from pydantic import SecretStr
from support.erpnext_standin import ErpnextStandin
from support.odoo_standin import OdooStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.connectors.generic.verify import sign
from deskpilot.documents.originals import OriginalStore
from deskpilot.store import create_api_key

SUPPLIER = "Northwind Traders GmbH"
INVOICE_LINES = [
    "INVOICE",
    SUPPLIER,
    "Hauptstrasse 5, 10115 Berlin",
    "Invoice No.: INV-2026-0042",
    "Invoice Date: 2026-03-14",
    "Due Date: 2026-04-13",
    "Bill to: Acme Ltd",
    "Description Qty Unit price Amount",
    "Printer paper A4 10 12.50 125.00",
    "Subtotal: 125.00",
    "VAT 19%: 23.75",
    "Total: EUR 148.75",
    "IBAN: DE89 3704 0044 0532 0130 00",
]
PREDICTOR = KeywordPredictor(
    {
        "doctype": Keywords(
            {"invoice": "invoice", "purchase order": "purchase_order", "delivery": "shipping_order"},
            "inventory_report",
            ("invoice", "purchase_order", "shipping_order", "inventory_report"),
        )
    }
)
ERPNEXT_POLICY = """\
systems:
  erp:
    connector: erpnext
    url: {url}
    credentials: erpnext-acme
documents:
  task: doctype
  min_score: 0.5
  destinations:
    invoice: {{system: erp, create: purchase_invoice}}
    purchase_order: {{system: erp, create: task, queue: Operations}}
  triage: {{system: erp, create: task, queue: Triage}}
"""
ODOO_POLICY = """\
systems:
  odoo:
    connector: odoo
    url: {url}
    credentials: odoo-acme
    options: {{api: json2, database: {db}}}
documents:
  task: doctype
  min_score: 0.5
  destinations:
    invoice: {{system: odoo, create: purchase_invoice}}
  triage: {{system: odoo, create: task, queue: "{triage_project}"}}
"""


@dataclass
class World(Workflow):
    key: str = ""

    def upload(self, *files: tuple[str, bytes], metadata: str | None = None) -> Any:
        data = {"metadata": metadata} if metadata is not None else None
        return self.http.post(
            "/v1/documents",
            files=[("file", (name, content, "application/octet-stream")) for name, content in files],
            data=data,
            headers={"Authorization": f"Bearer {self.key}"},
        )

    def document(self, document_id: int) -> dict[str, Any]:
        response = self.http.get(
            f"/v1/documents/{document_id}", headers={"Authorization": f"Bearer {self.key}"}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


def _with_key(world: World) -> World:
    with world.database.session() as session:
        _, world.key = create_api_key(session, "acme", "uploader", scopes=("read", "write"))
    return world


@dataclass
class ErpWorld(World):
    site: ErpnextStandin | None = None


@pytest.fixture
def erp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ErpWorld]:
    with ErpnextStandin() as site:
        site.add_supplier(SUPPLIER)
        with run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=ERPNEXT_POLICY.format(url=site.url),
            make=partial(ErpWorld, site=site),
            webhook_secrets={"acme/email": SecretStr("email-secret-of-acme")},
            connector_secrets={"erpnext-acme": SecretStr(site.credential)},
        ) as world:
            yield _with_key(world)  # type: ignore[misc]


def test_uploaded_pdf_invoice_becomes_a_draft_purchase_invoice_with_the_file(erp: ErpWorld) -> None:
    assert erp.site is not None
    pdf = make_pdf(INVOICE_LINES)
    response = erp.upload(("inv-42.pdf", pdf), metadata='{"mailbox": "ap@acme.example"}')
    assert response.status_code == 202, response.text
    [entry] = response.json()["files"]
    assert entry["state"] == "received" and entry["media_type"] == "application/pdf"
    assert entry["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert OriginalStore(erp.settings.documents_dir).get(entry["sha256"]) == pdf  # kept as received
    erp.run_jobs()

    doc = erp.document(entry["document_id"])
    assert (doc["state"], doc["doctype"], doc["abstained"]) == ("filed", "invoice", False)
    fields = {name: item["value"] for name, item in doc["fields"].items()}
    assert fields["number"] == "INV-2026-0042"
    assert fields["date"] == "2026-03-14"
    assert fields["total"] == "148.75"
    assert fields["currency"] == "EUR"
    [invoice] = erp.site.records("Purchase Invoice")
    assert invoice["docstatus"] == 0  # a draft for a person to check and submit
    assert invoice["bill_no"] == "INV-2026-0042" and invoice["supplier"] == SUPPLIER
    [attached] = erp.site.attachments_of("Purchase Invoice", invoice["name"])
    assert attached["content"] == pdf

    again = erp.upload(("copy-of-inv-42.pdf", pdf))  # the same bytes under another name
    assert again.status_code == 202
    assert again.json()["files"][0]["duplicate"] is True
    erp.run_jobs()
    assert len(erp.site.records("Purchase Invoice")) == 1


def test_unsure_document_becomes_a_triage_task_and_a_corrupt_one_is_refused(erp: ErpWorld) -> None:
    assert erp.site is not None
    note = make_pdf(["Stock count", "Shelf 4: 12 boxes", "Shelf 5: 3 boxes"])  # no keyword: score 0.3
    corrupt = make_pdf(["INVOICE", "Total: 10.00"])[:300]
    response = erp.upload(("stock.pdf", note), ("broken.pdf", corrupt))
    assert response.status_code == 202, response.text
    by_name = {f["filename"]: f for f in response.json()["files"]}
    assert by_name["stock.pdf"]["state"] == "received"
    assert (by_name["broken.pdf"]["state"], by_name["broken.pdf"]["reason"]) == ("rejected", "corrupt")
    assert OriginalStore(erp.settings.documents_dir).get(by_name["broken.pdf"]["sha256"]) == corrupt
    erp.run_jobs()
    doc = erp.document(by_name["stock.pdf"]["document_id"])
    assert (doc["state"], doc["doctype"], doc["abstained"]) == ("triage", None, True)
    [task] = erp.site.records("Task")
    assert task["project"] == "Triage"
    assert len(erp.site.attachments_of("Task", task["name"])) == 1
    assert erp.document(by_name["broken.pdf"]["document_id"])["state"] == "rejected"

    only_bad = erp.upload(("empty.txt", b""))
    assert only_bad.status_code == 422
    assert only_bad.json()["files"][0]["reason"] == "empty"


def test_a_signed_email_files_its_attached_invoice(erp: ErpWorld) -> None:
    assert erp.site is not None
    pdf = make_pdf(INVOICE_LINES)
    raw = make_email(attachments=[("inv-42.pdf", pdf, "application/pdf")]).as_bytes()
    headers = {**sign("email-secret-of-acme", raw), "Content-Type": "message/rfc822"}
    forged = {**sign("not-the-secret", raw), "Content-Type": "message/rfc822"}
    assert erp.http.post("/webhooks/acme/email", content=raw, headers=forged).status_code == 401
    response = erp.http.post("/webhooks/acme/email", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    files = response.json()["files"]
    assert [(f["filename"], f["depth"]) for f in files] == [("inv-42.pdf", 1)]  # the body is not a document
    erp.run_jobs()
    [invoice] = erp.site.records("Purchase Invoice")
    [attached] = erp.site.attachments_of("Purchase Invoice", invoice["name"])
    assert attached["content"] == pdf


def test_upload_needs_a_write_key_and_multipart(erp: ErpWorld) -> None:
    pdf = make_pdf(INVOICE_LINES)
    no_key = erp.http.post("/v1/documents", files=[("file", ("a.pdf", pdf, "application/pdf"))])
    assert no_key.status_code == 401
    as_json = erp.http.post(
        "/v1/documents", json={"file": "x"}, headers={"Authorization": f"Bearer {erp.key}"}
    )
    assert as_json.status_code == 415
    assert "multipart/form-data" in as_json.json()["error"]["hint"]
    bad_meta = erp.upload(("a.pdf", pdf), metadata="[1, 2]")
    assert bad_meta.status_code == 422


@dataclass
class OdooWorld(World):
    odoo: OdooStandin | None = None


@pytest.fixture
def odoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OdooWorld]:
    with OdooStandin() as server:
        server.add("project.project", 4, name="Document triage")
        triage_project = 4
        with run_workflow(
            tmp_path,
            monkeypatch,
            PREDICTOR,
            policy=ODOO_POLICY.format(url=server.url, db=server.database, triage_project=triage_project),
            make=partial(OdooWorld, odoo=server),
            connector_secrets={"odoo-acme": SecretStr(server.api_key)},
        ) as world:
            yield _with_key(world)  # type: ignore[misc]


def test_uploaded_pdf_invoice_becomes_an_odoo_vendor_bill_with_the_file(odoo: OdooWorld) -> None:
    assert odoo.odoo is not None
    pdf = make_pdf(INVOICE_LINES)
    response = odoo.upload(("inv-42.pdf", pdf))
    assert response.status_code == 202, response.text
    odoo.run_jobs()
    [bill] = odoo.odoo.records_of("account.move")
    assert bill["move_type"] == "in_invoice" and bill["ref"] == "INV-2026-0042"
    assert bill["state"] == "draft"
    [attached] = odoo.odoo.attachments_of("account.move", bill["id"])
    assert attached["content"] == pdf


def test_originals_listing_and_other_tenants(erp: ErpWorld) -> None:
    pdf = make_pdf(INVOICE_LINES)
    [entry] = erp.upload(("inv-42.pdf", pdf)).json()["files"]
    mine = {"Authorization": f"Bearer {erp.key}"}
    original = erp.http.get(f"/v1/documents/{entry['document_id']}/original", headers=mine)
    assert original.status_code == 200 and original.content == pdf
    assert original.headers["content-type"] == "application/pdf"
    listed = erp.http.get("/v1/documents?state=received", headers=mine).json()["documents"]
    assert [d["id"] for d in listed] == [entry["document_id"]]
    with erp.database.session() as session:
        _, other = create_api_key(session, "globex", "theirs", scopes=("read", "write"))
    theirs = {"Authorization": f"Bearer {other}"}
    for path in (f"/v1/documents/{entry['document_id']}", f"/v1/documents/{entry['document_id']}/original"):
        assert erp.http.get(path, headers=theirs).status_code == 404
    assert erp.http.get("/v1/documents", headers=theirs).json()["documents"] == []


def test_size_limits_are_413_before_anything_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_workflow(
        tmp_path, monkeypatch, PREDICTOR, policy=None, make=World, doc_max_bytes=4096, doc_max_files=2
    ) as raw:
        world = _with_key(raw)
        big = make_pdf(INVOICE_LINES * 40)
        assert len(big) > 4096
        response = world.upload(("big.pdf", big))
        assert response.status_code == 413
        assert "DESKPILOT_DOC_MAX_BYTES" in response.json()["error"]["hint"]
        too_many = world.upload(*[(f"{i}.txt", b"Invoice INV-1 total 10.00") for i in range(3)])
        assert too_many.status_code == 400, too_many.text
        assert "Too many files" in too_many.text
        with world.database.session() as session:
            from sqlalchemy import func, select

            from deskpilot.store.models import DocumentRecord

            assert session.scalar(select(func.count()).select_from(DocumentRecord)) == 0


TICKETS_ONLY = """\
systems:
  desk: {connector: generic, url: "http://127.0.0.1:9/api", credentials: desk}
tasks:
  doctype:
    destinations:
      invoice: {system: desk, queue: ap}
triage: {system: desk, queue: triage}
"""


def test_without_a_documents_section_the_job_stops_and_says_what_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from deskpilot.store.models import JobRecord

    with run_workflow(tmp_path, monkeypatch, PREDICTOR, policy=TICKETS_ONLY, make=World) as raw:
        world = _with_key(raw)
        [entry] = world.upload(("inv-42.pdf", make_pdf(INVOICE_LINES))).json()["files"]
        world.run_jobs()
        with world.database.session() as session:
            job = session.scalars(select(JobRecord).where(JobRecord.kind == "process_document")).one()
            assert (job.state, job.attempts) == ("dead", 1)  # permanent: retrying cannot help
            assert job.last_error is not None
            assert "no usable routing policy for the documents of tenant 'acme'" in job.last_error
            assert (
                f"add a 'documents:' section to {world.settings.policies_dir / 'acme.yaml'}" in job.last_error
            )
        assert world.document(entry["document_id"])["state"] == "processing"  # `jobs retry` picks it up
