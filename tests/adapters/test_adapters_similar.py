"""The most similar training tickets: kept at training time, found by the serving engine.

A decision's explanation cites them, so a person can see why it went its way; they must be
the rows the adapter was trained on (``train.jsonl``), in the space its out-of-scope
similarity uses, and an adapter without them must answer [] rather than fail a ticket.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from adapters_support import (
    DEVICE_WORDS,
    INTENT_WORDS,
    Trained,
    copy_adapter,
    make_texts,
    one_thread,
    peft_warning,
    small_recipe,
)
from safetensors.torch import load_file

from deskpilot.adapters import classifier, examples
from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.classifier import TrainResult, train_classifier
from deskpilot.adapters.registry import TRAIN_ROWS, AdapterCard, Registry
from deskpilot.adapters.serving import Engine
from deskpilot.errors import AdapterNotFoundError

pytestmark = peft_warning  # every adapter load builds a PeftModel


def _register(
    registry: Registry, result: TrainResult, rows: tuple[list[str], list[str]] | None, tmp: Path
) -> AdapterCard:
    """Register a copy (the registry moves files; session fixtures stay intact)."""
    files = copy_adapter(result.directory, tmp / f"copy-{len(list(tmp.iterdir()))}")
    return registry.register(files, copy.deepcopy(result.card), rows=rows)


def _train(base: BaseModel, texts: list[str], labels: list[str], tmp: Path, **recipe: object) -> TrainResult:
    with one_thread(), pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        mp.setattr(tempfile, "tempdir", str(tmp))
        return train_classifier(
            texts, labels, base=base, task="intent", tenant="acme", recipe=small_recipe(**recipe), threads=1
        )


def test_training_keeps_unit_fp16_embeddings_of_every_row(trained_intent: Trained) -> None:
    tensors = load_file(str(trained_intent.directory / examples.EXAMPLES_FILE))
    emb, idx = tensors["embeddings"], tensors["indices"]
    n = len(trained_intent.texts)
    assert emb.dtype == torch.float16 and idx.dtype == torch.int64
    assert emb.shape == (n, 32) and idx.tolist() == list(range(n))  # fewer rows than MAX_EXAMPLES
    assert torch.allclose(emb.float().norm(dim=1), torch.ones(n), atol=2e-3)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "peft"])
def test_a_training_text_finds_itself_first(
    registry: Registry, trained_intent: Trained, tmp_path: Path, fast: bool
) -> None:
    texts, labels = trained_intent.texts, trained_intent.labels
    _register(registry, trained_intent.result, (texts, labels), tmp_path)
    engine = Engine(registry, fast=fast, threads=1)
    for i in (0, 7, 61, len(texts) - 1):
        found = engine.similar("acme", "intent", texts[i], k=3)
        assert len(found) == 3
        assert found[0]["text"] == texts[i] and found[0]["label"] == labels[i]
        assert found[0]["score"] == pytest.approx(1.0, abs=2e-3)
        scores = [f["score"] for f in found]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
        assert all(set(f) == {"text", "label", "score"} for f in found)


def test_k_is_respected_and_predict_never_reads_the_examples(
    registry: Registry, trained_intent: Trained, tmp_path: Path
) -> None:
    texts, labels = trained_intent.texts, trained_intent.labels
    _register(registry, trained_intent.result, (texts, labels), tmp_path)
    engine = Engine(registry, threads=1)
    engine.predict("acme", "intent", texts[:4])
    assert not engine._examples._entries  # loaded on the first similar() call only
    assert len(engine.similar("acme", "intent", "my invoice is wrong", k=1)) == 1
    assert len(engine.similar("acme", "intent", "my invoice is wrong", k=5)) == 5
    assert len(engine.similar("acme", "intent", "my invoice is wrong", k=10_000)) == len(texts)
    assert engine.similar("acme", "intent", "my invoice is wrong", k=0) == []
    assert engine.similar("acme", "intent", texts[3], version="v1")[0]["text"] == texts[3]
    long = "password reset " * 40
    assert all(len(f["text"]) <= 300 for f in engine.similar("acme", "intent", long))


def test_explain_answers_every_task_in_one_pass_as_predict_and_similar_do(
    registry: Registry, trained_intent: Trained, trained_device: Trained, tmp_path: Path
) -> None:
    """What a worker routing a ticket asks: one encoder pass for all tasks, same answers."""
    _register(registry, trained_intent.result, (trained_intent.texts, trained_intent.labels), tmp_path)
    device = copy.deepcopy(trained_device.result)
    _register(registry, device, (trained_device.texts, trained_device.labels), tmp_path)
    engine = Engine(registry, threads=1)
    text = trained_intent.heldout[0]
    passes: list[int] = []
    embed = engine._embed
    engine._embed = lambda base, parts: passes.append(len(parts)) or embed(base, parts)  # type: ignore[method-assign]
    answers = engine.explain("acme", ["intent", "device", "missing"], text, k=2)
    assert passes == [2]  # one pass, both adapters
    engine._embed = embed  # type: ignore[method-assign]
    for task in ("intent", "device"):
        answer = answers[task]
        assert not isinstance(answer, Exception)
        prediction, similar = answer
        (alone,) = engine.predict("acme", task, [text])
        assert prediction.label == alone.label and abs(prediction.score - alone.score) <= 1e-5
        assert similar == engine.similar("acme", task, text, k=2) and len(similar) == 2
    assert isinstance(answers["missing"], AdapterNotFoundError)


def test_concurrent_lookups_agree(registry: Registry, trained_intent: Trained, tmp_path: Path) -> None:
    texts, labels = trained_intent.texts, trained_intent.labels
    _register(registry, trained_intent.result, (texts, labels), tmp_path)
    engine = Engine(registry, threads=1)
    queries = texts[:16]
    alone = [engine.similar("acme", "intent", q) for q in queries]
    engine = Engine(registry, threads=1)  # cold: the threads race to load the examples
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda q: engine.similar("acme", "intent", q), queries))
    assert together == alone


def test_adapters_without_examples_or_rows_give_nothing(
    registry: Registry, trained_intent: Trained, tmp_path: Path
) -> None:
    texts, labels = trained_intent.texts, trained_intent.labels
    old = copy_adapter(trained_intent.directory, tmp_path / "old")
    (old / examples.EXAMPLES_FILE).unlink()  # trained before examples were kept
    registry.register(old, copy.deepcopy(trained_intent.card), rows=(texts, labels))  # v1
    _register(registry, trained_intent.result, None, tmp_path)  # v2: no train.jsonl
    v3 = _register(registry, trained_intent.result, (texts, labels), tmp_path)
    engine = Engine(registry, threads=1)
    assert engine.similar("acme", "intent", texts[0], version="v1") == []
    assert engine.similar("acme", "intent", texts[0], version="v2") == []
    assert engine.similar("acme", "intent", texts[0], version="v3")[0]["text"] == texts[0]
    # train.jsonl replaced by other rows: the indices no longer point at what was trained on
    path = registry.path("acme", "intent", v3.version) / TRAIN_ROWS
    path.write_text(json.dumps({"text": "something else", "label": "access"}) + "\n", encoding="utf-8")
    assert engine.similar("acme", "intent", texts[0], version="v3") == []


def test_beyond_max_examples_each_class_keeps_its_share(
    tiny_base: BaseModel, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = make_texts({k: INTENT_WORDS[k] for k in ("access", "billing")}, per_label=30, seed=7)
    rare, rare_labels = make_texts({"laptop": DEVICE_WORDS["laptop"]}, per_label=2, seed=8)
    texts, labels = texts + rare, labels + rare_labels  # 30 + 30 + 2 rows
    monkeypatch.setattr(examples, "MAX_EXAMPLES", 21)
    result = _train(tiny_base, texts, labels, tmp_path, preset="fast")
    tensors = load_file(str(result.directory / examples.EXAMPLES_FILE))
    idx = tensors["indices"].tolist()
    assert tensors["embeddings"].shape == (21, 32) and idx == sorted(set(idx))
    assert Counter(labels[i] for i in idx) == {"access": 10, "billing": 10, "laptop": 1}
    again = _train(tiny_base, texts, labels, tmp_path, preset="fast")
    assert load_file(str(again.directory / examples.EXAMPLES_FILE))["indices"].tolist() == idx  # seeded

    _register(registry, result, (texts, labels), tmp_path)
    engine = Engine(registry, threads=1)
    kept, dropped = idx[0], next(i for i in range(len(texts)) if i not in set(idx))
    assert engine.similar("acme", "intent", texts[kept])[0]["score"] == pytest.approx(1.0, abs=2e-3)
    assert all(f["text"] != texts[dropped] for f in engine.similar("acme", "intent", texts[dropped], k=21))


def test_the_small_data_refit_keeps_embeddings_of_the_refit_model(
    tiny_base: BaseModel, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 rows per class: the class names join training, and the refit trains on every row
    # (four epochs at a high rate here, whatever validation chose: an encoder that moved)
    texts, labels = make_texts(INTENT_WORDS, per_label=20, seed=9)
    monkeypatch.setattr(classifier, "_refit_epochs", lambda *args: 4)
    result = _train(tiny_base, texts, labels, tmp_path, epochs=1, learning_rate=5e-2)
    assert result.card.metrics["refit"] == {"epochs": 4, "rows": len(texts) + 3}
    tensors = load_file(str(result.directory / examples.EXAMPLES_FILE))
    assert tensors["indices"].tolist() == list(range(len(texts)))  # the class-name rows are not kept
    _register(registry, result, (texts, labels), tmp_path)
    engine = Engine(registry, threads=1)
    assert len(set(texts)) == len(texts)
    for i in range(len(texts)):  # (this encoder has moved so far that neighbours may tie)
        found = engine.similar("acme", "intent", texts[i], k=len(texts))
        itself = next(f for f in found if f["text"] == texts[i])
        assert itself["score"] == pytest.approx(1.0, abs=2e-3) and itself["score"] == found[0]["score"]


def test_sample_rows_is_proportional_seeded_and_keeps_rare_classes() -> None:
    labels = ["a"] * 700 + ["b"] * 290 + ["c"] * 10
    rows = examples.sample_rows(labels, seed=3, limit=100)
    assert len(rows) == 100 and rows == sorted(set(rows))
    assert Counter(labels[i] for i in rows) == {"a": 70, "b": 29, "c": 1}
    assert examples.sample_rows(labels, seed=3, limit=100) == rows
    assert examples.sample_rows(labels, seed=4, limit=100) != rows
    assert examples.sample_rows(labels[:50], limit=100) == list(range(50))
    many = [str(i) for i in range(10)] * 2
    assert len(set(many[i] for i in examples.sample_rows(many, limit=5))) == 5  # more classes than room
