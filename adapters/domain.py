"""Domain adaptation: masked-LM continued pre-training of the encoder with LoRA.

A company's unlabelled tickets teach the encoder its vocabulary (product names, error codes,
in-house jargon) before any label exists. The result is a LoRA adapter on the *bare*
encoder, with the same rank and target modules as a classifier adapter, so
``ClassifierRecipe(init_adapter=...)`` can start a classifier from it (warm start).

Recipe:
- the MLM head comes with the masked-LM class of the base (``AutoModelForMaskedLM``); its
  decoder is tied to the word embeddings (frozen, so the adapter stays LoRA-only). Sentence
  encoders such as all-MiniLM-L6-v2 ship without ``cls.predictions.*``: the transform
  (dense + LayerNorm) and the output bias are then random, so
- step 1 fits the head alone on the frozen encoder (like the classifier's linear probe): LoRA
  then learns from a head that already predicts tokens, not from noise, and the held-out
  MLM loss measured after this step is an honest "before";
- step 2 trains LoRA (every linear layer of the encoder) and the head together with the
  Hugging Face Trainer: 15 % masking (``DataCollatorForLanguageModeling``: 80 % [MASK],
  10 % random, 10 % kept), length-grouped batches, fixed seeds, a time budget;
- the head is dropped; only the encoder's LoRA weights are saved (PEFT format) with a card
  (``kind="domain"``) holding the held-out MLM loss before and after.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.classifier import lora_config
from deskpilot.adapters.encoding import ProgressFn, length_sorted_batches, load_tokenizer, tokenize
from deskpilot.adapters.hardware import configure_threads, use_bf16
from deskpilot.adapters.registry import AdapterCard
from deskpilot.errors import InputDataError

MIN_TEXTS = 20


@dataclass
class DomainRecipe:
    """Settings for continued pre-training; rank, alpha and targets match the classifier's."""

    epochs: int = 1
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    learning_rate: float = 5e-4
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    max_length: int = 128
    mlm_probability: float = 0.15
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    heldout_fraction: float = 0.05
    max_heldout: int = 1000
    head_fit_fraction: float = 0.25  # step 1: this share of an epoch's batches (and at most of the budget)
    seed: int = 0
    max_minutes: float | None = None
    bf16: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8 or self.lora_r < 1:
            raise InputDataError("epochs, batch size and LoRA rank must be >= 1, max length >= 8")
        if not 0.0 < self.mlm_probability < 1.0:
            raise InputDataError("the masking probability must be in (0, 1)")
        if not 0.0 < self.heldout_fraction < 0.5:
            raise InputDataError("the held-out fraction must be in (0, 0.5)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InputDataError("--max-minutes must be positive")


@dataclass
class DomainResult:
    directory: Path
    card: AdapterCard


class MaskedLM(nn.Module):
    """encoder (LoRA-wrapped) -> MLM head on the masked positions only -> cross-entropy.

    Scoring only the ~15 % masked positions skips most of the vocabulary projection, the
    most expensive matmul of a small encoder's MLM step.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        out = self.encoder(**inputs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        selected = labels != -100
        if not bool(selected.any()):  # a batch of very short texts can end up with no mask
            return {"loss": hidden.sum() * 0.0, "n": selected.sum()}
        logits = self.head(hidden[selected]).float()
        return {"loss": F.cross_entropy(logits, labels[selected]), "n": selected.sum()}


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x1e")
    return "sha256:" + h.hexdigest()


def _load_masked_lm(base: BaseModel) -> tuple[nn.Module, nn.Module, nn.Module, bool]:
    """(bare encoder, MLM head module, output embedding, head found in the checkpoint)."""
    from transformers import AutoModelForMaskedLM

    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(
            str(base.path), local_files_only=True, output_loading_info=True
        )
    except ValueError as exc:  # no masked-LM class for this architecture
        raise InputDataError(
            f"base model {base.name} has no masked-LM form, so it cannot be domain-adapted",
            hint="use a BERT-style encoder, e.g. the default all-MiniLM-L6-v2",
        ) from exc
    prefix = mlm.base_model_prefix
    heads = [m for n, m in mlm.named_children() if n != prefix and any(True for _ in m.parameters())]
    if len(heads) != 1:
        raise InputDataError(
            f"{type(mlm).__name__} keeps its masked-LM head in {len(heads)} modules; "
            "domain adaptation supports one (BERT, RoBERTa and similar)"
        )
    head = heads[0]
    missing = {k for k in info.get("missing_keys", ()) if not k.startswith(prefix + ".")}
    encoder = mlm.base_model
    encoder.train()
    return encoder, head, mlm.get_output_embeddings(), not missing


def _split(n: int, recipe: DomainRecipe) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(recipe.seed).shuffle(order)
    n_held = min(recipe.max_heldout, max(1, round(n * recipe.heldout_fraction)))
    return sorted(order[n_held:]), sorted(order[:n_held])


@torch.inference_mode()
def _heldout_loss(model: MaskedLM, batches: Sequence[dict[str, torch.Tensor]]) -> float:
    """Mean cross-entropy per masked token over fixed (pre-masked) held-out batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        out = model(**{k: v.to(device) for k, v in batch.items()})
        n = int(out["n"])
        total += float(out["loss"]) * n
        count += n
    model.train(was_training)
    return total / count if count else float("nan")


def adapt_encoder(
    texts: Sequence[str],
    *,
    base: BaseModel,
    task: str = "domain",
    tenant: str = "default",
    recipe: DomainRecipe | None = None,
    progress: ProgressFn | None = None,
    max_minutes: float | None = None,
    threads: int | None = None,
) -> DomainResult:
    """Continue pre-training on ``texts``; returns a folder ready for :meth:`Registry.register`."""
    recipe = recipe or DomainRecipe()
    if max_minutes is not None:
        recipe = DomainRecipe(**{**asdict(recipe), "max_minutes": max_minutes})
    texts = [t for t in texts if t.strip()]
    if len(texts) < MIN_TEXTS:
        raise InputDataError(f"domain adaptation needs at least {MIN_TEXTS} texts, got {len(texts)}")
    started = time.monotonic()
    deadline = started + recipe.max_minutes * 60 if recipe.max_minutes else math.inf
    configure_threads(threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)

    from peft import get_peft_model
    from transformers import DataCollatorForLanguageModeling

    tokenizer = load_tokenizer(base)
    if tokenizer.mask_token is None:
        raise InputDataError(f"the tokenizer of {base.name} has no mask token")
    encoder, head, output_embeddings, head_in_checkpoint = _load_masked_lm(base)
    # the classifier's own config, so a classifier can start from this adapter (warm start)
    peft_encoder = get_peft_model(encoder, lora_config(encoder, recipe))  # freezes the base
    head_params = [p for p in head.parameters() if p is not output_embeddings.weight]
    for p in head_params:
        p.requires_grad_(True)
    model = MaskedLM(peft_encoder, head)

    train_idx, held_idx = _split(len(texts), recipe)
    features = tokenize(tokenizer, texts, recipe.max_length)
    train_rows = [features[i] for i in train_idx]
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=recipe.mlm_probability, seed=recipe.seed
    )
    # the held-out texts are masked once, so "before" and "after" see the same masks
    held_collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=recipe.mlm_probability, seed=recipe.seed + 1
    )
    held_batches = [
        held_collator([features[held_idx[i]] for i in b])
        for b in length_sorted_batches([features[i] for i in held_idx], 64)
    ]

    # 1. fit the head on the frozen encoder ------------------------------------------
    head_steps, head_loss = _fit_head(
        model, head_params, train_rows, collator, recipe, started, deadline, progress
    )
    loss_before = _heldout_loss(model, held_batches)

    # 2. LoRA + head with the HF Trainer -----------------------------------------------
    steps = _train(model, head_params, train_rows, collator, recipe, deadline, progress)
    loss_after = _heldout_loss(model, held_batches)
    with peft_encoder.disable_adapter():  # the head keeps learning in step 2: how much is LoRA's?
        loss_without_lora = _heldout_loss(model, held_batches)

    tmp = Path(tempfile.mkdtemp(prefix="deskpilot-adapt-"))
    try:
        peft_encoder.save_pretrained(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    card = AdapterCard(
        task=task,
        tenant=tenant,
        kind="domain",
        base_model=base.name,
        labels=[],
        data_hash=texts_hash(texts),
        n_train=len(train_idx),
        train_seconds=round(time.monotonic() - started, 2),
        recipe=asdict(recipe),
        metrics={
            "mlm_loss_before": _rounded(loss_before),
            "mlm_loss_after": _rounded(loss_after),
            "mlm_loss_after_without_lora": _rounded(loss_without_lora),
            "heldout_texts": len(held_idx),
            "heldout_masked_tokens": int(sum(int((b["labels"] != -100).sum()) for b in held_batches)),
            "head_fit_steps": head_steps,
            "head_fit_loss": _rounded(head_loss),
            "train_steps": steps,
        },
        extra={
            "mlm_head": "from the checkpoint"
            if head_in_checkpoint
            else "absent from the checkpoint: transform fitted, decoder tied",
        },
    )
    return DomainResult(directory=tmp, card=card)


def _rounded(value: float) -> float | None:
    """JSON-safe: cards and the database refuse NaN (no masked token held out, no head step)."""
    return round(value, 6) if math.isfinite(value) else None


def _batches(rows: Sequence[dict[str, list[int]]], batch_size: int, seed: int) -> list[list[int]]:
    """Length-grouped batches in a seeded random order."""
    batches = length_sorted_batches(rows, batch_size)
    random.Random(seed).shuffle(batches)
    return batches


def _fit_head(
    model: MaskedLM,
    head_params: list[nn.Parameter],
    rows: list[dict[str, list[int]]],
    collator: Any,
    recipe: DomainRecipe,
    started: float,
    deadline: float,
    progress: ProgressFn | None,
) -> tuple[int, float]:
    """Step 1: train the MLM head alone on frozen-encoder features (LoRA B is still zero)."""
    if not head_params:
        return 0, float("nan")
    batches = _batches(rows, recipe.batch_size, recipe.seed)
    n_steps = max(1, math.ceil(len(batches) * recipe.head_fit_fraction))
    head_deadline = started + (deadline - started) * recipe.head_fit_fraction
    optimizer = torch.optim.AdamW(head_params, lr=recipe.head_learning_rate, weight_decay=0.0)
    model.encoder.eval()
    model.head.train()
    device = next(model.parameters()).device
    loss = torch.tensor(float("nan"))
    done = 0
    for step, idx in enumerate(batches[:n_steps], start=1):
        batch = {k: v.to(device) for k, v in collator([rows[i] for i in idx]).items()}
        labels = batch.pop("labels")
        with torch.no_grad():
            out = model.encoder(**batch)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        selected = labels != -100
        if bool(selected.any()):
            loss = F.cross_entropy(model.head(hidden[selected]).float(), labels[selected])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        done = step
        if progress:
            progress("MLM head", step, n_steps)
        if time.monotonic() >= head_deadline:
            break
    optimizer.zero_grad(set_to_none=True)
    model.train()
    return done, float(loss.detach())


class _ListDataset(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _train(
    model: MaskedLM,
    head_params: list[nn.Parameter],
    rows: list[dict[str, list[int]]],
    collator: Any,
    recipe: DomainRecipe,
    deadline: float,
    progress: ProgressFn | None,
) -> int:
    """Step 2: LoRA and head together; stops cleanly at the deadline."""
    if time.monotonic() >= deadline:
        return 0
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    total_steps = math.ceil(len(rows) / recipe.batch_size) * recipe.epochs

    class Control(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if progress:
                progress("adapting", state.global_step, total_steps)
            if time.monotonic() >= deadline:
                control.should_training_stop = True
            return control

    head_ids = {id(p) for p in head_params}
    lora_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": recipe.learning_rate, "weight_decay": recipe.weight_decay},
            {"params": head_params, "lr": recipe.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    scratch = tempfile.TemporaryDirectory(prefix="deskpilot-trainer-")
    args = TrainingArguments(
        output_dir=scratch.name,
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(recipe.bf16),
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(rows),
        data_collator=collator,
        optimizers=(optimizer, None),
        callbacks=[Control()],
    )
    trainer.remove_callback(PrinterCallback)
    with scratch:
        trainer.train()
    model.eval()
    return int(trainer.state.global_step)
