"""The knowledge base of resolved tickets, and the in-memory index that follows it.

Every test runs on SQLite and on PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy
from numpy.typing import NDArray

from deskpilot.errors import InputDataError
from deskpilot.store import Database
from deskpilot.store.knowledge import (
    KnowledgeRepository,
    add_entries,
    count_entries,
    delete_entry,
    entries_since,
    get_entry,
)
from deskpilot.store.workflow import accept_ticket
from deskpilot.tasks.knowledge_index import KnowledgeIndex
from deskpilot.tasks.respond import Responder, ResponderPolicy
from deskpilot.types import Ticket


@dataclass(frozen=True)
class Entry:
    source_id: str
    question: str
    answer: str
    label: str | None = None
    origin: str = "import"
    ticket_id: int | None = None
    embedding: bytes = np.ones(4, "<f4").tobytes()
    embedding_model: str = "test"


class WordEmbedder:
    """Set of words, hashed: enough to tell tickets apart. ``name`` can change like a new encoder."""

    def __init__(self, name: str = "words-256") -> None:
        self.name = name
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.texts.extend(texts)
        out = np.zeros((len(texts), 256), np.float32)
        for i, text in enumerate(texts):
            for word in set(re.findall(r"\w+", text.lower())):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] = 1.0
        return np.asarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9), np.float32)


def test_entries_are_added_read_in_id_order_and_kept_per_tenant(db: Database) -> None:
    with db.session() as session:
        ids = add_entries(session, "acme", [Entry("kb:1", "q1", "a1", "billing"), Entry("kb:2", "q2", "a2")])
        add_entries(session, "globex", [Entry("kb:1", "other tenant", "theirs")])
    assert ids == sorted(ids) and len(ids) == 2
    with db.session() as session:
        rows = entries_since(session, "acme")
        assert [(r.source_id, r.answer, r.label, r.origin) for r in rows] == [
            ("kb:1", "a1", "billing", "import"),
            ("kb:2", "a2", None, "import"),
        ]
        assert np.frombuffer(rows[0].embedding, "<f4").tolist() == [1.0] * 4
        assert [r.source_id for r in entries_since(session, "acme", ids[0])] == ["kb:2"]
        assert count_entries(session, "acme") == 2 and count_entries(session, "globex") == 1
        assert entries_since(session, "nobody") == [] and count_entries(session, "nobody") == 0


def test_the_same_source_id_again_replaces_the_answer_under_a_new_id(db: Database) -> None:
    with db.session() as session:
        (first,) = add_entries(session, "acme", [Entry("T-7", "printer jams", "Clean the roller.")])
    with db.session() as session:
        (second,) = add_entries(
            session, "acme", [Entry("T-7", "printer jams", "Replace the roller.", origin="feedback")]
        )
        batch = add_entries(session, "acme", [Entry("T-8", "q", "old"), Entry("T-8", "q", "new")])
    assert second > first and len(batch) == 1
    with db.session() as session:
        edited = get_entry(session, "acme", "T-7")
        assert edited is not None and (edited.answer, edited.origin, edited.id) == (
            "Replace the roller.",
            "feedback",
            second,
        )
        assert [r.answer for r in entries_since(session, "acme", first)] == ["Replace the roller.", "new"]
        assert count_entries(session, "acme") == 2


def test_delete(db: Database) -> None:
    with db.session() as session:
        add_entries(session, "acme", [Entry("kb:1", "q", "a")])
    with db.session() as session:
        assert delete_entry(session, "acme", "kb:1")
        assert not delete_entry(session, "acme", "kb:1")
        assert not delete_entry(session, "nobody", "kb:1")
        assert count_entries(session, "acme") == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Entry("", "q", "a"), "source_id"),
        (Entry("kb:1", "q", " "), "answer"),
        (Entry("kb:1", "q", "a", origin="guess"), "origin"),
        (Entry("kb:1", "q", "a", embedding=b"abc"), "float32"),
    ],
)
def test_bad_entries_are_refused(db: Database, entry: Entry, message: str) -> None:
    with pytest.raises(InputDataError, match=message), db.session() as session:
        add_entries(session, "acme", [entry])


def test_a_ticket_link_must_stay_within_the_tenant(db: Database) -> None:
    with db.session() as session:
        theirs = accept_ticket(session, "globex", Ticket("s", "b"), delivery_id="d-1", actor="t").ticket_id
        ours = accept_ticket(session, "acme", Ticket("s", "b"), delivery_id="d-1", actor="t").ticket_id
    with db.session() as session:
        add_entries(session, "acme", [Entry("kb:1", "q", "a", ticket_id=ours)])
    with pytest.raises(InputDataError, match="no ticket"), db.session() as session:
        add_entries(session, "acme", [Entry("kb:2", "q", "a", ticket_id=theirs)])


def test_the_migration_creates_the_table(db: Database) -> None:
    inspector = sqlalchemy.inspect(db.engine)
    assert "knowledge" in inspector.get_table_names()
    assert {"ix_knowledge_tenant_id_id"} <= {ix["name"] for ix in inspector.get_indexes("knowledge")}


# --- the index over the store --------------------------------------------------------------


def test_remember_is_searchable_at_once_and_an_edited_draft_replaces_it(db: Database) -> None:
    index = KnowledgeIndex(WordEmbedder(), KnowledgeRepository(db), refresh_interval_s=3600)
    responder = Responder(index, None, ResponderPolicy(floor=0.3))
    question = "the scanner on floor 3 shows error E42"
    assert responder.respond("acme", question).mode == "none"
    index.remember("acme", question, "Power-cycle the scanner.", "ticket:5", "it")
    draft = responder.respond("acme", question)
    assert (draft.mode, draft.text, draft.sources) == ("reused", "Power-cycle the scanner.", ("ticket:5",))
    index.remember("acme", question, "Replace the E42 fuse, then power-cycle.", "ticket:5", "it")
    assert responder.respond("acme", question).text == "Replace the E42 fuse, then power-cycle."
    assert index.size("acme") == 1
    with db.session() as session:
        stored = get_entry(session, "acme", "ticket:5")
    assert stored is not None and (stored.origin, stored.label, stored.embedding_model) == (
        "feedback",
        "it",
        "words-256",
    )


def test_another_process_sees_additions_edits_and_deletions(db: Database) -> None:
    repository = KnowledgeRepository(db)
    writer = KnowledgeIndex(WordEmbedder(), repository)
    reader_embedder = WordEmbedder()
    reader = KnowledgeIndex(reader_embedder, repository, refresh_interval_s=0)
    writer.remember("acme", "vpn drops every hour", "Update the VPN client.", "kb:1")
    writer.remember("acme", "printer prints blank pages", "Replace the toner.", "kb:2")
    assert [h.source_id for h in reader.search("acme", "vpn drops", k=1)] == ["kb:1"]
    assert "vpn drops every hour" not in reader_embedder.texts  # stored vectors are used as they are
    writer.remember("acme", "vpn drops every hour", "Use the new VPN profile.", "kb:1")
    assert reader.search("acme", "vpn drops", k=1)[0].answer == "Use the new VPN profile."
    writer.forget("acme", "kb:2")
    assert reader.size("acme") == 1
    assert [h.source_id for h in reader.search("acme", "printer blank pages", k=3)] == ["kb:1"]


def test_vectors_of_another_encoder_are_recomputed(db: Database) -> None:
    repository = KnowledgeRepository(db)
    KnowledgeIndex(WordEmbedder("old-encoder"), repository).remember(
        "acme", "reset my password", "Use the link.", "kb:1"
    )
    fresh = WordEmbedder("new-encoder")
    index = KnowledgeIndex(fresh, repository)
    hits = index.search("acme", "reset my password", k=1)
    assert hits[0].source_id == "kb:1" and hits[0].score == pytest.approx(1.0)
    assert "reset my password" in fresh.texts[:1]
    with db.session() as session:
        stored = get_entry(session, "acme", "kb:1")
    assert stored is not None and stored.embedding_model == "new-encoder"  # written back: not again
    again = WordEmbedder("new-encoder")
    KnowledgeIndex(again, repository).refresh("acme")
    assert again.texts == []
