"""Baselines: synthetic checks with fake encoders, then a real Banking77 sample vs chance."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deskpilot.evaluation.baselines import (
    BASELINES,
    EmbeddingCache,
    FrozenLogReg,
    SetFitBaseline,
    TfidfSvc,
    contrastive_pairs,
)
from deskpilot.evaluation.datasets import LabelledSplit, banking77, stratified_indices

pytest.importorskip("sklearn", reason="the baselines need scikit-learn (the 'eval' extra)")

WORDS = {
    "access": ["password", "login", "locked", "reset", "username"],
    "billing": ["invoice", "refund", "charge", "payment", "receipt"],
    "network": ["wifi", "router", "vpn", "internet", "dns"],
}
FILLER = ["the", "my", "is", "not", "since", "today", "again", "please", "help"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Two busy cores: one torch thread is faster than two fighting (and leaves the other free)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(per_label: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in WORDS.items():
        for _ in range(per_label):
            picked = rng.sample(words, 2) + rng.sample(FILLER, 3)
            rng.shuffle(picked)
            texts.append(" ".join(picked))
            labels.append(label)
    return texts, labels


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A fake encoder: one dimension per known word, L2-normalised."""
    vocab = sorted({w for ws in WORDS.values() for w in ws} | set(FILLER))
    index = {w: i for i, w in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            if word in index:
                x[row, index[word]] += 1.0
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def _accuracy(predicted: list[str], truth: list[str]) -> float:
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)


# --- no data, no model --------------------------------------------------------------------


def test_tfidf_svc_learns_synthetic_labels() -> None:
    texts, labels = synthetic(30, seed=1)
    test_texts, test_labels = synthetic(10, seed=2)
    model = TfidfSvc().fit(texts, labels)
    assert model.classes_ == sorted(WORDS)
    assert _accuracy(model.predict(test_texts), test_labels) >= 0.95
    assert model.train_seconds > 0
    assert not model.has_proba  # LinearSVC has margins, not probabilities


def test_embedding_cache_encodes_each_text_once_and_charges_hits() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return bag_of_words(texts)

    cache = EmbeddingCache(encode=encode, model_name="fake")
    first, cost_first = cache.embed(["login reset", "wifi router", "login reset"])
    again, cost_again = cache.embed(["wifi router", "login reset"])
    assert calls == [["login reset", "wifi router"]]  # duplicates and hits never re-encoded
    assert np.array_equal(again, first[[1, 0]])
    assert cache.hits == 3 and cache.misses == 2
    assert cost_again > 0 and cost_first == pytest.approx(1.5 * cost_again)


def test_frozen_logreg_on_a_fake_encoder() -> None:
    texts, labels = synthetic(30, seed=3)
    test_texts, test_labels = synthetic(10, seed=4)
    model = FrozenLogReg(EmbeddingCache(encode=bag_of_words, model_name="bow")).fit(texts, labels)
    proba = model.predict_proba(test_texts)
    assert proba.shape == (len(test_texts), 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert _accuracy(model.predict(test_texts), test_labels) >= 0.95
    assert model.converged


def test_contrastive_pairs_follow_setfit_sampling() -> None:
    labels = ["a"] * 5 + ["b"] * 3 + ["c"]  # "c" has no partner of its own
    pairs = contrastive_pairs(labels, iterations=2, max_pairs=None, seed=0)
    positives = [(i, j) for i, j, s in pairs if s == 1.0]
    negatives = [(i, j) for i, j, s in pairs if s == 0.0]
    assert len(negatives) == 2 * len(labels)  # one per row and iteration
    assert len(positives) == 2 * (len(labels) - 1)  # the lone "c" row gets none
    assert all(labels[i] == labels[j] and i != j for i, j in positives)
    assert all(labels[i] != labels[j] for i, j in negatives)
    assert contrastive_pairs(labels, 2, None, seed=0) == pairs  # seeded
    assert len(contrastive_pairs(labels, 20, max_pairs=7, seed=0)) == 7


def test_baselines_refuse_bad_training_data() -> None:
    with pytest.raises(ValueError, match="two labels"):
        TfidfSvc().fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        FrozenLogReg(EmbeddingCache(encode=bag_of_words)).fit(["a", "b"], ["x"])
    with pytest.raises(RuntimeError, match="fit"):
        TfidfSvc().predict(["a"])
    assert set(BASELINES) == {"tfidf_svc", "frozen_logreg", "setfit"}


# --- the real packaged encoder on a real Banking77 sample --------------------------------


@pytest.fixture(scope="module")
def root(data_root: Path) -> Path:
    return data_root


def _sample(split: LabelledSplit, n: int) -> LabelledSplit:
    # the CSVs are sorted by intent: "the first 300 rows" would be three intents, so stratify
    _, held = stratified_indices(split.labels, n / len(split), seed=0, min_per_class=1)
    return split.take(held)


@pytest.fixture(scope="module")
def banking_sample(root: Path) -> tuple[LabelledSplit, LabelledSplit]:
    data = banking77(root)
    return _sample(data.train, 300), _sample(data.test, 100)


@pytest.mark.integration
@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["tfidf_svc", "frozen_logreg", "setfit"])
def test_baselines_beat_chance_on_banking77(
    name: str, banking_sample: tuple[LabelledSplit, LabelledSplit]
) -> None:
    train, test = banking_sample
    n_classes = len(set(train.labels))
    assert n_classes == 77 and set(test.labels) <= set(train.labels)
    model = {
        "tfidf_svc": lambda: TfidfSvc(),
        "frozen_logreg": lambda: FrozenLogReg(),
        "setfit": lambda: SetFitBaseline(max_pairs=48, batch_size=16),
    }[name]()
    model.fit(train.texts, train.labels)
    predicted = model.predict(test.texts)
    accuracy = _accuracy(predicted, test.labels)
    majority = Counter(test.labels).most_common(1)[0][1] / len(test)
    # about 4 examples per intent: chance is 1.3 %, the majority class ~2 %
    assert accuracy >= max(20 / n_classes, 10 * majority), f"{name}: {accuracy:.3f}"
    assert model.train_seconds > 0
    if model.has_proba:
        proba = model.predict_proba(test.texts[:5])  # type: ignore[attr-defined]
        assert proba.shape == (5, n_classes) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
