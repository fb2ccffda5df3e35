"""`deskpilot retrain` and the audit trail of `deskpilot adapters promote|rollback`.

Starts from the session's trained home (intent v1, trained by `train classifier`, which keeps
train.jsonl); corrections teach a label v1 does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapters_support import DEVICE_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import Invoke, assert_fraction, assert_ok, error_line, last_json

from deskpilot.adapters.classifier import data_hash
from deskpilot.adapters.registry import Registry
from deskpilot.config import get_settings
from deskpilot.store import Database, get_tenant, list_adapter_records, queue, workflow

pytestmark = pytest.mark.filterwarnings(PEFT_GC_WARNING)

TENANT, TASK = "default", "intent"


@pytest.fixture
def database(home: Path) -> Iterator[Database]:
    get_settings.cache_clear()
    db = Database(get_settings().db_url)
    db.migrate()
    yield db
    db.dispose()


def correct_printers(db: Database, n: int = 30) -> None:
    texts, _ = make_texts({"printer": DEVICE_WORDS["printer"]}, n, seed=7)
    with db.session() as session:
        for text in texts:
            workflow.record_feedback(session, TENANT, task=TASK, label="printer", author="ana", text=text)


def audit(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.session() as session:
        owner = get_tenant(session, TENANT)
        assert owner is not None
        entries = workflow.audit_log(session, owner.id)
        return [(e.kind, e.actor, dict(e.data)) for e in entries if e.kind != "feedback"]


def champion_in_db(db: Database) -> str | None:
    with db.session() as session:
        rows = list_adapter_records(session, TENANT, TASK)
        return next((r.version for r in rows if r.status == "champion"), None)


def test_train_keeps_its_rows(trained_home: Path, trained_template: Any) -> None:
    registry = Registry(trained_home / "adapters")
    rows = registry.rows(TENANT, TASK, "v1")
    assert rows is not None and len(rows[0]) == 60
    assert data_hash(*rows) == registry.card(TENANT, TASK, "v1").data_hash  # exactly what it trained on


def test_retrain_promotes_serves_and_audits(trained_home: Path, database: Database, cli: Invoke) -> None:
    correct_printers(database)

    result = cli("retrain", "--task", TASK, "--json")

    assert_ok(result)
    assert len(result.stdout.splitlines()) == 1, result.stdout  # progress and verdict go to stderr
    summary = last_json(result.stdout)
    assert summary["promoted"] is True, summary["reason"]
    assert (summary["task"], summary["champion"], summary["challenger"]) == (TASK, "v2", "v2")
    assert summary["previous_champion"] == "v1" and summary["reason"].startswith("not worse")
    champion, challenger = summary["metrics"]["champion"], summary["metrics"]["challenger"]
    for side in (champion, challenger):
        for key in ("macro_f1", "accuracy", "coverage"):
            assert_fraction(side[key], key)
    assert challenger["macro_f1"] >= champion["macro_f1"] and champion["n"] == challenger["n"] > 0
    assert "promoted intent v2 (was v1)" in result.stderr
    with database.session() as session:
        job = queue.get_job(session, summary["job_id"])
        assert job is not None and job.state == "done" and job.progress["percent"] == 100.0
        assert job.payload["requested_by"] == "cli" and job.result["challenger"] == "v2"

    printer = "Printer toner jam please help with the tray"
    predicted = cli("predict", "--task", TASK, "--json", printer)
    assert_ok(predicted)
    assert last_json(predicted.stdout)["results"][0]["adapter_version"] == "v2"
    assert champion_in_db(database) == "v2"

    assert_ok(cli("adapters", "rollback", "--task", TASK))
    assert champion_in_db(database) == "v1"
    assert_ok(cli("adapters", "promote", "--task", TASK, "--version", "v2"))
    assert champion_in_db(database) == "v2"
    entries = [(kind, actor, data["version"], data["previous"]) for kind, actor, data in audit(database)]
    assert entries == [
        ("adapter.promoted", "cli", "v2", "v1"),  # the retrain, run from the CLI
        ("adapter.rolled_back", "cli", "v1", "v2"),
        ("adapter.promoted", "cli", "v2", "v1"),
    ]


def test_retrain_prints_the_verdict_and_a_table(trained_home: Path, database: Database, cli: Invoke) -> None:
    correct_printers(database)
    result = cli("retrain", "--task", TASK)
    assert_ok(result)
    assert "champion v1" in result.stdout and "challenger v2" in result.stdout
    assert "macro_f1" in result.stdout and "accuracy_on_covered" in result.stdout
    assert "promoted intent v2 (was v1)" in result.stderr and "not worse: macro-F1" in result.stderr
    assert "7 holdout + 3 corrections" in result.stdout  # the same rows for both models


def test_retrain_without_train_rows_is_one_error_line(
    trained_home: Path, database: Database, cli: Invoke
) -> None:
    (trained_home / "adapters" / TENANT / TASK / "v1" / "train.jsonl").unlink()
    line = error_line(cli("retrain", "--task", TASK, "--json"))
    assert "did not keep its training rows (train.jsonl)" in line
    assert "deskpilot train classifier --task intent" in line
    with database.session() as session:
        assert queue.list_jobs(session, kind="retrain") == []  # nothing queued for a mistake


def test_retrain_without_a_champion_is_one_error_line(cli: Invoke) -> None:
    line = error_line(cli("retrain", "--task", "queue"))
    assert "task 'queue' has no champion to retrain" in line
