"""Domain adaptation (masked-LM LoRA) and warm start of a classifier from another adapter."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path
from typing import Any

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

from deskpilot.adapters import classifier
from deskpilot.adapters.catalog import BaseModel, resolve
from deskpilot.adapters.classifier import train_classifier
from deskpilot.adapters.domain import DomainRecipe, DomainResult, _load_masked_lm, adapt_encoder
from deskpilot.adapters.encoding import load_encoder
from deskpilot.adapters.registry import Registry
from deskpilot.errors import InputDataError

pytestmark = peft_warning

WEIGHTS = "adapter_model.safetensors"
TEMPLATES = [
    "please reset my password {when}",
    "the vpn is down {when}",
    "my invoice was wrong {when}",
    "the printer has a paper jam {when}",
]
WHEN = ["today", "again", "since monday", "this morning"]


def corpus(n: int = 200, seed: int = 0) -> list[str]:
    """A repetitive ticket corpus: a few phrasings, so masked words are predictable."""
    rng = random.Random(seed)
    return [rng.choice(TEMPLATES).format(when=rng.choice(WHEN)) for _ in range(n)]


def tiny_domain_recipe(**overrides: Any) -> DomainRecipe:
    # a random 2-layer BERT with a random tied decoder needs a high rate to move in seconds
    values: dict[str, Any] = {
        "epochs": 10,
        "batch_size": 16,
        "max_length": 32,
        "learning_rate": 1e-2,
        "head_learning_rate": 3e-2,
        "heldout_fraction": 0.2,
    }
    values.update(overrides)
    return DomainRecipe(**values)


@pytest.fixture(scope="session")
def adapted(tiny_base: BaseModel, tmp_path_factory: pytest.TempPathFactory) -> DomainResult:
    out = tmp_path_factory.mktemp("domain")
    with one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setattr("tempfile.tempdir", str(out))
        return adapt_encoder(
            corpus(), base=tiny_base, task="domain", tenant="acme", recipe=tiny_domain_recipe(), threads=1
        )


@pytest.fixture
def domain_dir(adapted: DomainResult, tmp_path: Path) -> Path:
    """A registered copy of the session's domain adapter (acme/domain/v1)."""
    registry = Registry(tmp_path / "adapters")
    files = copy_adapter(adapted.directory, tmp_path / "copy")
    # as `deskpilot adapt` does: registered, never promoted (a domain adapter is not served)
    card = registry.register(files, copy.deepcopy(adapted.card), promote=False)
    return registry.path(card.tenant, card.task, card.version)


def _lora(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / WEIGHTS))


# --- adapt -----------------------------------------------------------------------------
def test_adapt_lowers_heldout_mlm_loss(adapted: DomainResult) -> None:
    m = adapted.card.metrics
    assert m["heldout_texts"] == 40 and m["heldout_masked_tokens"] > 0
    assert m["train_steps"] == 10 * 10  # 160 texts / 16 per batch, 10 epochs
    assert m["mlm_loss_after"] < m["mlm_loss_before"] - 0.5, m
    card = adapted.card
    assert (card.kind, card.labels, card.n_train) == ("domain", [], 160)
    assert card.recipe["lora_r"] == 16 and card.recipe["lora_alpha"] == 32
    assert card.extra["mlm_head"].startswith("absent")  # the tiny BERT, like MiniLM, ships none


