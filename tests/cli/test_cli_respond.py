"""``deskpilot train responder`` / ``evaluate responder`` on a tiny random causal LM.

The point is the plumbing: resolved tickets in, a registered responder adapter with its tuned
reuse policy, the tickets in the tenant's knowledge base, drafts scored on held-out tickets.
The real packaged generator is exercised in tests/adapters (integration).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from adapters_support import build_tiny_lm
from cli_support import Invoke, assert_ok, last_json, write_csv

from deskpilot.adapters.registry import Registry
from deskpilot.config import Settings
from deskpilot.store import Database
from deskpilot.store.knowledge import count_entries

TOPICS = {
    "refund": ("I was charged twice for order {n}, please refund", "We refunded the duplicate charge."),
    "password": ("I cannot reset my password, attempt {n}", "Use the reset link and check your spam folder."),
    "vpn": ("The VPN drops every {n} minutes", "Import the new VPN profile and restart the client."),
    "invoice": ("Invoice {n} shows the wrong address", "We corrected the address and sent a new invoice."),
}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("cli-tiny-lm"))


def _pairs(path: Path, per_topic: int, start: int = 0) -> Path:
    rows = [
        (question.format(n=start + i), answer, topic)
        for topic, (question, answer) in TOPICS.items()
        for i in range(per_topic)
    ]
    return write_csv(path, ["text", "answer", "topic"], rows)


def test_train_registers_a_responder_and_fills_the_knowledge_base(
    cli: Invoke, home: Path, tmp_path: Path, tiny_lm: Path
) -> None:
    data = _pairs(tmp_path / "resolved.csv", per_topic=6)
    held = _pairs(tmp_path / "held.csv", per_topic=1, start=100)
    result = cli(
        "train", "responder", "--task", "reply", "--data", data, "--label-column", "topic",
        "--base", tiny_lm, "--max-minutes", "1", "--eval", held, "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = last_json(result.stdout)
    assert summary["task"] == "reply" and summary["version"] == "v1" and summary["champion"] is True
    assert summary["knowledge_entries"] == 24 and summary["validation"]["rows"] == 2
    policy = summary["policy"]
    assert set(policy) >= {"floor", "reuse_similarity", "min_confidence"}
    assert summary["metrics"]["n"] == 4 and 0 <= summary["metrics"]["rouge_l"] <= 1
    card = Registry(home / "adapters").card("default", "reply")
    assert card.kind == "responder" and card.extra["responder_policy"] == policy
    database = Database(Settings(home=home).db_url)
    with database.session() as session:
        assert count_entries(session, "default") == 24
    database.dispose()

    again = cli(
        "evaluate", "responder", "--task", "reply", "--data", held, "--label-column", "topic", "--json"
    )
    assert_ok(again)
    report = last_json(again.stdout)
    assert report["n"] == 4 and sum(report["modes"].values()) == 4


def test_too_few_pairs_or_a_missing_answer_column_is_one_clear_error(
    cli: Invoke, tmp_path: Path, tiny_lm: Path
) -> None:
    few = _pairs(tmp_path / "few.csv", per_topic=1)
    result = cli("train", "responder", "--data", few, "--base", tiny_lm)
    assert result.exit_code == 2 and "at least 10 resolved tickets" in result.stderr
    result = cli("train", "responder", "--data", few, "--answer-column", "reply", "--base", tiny_lm)
    assert result.exit_code == 2 and "no column 'reply'" in result.stderr
