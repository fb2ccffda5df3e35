"""The engine's fast path (adapters/fastencoder.py): same answers as PEFT, whatever the mix.

The fast path packs sequences, groups rows by length for attention, keeps LoRA matrices in
per-layer slot stacks, merges the hot adapter and may run in bf16; each of these is checked
against the PEFT module tree (the training-time model) or the fp32 fast path.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from adapters_support import Trained, peft_warning

from deskpilot.adapters.fastencoder import FastEncoder, _attention_groups
from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.adapters.serving import Engine, Request

pytestmark = peft_warning

Register = Callable[..., AdapterCard]


def _probs(engine: Engine, task: str, texts: list[str]) -> torch.Tensor:
    return engine.probabilities("acme", task, texts)[1]


def test_bert_bases_are_served_by_the_fast_path(
    registry: Registry, register: Register, trained_intent: Trained
) -> None:
    register(trained_intent)
    engine = Engine(registry)
    engine.predict("acme", "intent", trained_intent.heldout)
    (info,) = engine.describe().values()
    assert info["backend"] == "fast" and info["dtype"] == "float32" and info["resident"] == 1
    (base,) = engine._bases.values()
    assert base.peft is None  # PEFT never needed


def test_unsupported_lora_falls_back_to_peft_and_mixes_with_fast_rows(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    register(trained_intent)
    card = register(trained_device)
    # a rank pattern (which deskpilot never writes) is something the fast path leaves to PEFT
    config_path = registry.path("acme", "device", card.version) / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "rank_pattern": {"value": config["r"]}}))
    engine = Engine(registry)
    alone_intent = _probs(engine, "intent", trained_intent.heldout)
    alone_device = _probs(engine, "device", trained_device.heldout)
    (base,) = engine._bases.values()
    assert {h.key: h.backend for h in base.resident.values()} == {
        "acme__intent__v1": "fast",
        "acme__device__v1": "peft",
    }
    torch.testing.assert_close(alone_intent, trained_intent.expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone_device, trained_device.expected, atol=1e-6, rtol=0)
    mixed = engine.predict_many(
        [
            Request("acme", "device", trained_device.heldout[:2], abstain=False),
            Request("acme", "intent", trained_intent.heldout, abstain=False),
            Request("acme", "device", trained_device.heldout[2:], abstain=False),
        ]
    )
    got = [p.label for p in [*mixed[0], *mixed[2]]]  # type: ignore[misc]
    assert got == trained_device.expected_labels()
    assert [p.label for p in mixed[1]] == trained_intent.expected_labels()  # type: ignore[union-attr]


def test_many_adapters_in_one_pass_each_answer_as_alone(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    """More LoRA adapters than the first slot stack holds (8): the stacks grow, every row keeps
    its own; probe-only adapters (an all-zero LoRA) run as the bare base, with no slot."""
    tasks = []
    for i in range(18):
        trained = trained_intent if i % 2 else trained_device
        card = register(trained, task=f"t{i}")
        if trained is trained_intent:
            _nonzero(registry.path("acme", card.task, card.version), seed=i)
        tasks.append((card.task, trained))
    engine = Engine(registry)
    alone = {task: _probs(engine, task, trained.heldout) for task, trained in tasks}
    requests = [
        Request("acme", task, [text], abstain=False)
        for j in range(6)
        for task, trained in tasks
        for text in trained.heldout[j : j + 1]
    ]
    results = engine.predict_many(requests)
    seen: dict[str, int] = {}
    for request, result in zip(requests, results, strict=True):
        assert isinstance(result, list)
        row = seen.get(request.task, 0)
        seen[request.task] = row + 1
        expected = alone[request.task][row]
        assert (
            result[0].label == engine._head("acme", request.task, None)[0].card.labels[int(expected.argmax())]
        )
        assert abs(result[0].score - float(expected.max())) <= 1e-5
    (base,) = engine._bases.values()
    assert base.fast is not None and base.fast.arena is not None
    assert len(base.fast.adapters) == 9 and base.fast.arena.capacity >= 9
    assert len(base.fast.bare) == 9


def test_the_hot_adapter_is_merged_and_answers_as_unmerged(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    _nonzero(registry.path("acme", "intent", register(trained_intent).version))
    register(trained_device)
    engine = Engine(registry)
    first = _probs(engine, "intent", trained_intent.heldout[:3])  # 3 rows, first pass: unmerged
    (base,) = engine._bases.values()
    assert base.fast is not None and base.fast.merged_key is None
    second = _probs(engine, "intent", trained_intent.heldout[:3])  # second pass in a row: merged
    assert base.fast.merged_key == "acme__intent__v1"
    torch.testing.assert_close(second, first, atol=1e-6, rtol=0)
    # another adapter alone does not re-merge at once, and the merged one is still right
    torch.testing.assert_close(
        _probs(engine, "device", trained_device.heldout), trained_device.expected, atol=1e-6, rtol=0
    )
    assert base.fast.merged_key == "acme__intent__v1"
    # evicting the merged adapter drops its merged weights
    register(trained_intent, task="other")
    engine.max_resident = 1
    engine.predict("acme", "other", trained_intent.heldout[:1])
    assert list(base.resident) == ["acme__other__v1"] and base.fast.merged_key is None


@pytest.mark.parametrize("texts_per_request", [1, 5])
def test_bf16_agrees_with_fp32(
    registry: Registry, register: Register, trained_intent: Trained, texts_per_request: int
) -> None:
    """bf16 weights (forced on, whatever the CPU): same labels, probabilities within 0.05."""
    register(trained_intent)
    exact = Engine(registry)
    fast = Engine(registry, bf16="on")
    assert fast.dtype == torch.bfloat16
    texts = trained_intent.heldout
    for start in range(0, len(texts), texts_per_request):
        chunk = texts[start : start + texts_per_request]
        a, b = _probs(exact, "intent", chunk), _probs(fast, "intent", chunk)
        assert (a.argmax(-1) == b.argmax(-1)).all()
        torch.testing.assert_close(b, a, atol=0.05, rtol=0)
    (info,) = fast.describe().values()
    assert info["dtype"] == "bfloat16"


def test_bf16_pass_of_mixed_lengths_equals_rows_alone(tiny_base: object, trained_intent: Trained) -> None:
    """Packing, padding to buckets and length groups for attention change nothing per row."""
    from deskpilot.adapters.encoding import load_encoder, load_tokenizer

    encoder = load_encoder(tiny_base)  # type: ignore[arg-type]
    tokenizer = load_tokenizer(tiny_base)  # type: ignore[arg-type]
    fast = FastEncoder(encoder, dtype=torch.bfloat16)
    assert fast.load("a", trained_intent.directory)
    texts = [*trained_intent.heldout[:6], " ".join(trained_intent.heldout[:4]), "help"]
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    together = fast.embed(ids, ["a"] * len(ids), merge_after=10**6, batch_size=10**6)
    alone = torch.cat([fast.embed([row], ["a"], merge_after=10**6) for row in ids])
    torch.testing.assert_close(together, alone, atol=2e-2, rtol=0)
    cosine = (together * alone).sum(-1)
    assert float(cosine.min()) > 0.999


def test_attention_groups_cover_every_token_once() -> None:
    lengths = [3, 40, 7, 41, 8, 20, 1]
    groups = _attention_groups(lengths)
    assert len(groups) > 1
    tokens = torch.cat([g.tokens for g in groups if g.tokens is not None])
    assert sorted(tokens.tolist()) == list(range(sum(lengths)))
    for g in groups:
        assert g.tokens is not None and len(g.tokens) <= g.batch * g.longest
        if g.slot is not None:
            assert g.mask is not None and int(g.mask.sum()) == len(g.tokens)
    # rows of one length need neither padding nor a gather
    (same,) = _attention_groups([5, 5, 5])
    assert same.tokens is None and same.slot is None and same.mask is None


def test_lora_weights_are_fresh_copies(tiny_base: object, trained_intent: Trained, tmp_path: Path) -> None:
    """An adapter's stack slot holds its own copy: nothing keeps the file's buffer alive."""
    from deskpilot.adapters.encoding import load_encoder

    fast = FastEncoder(load_encoder(tiny_base))  # type: ignore[arg-type]
    lora = _lora_copy(trained_intent.directory, tmp_path / "lora")
    assert fast.load("a", lora)
    assert fast.load("b", lora)
    assert fast.arena is not None
    sa, sb = fast.adapters["a"], fast.adapters["b"]
    assert sa != sb
    for layer in fast.arena.b:
        for stack in layer.values():
            torch.testing.assert_close(stack[sa], stack[sb])
    fast.remove("a")
    assert "a" not in fast.adapters and sa in fast.arena.free


def test_lora_on_the_top_layer_only(
    registry: Registry, register: Register, trained_intent: Trained, trained_device: Trained
) -> None:
    """Adapters may adapt only the top layers: the others are skipped, and not copied when merged."""
    from safetensors.torch import load_file, save_file

    card = register(trained_intent)
    path = registry.path("acme", "intent", card.version)
    weights = load_file(str(path / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    top = {
        k: (0.05 * torch.randn(v.shape, generator=generator)) if ".lora_B." in k else v.contiguous()
        for k, v in weights.items()
        if ".layer.1." in k
    }
    assert top and len(top) < len(weights)
    save_file(top, str(path / "adapter_model.safetensors"))
    config = json.loads((path / "adapter_config.json").read_text())
    config["target_modules"] = r".*\bencoder\.layer\.(1)\..*\.(dense|key|query|value)"
    (path / "adapter_config.json").write_text(json.dumps(config))

    fast, slow = Engine(registry), Engine(registry, fast=False)
    texts = trained_intent.heldout
    want = _probs(slow, "intent", texts)
    torch.testing.assert_close(_probs(fast, "intent", texts), want, atol=1e-6, rtol=0)  # unmerged
    torch.testing.assert_close(_probs(fast, "intent", texts), want, atol=1e-6, rtol=0)  # merged
    (base,) = fast._bases.values()
    assert base.fast is not None and base.fast.merged_key == "acme__intent__v1"
    merged, plain = base.fast._merged, base.fast.layers
    assert merged is not None
    assert merged[0].qkv_w is plain[0].qkv_w and merged[0].ff_out_w is plain[0].ff_out_w
    assert merged[1].qkv_w is not plain[1].qkv_w
    assert base.fast.arena is not None and not base.fast.arena.adapts(
        0, "qkv", [base.fast.adapters["acme__intent__v1"]]
    )

    # an adapter of every layer arrives later: the lower layers' stacks appear, zero for intent
    register(trained_device)
    _nonzero(registry.path("acme", "device", "v1"))
    requests = [
        Request("acme", "intent", texts[:3], abstain=False),
        Request("acme", "device", trained_device.heldout, abstain=False),
        Request("acme", "intent", texts[3:], abstain=False),
    ]
    got, want = fast.predict_many(requests), slow.predict_many(requests)
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, list) and isinstance(w, list)
        assert [p.label for p in g] == [p.label for p in w]
        assert max(abs(a.score - b.score) for a, b in zip(g, w, strict=True)) <= 1e-5
    assert base.fast.arena.adapts(0, "qkv", [base.fast.adapters["acme__device__v1"]])


def _nonzero(path: Path, seed: int = 1) -> None:
    """Random LoRA B matrices: the tiny test adapters keep their probe epoch, whose B is zero,
    and an all-zero LoRA runs as the bare base (no slot, nothing to merge)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    save_file(
        {
            k: (0.05 * torch.randn(v.shape, generator=generator)) if ".lora_B." in k else v.contiguous()
            for k, v in weights.items()
        },
        str(path / "adapter_model.safetensors"),
    )