def test_adapter_is_lora_on_the_bare_encoder(
    adapted: DomainResult, tiny_base: BaseModel, trained_device: Trained
) -> None:
    from peft import PeftModel, get_peft_model, get_peft_model_state_dict

    lora = _lora(adapted.directory)
    # every linear layer of the bare encoder, named as in a classifier adapter of the same base
    # (which may cover only the top layers): warm start maps them by name
    with one_thread():
        bare = load_encoder(tiny_base)
        full = get_peft_model_state_dict(get_peft_model(bare, classifier.lora_config(bare, DomainRecipe())))
    assert set(lora) == set(full)
    assert set(_lora(trained_device.directory)) <= set(lora)
    assert all(".lora_A." in k or ".lora_B." in k for k in lora)
    assert any(float(v.abs().sum()) > 0 for k, v in lora.items() if ".lora_B." in k)  # trained
    config = json.loads((adapted.directory / "adapter_config.json").read_text("utf-8"))
    assert config["r"] == 16 and config["lora_alpha"] == 32

    with one_thread(), torch.inference_mode():
        bare = load_encoder(tiny_base)
        batch = {"input_ids": torch.tensor([[2, 10, 20, 30, 3]]), "attention_mask": torch.ones(1, 5).long()}
        before = bare(**batch).last_hidden_state.clone()
        peft = PeftModel.from_pretrained(bare, str(adapted.directory))
        after = peft(**batch).last_hidden_state
    assert not torch.allclose(before, after)  # the adapter changes what the encoder computes


