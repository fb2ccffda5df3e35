"""Adapter fixtures: a tiny random BERT built offline, synthetic tickets, trained adapters.

Training happens once per session; tests that register an adapter register a copy (the
registry moves files). Tests and training run torch on one thread (restored afterwards): on
two busy cores that is several times faster than two threads fighting over them.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from adapters_support import (
    DEVICE_WORDS,
    INTENT_WORDS,
    Trained,
    build_tiny_bert,
    build_tiny_lm,
    copy_adapter,
    make_texts,
    one_thread,
    small_recipe,
)

from deskpilot.adapters import classifier
from deskpilot.adapters.catalog import BaseModel, resolve
from deskpilot.adapters.classifier import train_classifier
from deskpilot.adapters.encoding import embed, tokenize
from deskpilot.adapters.registry import AdapterCard, Registry


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_base(tiny_dir: Path) -> BaseModel:
    return resolve(str(tiny_dir))


@pytest.fixture(scope="session")
def intent_data() -> tuple[list[str], list[str]]:
    return make_texts(INTENT_WORDS, per_label=40, seed=1)


def _train_and_capture(
    texts: list[str],
    labels: list[str],
    heldout: list[str],
    heldout_labels: list[str],
    *,
    base: BaseModel,
    task: str,
    tmp: Path,
    **recipe: Any,
) -> Trained:
    """Train, keeping the in-memory model that train_classifier saves (a spy, not a stand-in)."""
    captured: dict[str, Any] = {}
    original = classifier._fine_tune

    def spy(*args: Any, **kwargs: Any) -> classifier.MeanPoolClassifier:
        model = original(*args, **kwargs)
        captured["model"], captured["tokenizer"] = model, args[2]
        return model

    with one_thread(), pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        mp.setattr(classifier, "_fine_tune", spy)
        # train_classifier leaves its output and the Trainer's output_dir in the temp dir
        mp.setattr(tempfile, "tempdir", str(tmp))
        result = train_classifier(
            texts, labels, base=base, task=task, tenant="acme", recipe=small_recipe(**recipe), threads=1
        )
    model, tokenizer = captured["model"], captured["tokenizer"]
    model.eval()
    with one_thread(), torch.inference_mode():
        features = tokenize(tokenizer, heldout, result.card.recipe["max_length"])
        logits = model.head(embed(model.encoder, tokenizer, features))
        expected = (logits / result.card.calibration["temperature"]).softmax(-1).clone()
    return Trained(result, texts, labels, heldout, heldout_labels, expected)


@pytest.fixture(scope="session")
def trained_intent(
    tiny_base: BaseModel, intent_data: tuple[list[str], list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """The full recipe (probe + 2 LoRA epochs) on 3 labels x 40 tickets."""
    texts, labels = intent_data
    heldout, heldout_labels = make_texts(INTENT_WORDS, per_label=6, seed=2)
    return _train_and_capture(
        texts,
        labels,
        heldout,
        heldout_labels,
        base=tiny_base,
        task="intent",
        tmp=tmp_path_factory.mktemp("intent"),
    )


@pytest.fixture(scope="session")
def trained_device(tiny_base: BaseModel, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A second task on the same base, probe only (preset fast)."""
    texts, labels = make_texts(DEVICE_WORDS, per_label=20, seed=3)
    heldout, heldout_labels = make_texts(DEVICE_WORDS, per_label=5, seed=4)
    return _train_and_capture(
        texts,
        labels,
        heldout,
        heldout_labels,
        base=tiny_base,
        task="device",
        tmp=tmp_path_factory.mktemp("device"),
        preset="fast",
    )


@pytest.fixture(scope="session")
def trained_category(tiny_base: BaseModel, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Four labels (so top-3 leaves one out), probe only."""
    words = {k: v for k, v in {**INTENT_WORDS, **DEVICE_WORDS}.items() if k != "network"}
    texts, labels = make_texts(words, per_label=15, seed=5)
    heldout, heldout_labels = make_texts(words, per_label=3, seed=6)
    return _train_and_capture(
        texts,
        labels,
        heldout,
        heldout_labels,
        base=tiny_base,
        task="category",
        tmp=tmp_path_factory.mktemp("category"),
        preset="fast",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "adapters")


@pytest.fixture
def register(registry: Registry, tmp_path: Path) -> Any:
    """register(trained, task=..., tenant=..., promote=..., **card_changes) -> registered card."""
    counter = iter(range(1_000_000))

    def _register(
        trained: Trained,
        *,
        task: str | None = None,
        tenant: str = "acme",
        promote: bool | None = None,
        **changes: Any,
    ) -> AdapterCard:
        files = copy_adapter(trained.directory, tmp_path / f"copy-{next(counter)}")
        card = copy.deepcopy(trained.card)
        card.task = task or card.task
        card.tenant = tenant
        for name, value in changes.items():
            setattr(card, name, value)
        return registry.register(files, card, promote=promote)

    return _register


# --- generator (responder) fixtures ------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_lm_base(tiny_lm_dir: Path) -> BaseModel:
    return BaseModel(str(tiny_lm_dir), tiny_lm_dir)


@pytest.fixture(scope="session")
def generator_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache for the packaged generator, converted once per session (~20 s)."""
    from deskpilot.adapters.catalog import packaged_generator

    cache = tmp_path_factory.mktemp("model-cache")
    packaged_generator(cache)
    return cache
