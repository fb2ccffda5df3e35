"""``POST /v1/respond`` and ``POST /v1/knowledge``: drafts over the tenant's knowledge base.

The responder service is the real one; only its models are swapped: a bag-of-words embedder
for the knowledge index and, through ``DESKPILOT_RESPONDER_CHAT_MODEL``, a LangChain fake chat
model (the same setting a user with a hosted model would use).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, Keys, auth
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from support.respond_fakes import HashEmbedder

from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.jobs.responders import ResponderService
from deskpilot.store import Database
from deskpilot.store.knowledge import KnowledgeRepository
from deskpilot.store.workflow import accept_ticket
from deskpilot.tasks.respond import KnowledgeIndex
from deskpilot.types import Ticket

REPLY = "Sorry for the double charge. We refunded the duplicate payment; it shows within 5 days."


def chat_model() -> FakeListChatModel:
    """What DESKPILOT_RESPONDER_CHAT_MODEL names in these tests (module:factory)."""
    return FakeListChatModel(responses=[REPLY])


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("DESKPILOT_DATABASE_URL", raising=False)
    return Settings(
        env="test",
        home=tmp_path,
        workers=0,
        max_text_chars=500,
        responder_chat_model=f"{__name__}:chat_model",
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    app = create_app(settings, predictor=FakePredictor(), database=database)
    service = ResponderService(settings, database)
    service._index = KnowledgeIndex(HashEmbedder(), KnowledgeRepository(database), refresh_interval_s=0)
    app.state.responders = service
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _teach(client: TestClient, key: str) -> None:
    answers = {
        "I was charged twice for my monthly subscription": REPLY,
        "How do I reset my password, the email never arrives": "Use the reset link; check your spam folder.",
    }
    for i, (question, answer) in enumerate(answers.items()):
        r = client.post(
            "/v1/knowledge",
            json={"question": question, "answer": answer, "source_id": f"kb:{i}", "origin": "import"},
            headers=auth(key),
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"source_id": f"kb:{i}", "entries": i + 1}


def test_a_draft_names_its_sources_and_confidence(client: TestClient, keys: Keys) -> None:
    _teach(client, keys.acme)
    r = client.post(
        "/v1/respond",
        json={"subject": "Double charge", "body": "charged twice on my monthly subscription, refund please"},
        headers=auth(keys.acme),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "generated" and body["draft"] == REPLY
    assert body["sources"][0] == "kb:0" and 0 < body["confidence"] <= 1


def test_nothing_similar_means_no_draft_and_a_reason(client: TestClient, keys: Keys) -> None:
    _teach(client, keys.acme)
    r = client.post(
        "/v1/respond", json={"body": "the coffee machine on floor 3 leaks"}, headers=auth(keys.acme)
    )
    assert r.status_code == 200
    body = r.json()
    assert body["draft"] is None and body["mode"] == "none" and "similar" in body["reason"]


def test_tenants_only_draft_from_their_own_knowledge(client: TestClient, keys: Keys) -> None:
    _teach(client, keys.acme)
    r = client.post(
        "/v1/respond", json={"body": "charged twice on my monthly subscription"}, headers=auth(keys.globex)
    )
    assert r.status_code == 200 and r.json()["draft"] is None


def test_a_stored_ticket_is_answered_by_id_and_an_edit_joins_the_knowledge(
    client: TestClient, keys: Keys, database: Database
) -> None:
    _teach(client, keys.acme)
    with database.session() as session:
        accepted = accept_ticket(
            session,
            "acme",
            Ticket("Refund", "charged twice for the subscription"),
            delivery_id="d1",
            actor="t",
        )
    r = client.post("/v1/respond", json={"ticket_id": accepted.ticket_id}, headers=auth(keys.acme))
    assert r.status_code == 200 and r.json()["ticket_id"] == accepted.ticket_id
    edited = {"ticket_id": accepted.ticket_id, "answer": "Refunded; you will see it in 3 days."}
    r = client.post("/v1/knowledge", json=edited, headers=auth(keys.acme_write))
    assert r.status_code == 201 and r.json() == {"source_id": f"ticket:{accepted.ticket_id}", "entries": 3}
    r = client.post("/v1/respond", json={"ticket_id": 10_000}, headers=auth(keys.acme))
    assert r.status_code == 404


def test_streaming_sends_tokens_then_the_draft(client: TestClient, keys: Keys) -> None:
    _teach(client, keys.acme)
    with client.stream(
        "POST",
        "/v1/respond",
        json={"body": "charged twice on my monthly subscription, refund please", "stream": True},
        headers=auth(keys.acme),
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.read().decode().split("\n\n") if block]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names[-1] == "draft" and set(names[:-1]) == {"token"} and len(names) > 2
    tokens = "".join(json.loads(e.split("\n")[1].removeprefix("data: "))["text"] for e in events[:-1])
    final = json.loads(events[-1].split("\n")[1].removeprefix("data: "))
    assert tokens == REPLY and final["draft"] == REPLY and final["sources"][0] == "kb:0"


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({}, 422, "ticket_id or the ticket"),
        ({"ticket_id": 1, "body": "both"}, 422, "not both"),
        ({"body": "x" * 600}, 422, "at most 500"),
        ({"body": "hi", "stream": "yes"}, 422, "boolean"),
    ],
)
def test_bad_requests_say_what_to_fix(
    client: TestClient, keys: Keys, payload: dict[str, object], status: int, words: str
) -> None:
    r = client.post("/v1/respond", json=payload, headers=auth(keys.acme))
    assert r.status_code == status and words in r.text, r.text


def test_knowledge_needs_the_write_scope_and_an_id(client: TestClient, keys: Keys) -> None:
    entry = {"question": "q", "answer": "a"}
    assert client.post("/v1/knowledge", json=entry, headers=auth(keys.acme_read)).status_code == 403
    r = client.post("/v1/knowledge", json=entry, headers=auth(keys.acme))
    assert r.status_code == 422 and "source_id" in r.text
    assert client.post("/v1/respond", json={"body": "hi"}).status_code == 401
