"""Seeded data and sign-in helpers for the console tests (unit and browser).

Two tenants: ``acme`` (three users, tickets with decisions, adapter cards v1 champion and
v2 candidate on disk) and ``globex`` (one agent, one ticket). Tickets are stored and decided
through the store's own functions, as the worker would, without running a model.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.config import Settings
from deskpilot.store import Database, get_or_create_tenant
from deskpilot.store.models import ConsoleUser, DocumentRecord
from deskpilot.store.users import hash_password
from deskpilot.store.workflow import accept_ticket, get_ticket, record_decisions
from deskpilot.types import Action, AdapterSummary, Alternative, Prediction, RouteDecision, Ticket

PASSWORD = "correct horse battery"
LABELS = ("access", "billing", "network", "other")
USERS = {
    "agent": ("acme", "agent@acme.test", "agent"),
    "lead": ("acme", "lead@acme.test", "lead"),
    "admin": ("acme", "admin@acme.test", "admin"),
    "globex": ("globex", "agent@globex.test", "agent"),
}
# subject, body, label, score, abstained
TICKETS = (
    ("VPN drops every hour", "My VPN disconnects every hour since Monday.", "network", 0.93, False),
    ("Invoice 4411 is wrong", "The invoice shows 12 seats but we have 10.", "billing", 0.88, False),
    ("Cannot log in", "Password reset mail never arrives.", "access", 0.41, True),
    ("Printer on floor 3", "The printer on floor 3 jams on every job.", "other", 0.35, True),
    ("Printer on floor 3 again", "The printer on floor 3 jams on every job!", "other", 0.36, True),
    ("Refund please", "Please refund the double charge on my card.", "billing", 0.47, True),
)


class Predicting(Protocol):
    def predict(
        self, tenant: str, task: str, texts: Any, *, version: str | None = None, abstain: bool = True
    ) -> list[Prediction]: ...


class StaticPredictor:
    """Serves the seeded adapter's labels; the console only asks it which labels exist."""

    def predict(
        self, tenant: str, task: str, texts: Any, *, version: str | None = None, abstain: bool = True
    ) -> list[Prediction]:
        return [Prediction("other", 0.4, abstain, (), task, "v1", threshold=0.5) for _ in texts]

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        if tenant != "acme":
            return []
        return [AdapterSummary("acme", "intent", "v1", True, "tiny", LABELS, {}, "2026-11-01T00:00:00+00:00")]

    def ready(self) -> bool:
        return True


@dataclass
class Seeded:
    tickets: dict[str, int] = field(default_factory=dict)  # subject -> ticket id (acme)
    decisions: dict[str, int] = field(default_factory=dict)  # subject -> decision id (acme)
    globex_ticket: int = 0
    document_ticket: int = 0
    globex_decision: int = 0


def _prediction(label: str, score: float, abstained: bool) -> Prediction:
    others = [x for x in LABELS if x != label]
    rest = 1.0 - score
    alternatives = (
        Alternative(others[0], round(rest * 0.7, 4)),
        Alternative(others[1], round(rest * 0.2, 4)),
    )
    return Prediction(label, score, abstained, alternatives, "intent", "v1", threshold=0.5)


def _decide(
    database: Database, tenant: str, subject: str, body: str, label: str, score: float, abstained: bool
) -> tuple[int, int]:
    with database.session() as session:
        accepted = accept_ticket(
            session,
            tenant,
            Ticket(subject=subject, body=body, source="email"),
            delivery_id=subject,
            actor="test",
        )
        record = get_ticket(session, _tenant_id(session, tenant), accepted.ticket_id)
        assert record is not None
        prediction = _prediction(label, score, abstained)
        decision = RouteDecision(
            "intent",
            None if abstained else label,
            None if abstained else f"queue:{label}",
            abstained,
            explanation="model abstained; to triage" if abstained else f"{label} at {score:.2f}",
        )
        actions = [
            Action(
                tenant, "desk", "zendesk", "route", accepted.ticket_id, None, {"group": label}, f"k-{subject}"
            )
        ]
        explanation = {
            "intent": {
                "alternatives": [{"label": a.label, "score": a.score} for a in prediction.alternatives],
                "similar": [{"text": f"an older ticket about {label}", "label": label, "score": 0.81}],
                **(
                    {
                        "draft": {
                            "text": f"Hello, about your {label} issue…",
                            "mode": "retrieval",
                            "confidence": 0.7,
                            "sources": ["kb:1"],
                            "reason": "similar answer",
                        }
                    }
                    if label == "network"
                    else {}
                ),
            }
        }
        ids, _ = record_decisions(
            session, record, [decision], {"intent": prediction}, actions, explanation, actor="test-worker"
        )
        return accepted.ticket_id, ids[0]


