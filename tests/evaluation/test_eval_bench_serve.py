"""``bench serve`` on a tiny random BERT: the pipeline's model answers as the engine does,
the figures and files are all there, and the requirement checks read them right."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from adapters_support import (
    INTENT_WORDS,
    PEFT_GC_WARNING,
    build_tiny_bert,
    make_texts,
    one_thread,
    small_recipe,
)

from deskpilot.adapters.registry import Registry
from deskpilot.evaluation import bench_serve
from deskpilot.evaluation.bench_serve import KEYS, ServeConfig, checks, clone_adapters, run_serve

pytestmark = pytest.mark.filterwarnings(PEFT_GC_WARNING)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A registry holding acme/intent v1 (one LoRA epoch on the tiny BERT) and held-out texts."""
    from deskpilot.adapters.catalog import resolve
    from deskpilot.adapters.classifier import train_classifier

    root = tmp_path_factory.mktemp("bench-serve")
    base = resolve(str(build_tiny_bert(root / "bert")))
    texts, labels = make_texts(INTENT_WORDS, per_label=40, seed=1)
    heldout, heldout_labels = make_texts(INTENT_WORDS, per_label=8, seed=2)
    with one_thread(), pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        mp.setattr(tempfile, "tempdir", str(root))
        result = train_classifier(
            texts, labels, base=base, task="intent", tenant="acme", recipe=small_recipe(epochs=1), threads=1
        )
    registry = Registry(root / "adapters")
    card = registry.register(result.directory, result.card, promote=True)
    _nonzero_lora(registry.path("acme", "intent", card.version))
    return root / "adapters", heldout, heldout_labels


