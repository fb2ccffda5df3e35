"""Inbox, ticket view and corrections, triage and usage pages, and tenancy across them."""

from __future__ import annotations

import re

import pytest
from console_support import Seeded, StaticPredictor, enter, page_csrf
from fastapi.testclient import TestClient
from sqlalchemy import select

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database
from deskpilot.store.models import AuditEntry, FeedbackRecord, JobRecord


def _subjects(html: str) -> list[str]:
    return re.findall(r'<a href="/console/tickets/\d+">([^<]+)</a>', html)


def test_inbox_lists_the_tenants_tickets_newest_first(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    page = client.get("/console")
    assert page.status_code == 200
    subjects = _subjects(page.text)
    assert subjects[0] == "Invoice INV-77 from Initech" and subjects[-1] == "VPN drops every hour"
    assert "document: inv-77.pdf" in page.text and "not decided yet" in page.text
    assert "Globex payroll secret" not in page.text  # another tenant's ticket
    assert page.text.count('class="abstained"') == 4  # abstentions highlighted
    assert 'aria-label="confidence 0.93, threshold 0.50"' in page.text
    assert "queue:network" in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=printer", {"Printer on floor 3", "Printer on floor 3 again"}),
        ("q=INVOICE", {"Invoice 4411 is wrong", "Invoice INV-77 from Initech"}),
        ("q=100%25", set()),  # LIKE wildcards are searched for literally
        ("label=billing", {"Invoice 4411 is wrong", "Refund please"}),
        ("min=0.8&max=1", {"VPN drops every hour", "Invoice 4411 is wrong"}),
        ("min=&max=0.4", {"Printer on floor 3", "Printer on floor 3 again"}),
        ("abstained=1&label=other", {"Printer on floor 3", "Printer on floor 3 again"}),
        ("source=email&kind=ticket&state=routed", {"VPN drops every hour", "Invoice 4411 is wrong"}),
        ("state=received", {"Invoice INV-77 from Initech"}),
        ("kind=document", {"Invoice INV-77 from Initech"}),
        ("q=invoice&kind=ticket", {"Invoice 4411 is wrong"}),
        ("from=2000-01-01&to=2999-12-31&q=vpn", {"VPN drops every hour"}),
        ("to=2000-01-01", set()),
    ],
)
def test_inbox_filters_and_search(client: TestClient, seeded: Seeded, query: str, expected: set[str]) -> None:
    enter(client, "agent")
    page = client.get(f"/console?{query}")
    assert page.status_code == 200, page.text
    assert set(_subjects(page.text)) == expected


@pytest.mark.parametrize(
    "query", ["min=abc", "max=2", "from=yesterday", "state=lost", "kind=mail", "before=0"]
)
def test_bad_filters_are_a_422_page_not_a_crash(client: TestClient, seeded: Seeded, query: str) -> None:
    enter(client, "agent")
    page = client.get(f"/console?{query}")
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "Check the form" in page.text