def _lora_copy(directory: Path, target: Path, seed: int = 1) -> Path:
    shutil.copytree(directory, target)
    _nonzero(target, seed)
    return target


def test_bf16_mixed_pass_equals_each_adapter_alone(
    tiny_base: object, trained_intent: Trained, trained_device: Trained, tmp_path: Path
) -> None:
    """bf16 LoRA runs on pieces of rows (one batched product per layer): a pass mixing adapters
    gives each row what its adapter gives alone, and what fp32 gives within bf16 rounding."""
    from deskpilot.adapters.encoding import load_encoder, load_tokenizer

    encoder = load_encoder(tiny_base)  # type: ignore[arg-type]
    tokenizer = load_tokenizer(tiny_base)  # type: ignore[arg-type]
    fast, exact = FastEncoder(encoder, dtype=torch.bfloat16), FastEncoder(encoder)
    a = _lora_copy(trained_intent.directory, tmp_path / "a", seed=1)
    b = _lora_copy(trained_device.directory, tmp_path / "b", seed=2)
    for enc in (fast, exact):
        assert enc.load("a", a) and enc.load("b", b)
    assert fast.arena is not None and fast.arena.dtype == torch.bfloat16
    assert exact.arena is not None and exact.arena.dtype == torch.float32
    texts = [*trained_intent.heldout, *trained_device.heldout, " ".join(trained_intent.heldout[:5])]
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    keys = ["a" if i % 3 else "b" for i in range(len(ids))]
    mixed = fast.embed(ids, keys, merge_after=10**6, batch_size=10**6)
    alone = torch.cat(
        [fast.embed([row], [key], merge_after=10**6) for row, key in zip(ids, keys, strict=True)]
    )
    torch.testing.assert_close(mixed, alone, atol=2e-2, rtol=0)
    reference = exact.embed(ids, keys, merge_after=10**6, batch_size=10**6)
    assert float((mixed * reference).sum(-1).min()) > 0.999
    assert float((alone * reference).sum(-1).min()) > 0.999


