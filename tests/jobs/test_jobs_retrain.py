"""Feedback -> retrain -> gate -> promotion, on a tiny random BERT (offline, seconds).

The champion (v1) is trained once per session on 3 labels x 40 synthetic tickets and copied
into each test's DESKPILOT_HOME. Corrections about printers (a label v1 does not know) make
a challenger that must be promoted and then served; a challenger trained on shuffled labels
must never be.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapters_support import DEVICE_WORDS, INTENT_WORDS, build_tiny_bert, make_texts, one_thread, small_recipe

from deskpilot.adapters.catalog import resolve
from deskpilot.adapters.classifier import train_classifier
from deskpilot.adapters.registry import HOLDOUT, TRAIN_ROWS, Registry
from deskpilot.adapters.serving import Engine
from deskpilot.config import Settings
from deskpilot.jobs import retrain as retrain_module
from deskpilot.jobs.context import WorkerContext
from deskpilot.jobs.retrain import (
    Correction,
    RetrainError,
    assemble,
    feedback_part,
    gate,
    retrain,
    scores,
    select_holdout,
)
from deskpilot.jobs.runner import run_one
from deskpilot.jobs.triggers import enqueue_retrain
from deskpilot.store import (
    Database,
    get_tenant,
    list_adapter_records,
    queue,
    set_champion,
    upsert_adapter,
    workflow,
)

TENANT, TASK = "acme", "intent"
PRINTER = {"printer": DEVICE_WORDS["printer"]}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def champion_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding intent v1 (probe + 1 LoRA epoch) with its train.jsonl."""
    root = tmp_path_factory.mktemp("retrain-template")
    base = resolve(str(build_tiny_bert(root / "tiny-bert")))
    texts, labels = make_texts(INTENT_WORDS, per_label=40, seed=1)
    with one_thread(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        result = train_classifier(
            texts, labels, base=base, task=TASK, tenant=TENANT, recipe=small_recipe(epochs=1), threads=1
        )
    Registry(root / "adapters").register(result.directory, result.card, rows=(texts, labels))
    return root / "adapters"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, champion_template: Path) -> Settings:
    monkeypatch.chdir(tmp_path)  # no deskpilot.toml from the working directory
    for name in [n for n in os.environ if n.startswith("DESKPILOT_")]:
        monkeypatch.delenv(name)
    settings = Settings(home=tmp_path / "home", env="test", threads=1, job_lease_s=60)
    shutil.copytree(champion_template, settings.adapters_dir)
    return settings


@pytest.fixture
def database(home: Settings) -> Iterator[Database]:
    db = Database(home.db_url)
    db.migrate()
    card = Registry(home.adapters_dir).card(TENANT, TASK)
    with db.session() as session:
        upsert_adapter(
            session,
            TENANT,
            TASK,
            card.version,
            kind="classifier",
            base_model=card.base_model,
            metrics={},
            status="candidate",
        )
        set_champion(session, TENANT, TASK, card.version)
    yield db
    db.dispose()


def add_feedback(db: Database, texts: list[str], labels: list[str], author: str = "ana") -> list[int]:
    with db.session() as session:
        return [
            workflow.record_feedback(session, TENANT, task=TASK, label=y, author=author, text=t).id
            for t, y in zip(texts, labels, strict=True)
        ]


def printer_feedback(db: Database, per_label: int = 30, seed: int = 7) -> list[int]:
    return add_feedback(db, *make_texts(PRINTER, per_label, seed=seed))


def shuffled(texts: list[str], labels: list[str]) -> list[str]:
    out = list(labels)
    random.Random(0).shuffle(out)
    return out


