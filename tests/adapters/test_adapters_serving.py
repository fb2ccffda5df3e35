"""Serving: what the Engine answers equals what the training-time model said, across reloads,
several adapters on one base, LRU eviction, hot promotion, tenants and threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from adapters_support import Trained, peft_warning, read_head

from deskpilot.adapters.encoding import tokenize
from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.adapters.serving import Engine, Request
from deskpilot.errors import AdapterNotFoundError, InputDataError
from deskpilot.tasks.classify import Predictor, classify
from deskpilot.types import Prediction

pytestmark = peft_warning  # every adapter load builds a PeftModel

Register = Callable[..., AdapterCard]
MakeEngine = Callable[..., Engine]
TOL = 1e-6


@pytest.fixture(params=["fast", "peft"])
def make_engine(request: pytest.FixtureRequest) -> MakeEngine:
    """Engine(registry, ...) on either backend: the packed BERT path, or PEFT for everything.

    Both must answer what the training-time model (PEFT on the HF module tree) said.
    """

    def make(registry: Registry, **kwargs: Any) -> Engine:
        return Engine(registry, fast=request.param == "fast", **kwargs)

    return make


def assert_matches(preds: list[Prediction], trained: Trained, *, version: str | None = None) -> None:
    """Labels identical, scores within 1e-6 of the training-time model's calibrated probabilities."""
    labels = trained.card.labels
    assert len(preds) == len(trained.expected)
    for pred, row in zip(preds, trained.expected, strict=True):
        scores, idx = row.topk(min(3, len(labels)))
        assert pred.label == labels[int(idx[0])]
        assert abs(pred.score - float(scores[0])) <= TOL
        assert [a.label for a in pred.alternatives] == [labels[int(i)] for i in idx]
        for alt, score in zip(pred.alternatives, scores, strict=True):
            assert abs(alt.score - float(score)) <= TOL
        if version is not None:
            assert pred.adapter_version == version