def test_mlm_head_is_detected_when_the_checkpoint_has_one(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import BertForMaskedLM

    with one_thread():
        encoder, _, out_emb, found = _load_masked_lm(resolve(str(tiny_dir)))
        assert not found
        assert out_emb.weight is encoder.get_input_embeddings().weight  # decoder tied
        folder = tmp_path / "with-head"
        shutil.copytree(tiny_dir, folder)
        BertForMaskedLM.from_pretrained(str(tiny_dir)).save_pretrained(str(folder))
        _, _, _, found = _load_masked_lm(resolve(str(folder)))
    assert found


def test_adapt_refuses_too_few_texts(tiny_base: BaseModel) -> None:
    with pytest.raises(InputDataError, match="at least 20 texts"):
        adapt_encoder(["a ticket"] * 5, base=tiny_base, recipe=tiny_domain_recipe())


def test_adapt_stops_at_the_budget(
    tiny_base: BaseModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    result = adapt_encoder(corpus(), base=tiny_base, recipe=tiny_domain_recipe(), max_minutes=1e-6, threads=1)
    assert result.card.recipe["max_minutes"] == 1e-6
    assert result.card.metrics["train_steps"] == 0
    assert (result.directory / WEIGHTS).is_file()


# --- warm start ------------------------------------------------------------------------
def _train(
    base: BaseModel, words: dict[str, list[str]], tmp_path: Path, **recipe: Any
) -> classifier.TrainResult:
    texts, labels = make_texts(words, per_label=20, seed=7)
    with one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setattr("tempfile.tempdir", str(tmp_path))
        return train_classifier(
            texts, labels, base=base, task="new", tenant="acme", recipe=small_recipe(**recipe), threads=1
        )


def test_warm_start_begins_from_the_domain_lora(
    domain_dir: Path, tiny_base: BaseModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    probe_encoders: list[type] = []
    original = classifier.embed

    def spy(model: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("stage") == "embedding":
            probe_encoders.append(type(model))
        return original(model, *args, **kwargs)

    monkeypatch.setattr(classifier, "embed", spy)
    result = _train(tiny_base, INTENT_WORDS, tmp_path, epochs=0, init_adapter=str(domain_dir))
    donor, got = _lora(domain_dir), _lora(result.directory)
    assert set(got) == set(donor)
    for key in donor:
        torch.testing.assert_close(got[key], donor[key], rtol=0, atol=0)
    assert probe_encoders == [PeftModel]  # the linear probe saw the adapted encoder
    assert result.card.recipe["init_adapter"] == "acme/domain/v1"
    assert result.card.recipe["train_layers"] == 0  # the domain LoRA covers every layer


def test_warm_start_from_a_classifier_of_another_task(
    trained_intent: Trained, tiny_base: BaseModel, tmp_path: Path
) -> None:
    result = _train(tiny_base, DEVICE_WORDS, tmp_path, epochs=0, init_adapter=str(trained_intent.directory))
    donor, got = _lora(trained_intent.directory), _lora(result.directory)
    for key in donor:
        torch.testing.assert_close(got[key], donor[key], rtol=0, atol=0)
    head = load_file(str(result.directory / classifier.HEAD_FILE))
    assert head["weight"].shape[0] == len(DEVICE_WORDS)  # the head is the new task's own
    assert result.card.labels == sorted(DEVICE_WORDS)
    assert result.card.recipe["init_adapter"] == str(trained_intent.directory)  # unregistered: a path
    # the donor's LoRA layout is kept (the auto preset trains only the top layers)
    assert result.card.recipe["train_layers"] == trained_intent.card.recipe["train_layers"]


def test_warm_start_then_fine_tune_moves_away_from_the_donor(
    domain_dir: Path, tiny_base: BaseModel, tmp_path: Path
) -> None:
    result = _train(tiny_base, INTENT_WORDS, tmp_path, epochs=1, init_adapter=str(domain_dir))
    donor, got = _lora(domain_dir), _lora(result.directory)
    history = result.card.metrics["history"]
    assert len(history) == 2  # the probe (epoch 0) and one fine-tuned epoch
    if history[-1]["val_accuracy"] > history[0]["val_accuracy"]:  # the fine-tuned epoch was kept
        assert any(not torch.equal(got[k], donor[k]) for k in donor)
    assert set(got) == set(donor)


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text("utf-8"))
    config.update(changes)
    path.write_text(json.dumps(config), "utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"r": 8}, "not compatible.*r 8 \\(need 16\\)"),
        ({"lora_alpha": 8}, "not compatible.*lora_alpha 8"),
        ({"target_modules": ["query", "value"]}, "not compatible.*target_modules"),
    ],
)
def test_warm_start_refuses_an_incompatible_adapter(
    domain_dir: Path, tiny_base: BaseModel, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    _edit_config(domain_dir, **change)
    with pytest.raises(InputDataError, match=message):
        _train(tiny_base, INTENT_WORDS, tmp_path, epochs=0, init_adapter=str(domain_dir))


def test_warm_start_refuses_another_base_and_missing_weights(
    domain_dir: Path, tiny_base: BaseModel, tmp_path: Path
) -> None:
    card_path = domain_dir / "card.json"
    card = json.loads(card_path.read_text("utf-8"))
    card_path.write_text(json.dumps({**card, "base_model": "all-MiniLM-L6-v2"}), "utf-8")
    with pytest.raises(InputDataError, match="trained on base all-MiniLM-L6-v2"):
        _train(tiny_base, INTENT_WORDS, tmp_path, epochs=0, init_adapter=str(domain_dir))
    card_path.write_text(json.dumps(card), "utf-8")
    (domain_dir / WEIGHTS).unlink()
    with pytest.raises(InputDataError, match="no LoRA weights"):
        _train(tiny_base, INTENT_WORDS, tmp_path, epochs=0, init_adapter=str(domain_dir))


def test_domain_adapters_are_not_served(domain_dir: Path, tiny_base: BaseModel) -> None:
    from deskpilot.adapters.serving import Engine

    registry = Registry(domain_dir.parents[2])
    engine = Engine(registry, threads=1)
    engine.warm_up()  # a registered domain adapter is no champion: start-up skips it
    assert engine.ready()
    with pytest.raises(InputDataError, match="is a domain, not a classifier"):
        engine.predict("acme", "domain", ["reset my password"], version="v1")


def test_warm_start_from_a_top_layers_classifier_fine_tunes(tiny_base: BaseModel, tmp_path: Path) -> None:
    donor = _train(tiny_base, INTENT_WORDS, tmp_path, epochs=1, train_layers=1, refit_small=False)
    assert donor.card.recipe["train_layers"] == 1  # the donor's LoRA: top layer only
    result = _train(
        tiny_base, DEVICE_WORDS, tmp_path, epochs=1, init_adapter=str(donor.directory), refit_small=False
    )
    assert len(result.card.metrics["history"]) == 2
    assert result.card.recipe["train_layers"] == 1
    assert set(_lora(result.directory)) == set(_lora(donor.directory))