def audit_kinds(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.session() as session:
        owner = get_tenant(session, TENANT)
        assert owner is not None
        return [
            (e.kind, e.actor, dict(e.data))
            for e in workflow.audit_log(session, owner.id)
            if e.kind != "feedback"
        ]


def statuses(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {r.version: r.status for r in list_adapter_records(session, TENANT, TASK)}


# --- pure parts ----------------------------------------------------------------------------


def test_holdout_selection_is_a_stable_bucket_with_every_class() -> None:
    rng = random.Random(3)
    texts = [f"ticket {i} about {rng.random():.6f}" for i in range(1000)]
    labels = [f"class{i % 4}" for i in range(1000)]
    texts += ["the only rare one", "pair one", "pair two"]
    labels += ["rare", "pair", "pair"]
    held_texts, held_labels = select_holdout(texts, labels)
    assert 0.12 <= len(held_texts) / len(texts) <= 0.18
    counts = Counter(held_labels)
    assert counts["pair"] == 1 and "rare" not in counts  # one of two; never a class's only row
    assert all(counts[f"class{k}"] > 0 for k in range(4))
    order = list(range(len(texts)))
    random.Random(1).shuffle(order)
    again = select_holdout([texts[i] for i in order], [labels[i] for i in order])
    assert again == (held_texts, held_labels)  # a function of the texts, not of their order
    capped_texts, capped_labels = select_holdout(texts, labels, max_rows=20)
    assert len(capped_texts) == 20 and set(capped_labels) == {"class0", "class1", "class2", "class3", "pair"}
    assert set(capped_texts) <= set(held_texts)


def test_feedback_split_is_by_id_and_about_a_fifth() -> None:
    parts = [feedback_part(i, TENANT, TASK) for i in range(1, 2001)]
    assert 0.17 <= parts.count("eval") / len(parts) <= 0.23
    assert parts == [feedback_part(i, TENANT, TASK) for i in range(1, 2001)]


def test_assemble_applies_corrections_and_keeps_the_holdout_out_of_training() -> None:
    ids = range(1, 200)
    train_id = next(i for i in ids if feedback_part(i, TENANT, TASK) == "train")
    train_id2 = next(i for i in ids if i > train_id and feedback_part(i, TENANT, TASK) == "train")
    eval_id = next(i for i in ids if feedback_part(i, TENANT, TASK) == "eval")
    original = (["a1", "a2", "b1", "b2", "h1"], ["a", "a", "b", "b", "a"])
    holdout = (["h1", "h2"], ["a", "b"])
    feedback = [
        Correction(train_id, "a2", "b"),  # relabels an original row
        Correction(train_id2, "new1", "c"),  # a new row with a new label
        Correction(eval_id, "new2", "c"),  # judged on, never trained on
        Correction(max(train_id2, eval_id) + 1, "h2", "c"),  # corrects a holdout row's label
    ]
    data = assemble(original, holdout, feedback, tenant=TENANT, task=TASK)
    assert list(zip(data.train_texts, data.train_labels, strict=True)) == [
        ("a1", "a"),
        ("a2", "b"),
        ("b1", "b"),
        ("b2", "b"),
        ("new1", "c"),
    ]
    assert list(zip(data.eval_texts, data.eval_labels, strict=True)) == [
        ("h1", "a"),
        ("h2", "c"),
        ("new2", "c"),
    ]
    assert data.counts["labels_corrected"] == 1 and data.counts["holdout_corrected"] == 1


def test_scores_and_gate_margins() -> None:
    s = scores(["a", "a", "b", "c"], ["a", "b", "b", "a"], [False, False, True, False])
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert (s["accuracy"], s["coverage"], s["accuracy_on_covered"]) == (0.5, 0.75, pytest.approx(1 / 3))
    assert scores(["a"], ["a"], [True])["accuracy_on_covered"] is None

    champion = {"macro_f1": 0.80, "accuracy_on_covered": 0.90}

    def verdict(f1: float, cov: float | None, margin_f1: float = 0.0, margin_cov: float = 0.0) -> bool:
        challenger = {"macro_f1": f1, "accuracy_on_covered": cov}
        return gate(champion, challenger, margin_f1=margin_f1, margin_covered_accuracy=margin_cov)[0]

    assert verdict(0.80, 0.90)  # equal is not worse
    assert not verdict(0.79, 0.95)
    assert verdict(0.79, 0.95, margin_f1=0.02)
    assert not verdict(0.77, 0.95, margin_f1=0.02)
    assert not verdict(0.85, 0.89)
    assert verdict(0.85, 0.89, margin_cov=0.01)
    assert not verdict(0.85, 0.88, margin_cov=0.01)
    assert not verdict(0.95, None)  # abstaining on every row: covered accuracy counts as 0
    assert verdict(0.95, None, margin_cov=0.9)
    ok, why = gate(
        champion, {"macro_f1": 0.5, "accuracy_on_covered": 0.5}, margin_f1=0.1, margin_covered_accuracy=0
    )
    assert not ok and "macro-F1 0.5000 < champion 0.8000 - margin 0.1000" in why
    assert "accuracy on covered 0.5000 < champion 0.9000 - margin 0.0000" in why
    neither = {"macro_f1": 0.5, "accuracy_on_covered": None}
    assert gate(neither, neither, margin_f1=0, margin_covered_accuracy=0)[0]


# --- end to end ----------------------------------------------------------------------------


def test_corrections_promote_a_challenger_that_serves_the_next_ticket(
    home: Settings, database: Database
) -> None:
    engine = Engine(Registry(home.adapters_dir), threads=1)
    probe_texts, _ = make_texts(PRINTER, 20, seed=99)
    before = engine.predict(TENANT, TASK, probe_texts)
    assert {p.adapter_version for p in before} == {"v1"} and not any(p.label == "printer" for p in before)
    ids = printer_feedback(database)

    outcome = retrain(home, database, TENANT, TASK)

    assert outcome.promoted, outcome.reason
    assert (outcome.challenger, outcome.champion, outcome.previous_champion) == ("v2", "v2", "v1")
    assert outcome.feedback_upto == max(ids)
    champion, challenger = outcome.metrics["champion"], outcome.metrics["challenger"]
    assert champion["n"] == challenger["n"] == outcome.data["eval_rows"]
    assert outcome.data["eval_rows"] == outcome.data["holdout_rows"] + outcome.data["feedback_eval"]
    assert outcome.data["feedback_eval"] >= 1 and outcome.data["feedback_new_rows"] >= 10
    assert challenger["macro_f1"] > champion["macro_f1"]  # v1 cannot name the new label
    registry = Registry(home.adapters_dir)
    assert registry.champion_version(TENANT, TASK) == "v2"
    assert "printer" in registry.card(TENANT, TASK, "v2").labels
    after = engine.predict(TENANT, TASK, probe_texts, abstain=False)  # the same engine, next request
    assert {p.adapter_version for p in after} == {"v2"}
    hits = sum(p.label == "printer" for p in after)
    assert hits >= 12, [p.label for p in after]  # v1 got none of them right
    assert statuses(database) == {"v1": "retired", "v2": "champion"}
    ((kind, actor, data),) = audit_kinds(database)
    assert (kind, actor, data["version"], data["previous"]) == (
        "adapter.promoted",
        "deskpilot-retrain",
        "v2",
        "v1",
    )
    assert data["metrics"]["challenger"]["macro_f1"] == pytest.approx(challenger["macro_f1"])
    assert data["metrics"]["champion"]["macro_f1"] == pytest.approx(champion["macro_f1"])


def test_a_challenger_on_shuffled_labels_is_never_promoted(home: Settings, database: Database) -> None:
    printer_feedback(database)
    engine = Engine(Registry(home.adapters_dir), threads=1)

    outcome = retrain(home, database, TENANT, TASK, label_transform=shuffled)

    assert not outcome.promoted
    assert (outcome.challenger, outcome.champion) == ("v2", "v1")
    # v1 trained on the holdout rows: the gate judges against its recipe trained without them
    assert outcome.metrics["judged_against"] == "reference"
    champion, challenger = outcome.metrics["reference"], outcome.metrics["challenger"]
    assert challenger["macro_f1"] < champion["macro_f1"] - 0.1
    assert outcome.reason.startswith("challenger is worse: macro-F1 ")
    assert (
        f"{challenger['macro_f1']:.4f} < reference (the champion's recipe without the holdout) "
        in outcome.reason
    )
    assert f" {champion['macro_f1']:.4f} - margin" in outcome.reason
    registry = Registry(home.adapters_dir)
    assert registry.champion_version(TENANT, TASK) == "v1"
    assert [c.version for c in registry.versions(TENANT, TASK)] == ["v1", "v2"]  # kept, not served
    assert registry.card(TENANT, TASK, "v2").metrics["gate"]["promoted"] is False
    texts, _ = make_texts(INTENT_WORDS, 2, seed=5)
    assert {p.adapter_version for p in engine.predict(TENANT, TASK, texts)} == {"v1"}
    assert statuses(database) == {"v1": "champion", "v2": "candidate"}
    ((kind, _actor, data),) = audit_kinds(database)
    assert kind == "retrain.rejected" and data["reason"] == outcome.reason and data["version"] == "v2"


def test_the_margins_come_from_settings(home: Settings, database: Database) -> None:
    lenient = home.model_copy(update={"promotion_margin_f1": 1.0, "promotion_margin_covered_accuracy": 1.0})
    outcome = retrain(lenient, database, TENANT, TASK, label_transform=shuffled)
    assert outcome.promoted  # a margin of 1.0 accepts anything: the setting is what decides
    assert outcome.metrics["margins"] == {"f1": 1.0, "covered_accuracy": 1.0}
    assert outcome.metrics["challenger"]["macro_f1"] < outcome.metrics["champion"]["macro_f1"]


def test_the_holdout_is_made_once_and_never_trained_on(home: Settings, database: Database) -> None:
    registry = Registry(home.adapters_dir)
    original = registry.rows(TENANT, TASK, "v1")
    assert original is not None
    printer_feedback(database)
    first = retrain(home, database, TENANT, TASK)
    holdout_file = registry.task_dir(TENANT, TASK) / HOLDOUT
    frozen = holdout_file.read_bytes()
    assert registry.holdout(TENANT, TASK) == select_holdout(*original)
    assert first.extra["holdout_created"] and first.champion_trained_on_holdout == first.data["holdout_rows"]

    printer_feedback(database, per_label=10, seed=8)
    second = retrain(home, database, TENANT, TASK)
    assert holdout_file.read_bytes() == frozen
    assert not second.extra["holdout_created"] and second.data["holdout_rows"] == first.data["holdout_rows"]
    held = set(select_holdout(*original)[0])
    for version in (first.challenger, second.challenger):
        rows = registry.rows(TENANT, TASK, version)
        assert rows is not None and not held & set(rows[0])
    assert first.promoted, first.reason
    assert second.previous_champion == first.challenger
    assert second.champion_trained_on_holdout == 0  # a retrained champion never saw the holdout


def test_without_train_rows_retraining_says_why(home: Settings, database: Database) -> None:
    (Registry(home.adapters_dir).path(TENANT, TASK, "v1") / TRAIN_ROWS).unlink()
    with pytest.raises(RetrainError, match=r"v1 did not keep its training rows \(train\.jsonl\)"):
        retrain(home, database, TENANT, TASK)
    with database.session() as session:
        owner = get_tenant(session, TENANT)
        assert owner is not None
        job_id = enqueue_retrain(session, owner.id, TASK, home, reason="test")
    run_one(WorkerContext.build(home, database), "test-worker", job_id=job_id)
    with database.session() as session:
        job = queue.get_job(session, job_id)
        assert job is not None and job.state == "dead"  # retrying cannot help
        error = job.last_error or ""
    assert "train.jsonl" in error and "deskpilot train classifier --task intent" in error


def test_the_job_shows_progress_and_stores_the_outcome(
    home: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = printer_feedback(database)
    written: list[dict[str, Any]] = []
    real = queue.set_progress

    def spy(session: Any, job_id: int, owner: str, progress: dict[str, Any]) -> None:
        written.append(dict(progress))
        real(session, job_id, owner, progress)

    monkeypatch.setattr(retrain_module.queue, "set_progress", spy)
    with database.session() as session:
        owner = get_tenant(session, TENANT)
        assert owner is not None
        job_id = enqueue_retrain(session, owner.id, TASK, home, reason="corrections")

    assert run_one(WorkerContext.build(home, database), "test-worker", job_id=job_id) == job_id

    with database.session() as session:
        job = queue.get_job(session, job_id)
        assert job is not None and job.state == "done", job.last_error if job else None
        result, progress = dict(job.result), dict(job.progress)
    assert result["promoted"] is True and result["challenger"] == "v2" and result["job_id"] == job_id
    assert result["feedback_upto"] == max(ids)
    assert progress == {"phase": "done", "percent": 100.0, "promoted": True, "challenger": "v2"}
    phases = [p["phase"] for p in written]
    assert phases[0] == "preparing" and phases[-1] == "done"
    assert phases.index("training") < phases.index("evaluating") < phases.index("done")
    percents = [p["percent"] for p in written]
    assert percents == sorted(percents) and 0 <= percents[0] < percents[-1] == 100.0
    tuning = [p for p in written if p.get("stage") == "fine-tuning"]
    assert tuning and all(0 < p["step"] <= p["steps"] for p in tuning)
    evaluated = {p["model"] for p in written if p["phase"] == "evaluating"}
    assert evaluated == {"champion", "challenger", "reference"}  # v1 trained on the holdout rows
    ((kind, _actor, data),) = audit_kinds(database)
    assert kind == "adapter.promoted" and data["job_id"] == job_id
