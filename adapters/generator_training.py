"""LoRA fine-tuning of a causal LM to write helpdesk replies (a "responder" adapter).

Recipe (why each part is there):
- the caller builds the prompt messages (instructions plus retrieved resolved tickets);
  here they only pass through the chat template, so training sees exactly what
  generation will see;
- the loss is on the answer tokens only (prompt labels are -100): the model should learn
  to answer, not to reproduce tickets;
- an over-long prompt loses its middle (the start holds the instructions, the end the
  new ticket), never the answer beyond ``max_answer_tokens``;
- batches hold examples of similar length (little padding), in a seeded random order per
  epoch; a plain AdamW loop with linear warmup and decay, so the time budget can stop it
  between any two steps and keep what it has;
- speed on CPU (measured on SmolLM2-135M, ~400 prompt + ~60 answer tokens a pair): the LM
  head runs on the answer positions only (full-vocabulary logits for every prompt token
  were a fifth of a step), bf16 autocast where the CPU has bf16 matrix units (1.6x faster
  than fp32), and no LoRA dropout by default (its random masks over every LoRA input cost
  another ~1.3x). ``train_layers`` puts LoRA on the top layers only: backpropagation then
  stops there (the top 15 of 30: ~1.6x; the default top 20: ~1.2x, for 1,000 pairs in 20
  minutes on 2 cores).

Saved format: a standard PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``), loaded for serving by ``GeneratorModel.load(base, adapter)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.generator import (
    fit_prompt,
    load_causal_lm,
    load_chat_tokenizer,
    prompt_ids,
    quiet_peft,
)
from deskpilot.adapters.hardware import configure_threads, use_bf16
from deskpilot.adapters.registry import AdapterCard
from deskpilot.errors import InputDataError

StepProgress = Callable[[int, int], None]
IGNORE = -100
LINEAR_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ChatExample:
    """One training pair: the prompt messages (built by the caller) and the reply."""

    messages: list[dict[str, str]]
    answer: str


@dataclass
class ResponderRecipe:
    """Training settings, validated on construction.

    The learning rate was picked on 96 Bitext support replies (one epoch, batch 8, 32
    held out): held-out loss 1.374 at 2e-4, 1.259 at 5e-4, 1.177 at 1e-3 (LoRA on the top
    15 of 30 layers at 1e-3: 1.228, in 0.6x the time). Batch 8 at ~480 tokens peaks near
    6.6 GB of memory; batch 4 needs ~4 GB and is ~10% slower a pair.
    """

    epochs: int = 1
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 512
    max_answer_tokens: int = 160
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = LINEAR_PROJECTIONS
    # LoRA on the top N transformer layers only (None: all; bases with fewer layers train all).
    # 20 of SmolLM2-135M's 30: the bottom 10 need no backward pass. A step of 8 English tickets
    # on 2 AMD EPYC cores: all layers 11.4 s, top 24 9.6-10.0 s, top 20 9.4 s; with the top 24,
    # 1,000 pairs (904 trained, 96 validation) took 1,190 s, too close to the 20-minute budget
    train_layers: int | None = 20
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_minutes: float | None = None
    seed: int = 0
    bf16: str = "auto"

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        problems = [
            message
            for bad, message in (
                (self.epochs < 1, "epochs must be >= 1"),
                (not 0 < self.learning_rate <= 0.1, "learning rate must be in (0, 0.1]"),
                (self.batch_size < 1, "batch size must be >= 1"),
                (self.max_answer_tokens < 1, "max answer tokens must be >= 1"),
                (
                    self.max_length < self.max_answer_tokens + 16,
                    "max length must exceed the answer cap by 16",
                ),
                (self.lora_r < 1 or self.lora_alpha <= 0, "LoRA r must be >= 1 and alpha > 0"),
                (not 0 <= self.lora_dropout < 1, "LoRA dropout must be in [0, 1)"),
                (not self.target_modules, "LoRA needs at least one target module"),
                (self.train_layers is not None and self.train_layers < 1, "train layers must be >= 1"),
                (not 0 <= self.warmup_ratio < 1, "warmup ratio must be in [0, 1)"),
                (self.max_minutes is not None and self.max_minutes <= 0, "--max-minutes must be positive"),
                (self.bf16 not in ("auto", "on", "off"), "bf16 must be auto, on or off"),
            )
            if bad
        ]
        if problems:
            raise InputDataError("invalid responder recipe: " + "; ".join(problems))


@dataclass
class ResponderTrainResult:
    """The trained LoRA model (PEFT-wrapped, in memory) and what training measured."""

    model: Any  # peft.PeftModel
    tokenizer: PreTrainedTokenizerBase
    base: BaseModel
    recipe: ResponderRecipe
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    stopped_early: bool = False
    n_train: int = 0
    train_tokens: int = 0  # prompt + answer tokens through the optimizer steps
    examples_seen: int = 0  # pairs through the optimizer steps (each epoch counts)
    step_seconds: float = 0.0  # time in optimizer steps (no loading, no evaluation)
    train_seconds: float = 0.0  # all of train_responder
    data_hash: str = ""

    @property
    def tokens_per_second(self) -> float:
        return round(self.train_tokens / self.step_seconds, 1) if self.step_seconds else 0.0

    @property
    def seconds_per_example(self) -> float:
        return round(self.step_seconds / self.examples_seen, 3) if self.examples_seen else 0.0

    def metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "train_loss": last.get("train_loss"),
            "eval_loss": last.get("eval_loss"),
            "history": self.history,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "stopped_early": self.stopped_early,
            "tokens_per_second": self.tokens_per_second,
            "seconds_per_example": self.seconds_per_example,
        }


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


class _Budget:
    def __init__(self, max_minutes: float | None) -> None:
        self.deadline = time.monotonic() + max_minutes * 60 if max_minutes else None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


# --- data ------------------------------------------------------------------------------
def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that closes an assistant turn: ``<|im_end|>`` in ChatML, else EOS."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        return int(vocab["<|im_end|>"])
    if tokenizer.eos_token_id is None:
        raise InputDataError("the base tokenizer has neither <|im_end|> nor an EOS token")
    return int(tokenizer.eos_token_id)


def encode_example(
    tokenizer: PreTrainedTokenizerBase, example: ChatExample, recipe: ResponderRecipe
) -> Encoded:
    """Prompt + answer + end of turn; labels only on the answer (and its end token)."""
    answer = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    if not answer:
        raise InputDataError("a training answer is empty")
    if len(answer) >= recipe.max_answer_tokens:  # cut: no end token, it did not end there
        answer = answer[: recipe.max_answer_tokens]
    else:
        answer.append(end_of_turn_id(tokenizer))
    prompt = fit_prompt(prompt_ids(tokenizer, example.messages), recipe.max_length - len(answer))
    return Encoded(prompt + answer, [IGNORE] * len(prompt) + answer)


def batches(examples: Sequence[Encoded], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Index batches of similar length; their order shuffled when ``rng`` is given."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def collate(examples: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def data_hash(examples: Sequence[ChatExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.messages, e.answer], ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\x1e")
    return "sha256:" + h.hexdigest()


# --- training --------------------------------------------------------------------------
def lora_model(model: PreTrainedModel, recipe: ResponderRecipe) -> Any:
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in recipe.target_modules if t in present]
    if not targets:
        raise InputDataError(
            f"none of the LoRA target modules {list(recipe.target_modules)} exist in this base model"
        )
    depth = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    top: list[int] | None = None
    if recipe.train_layers and depth and recipe.train_layers < depth:
        top = list(range(depth - recipe.train_layers, depth))
    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=targets,
        layers_to_transform=top,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with quiet_peft():
        return get_peft_model(model, config)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to the peak, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train_responder(
    examples: Sequence[ChatExample],
    base: BaseModel,
    recipe: ResponderRecipe | None = None,
    progress: StepProgress | None = None,
    *,
    eval_examples: Sequence[ChatExample] = (),
    threads: int | None = None,
    device: str | None = None,
) -> ResponderTrainResult:
    """Train a LoRA responder on (prompt messages, answer) pairs; save with :func:`save_responder`.

    ``device`` None: CUDA when there is one, else the CPU.
    """
    recipe = recipe or ResponderRecipe()
    if not examples:
        raise InputDataError("a responder needs at least one training example")
    started = time.monotonic()
    budget = _Budget(recipe.max_minutes)
    configure_threads(threads)
    torch.manual_seed(recipe.seed)
    tokenizer = load_chat_tokenizer(base)
    train = [encode_example(tokenizer, e, recipe) for e in examples]
    held = [encode_example(tokenizer, e, recipe) for e in eval_examples]
    model = lora_model(load_causal_lm(base), recipe)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = ResponderTrainResult(
        model, tokenizer, base, recipe, n_train=len(train), data_hash=data_hash(examples)
    )
    _run(result, train, held, budget, progress)
    model.eval()
    result.train_seconds = round(time.monotonic() - started, 2)
    return result


def _run(
    result: ResponderTrainResult,
    train: list[Encoded],
    held: list[Encoded],
    budget: _Budget,
    progress: StepProgress | None,
) -> None:
    recipe, model = result.recipe, result.model
    pad_id = int(result.tokenizer.pad_token_id)
    per_epoch = math.ceil(len(train) / recipe.batch_size)
    result.total_steps = per_epoch * recipe.epochs
    warmup = max(1, round(recipe.warmup_ratio * result.total_steps))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    device = next(model.parameters()).device
    autocast = use_bf16(recipe.bf16, device.type)
    rng = random.Random(recipe.seed)
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        loss_sum, weight = 0.0, 0
        for idx in batches(train, recipe.batch_size, rng):
            if budget.expired():
                result.stopped_early = True
                break
            step_started = time.perf_counter()
            batch = {k: v.to(device) for k, v in collate([train[i] for i in idx], pad_id).items()}
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate * lr_factor(result.steps, result.total_steps, warmup)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, tokens = answer_loss(model, batch)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, recipe.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum, weight = loss_sum + float(loss.detach()) * tokens, weight + tokens
            result.train_tokens += int(batch["attention_mask"].sum())
            result.examples_seen += len(idx)
            result.step_seconds += time.perf_counter() - step_started
            result.steps += 1
            if progress:
                progress(result.steps, result.total_steps)
        if weight:
            entry = {"epoch": float(epoch), "train_loss": round(loss_sum / weight, 4)}
            if held:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    entry["eval_loss"] = round(evaluate_loss(model, held, pad_id, recipe.batch_size), 4)
            result.history.append(entry)
        if result.stopped_early:
            break


@torch.inference_mode()
def evaluate_loss(model: Any, examples: Sequence[Encoded], pad_id: int, batch_size: int = 8) -> float:
    """Mean loss per answer token over ``examples``."""
    model.eval()
    total, weight = 0.0, 0
    device = next(model.parameters()).device
    for idx in batches(examples, batch_size, None):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], pad_id).items()}
        loss, tokens = answer_loss(model, batch)
        total += float(loss) * tokens
        weight += tokens
    return total / max(1, weight)


def answer_loss(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens, and how many there were.

    The same value as the model's own ``labels=`` loss, but the LM head only runs from
    the first answer position of the batch on (``logits_to_keep``).
    """
    labels = batch["labels"]
    width = labels.shape[1]
    first = int((labels != IGNORE).to(torch.int8).argmax(dim=1).min())
    start = max(0, first - 1)  # the position whose logits predict the first answer token
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=width - start
    )
    logits = out.logits[:, :-1]
    target = labels[:, start + 1 :]
    tokens = int((target != IGNORE).sum())
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss / max(1, tokens), tokens


# --- saving ----------------------------------------------------------------------------
def save_responder(result: ResponderTrainResult, folder: Path) -> Path:
    """Write the PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_peft():
        result.model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def responder_card(result: ResponderTrainResult, *, task: str, tenant: str) -> AdapterCard:
    """The card :meth:`Registry.register` stores beside the adapter (kind ``responder``)."""
    return AdapterCard(
        task=task,
        tenant=tenant,
        kind="responder",
        base_model=result.base.name,
        labels=[],
        data_hash=result.data_hash,
        n_train=result.n_train,
        train_seconds=result.train_seconds,
        recipe={**asdict(result.recipe), "target_modules": list(result.recipe.target_modules)},
        metrics=result.metrics(),
    )