def test_engine_reproduces_training_time_predictions(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    card = register(trained_intent)
    assert card.version == "v1"
    engine = make_engine(registry)
    preds = engine.predict("acme", "intent", trained_intent.heldout, abstain=False)
    assert_matches(preds, trained_intent, version="v1")
    assert {p.task for p in preds} == {"intent"}
    labels, probs = engine.probabilities("acme", "intent", trained_intent.heldout)
    assert labels == trained_intent.card.labels
    torch.testing.assert_close(probs, trained_intent.expected, atol=TOL, rtol=0)

    # a brand new engine reads everything back from disk
    fresh = make_engine(registry)
    assert fresh.predict("acme", "intent", trained_intent.heldout, abstain=False) == preds


def test_single_text_matches_its_batched_answer(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent)
    engine = make_engine(registry)
    one = engine.predict("acme", "intent", trained_intent.heldout[:1], abstain=False)
    assert_matches(one, _first(trained_intent))


def _first(trained: Trained) -> Trained:
    return Trained(
        trained.result,
        trained.texts,
        trained.labels,
        trained.heldout[:1],
        trained.heldout_labels[:1],
        trained.expected[:1],
    )


def test_abstain_false_never_abstains(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent, thresholds={**trained_intent.card.thresholds, "default": 1.0})
    preds = make_engine(registry).predict("acme", "intent", trained_intent.heldout, abstain=False)
    assert not any(p.abstained for p in preds)
    assert all(p.reason is None for p in preds)
    assert_matches(preds, trained_intent)


def test_threshold_of_one_abstains_on_everything_with_a_reason(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent, thresholds={**trained_intent.card.thresholds, "default": 1.0})
    preds = make_engine(registry).predict("acme", "intent", trained_intent.heldout)
    assert all(p.abstained for p in preds)
    for p in preds:
        assert p.threshold == 1.0
        assert p.reason == f"confidence {p.score:.2f} below threshold 1.00"
    assert_matches(preds, trained_intent)  # the best guess is still reported


def test_out_of_scope_similarity_threshold_abstains_with_its_own_reason(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    head = read_head(trained_intent.directory)
    assert head["centroids"].shape == head["weight"].shape  # one unit vector per class
    torch.testing.assert_close(head["centroids"].norm(dim=-1), torch.ones(len(trained_intent.card.labels)))
    sim = trained_intent.card.thresholds["similarity"]
    assert -1.0 <= sim <= 1.0 and trained_intent.card.thresholds["oos_quantile"] == 0.01
    register(
        trained_intent, thresholds={**trained_intent.card.thresholds, "default": 0.0, "similarity": 1.01}
    )
    preds = make_engine(registry).predict("acme", "intent", trained_intent.heldout)
    assert all(p.abstained for p in preds)
    assert all(p.reason is not None and p.reason.startswith("unlike the trained classes") for p in preds)
    assert_matches(preds, trained_intent)


def test_confidence_equal_to_the_threshold_is_served(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    # a soft temperature so confidences are not saturated at 1.0
    soft = {"temperature": 25.0}
    register(trained_intent, calibration=soft, thresholds={**trained_intent.card.thresholds, "default": 0.0})
    engine = make_engine(registry)
    # a text whose exact confidence has digits past the 6th that round down
    for text in [*trained_intent.heldout, *trained_intent.texts]:
        _, probs = engine.probabilities("acme", "intent", [text])
        confidence = float(probs.max())
        if round(confidence, 6) < confidence:
            break
    else:
        pytest.skip("no confidence that rounds down")
    # calibration puts the threshold at a validation row's confidence and covers conf >= threshold
    register(
        trained_intent,
        promote=True,
        calibration=soft,
        thresholds={**trained_intent.card.thresholds, "default": confidence},
    )
    (pred,) = engine.predict("acme", "intent", [text])
    assert pred.threshold == confidence
    assert not pred.abstained, pred.reason


def test_per_class_threshold_only_holds_back_that_class(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    thresholds = {**trained_intent.card.thresholds, "default": 0.0, "per_class": {"billing": 1.0}}
    register(trained_intent, thresholds=thresholds)
    preds = make_engine(registry).predict("acme", "intent", trained_intent.heldout)
    assert {p.label for p in preds} >= {"billing", "access"}
    for p in preds:
        assert p.abstained == (p.label == "billing")


def test_top3_alternatives_are_sorted_and_sum_to_at_most_one(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_category: Trained
) -> None:
    assert len(trained_category.card.labels) == 4
    register(trained_category)
    preds = make_engine(registry).predict("acme", "category", trained_category.heldout, abstain=False)
    assert_matches(preds, trained_category)
    for p in preds:
        scores = [a.score for a in p.alternatives]
        assert len(scores) == 3
        assert scores == sorted(scores, reverse=True)
        assert p.alternatives[0].label == p.label and p.alternatives[0].score == p.score
        assert sum(scores) <= 1.0 + 1e-5  # each score is rounded to 6 decimals
        assert len({a.label for a in p.alternatives}) == 3


def test_two_tasks_share_one_base_and_keep_their_own_labels(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_device)
    engine = make_engine(registry)
    assert_matches(engine.predict("acme", "intent", trained_intent.heldout, abstain=False), trained_intent)
    assert_matches(engine.predict("acme", "device", trained_device.heldout, abstain=False), trained_device)
    assert_matches(engine.predict("acme", "intent", trained_intent.heldout, abstain=False), trained_intent)
    assert len(engine._bases) == 1  # one copy of the encoder
    (base,) = engine._bases.values()
    assert set(base.resident) == {"acme__intent__v1", "acme__device__v1"}


def test_lru_bound_of_one_evicts_and_reloads_correctly(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_device)
    engine = make_engine(registry, max_resident=1)
    for _ in range(2):
        for trained in (trained_intent, trained_device):
            preds = engine.predict("acme", trained.card.task, trained.heldout, abstain=False)
            assert_matches(preds, trained)
            (base,) = engine._bases.values()
            assert list(base.resident) == [f"acme__{trained.card.task}__v1"]
            assert base.adapter_names() == set(base.resident)  # the evicted LoRA is gone


def test_promotion_is_picked_up_by_the_next_predict(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    engine = make_engine(registry)
    assert_matches(
        engine.predict("acme", "intent", trained_intent.heldout, abstain=False), trained_intent, version="v1"
    )

    # v2 of "intent" is a different model (the device adapter), registered without promotion
    v2 = register(trained_device, task="intent")
    assert v2.version == "v2"
    assert_matches(
        engine.predict("acme", "intent", trained_intent.heldout, abstain=False), trained_intent, version="v1"
    )

    registry.promote("acme", "intent", "v2")
    preds = engine.predict("acme", "intent", trained_device.heldout, abstain=False)
    assert_matches(preds, trained_device, version="v2")
    assert {p.label for p in preds} <= set(trained_device.card.labels)

    # pinned versions keep working, and a rollback is picked up just the same
    pinned = engine.predict("acme", "intent", trained_intent.heldout, version="v1", abstain=False)
    assert_matches(pinned, trained_intent, version="v1")
    assert registry.rollback("acme", "intent") == "v1"
    assert_matches(
        engine.predict("acme", "intent", trained_intent.heldout, abstain=False), trained_intent, version="v1"
    )


def test_adapters_lists_only_that_tenants(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_intent)  # v2, not champion
    register(trained_device)
    register(trained_device, tenant="globex")
    engine = make_engine(registry)
    acme = engine.adapters("acme")
    assert {(a.task, a.version, a.champion) for a in acme} == {
        ("device", "v1", True),
        ("intent", "v1", True),
        ("intent", "v2", False),
    }
    assert {a.tenant for a in acme} == {"acme"}
    intent = next(a for a in acme if a.task == "intent")
    assert intent.labels == ("access", "billing", "network")
    assert intent.base_model == trained_intent.card.base_model
    assert intent.created_at
    assert intent.metrics["accuracy"] == trained_intent.card.metrics["validation"]["accuracy"]
    assert all(isinstance(v, int | float) or v is None for v in intent.metrics.values())
    globex = engine.adapters("globex")
    assert [(a.tenant, a.task) for a in globex] == [("globex", "device")]
    assert engine.adapters("initech") == []
    with pytest.raises(InputDataError):
        engine.adapters("../acme")


def test_concurrent_predicts_equal_sequential_ones(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_device)
    engine = make_engine(registry)
    jobs: list[tuple[str, list[str]]] = []
    for i in range(16):
        trained = trained_intent if i % 2 else trained_device
        jobs.append((trained.card.task, trained.heldout[i % 3 :]))

    def run(job: tuple[str, list[str]]) -> list[Prediction]:
        return engine.predict("acme", job[0], job[1], abstain=False)

    sequential = [run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, jobs))
    assert concurrent == sequential


def test_unknown_task_and_empty_input(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    engine = make_engine(registry)
    with pytest.raises(AdapterNotFoundError) as err:
        engine.predict("acme", "intent", ["hello"])
    assert err.value.hint and "--task intent" in err.value.hint
    register(trained_intent)
    assert engine.predict("acme", "intent", []) == []
    with pytest.raises(AdapterNotFoundError, match="v5"):
        engine.predict("acme", "intent", ["hello"], version="v5")


def test_warm_up_loads_champions_and_marks_ready(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_device, promote=False)  # no champion: nothing to warm
    engine = make_engine(registry, threads=1)
    assert not engine.ready()
    engine.warm_up()
    assert engine.ready()
    (base,) = engine._bases.values()
    assert list(base.resident) == ["acme__intent__v1"]


def test_engine_serves_the_core_classify_seam(
    registry: Registry, make_engine: MakeEngine, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent)
    predictor: Predictor = make_engine(registry)
    preds = classify(
        predictor, "acme", "intent", trained_intent.heldout, max_texts=64, max_chars=1000, abstain=False
    )
    assert_matches(preds, trained_intent)
    with pytest.raises(InputDataError):
        classify(predictor, "acme", "intent", ["  "], max_texts=64, max_chars=1000)


def test_adapter_evicted_between_lookup_and_forward_still_answers(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    register(trained_intent)
    register(trained_device)
    engine = make_engine(registry, max_resident=1)
    # what one request thread does first ...
    head, base = engine._head("acme", "intent", None)
    # ... another request for another task evicts it meanwhile ...
    engine.predict("acme", "device", trained_device.heldout)
    # ... and the first thread's forward pass goes on
    features = tokenize(base.tokenizer, trained_intent.heldout, head.max_length)
    probs, _ = engine._head_scores(head, engine._embed(base, [(head, features)]))
    torch.testing.assert_close(probs, trained_intent.expected, atol=TOL, rtol=0)


def test_mixed_adapter_batch_equals_each_adapter_alone(
    registry: Registry,
    make_engine: MakeEngine,
    register: Register,
    trained_intent: Trained,
    trained_device: Trained,
) -> None:
    """As PEFT tests it: one forward pass over rows of two adapters == each adapter run alone."""
    register(trained_intent)
    register(trained_device)
    engine = make_engine(registry)
    alone_intent = engine.predict("acme", "intent", trained_intent.heldout, abstain=False)
    alone_device = engine.predict("acme", "device", trained_device.heldout, abstain=False)
    # interleave the two tasks' requests so their rows share length-sorted batches
    requests = [
        Request("acme", "intent", trained_intent.heldout[:3], abstain=False),
        Request("acme", "device", trained_device.heldout, abstain=False),
        Request("acme", "intent", trained_intent.heldout[3:], abstain=False),
        Request("acme", "no-such-task", ["x"]),
    ]
    mixed = engine.predict_many(requests)
    assert isinstance(mixed[3], AdapterNotFoundError)
    got_intent = [*mixed[0], *mixed[2]]  # type: ignore[misc]
    for got, want in ((got_intent, alone_intent), (mixed[1], alone_device)):
        assert isinstance(got, list)
        assert [p.label for p in got] == [p.label for p in want]
        for g, w in zip(got, want, strict=True):
            assert abs(g.score - w.score) <= 1e-4
            assert [a.label for a in g.alternatives] == [a.label for a in w.alternatives]
    assert_matches(got_intent, trained_intent)


def test_engine_tunes_malloc_unless_told_not_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deskpilot.adapters import serving
    from deskpilot.config import Settings

    registry = Registry(tmp_path / "adapters")
    calls: list[int] = []
    monkeypatch.setattr(serving, "tune_malloc", lambda: calls.append(1) or True)
    Engine(registry)
    assert calls == [1]
    Engine(registry, keep_freed_memory=False)
    assert calls == [1]
    Engine.from_settings(Settings(home=tmp_path, malloc_tuning=False), warm=False)
    assert calls == [1]
    Engine.from_settings(Settings(home=tmp_path), warm=False)
    assert calls == [1, 1]
