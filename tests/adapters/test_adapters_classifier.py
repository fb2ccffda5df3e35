"""Training: files on disk, the card, presets, time budget, seeds, recipe validation, splits."""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from adapters_support import Trained, peft_warning, read_head, small_recipe, vocabulary

from deskpilot.adapters import classifier
from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.classifier import (
    ClassifierRecipe,
    TrainResult,
    data_hash,
    resolve_preset,
    train_classifier,
)
from deskpilot.adapters.encoding import mean_pool
from deskpilot.dataio import stratified_indices
from deskpilot.errors import InputDataError

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


@pytest.fixture(autouse=True)
def _temp_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train_classifier leaves folders in the temp dir; keep this test's in its tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _train(texts: list[str], labels: list[str], base: BaseModel, **recipe: Any) -> TrainResult:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return train_classifier(
            texts, labels, base=base, task="intent", tenant="acme", recipe=small_recipe(**recipe), threads=1
        )


def _plain_peft_probabilities(
    folder: Path, tiny_dir: Path, card: Any, texts: list[str], *, pooler: bool = False
) -> torch.Tensor:
    """What a user gets with stock transformers + PEFT, no deskpilot code in the forward pass."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    extra = {} if pooler else {"add_pooling_layer": False}
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(tiny_dir), **extra), str(folder))
    model.eval()
    head = read_head(folder)
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=card.recipe["max_length"], return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
        emb = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
        logits = emb @ head["weight"].T + head["bias"]
    return (logits / card.calibration["temperature"]).softmax(-1)


def test_tiny_tokenizer_knows_every_synthetic_word(tiny_dir: Path, trained_intent: Trained) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    assert tokenizer.vocab_size == len(vocabulary())
    for text in trained_intent.texts + trained_intent.heldout:
        assert tokenizer.unk_token not in tokenizer.tokenize(text), text


def test_adapter_folder_holds_safetensors_and_no_pickles(trained_intent: Trained) -> None:
    folder = trained_intent.directory
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors"} <= names
    pickles = [p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES]
    assert pickles == []
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["peft_type"] == "LORA"
    assert config["r"] == 16
    head = read_head(folder)
    assert head["weight"].shape == (3, 32)
    assert head["bias"].shape == (3,)


@peft_warning
def test_adapter_loads_with_plain_peft_and_matches_training(trained_intent: Trained, tiny_dir: Path) -> None:
    probs = _plain_peft_probabilities(
        trained_intent.directory, tiny_dir, trained_intent.card, trained_intent.heldout
    )
    torch.testing.assert_close(probs, trained_intent.expected, atol=1e-6, rtol=0)


@peft_warning
def test_adapter_loads_onto_a_stock_automodel_with_pooler(trained_intent: Trained, tiny_dir: Path) -> None:
    probs = _plain_peft_probabilities(
        trained_intent.directory, tiny_dir, trained_intent.card, trained_intent.heldout, pooler=True
    )
    torch.testing.assert_close(probs, trained_intent.expected, atol=1e-6, rtol=0)


def test_card_describes_labels_data_calibration_and_history(trained_intent: Trained, tiny_dir: Path) -> None:
    card = trained_intent.card
    assert card.kind == "classifier"
    assert (card.task, card.tenant) == ("intent", "acme")
    assert card.labels == ["access", "billing", "network"]
    assert card.base_model == str(tiny_dir.resolve())
    assert card.data_hash == data_hash(trained_intent.texts, trained_intent.labels)
    assert card.data_hash.startswith("sha256:") and len(card.data_hash) == len("sha256:") + 64
    assert card.calibration["temperature"] > 0
    assert 0.0 <= card.thresholds["default"] <= 1.0
    assert card.thresholds["target_precision"] == 0.9
    history = card.metrics["history"]
    assert history[0]["epoch"] == 0
    assert [h["epoch"] for h in history[1:]] == [1.0, 2.0]  # one evaluation per epoch
    assert card.metrics["validation"]["n"] == 24  # 20% of 40 per class
    assert card.n_train == 96
    assert card.recipe["fine_tune"] is True
    assert card.recipe["max_length"] == 32
    assert card.extra["label_counts"] == {"access": 40, "billing": 40, "network": 40}
    json.loads(card.to_json())  # serialisable as is


def test_trained_model_separates_the_synthetic_labels(trained_intent: Trained) -> None:
    assert trained_intent.card.metrics["validation"]["accuracy"] >= 0.8
    hits = sum(
        p == y for p, y in zip(trained_intent.expected_labels(), trained_intent.heldout_labels, strict=True)
    )
    assert hits / len(trained_intent.heldout) >= 0.8


def test_fast_preset_skips_fine_tuning_and_is_quicker(
    trained_intent: Trained,
    tiny_base: BaseModel,
    intent_data: tuple[list[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    result = _train(*intent_data, tiny_base, preset="fast")
    assert capsys.readouterr().out == ""  # nothing on stdout (the CLI keeps it for --json)
    assert result.card.recipe["fine_tune"] is False
    assert result.card.metrics["history"] == [trained_intent.card.metrics["history"][0]]
    assert result.card.train_seconds < trained_intent.card.train_seconds
    assert (result.directory / "adapter_model.safetensors").is_file()
    # the probe is deterministic: the same choice as the full run's epoch 0
    assert result.card.recipe["probe_l2"] == trained_intent.card.recipe["probe_l2"]


@peft_warning
def test_tiny_time_budget_stops_cleanly_with_a_loadable_adapter(
    tiny_base: BaseModel, tiny_dir: Path, intent_data: tuple[list[str], list[str]]
) -> None:
    result = _train(*intent_data, tiny_base, max_minutes=0.001)
    history = result.card.metrics["history"]
    assert history[0]["epoch"] == 0
    assert all(h["epoch"] < 2 for h in history)  # never ran the two epochs asked for
    probs = _plain_peft_probabilities(result.directory, tiny_dir, result.card, ["my vpn is slow"])
    assert probs.shape == (1, 3)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


@peft_warning
def test_budget_expiring_mid_training_stops_after_that_step(
    tiny_base: BaseModel,
    tiny_dir: Path,
    intent_data: tuple[list[str], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[int] = []
    monkeypatch.setattr(classifier._Budget, "expired", lambda self: bool(steps))

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "fine-tuning":
            steps.append(done)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        result = train_classifier(
            *intent_data,
            base=tiny_base,
            task="intent",
            tenant="acme",
            recipe=small_recipe(max_minutes=5),
            progress=progress,
            threads=1,
        )
    assert steps == [1]  # 12 steps planned, stopped after the first
    history = result.card.metrics["history"]
    # the stop still evaluates (today twice at the same step: once asked for by the budget
    # callback, once by eval_strategy="epoch" as the cut-short epoch ends)
    assert len(history) >= 2
    assert {h["epoch"] for h in history[1:]} == {round(1 / 6, 3)}  # 1 of 6 steps per epoch
    assert (result.directory / "head.safetensors").is_file()
    probs = _plain_peft_probabilities(result.directory, tiny_dir, result.card, ["refund my invoice"])
    assert probs.shape == (1, 3)


def test_too_few_validation_rows_trains_on_everything_uncalibrated(
    tiny_base: BaseModel, intent_data: tuple[list[str], list[str]]
) -> None:
    result = _train(*intent_data, tiny_base, epochs=1, val_fraction=0.1, min_val_rows=1000)
    card = result.card
    assert card.n_train == 120
    assert card.metrics["validation"] == {"n": 0}
    assert card.calibration == {"temperature": 1.0}
    assert card.thresholds["default"] == 0.0
    assert [h["epoch"] for h in card.metrics["history"]] == [0]  # fine-tuned, but nothing to judge by
    assert (result.directory / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    ("preset", "rows", "labels", "fine_tune"),
    [
        ("fast", 10_000, 2, False),
        ("best", 10, 5, True),
        ("auto", 120, 3, True),
        ("auto", 39, 2, False),  # fewer than 40 rows
        ("auto", 100, 15, False),  # fewer than 8 rows per class
    ],
)
def test_presets_decide_whether_to_fine_tune(preset: str, rows: int, labels: int, fine_tune: bool) -> None:
    recipe = ClassifierRecipe(preset=preset, epochs=5)
    resolved = resolve_preset(recipe, rows, labels)
    assert resolved.fine_tune is fine_tune
    assert resolved.epochs == 5
    assert recipe.fine_tune is True  # the caller's recipe is left alone


def test_training_keeps_stdout_clean(
    tiny_base: BaseModel, intent_data: tuple[list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI keeps stdout for --json; the HF Trainer's PrinterCallback would print metric dicts."""
    capsys.readouterr()
    _train(*intent_data, tiny_base, epochs=1)
    assert capsys.readouterr().out == ""