def _nonzero_lora(path: Path) -> None:
    """Give every LoRA B matrix small random values: with data this easy the probe alone may
    win validation (LoRA B stays zero), and merging must have something to merge."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file(
        {
            k: (0.05 * torch.randn(v.shape, generator=generator)) if ".lora_B." in k else v.contiguous()
            for k, v in weights.items()
        },
        str(path / "adapter_model.safetensors"),
    )


def test_the_pipeline_model_answers_as_the_engine(trained: tuple[Path, list[str], list[str]]) -> None:
    from deskpilot.adapters.serving import Engine

    root, texts, _ = trained
    registry = Registry(root)
    card = registry.card("acme", "intent")
    path = registry.path("acme", "intent", card.version)
    assert not bench_serve.lora_is_zero(path)  # merging has something to merge
    model, tokenizer = bench_serve.merged_model(path, card.base_model, card.labels)
    got = bench_serve.run_pipeline(model, tokenizer, texts, batch_size=4, max_length=32)
    engine = Engine(registry)
    assert got == [p.label for p in engine.predict("acme", "intent", texts, abstain=False)]
    # and the logits agree, not just the labels (the engine adds only temperature scaling)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**batch).logits
    probs = (logits / card.calibration["temperature"]).softmax(-1)
    torch.testing.assert_close(probs, engine.probabilities("acme", "intent", texts)[1], atol=1e-5, rtol=0)


def test_clones_have_weights_of_their_own(trained: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    root, _, _ = trained
    registry = Registry(root)
    card = registry.card("acme", "intent")
    target = tmp_path / "adapters"
    target.mkdir()
    tasks = clone_adapters(registry.path("acme", "intent", card.version), card, target, 3, seed=0)
    assert tasks == ["serve-00", "serve-01", "serve-02"]
    clones = Registry(target)
    weights = [load_file(str(clones.path("bench", t, "v1") / "adapter_model.safetensors")) for t in tasks]
    for key in weights[0]:
        if ".lora_B." in key and weights[0][key].abs().sum() > 0:
            assert not torch.equal(weights[0][key], weights[1][key])
        if ".lora_A." in key:
            assert torch.equal(weights[0][key], weights[2][key])
    assert all(clones.champion_version("bench", t) == "v1" for t in tasks)


def test_clones_of_a_probe_only_adapter_get_lora_work(
    trained: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    """All-zero LoRA B (the probe won validation) would make every clone the bare base, which
    the engine serves without LoRA: the mixed stream would measure nothing."""
    import shutil

    from safetensors.torch import load_file, save_file

    root, _, _ = trained
    registry = Registry(root)
    card = registry.card("acme", "intent")
    probe = tmp_path / "probe"
    shutil.copytree(registry.path("acme", "intent", card.version), probe)
    weights = load_file(str(probe / "adapter_model.safetensors"))
    zeroed = {k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in weights.items()}
    save_file(zeroed, str(probe / "adapter_model.safetensors"))
    assert bench_serve.lora_is_zero(probe)
    target = tmp_path / "adapters"
    target.mkdir()
    tasks = clone_adapters(probe, card, target, 3, seed=0)
    clones = Registry(target)
    paths = [clones.path("bench", t, "v1") for t in tasks]
    assert not any(bench_serve.lora_is_zero(p) for p in paths)
    first, second = (load_file(str(p / "adapter_model.safetensors")) for p in paths[:2])
    b_keys = [k for k in first if ".lora_B." in k]
    assert b_keys and all(not torch.equal(first[k], second[k]) for k in b_keys)
    assert all(torch.equal(first[k], zeroed[k]) for k in first if ".lora_A." in k)


@pytest.mark.slow
def test_run_serve_writes_every_figure(trained: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    root, texts, labels = trained
    md = tmp_path / "RESULTS.md"
    md.write_text("# results\n\n<!-- quality:start -->\nkept\n<!-- quality:end -->\n")
    results = run_serve(
        root,
        "acme",
        "intent",
        texts,
        labels,
        config=ServeConfig(adapters=3, latency_texts=6, latency_warmup=2, repeats=1, threads=1, bf16="off"),
        dataset="synthetic",
        out_dir=tmp_path / "results",
        markdown=md,
        command="deskpilot bench serve --test",
    )
    for key in KEYS:
        assert isinstance(results[key], float | int) and results[key] > 0, key
    assert 0 < results["accuracy_engine"] <= 1 and 0 < results["accuracy_pipeline"] <= 1
    assert abs(results["accuracy_engine"] - results["accuracy_pipeline"]) < 1e-9  # both fp32
    assert results["latency_p50_ms"] <= results["latency_p95_ms"]
    assert results["child"]["adapters_resident"] == 3
    assert set(results["requirements"]) == set(bench_serve.TARGETS)
    saved = json.loads((tmp_path / "results" / "serve.json").read_text())
    assert {k: saved[k] for k in KEYS} == {k: results[k] for k in KEYS}
    assert saved["command"] == "deskpilot bench serve --test" and saved["machine"]["cpu"]
    text = md.read_text()
    assert "<!-- serve:start -->" in text and "<!-- serve:end -->" in text and "kept" in text
    assert "## Serving" in text and results["date"] in text
    assert bench_serve.summary(results)["requirements"] == {
        k: v["met"] for k, v in results["requirements"].items()
    }


def test_checks_read_the_targets_right() -> None:
    figures = {
        "pipeline_texts_per_s": 250.0,
        "engine_texts_per_s": 1100.0,
        "accuracy_pipeline": 0.93,
        "accuracy_engine": 0.926,
        "latency_p50_ms": 3.2,
        "rss_1_adapter_mb": 600.0,
        "rss_50_adapters_mb": 700.0,
        "single_adapter_texts_per_s": 1000.0,
        "mixed_adapters_texts_per_s": 650.0,
    }
    got = checks(figures)
    assert got["throughput_vs_pipeline"] == {"value": 4.4, "target": ">= 4.0", "met": True}
    assert got["accuracy_delta_points"]["met"] is False  # 0.4 points
    assert got["latency_p50_ms"]["met"] is False
    assert got["rss_50_over_1"]["met"] is True
    assert got["mixed_over_single"]["met"] is False


def test_config_refuses_nonsense() -> None:
    from deskpilot.errors import InputDataError

    with pytest.raises(InputDataError):
        ServeConfig(adapters=0)