def _document(database: Database, tenant: str) -> int:
    """A received PDF: its ticket row (source ``document``) and its documents row, undecided."""
    with database.session() as session:
        accepted = accept_ticket(
            session,
            tenant,
            Ticket(
                subject="Invoice INV-77 from Initech",
                body="Invoice INV-77 total 120.00 EUR",
                source="document",
            ),
            delivery_id="doc-1",
            actor="test",
        )
        session.add(
            DocumentRecord(
                tenant_id=_tenant_id(session, tenant),
                ticket_id=accepted.ticket_id,
                sha256="ab" * 32,
                filename="inv-77.pdf",
                media_type="application/pdf",
                size=1234,
                source="upload",
            )
        )
        return accepted.ticket_id


def _tenant_id(session: Any, tenant: str) -> int:
    from deskpilot.store import get_tenant

    found = get_tenant(session, tenant)
    assert found is not None
    return found.id


# what training saves (adapters.calibration.reliability_bins): only v2's card has them
_BINS = {
    "reliability": [
        {"low": 0.5, "high": 0.6, "mean_score": 0.55, "accuracy": 0.5, "count": 8},
        {"low": 0.9, "high": 1.0, "mean_score": 0.95, "accuracy": 0.92, "count": 12},
    ]
}


def write_cards(settings: Settings, tenant: str = "acme", task: str = "intent") -> None:
    """Two registered versions on disk: v1 the champion, v2 a candidate (cards only: no weights)."""
    registry = Registry(settings.adapters_dir)
    counts = {"access": 40, "billing": 30, "network": 20, "other": 10}
    for number, accuracy in ((1, 0.81), (2, 0.86)):
        files = settings.home / f"staging-v{number}"
        files.mkdir(parents=True)
        (files / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
        card = AdapterCard(
            task=task,
            tenant=tenant,
            kind="classifier",
            base_model="tiny",
            labels=list(LABELS),
            n_train=100,
            metrics={
                "validation": {"accuracy": accuracy, "n": 20, **(_BINS if number == 2 else {})},
                "eval": {
                    "accuracy": accuracy,
                    "macro_f1": accuracy - 0.05,
                    "per_class": {x: {"precision": 0.9, "coverage": 0.8} for x in LABELS},
                },
            },
            thresholds={"default": 0.5, "per_class": {"access": 0.6}},
            extra={"label_counts": counts},
        )
        registry.register(files, card, promote=number == 1, rows=(["a text"] * 4, list(LABELS)))


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


def seed(database: Database, settings: Settings) -> Seeded:
    seeded = Seeded()
    with database.session() as session:
        for tenant, email, role in USERS.values():
            # rows with one hash computed once per run: argon2 is slow on purpose (about 0.3 s a hash)
            user = ConsoleUser(
                tenant_id=get_or_create_tenant(session, tenant).id,
                email=email,
                name=email.split("@")[0].title(),
                role=role,
                password_hash=_password_hash(),
            )
            session.add(user)
    for subject, body, label, score, abstained in TICKETS:
        ticket_id, decision_id = _decide(database, "acme", subject, body, label, score, abstained)
        seeded.tickets[subject] = ticket_id
        seeded.decisions[subject] = decision_id
    seeded.document_ticket = _document(database, "acme")
    seeded.globex_ticket, seeded.globex_decision = _decide(
        database, "globex", "Globex payroll secret", "Payroll run failed", "billing", 0.9, False
    )
    write_cards(settings)
    return seeded


# sign-in ----------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Client(Protocol):
    @property
    def cookies(self) -> Any: ...
    def get(self, url: str, **kwargs: Any) -> Any: ...
    def post(self, url: str, **kwargs: Any) -> Any: ...


def sign_in(client: Client, who: str, password: str = PASSWORD) -> Any:
    tenant, email, _ = USERS[who]
    client.cookies.clear()  # a fresh browser: whoever was signed in before is not
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"tenant": tenant, "email": email, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def enter(client: Any, who: str) -> None:
    """Signed in as ``who`` without the sign-in form (and its deliberately slow argon2 check):
    a session opened in the store, its token in the cookie. For tests about other things."""
    from deskpilot.store import get_tenant
    from deskpilot.store.users import find_user, open_session

    tenant, email, _ = USERS[who]
    app = client.app
    client.cookies.clear()
    with app.state.database.session() as session:
        owner = get_tenant(session, tenant)
        user = find_user(session, owner.id, email) if owner is not None else None
        assert user is not None, who
        token = open_session(session, user, app.state.settings.secret_key.get_secret_value())
    client.cookies.set("deskpilot_session", token, path="/console")


def page_csrf(client: Client, url: str = "/console") -> str:
    return csrf_of(client.get(url).text)


def screenshot_dir(tmp_path: Path) -> Path:
    import os

    target = Path(os.environ.get("DESKPILOT_TEST_ARTIFACTS") or tmp_path / "artifacts")
    target.mkdir(parents=True, exist_ok=True)
    return target