def test_same_seed_gives_identical_weights(
    trained_intent: Trained, tiny_base: BaseModel, intent_data: tuple[list[str], list[str]]
) -> None:
    from safetensors.torch import load_file

    again = _train(*intent_data, tiny_base)
    first, second = read_head(trained_intent.directory), read_head(again.directory)
    assert torch.equal(first["weight"], second["weight"])
    assert torch.equal(first["bias"], second["bias"])
    lora_a = load_file(str(trained_intent.directory / "adapter_model.safetensors"))
    lora_b = load_file(str(again.directory / "adapter_model.safetensors"))
    assert lora_a.keys() == lora_b.keys()
    assert all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    assert again.card.metrics["history"] == trained_intent.card.metrics["history"]
    assert again.card.calibration == trained_intent.card.calibration


def test_another_seed_holds_out_other_rows(
    tiny_base: BaseModel, intent_data: tuple[list[str], list[str]]
) -> None:
    seed0 = _train(*intent_data, tiny_base, preset="fast", seed=0)
    seed1 = _train(*intent_data, tiny_base, preset="fast", seed=1)
    assert not torch.equal(read_head(seed0.directory)["weight"], read_head(seed1.directory)["weight"])


@pytest.mark.parametrize(
    "values",
    [
        {"preset": "turbo"},
        {"epochs": -1},
        {"batch_size": 0},
        {"max_length": 4},
        {"val_fraction": 0.5},
        {"val_fraction": -0.1},
        {"max_minutes": 0},
        {"max_minutes": -1.0},
    ],
    ids=lambda v: "-".join(f"{k}={val}" for k, val in v.items()),
)
def test_bad_recipe_values_are_input_errors(values: dict[str, Any]) -> None:
    with pytest.raises(InputDataError):
        ClassifierRecipe(**values)