def test_ticket_page_shows_the_decision_and_why(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    page = client.get(f"/console/tickets/{seeded.tickets['VPN drops every hour']}")
    assert page.status_code == 200
    text = page.text
    assert "My VPN disconnects every hour since Monday." in text
    assert "queue:network" in text and "confidence 0.93" in text
    assert "Alternatives" in text and "access" in text
    assert "an older ticket about network" in text  # similar training tickets
    assert "Hello, about your network issue" in text  # the draft reply
    assert "desk (zendesk)" in text and ">pending<" in text  # the action and its status
    options = re.findall(r'<option value="([^"]+)">', text)
    assert options == ["access", "billing", "network", "other"]


def test_confirm_writes_the_same_feedback_row_as_the_api(
    client: TestClient, seeded: Seeded, database: Database
) -> None:
    enter(client, "agent")
    ticket = seeded.tickets["VPN drops every hour"]
    response = client.post(
        f"/console/tickets/{ticket}/feedback",
        data={
            "csrf_token": page_csrf(client, f"/console/tickets/{ticket}"),
            "decision_id": str(seeded.decisions["VPN drops every hour"]),
            "action": "confirm",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/tickets/{ticket}?saved=1"
    with database.session() as session:
        row = session.scalars(select(FeedbackRecord)).one()
        assert (row.task, row.label, row.previous_label, row.author, row.source) == (
            "intent",
            "network",
            "network",
            "agent@acme.test",
            "console",
        )
        assert row.ticket_id == ticket and row.decision_id == seeded.decisions["VPN drops every hour"]
        assert row.text.startswith("VPN drops every hour")
        kinds = session.scalars(select(AuditEntry.kind).where(AuditEntry.ticket_id == ticket)).all()
        assert "feedback" in kinds
    page = client.get(response.headers["location"])
    assert "your correction was recorded" in page.text
    assert 'class="feedback-row"' in page.text


def test_change_to_records_the_new_label(client: TestClient, seeded: Seeded, database: Database) -> None:
    enter(client, "agent")
    ticket = seeded.tickets["Cannot log in"]
    response = client.post(
        f"/console/tickets/{ticket}/feedback",
        data={
            "csrf_token": page_csrf(client),
            "decision_id": str(seeded.decisions["Cannot log in"]),
            "action": "change",
            "label": "billing",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    with database.session() as session:
        row = session.scalars(select(FeedbackRecord)).one()
        # an abstained decision had no label: the correction is against the model's best guess
        assert (row.label, row.previous_label) == ("billing", "access")


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"action": "change", "label": ""}, 422),
        ({"action": "change", "label": "x" * 201}, 422),
        ({"action": "delete"}, 422),
        ({"action": "confirm", "decision_id": "abc"}, 422),
        ({"action": "confirm", "decision_id": "999999"}, 404),
    ],
)
def test_bad_corrections_are_refused(
    client: TestClient, seeded: Seeded, database: Database, form: dict[str, str], status: int
) -> None:
    enter(client, "agent")
    ticket = seeded.tickets["Cannot log in"]
    data = {"csrf_token": page_csrf(client), "decision_id": str(seeded.decisions["Cannot log in"]), **form}
    response = client.post(f"/console/tickets/{ticket}/feedback", data=data, follow_redirects=False)
    assert response.status_code == status
    with database.session() as session:
        assert session.scalars(select(FeedbackRecord)).all() == []


def test_another_tenants_ticket_and_decision_are_404(
    client: TestClient, seeded: Seeded, database: Database
) -> None:
    enter(client, "globex")
    acme_ticket = seeded.tickets["VPN drops every hour"]
    assert client.get(f"/console/tickets/{acme_ticket}").status_code == 404
    csrf = page_csrf(client)
    write = client.post(
        f"/console/tickets/{acme_ticket}/feedback",
        data={
            "csrf_token": csrf,
            "decision_id": str(seeded.decisions["VPN drops every hour"]),
            "action": "confirm",
        },
    )
    assert write.status_code == 404
    # its own ticket with acme's decision id: still 404, nothing written
    mixed = client.post(
        f"/console/tickets/{seeded.globex_ticket}/feedback",
        data={
            "csrf_token": csrf,
            "decision_id": str(seeded.decisions["VPN drops every hour"]),
            "action": "confirm",
        },
    )
    assert mixed.status_code == 404
    inbox = client.get("/console")
    assert _subjects(inbox.text) == ["Globex payroll secret"]
    assert "VPN" not in client.get("/console/triage").text
    assert "VPN" not in client.get("/console?q=vpn").text
    with database.session() as session:
        assert session.scalars(select(FeedbackRecord)).all() == []


def test_unknown_console_page_is_an_html_404(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    page = client.get("/console/nowhere")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/console/tickets/0").status_code == 422


def test_triage_orders_by_expected_gain_and_puts_near_duplicates_last(
    client: TestClient, seeded: Seeded
) -> None:
    enter(client, "agent")
    page = client.get("/console/triage")
    assert page.status_code == 200
    subjects = _subjects(page.text)
    assert set(subjects) == {
        "Cannot log in",
        "Printer on floor 3",
        "Printer on floor 3 again",
        "Refund please",
    }
    gains = [float(g) for g in re.findall(r"Expected gain <strong>([0-9.]+)</strong>", page.text)]
    assert subjects[-1].startswith("Printer on floor 3")  # one of the two near-identical tickets goes last
    assert "near-duplicate" in page.text
    assert gains[:3] == sorted(gains[:3], reverse=True)
    assert "/console/static/triage.js" in page.text
    assert "<kbd>1</kbd> access" in page.text  # the model's best guess is key 1


def test_a_triage_label_goes_back_to_the_queue_and_leaves_it(
    client: TestClient, seeded: Seeded, database: Database
) -> None:
    enter(client, "agent")
    ticket = seeded.tickets["Refund please"]
    response = client.post(
        f"/console/tickets/{ticket}/feedback",
        data={
            "csrf_token": page_csrf(client, "/console/triage"),
            "decision_id": str(seeded.decisions["Refund please"]),
            "action": "change",
            "label": "billing",
            "next": "/console/triage",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console/triage"
    assert "Refund please" not in client.get("/console/triage").text


def test_usage_page_measures_accuracy_and_drift(client: TestClient, seeded: Seeded) -> None:
    enter(client, "agent")
    csrf = page_csrf(client)
    for subject, action, label in (
        ("VPN drops every hour", "confirm", ""),
        ("Invoice 4411 is wrong", "change", "access"),
    ):
        client.post(
            f"/console/tickets/{seeded.tickets[subject]}/feedback",
            data={
                "csrf_token": csrf,
                "decision_id": str(seeded.decisions[subject]),
                "action": action,
                "label": label,
            },
        )
    page = client.get("/console/usage?days=30")
    assert page.status_code == 200
    text = page.text
    assert re.search(r"<dt>Tickets</dt><dd>7</dd>", text)  # six tickets and a document
    assert re.search(r"<dt>Abstain rate</dt><dd>66.7%</dd>", text)
    assert re.search(r"Accuracy \(from 2 corrections\)</dt><dd>50.0%</dd>", text)
    # predicted shares: access 1, billing 2, network 1, other 2 of 6; training 40/30/20/10 of 100
    tvd = 0.5 * (abs(1 / 6 - 0.4) + abs(2 / 6 - 0.3) + abs(1 / 6 - 0.2) + abs(2 / 6 - 0.1))
    assert f"total variation distance {tvd:.3f}" in text
    assert "<svg" in text and "Accuracy and abstain rate" in text
    assert client.get("/console/usage?days=0").status_code == 422


def test_a_console_correction_triggers_retraining_like_an_api_one(
    settings: Settings, database: Database, seeded: Seeded
) -> None:
    eager = settings.model_copy(update={"retrain_after_corrections": 1})
    with TestClient(create_app(eager, predictor=StaticPredictor(), database=database)) as client:
        enter(client, "agent")
        ticket = seeded.tickets["Printer on floor 3"]
        client.post(
            f"/console/tickets/{ticket}/feedback",
            data={
                "csrf_token": page_csrf(client),
                "decision_id": str(seeded.decisions["Printer on floor 3"]),
                "action": "change",
                "label": "other",
            },
        )
    with database.session() as session:
        job = session.scalars(select(JobRecord).where(JobRecord.kind == "retrain")).one()
        feedback_id = session.scalars(select(FeedbackRecord.id)).one()
    assert job.payload == {"task": "intent", "reason": "corrections", "feedback_upto": feedback_id}


def test_ticket_text_from_the_internet_is_escaped(client: TestClient, database: Database) -> None:
    from deskpilot.store.workflow import accept_ticket
    from deskpilot.types import Ticket

    with database.session() as session:
        accepted = accept_ticket(
            session,
            "acme",
            Ticket(subject='<script>alert("x")</script>', body="<img src=x onerror=alert(1)>", source="web"),
            delivery_id="xss",
            actor="test",
        )
    enter(client, "agent")
    for url in ("/console", f"/console/tickets/{accepted.ticket_id}", "/console?q=%3Cscript%3E"):
        page = client.get(url)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert" in page.text


def test_the_inbox_pages_back_with_older(
    client: TestClient, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deskpilot.gateway.console import inbox

    monkeypatch.setattr(inbox, "PAGE", 3)
    enter(client, "agent")
    first = client.get("/console?source=email")
    assert _subjects(first.text) == ["Refund please", "Printer on floor 3 again", "Printer on floor 3"]
    older = re.search(r'<a href="(\?[^"]+)">Older</a>', first.text)
    assert older is not None
    second = client.get("/console" + older.group(1).replace("&amp;", "&"))
    assert _subjects(second.text) == ["Cannot log in", "Invoice 4411 is wrong", "VPN drops every hour"]


@pytest.mark.parametrize("redact_pii", [True, False])
def test_inbox_and_triage_excerpts_follow_redact_pii(
    settings: Settings, database: Database, seeded: Seeded, redact_pii: bool
) -> None:
    from console_support import _decide

    _decide(
        database,
        "acme",
        "Call me on +44 20 7946 0958",
        "Write to jane.doe@example.com; pay to GB82 WEST 1234 5698 7654 32 from now on",
        "billing",
        0.31,
        True,
    )
    app = create_app(
        settings.model_copy(update={"redact_pii": redact_pii}), predictor=StaticPredictor(), database=database
    )
    with TestClient(app) as client:
        enter(client, "agent")
        inbox, triage = client.get("/console").text, client.get("/console/triage").text
    raw = ("+44 20 7946 0958", "jane.doe@example.com", "GB82 WEST 1234 5698 7654 32")
    if redact_pii:
        assert "Call me on [phone]" in inbox and "Call me on [phone]" in triage
        assert "[email]" in triage and "[iban]" in triage
        assert not any(value in inbox or value in triage for value in raw)
    else:
        assert all(value in triage for value in raw) and raw[0] in inbox
