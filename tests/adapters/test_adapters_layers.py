"""Top-layer LoRA trained on cached lower-layer states: same outputs, fewer layers run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from adapters_support import INTENT_WORDS, make_texts, peft_warning, small_recipe
from safetensors.torch import load_file
from torch import nn

from deskpilot.adapters import classifier
from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.classifier import linear_target_modules, train_classifier
from deskpilot.adapters.encoding import load_encoder, load_tokenizer, pad_batch, pooled_embeddings, tokenize
from deskpilot.adapters.layers import num_layers, pad_hidden, split_encoder


def _lora_encoder(base: BaseModel, top_layers: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    encoder = load_encoder(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=linear_target_modules(encoder, top_layers))
    model = get_peft_model(encoder, config)
    torch.manual_seed(3)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapter actually change outputs
            nn.init.normal_(p, std=0.2)
    return model.eval()


@peft_warning
def test_split_forward_equals_the_full_model_on_a_padded_batch(tiny_base: BaseModel) -> None:
    model = _lora_encoder(tiny_base, top_layers=1)
    tokenizer = load_tokenizer(tiny_base)
    texts = ["password reset please", "my invoice was charged twice since monday and again today", "wifi"]
    batch = pad_batch(tokenizer, tokenize(tokenizer, texts, 32))
    assert int(batch["attention_mask"].sum(-1).min()) < batch["attention_mask"].shape[1]  # padding present
    split = split_encoder(model, 1)
    assert split is not None
    with torch.no_grad():
        full = pooled_embeddings(model, batch)
        lower = split.lower(batch)
        # per-row states without padding, re-padded as the training collator does
        rows = [lower[i, : int(n)] for i, n in enumerate(batch["attention_mask"].sum(-1))]
        hidden, mask = pad_hidden(rows)
        upper = split.upper(hidden, mask)
    assert torch.equal(mask, batch["attention_mask"])
    assert torch.allclose(full, upper, atol=1e-5)


@peft_warning
def test_split_is_refused_at_the_edges_and_for_other_shapes(tiny_base: BaseModel) -> None:
    model = _lora_encoder(tiny_base, top_layers=1)
    assert num_layers(model) == 2
    assert split_encoder(model, 0) is None
    assert split_encoder(model, 2) is None
    assert split_encoder(nn.Linear(3, 3), 1) is None
    assert num_layers(nn.Linear(3, 3)) is None


def test_pad_hidden_pads_right_and_masks() -> None:
    hidden, mask = pad_hidden([torch.ones(2, 4), torch.full((3, 4), 2.0)])
    assert hidden.shape == (2, 3, 4)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert float(hidden[0, 2].abs().sum()) == 0.0
    assert float(hidden[1, 2, 0]) == 2.0


def test_target_modules_for_the_top_layers_only(tiny_base: BaseModel) -> None:
    encoder = load_encoder(tiny_base)
    linears = [n for n, m in encoder.named_modules() if isinstance(m, nn.Linear)]
    top = [n for n in linears if re.fullmatch(linear_target_modules(encoder, 1), n)]
    every = [n for n in linears if re.fullmatch(linear_target_modules(encoder, 0), n)]
    assert top and all(n.startswith("encoder.layer.1.") for n in top)
    assert len(every) == 2 * len(top)
    assert linear_target_modules(encoder, 2) == linear_target_modules(encoder, 0)  # all of them


@peft_warning
def test_top_layers_only_saves_only_those_weights(tiny_base: BaseModel) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=40, seed=12)
    result = train_classifier(
        texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe(train_layers=1, epochs=1)
    )
    folder = result.directory
    assert result.card.recipe["train_layers"] == 1
    keys = load_file(str(folder / "adapter_model.safetensors")).keys()
    assert keys and all(".layer.1." in k for k in keys)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert "layer\\.(1)" in config["target_modules"]


@peft_warning
def test_auto_falls_back_to_the_top_half_when_every_layer_does_not_fit(
    tiny_base: BaseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=40, seed=13)
    plans: list[int] = []
    original = classifier._plan_epochs

    def plan(model: nn.Module, *args: object, **kwargs: object) -> tuple[int, int]:
        plans.append(1)
        epochs, steps = original(model, *args, **kwargs)  # type: ignore[arg-type]
        return (1, -1) if len(plans) == 1 else (epochs, steps)  # the first plan (all layers) is cut

    monkeypatch.setattr(classifier, "_plan_epochs", plan)
    result = train_classifier(texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe())
    assert len(plans) == 2
    assert result.card.recipe["train_layers"] == 1
    assert result.card.recipe["epochs"] == 2  # given: kept
    keys = load_file(str(result.directory / "adapter_model.safetensors")).keys()
    assert keys and all(".layer.1." in k for k in keys)

    plans.clear()  # the preset's epochs double on the top half: a step there costs about a quarter
    doubled = train_classifier(
        texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe(epochs=None)
    )
    assert doubled.card.recipe["train_layers"] == 1
    preset = classifier.resolve_preset(small_recipe(epochs=None), len(texts), len(set(labels))).epochs
    assert preset is not None and doubled.card.recipe["epochs"] == 2 * preset

    plans.clear()  # a fitting plan keeps every layer
    monkeypatch.setattr(classifier, "_plan_epochs", original)
    kept = train_classifier(texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe())
    assert kept.card.recipe["train_layers"] == 0


@peft_warning
def test_all_layers_when_asked_and_for_the_best_preset(tiny_base: BaseModel, tmp_path: Path) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=20, seed=7)
    for recipe in (small_recipe(train_layers=0, epochs=1), small_recipe(preset="best", epochs=1)):
        result = train_classifier(texts, labels, base=tiny_base, task="t", tenant="acme", recipe=recipe)
        keys = load_file(str(result.directory / "adapter_model.safetensors")).keys()
        assert {k.split(".layer.")[1][0] for k in keys} == {"0", "1"}
        assert result.card.recipe["train_layers"] == 0


@peft_warning
def test_cached_training_runs_only_the_upper_layers(
    tiny_base: BaseModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lower layer runs once per row (caching), never in the training steps."""
    texts, labels = make_texts(INTENT_WORDS, per_label=20, seed=8)
    calls = {"upper": 0, "lower": 0}
    original_upper, original_lower = classifier.CachedUpperClassifier.forward, classifier._lower_states

    def counting_upper(self: classifier.CachedUpperClassifier, *args: object, **kwargs: object) -> object:
        calls["upper"] += 1
        return original_upper(self, *args, **kwargs)  # type: ignore[arg-type]

    def counting_lower(*args: object, **kwargs: object) -> object:
        calls["lower"] += 1
        return original_lower(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(classifier.CachedUpperClassifier, "forward", counting_upper)
    monkeypatch.setattr(classifier, "_lower_states", counting_lower)
    result = train_classifier(
        texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe(epochs=2, train_layers=1)
    )
    assert calls["lower"] == 1
    assert calls["upper"] >= 2 * math.ceil(result.card.n_train / 16)
    assert len(result.card.metrics["history"]) == 3  # probe + 2 epochs


def test_epoch_plan_fits_the_budget(tiny_base: BaseModel) -> None:
    class SlowModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            import time

            time.sleep(0.1)
            return {"loss": (self.w * x).sum()}

    rows = [{"x": 1.0, "labels": 0} for _ in range(160)]

    def collate(batch: list[dict[str, float]]) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([r["x"] for r in batch]), "labels": torch.zeros(len(batch))}

    recipe = small_recipe(epochs=4, batch_size=16)  # 10 steps an epoch, >= 1.1 s each (planned)
    unlimited = classifier._Budget(None)
    assert classifier._plan_epochs(SlowModel(), collate, rows, 0, recipe, unlimited) == (4, -1)
    roomy = classifier._Budget(10.0)
    assert classifier._plan_epochs(SlowModel(), collate, rows, 0, recipe, roomy) == (4, -1)
    tight = classifier._Budget(0.35)  # 21 s: ~4.3 s usable after the reserve
    epochs, max_steps = classifier._plan_epochs(SlowModel(), collate, rows, 0, recipe, tight)
    assert 2 <= epochs <= 3 and max_steps == -1
    tiny = classifier._Budget(0.28)  # 16.8 s: under 0.5 s usable, a few steps at most
    epochs, max_steps = classifier._plan_epochs(SlowModel(), collate, rows, 0, recipe, tiny)
    assert epochs == 1 and 0 <= max_steps < 10