def test_a_single_label_is_an_input_error(tiny_base: BaseModel) -> None:
    with pytest.raises(InputDataError, match="two labels"):
        train_classifier(["a", "b", "c"], ["x", "x", "x"], base=tiny_base, task="t", tenant="acme")


def test_texts_and_labels_must_pair_up(tiny_base: BaseModel) -> None:
    with pytest.raises(InputDataError, match="length"):
        train_classifier(["a", "b"], ["x"], base=tiny_base, task="t", tenant="acme")


def test_stratified_split_holds_out_a_fraction_of_each_class() -> None:
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 10
    held = stratified_indices(labels, 0.2, seed=7)[1]
    assert held == sorted(held) and len(set(held)) == len(held)
    assert Counter(labels[i] for i in held) == {"a": 10, "b": 4, "c": 2}
    assert stratified_indices(labels, 0.2, seed=7)[1] == held  # deterministic per seed
    assert stratified_indices(labels, 0.2, seed=8)[1] != held


def test_stratified_split_keeps_tiny_classes_in_train() -> None:
    labels = ["a"] * 10 + ["lonely"] + ["pair"] * 2
    held = stratified_indices(labels, 0.3, seed=0)[1]
    counts = Counter(labels[i] for i in held)
    assert counts["lonely"] == 0  # fewer than 2 rows: never held out
    assert counts["pair"] == 1  # at least one row of every class stays in train
    assert counts["a"] == 3
    assert stratified_indices(labels, 0.0, seed=0)[1] == []


def test_data_hash_depends_on_order_and_pairing() -> None:
    h = data_hash(["a", "b"], ["x", "y"])
    assert h == data_hash(["a", "b"], ["x", "y"])
    assert h != data_hash(["b", "a"], ["y", "x"])
    assert h != data_hash(["a", "b"], ["y", "x"])
    assert data_hash(["ab"], ["x"]) != data_hash(["a"], ["bx"])


def test_training_budget_helper_runs_out() -> None:
    budget = classifier._Budget(1e-6)
    time.sleep(0.001)
    assert budget.expired()
    assert not classifier._Budget(None).expired()


@pytest.mark.parametrize(
    ("preset", "epochs", "minutes"), [("fast", 0, None), ("auto", 4, 13.0), ("best", 6, None)]
)
def test_presets_choose_the_epochs_and_budget_unless_given(
    preset: str, epochs: int, minutes: float | None
) -> None:
    resolved = resolve_preset(ClassifierRecipe(preset=preset), 20_000, 10)
    assert (resolved.epochs, resolved.max_minutes) == (epochs, minutes)
    given = resolve_preset(ClassifierRecipe(preset=preset, epochs=1, max_minutes=60), 20_000, 10)
    assert (given.epochs, given.max_minutes) == (1, 60)


@pytest.mark.parametrize(
    ("preset", "rows", "epochs"),
    [
        ("auto", 10_003, 4),  # Banking77: 282 steps an epoch, plenty
        ("auto", 2_000, 6),  # 57 steps an epoch: 6 epochs reach 300 steps
        ("auto", 770, 12),  # 10-shot Banking77: 22 steps an epoch, capped at 3x the preset's 4
        ("best", 770, 14),  # best: 6 epochs, scaled up to the 300 steps (cap 18)
        ("fast", 770, 0),  # no fine-tuning, nothing to scale
    ],
)
def test_small_data_gets_enough_optimizer_steps(preset: str, rows: int, epochs: int) -> None:
    assert resolve_preset(ClassifierRecipe(preset=preset), rows, 77).epochs == epochs
    assert resolve_preset(ClassifierRecipe(preset=preset, epochs=2), rows, 77).epochs == 2