def test_lora_pieces_cover_every_row_once() -> None:
    from deskpilot.adapters.fastencoder import PIECE, PIECES, _Lora

    sizes = [3, PIECE, PIECE + 1, 40]
    ends = torch.tensor(sizes).cumsum(0).tolist()
    plan = _Lora(ends[-1], [1, 4, 5, 9], torch.zeros(16, dtype=torch.int32), ends)
    plan.cut()
    assert plan.at is not None and plan.piece_slots is not None
    assert len(plan.piece_slots) % PIECES == 0 and len(set(plan.at.tolist())) == plan.rows
    pieces = plan.at // PIECE
    for slot, start, end in plan.groups():  # every row sits in a piece of its own adapter
        assert set(plan.piece_slots[pieces[start:end]].tolist()) == {slot}


def test_an_untrained_lora_runs_as_the_bare_base(tiny_base: object, trained_device: Trained) -> None:
    """A probe-only adapter (``--preset fast``) saves LoRA B = 0: no slot, no merge, base output."""
    from deskpilot.adapters.encoding import load_encoder, load_tokenizer

    fast = FastEncoder(load_encoder(tiny_base))  # type: ignore[arg-type]
    tokenizer = load_tokenizer(tiny_base)  # type: ignore[arg-type]
    assert fast.load("probe", trained_device.directory)
    assert fast.bare == {"probe"} and fast.arena is None and not fast.adapters
    ids = tokenizer(trained_device.heldout[:4], truncation=True, max_length=64)["input_ids"]
    for _ in range(3):  # a streak that would merge a real adapter
        torch.testing.assert_close(
            fast.embed(ids, ["probe"] * 4), fast.embed(ids, [None] * 4), atol=0, rtol=0
        )
    assert fast.merged_key is None
    fast.remove("probe")
    assert not fast.bare