@peft_warning
def test_small_data_refits_on_every_row_with_the_chosen_epochs(tiny_base: BaseModel) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=20, seed=9)  # 18 training rows a class
    result = train_classifier(texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe())
    card = result.card
    history = card.metrics["history"]
    best = max(history, key=lambda h: h["val_accuracy"])
    # every row, plus one row per class name ("access", "billing", "network")
    assert card.metrics["refit"] == {"epochs": round(best["epoch"]), "rows": len(texts) + 3}
    assert card.n_train == len(texts) + 3
    assert sum(card.extra["label_counts"].values()) == len(texts)  # the user's data, as given
    assert card.calibration["temperature"] > 0  # calibrated on the held-out run
    assert result.validation["n"] > 0

    kept = train_classifier(
        texts, labels, base=tiny_base, task="t", tenant="acme", recipe=small_recipe(refit_small=False)
    )
    assert kept.card.metrics["refit"] is None and kept.card.n_train < len(texts) + 3
    plain = train_classifier(
        texts,
        labels,
        base=tiny_base,
        task="t",
        tenant="acme",
        recipe=small_recipe(refit_small=False, label_names=False),
    )
    assert plain.card.n_train == kept.card.n_train - 3


@pytest.mark.parametrize(
    ("label", "text"),
    [("card_arrival", "card arrival"), ("it-security", "it security"), ("P1", ""), ("42", ""), ("L2", "")],
)
def test_class_names_become_words_or_nothing(label: str, text: str) -> None:
    assert classifier.label_text(label) == text


def test_larger_data_and_tight_budgets_do_not_refit() -> None:
    recipe = small_recipe()
    history = [{"epoch": 0, "val_accuracy": 0.5}, {"epoch": 1.0, "val_accuracy": 0.7}]
    roomy = classifier._Budget(None)
    assert classifier._refit_epochs(recipe, history, 60, 3, 5.0, roomy) == 1
    assert classifier._refit_epochs(recipe, history, 300, 3, 5.0, roomy) is None  # 100 rows a class
    assert classifier._refit_epochs(recipe, history, 60, 3, 600.0, classifier._Budget(1.0)) is None
    probe_best = [{"epoch": 0, "val_accuracy": 0.9}, {"epoch": 1.0, "val_accuracy": 0.7}]
    assert classifier._refit_epochs(recipe, probe_best, 60, 3, 5.0, roomy) == 0
