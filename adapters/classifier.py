"""LoRA sequence classification on a mean-pooled encoder: train, calibrate, save.

Recipe (why each part is there):
- mean pooling + L2 normalisation, because sentence encoders were trained that way;
- the head starts as a linear probe fitted on frozen embeddings (LP-FT), so fine-tuning
  starts from the feature-extraction optimum instead of a random head that damages the
  encoder while it learns;
- LoRA on every linear layer of the encoder (attention and FFN) via PEFT, trained with
  the Hugging Face Trainer; the best epoch on a validation split carved from train is
  kept (the probe alone counts as epoch 0, so fine-tuning can never make things worse);
- temperature scaling and an abstain threshold for a target precision, fitted on the
  same validation split, stored in ``card.json``.

Saved format: ``adapter_config.json`` + ``adapter_model.safetensors`` are a standard
PEFT adapter for the bare encoder (``PeftModel.from_pretrained(AutoModel...)``);
``head.safetensors`` holds the linear head; ``card.json`` the labels and calibration;
``examples.safetensors`` embeddings of (a sample of) the training rows, so serving can cite
the most similar training tickets (see :mod:`deskpilot.adapters.examples`).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deskpilot.adapters import calibration, examples
from deskpilot.adapters.catalog import BaseModel
from deskpilot.adapters.encoding import (
    ProgressFn,
    embed,
    length_sorted_batches,
    load_encoder,
    load_tokenizer,
    pad_batch,
    pooled_embeddings,
    tokenize,
)
from deskpilot.adapters.hardware import configure_threads, use_bf16
from deskpilot.adapters.layers import num_layers, pad_hidden, split_encoder
from deskpilot.adapters.registry import AdapterCard
from deskpilot.dataio import stratified_indices
from deskpilot.errors import InputDataError

HEAD_FILE = "head.safetensors"
# fine-tuning epochs per preset, LoRA on every layer. auto plans them to its time budget
# (and doubles them when it falls back to the top half, a step there costing about a
# quarter); best has no default time budget
PRESET_EPOCHS = {"fast": 0, "auto": 4, "best": 6}
# small data: a preset's epochs grow until training takes at least this many optimizer steps
# (at most MAX_EPOCH_SCALE times the preset's); the validation history still picks the epoch.
# Chosen on Banking77 10-shot samples of train (seeds 1, 2) scored on 2,000 other train rows:
# 12 epochs beat 4 by +0.1 and +0.85 points; 20 epochs were worse than 12.
MIN_TRAIN_STEPS = 300
MAX_EPOCH_SCALE = 3
AUTO_BUDGET_MINUTES = 13.0
# up to this many training rows per class, the validation rows join training at the end
REFIT_MAX_ROWS_PER_CLASS = 30
# a class needs this many validation predictions before it gets a threshold of its own
PER_CLASS_MIN_SUPPORT = 10


@dataclass
class ClassifierRecipe:
    """Training settings; ``preset`` picks the defaults, explicit fields override."""

    preset: str = "auto"
    epochs: int | None = None  # None: the preset decides (auto 2, best 4)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    learning_rate: float = 1e-3
    head_learning_rate: float = 2e-4
    batch_size: int = 32
    max_length: int = 128
    # LoRA on the top N transformer layers only (0: all). None: the preset decides
    train_layers: int | None = None
    label_names: bool = True  # small data: class names join training as examples
    refit_small: bool = True  # small data: retrain on train + validation rows once they have chosen
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    val_fraction: float = 0.1
    min_val_rows: int = 10
    fine_tune: bool = True
    seed: int = 0
    max_minutes: float | None = None
    target_precision: float = 0.9
    # the out-of-scope distance cut may cost at most this share of in-scope validation rows:
    # one point, the price the centroid baseline pays on CLINC150
    oos_quantile: float = 0.01
    bf16: str = "auto"
    init_adapter: str | None = None  # warm start: folder of a domain or donor classifier adapter
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in ("auto", "fast", "best"):
            raise InputDataError(f"unknown preset '{self.preset}'", hint="use auto, fast or best")
        if (self.epochs is not None and self.epochs < 0) or self.batch_size < 1 or self.max_length < 8:
            raise InputDataError("epochs must be >= 0, batch size >= 1 and max length >= 8")
        if not 0.0 <= self.val_fraction < 0.5:
            raise InputDataError("validation fraction must be in [0, 0.5)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise InputDataError("--max-minutes must be positive")


@dataclass
class TrainResult:
    directory: Path
    card: AdapterCard
    validation: dict[str, Any]


def data_hash(texts: Sequence[str], labels: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t, y in zip(texts, labels, strict=True):
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
        h.update(y.encode("utf-8"))
        h.update(b"\x1e")
    return "sha256:" + h.hexdigest()


def fit_linear_head(
    x: torch.Tensor, y: torch.Tensor, num_labels: int, l2: float, *, max_iter: int = 300
) -> nn.Linear:
    """Multinomial logistic regression on frozen features, full-batch L-BFGS."""
    head = nn.Linear(x.shape[1], num_labels)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


class MeanPoolClassifier(nn.Module):
    """encoder (optionally LoRA-wrapped) -> mean pool -> L2 norm -> linear head."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.label_smoothing = label_smoothing

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        logits = self.head(pooled_embeddings(self.encoder, batch))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return out


def linear_target_modules(encoder: nn.Module, top_layers: int = 0) -> str:
    """A PEFT regex for every nn.Linear inside the encoder except a pooler (unused by us).

    ``top_layers`` > 0 keeps LoRA to the last that many transformer layers (BERT-shaped
    encoders), so training can cache what the frozen layers below compute.
    """
    names = sorted(
        {
            n.rsplit(".", 1)[-1]
            for n, m in encoder.named_modules()
            if isinstance(m, nn.Linear) and "pooler" not in n.split(".")
        }
    )
    linears = "|".join(map(re.escape, names))
    depth = num_layers(encoder)
    if top_layers and depth and top_layers < depth:
        chosen = "|".join(str(i) for i in range(depth - top_layers, depth))
        return rf"(?!.*\bpooler\b).*\bencoder\.layer\.({chosen})\..*\.({linears})"
    return rf"(?!.*\bpooler\b).*\.({linears})"


def resolve_preset(recipe: ClassifierRecipe, n_rows: int, n_labels: int) -> ClassifierRecipe:
    """Fill in the preset's choices; ``auto`` scales effort with the data size."""
    r = ClassifierRecipe(**{**asdict(recipe)})
    if r.preset == "fast":
        r.fine_tune = False
    elif r.preset == "auto":
        per_class = n_rows / max(1, n_labels)
        if per_class < 8 or n_rows < 40:
            r.fine_tune = False  # too little data to fine-tune safely: the probe generalises better
    if r.epochs is None:
        r.epochs = PRESET_EPOCHS[r.preset]
        if r.epochs:
            steps_per_epoch = math.ceil(n_rows * (1.0 - r.val_fraction) / r.batch_size)
            wanted = math.ceil(MIN_TRAIN_STEPS / max(1, steps_per_epoch))
            r.epochs = min(max(r.epochs, wanted), MAX_EPOCH_SCALE * r.epochs)
    if r.preset == "auto" and r.max_minutes is None:
        r.max_minutes = AUTO_BUDGET_MINUTES  # the epoch plan shrinks to fit; --max-minutes lifts it
    return r


def _layers_to_train(recipe: ClassifierRecipe, encoder: nn.Module) -> int:
    """How many top layers get LoRA (0: all): all unless asked, a warm start the donor's layers
    (a domain adapter covers all; a classifier donor what it was trained with)."""
    depth = num_layers(encoder)
    if recipe.train_layers is not None:
        return 0 if not depth or recipe.train_layers >= depth else max(0, recipe.train_layers)
    if recipe.init_adapter:  # warm_start checks that the donor's LoRA config then matches
        return _donor_layers(Path(recipe.init_adapter), encoder)
    return 0  # every layer; auto falls back to the top half when that does not fit the budget


def label_text(label: str) -> str:
    """A class name as words, or "" when it says nothing (codes, numbers)."""
    words = re.sub(r"[_\-./:]+", " ", label).strip()
    return words if len(re.findall(r"[^\W\d_]{3,}", words)) else ""


def _refit_epochs(
    recipe: ClassifierRecipe,
    history: list[dict[str, float]],
    n_train: int,
    n_labels: int,
    tuning_seconds: float,
    budget: _Budget,
) -> int | None:
    """Epochs for a refit on all rows, or None: only for small data, and only if it fits the budget."""
    if not recipe.refit_small or n_train / max(1, n_labels) > REFIT_MAX_ROWS_PER_CLASS or len(history) < 1:
        return None
    best = max(history, key=lambda h: h.get("val_accuracy", -1.0))
    epochs = round(float(best["epoch"]))
    run = max((h["epoch"] for h in history), default=0.0)
    needed = tuning_seconds * (epochs / run if run else 0.0) * 1.15 + 10.0
    return epochs if needed < budget.left() else None


def _val_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean()) if len(y) else float("nan")


def _head_logits(head: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return head(x)


class _Budget:
    def __init__(self, max_minutes: float | None) -> None:
        self.deadline = time.monotonic() + max_minutes * 60 if max_minutes else None

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0


def train_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    base: BaseModel,
    task: str,
    tenant: str,
    recipe: ClassifierRecipe | None = None,
    progress: ProgressFn | None = None,
    threads: int | None = None,
    oos_texts: Sequence[str] | None = None,
) -> TrainResult:
    """Train an adapter into a temporary folder ready for :meth:`Registry.register`.

    ``oos_texts`` (optional examples of what the classifier should NOT answer) tune the
    out-of-scope threshold; without them it is set from in-scope validation rows alone.
    """
    if len(texts) != len(labels):
        raise InputDataError("texts and labels differ in length")
    label_names = sorted(set(labels))
    if len(label_names) < 2:
        raise InputDataError("a classifier needs at least two labels")
    started = time.monotonic()
    epochs_given = recipe is not None and recipe.epochs is not None
    recipe = resolve_preset(recipe or ClassifierRecipe(), len(texts), len(label_names))
    recipe.extra = {**recipe.extra, "epochs_given": epochs_given}
    budget = _Budget(recipe.max_minutes)
    configure_threads(threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)

    index = {y: i for i, y in enumerate(label_names)}
    y_all = torch.tensor([index[y] for y in labels])
    # classes with fewer than 5 rows stay wholly in train: holding one out would halve them
    _, val_idx = stratified_indices(labels, recipe.val_fraction, recipe.seed, min_per_class=5)
    if len(val_idx) < recipe.min_val_rows:
        val_idx = []  # too few rows to judge anything: train on all, no selection or calibration
    val_set = set(val_idx)
    train_idx = [i for i in range(len(texts)) if i not in val_set]
    data_texts, data_labels = texts, labels  # what the card's hash and counts describe
    if recipe.label_names and len(texts) / len(label_names) <= REFIT_MAX_ROWS_PER_CLASS:
        # with a handful of rows per class, the class name itself ("card_arrival" ->
        # "card arrival") is one more example of what the class means (training rows only)
        named = [(label_text(y), y) for y in label_names if label_text(y)]
        train_idx += list(range(len(texts), len(texts) + len(named)))
        texts = [*texts, *(t for t, _ in named)]
        labels = [*labels, *(y for _, y in named)]
        y_all = torch.tensor([index[y] for y in labels])

    # the rows a decision can cite as its most similar training tickets (train.jsonl order);
    # embedded after training, so the epoch plan leaves time for them
    example_idx = examples.sample_rows(data_labels, recipe.seed)
    recipe.extra["example_rows"] = len(example_idx)
    tokenizer = load_tokenizer(base)
    encoder = load_encoder(base)
    layers_fallback = recipe.preset == "auto" and recipe.train_layers is None and not recipe.init_adapter
    recipe.train_layers = _layers_to_train(recipe, encoder)
    if recipe.init_adapter:  # the probe below already sees the donor's LoRA (see warm_start)
        encoder = warm_start(encoder, recipe, base)
    features = tokenize(tokenizer, texts, recipe.max_length)

    # 1. linear probe on frozen embeddings -------------------------------------------
    emb = embed(encoder, tokenizer, features, batch_size=64, progress=progress, stage="embedding")
    x_tr, y_tr = emb[train_idx], y_all[train_idx]
    x_va, y_va = emb[val_idx], y_all[val_idx]
    # weak L2 suits unit-length features (C=100 in sklearn terms is ~1e-5 here); validation picks
    grid = (1e-4, 1e-5) if val_idx else (1e-5,)
    heads = {l2: fit_linear_head(x_tr, y_tr, len(label_names), l2) for l2 in grid}
    scores = {l2: _val_accuracy(_head_logits(h, x_va), y_va) if val_idx else 0.0 for l2, h in heads.items()}
    best_l2 = max(grid, key=scores.__getitem__)
    head, best_acc = heads[best_l2], scores[best_l2]
    start_l2 = max(grid)  # fine-tuning starts from the most regularised probe (see _fine_tune)
    history: list[dict[str, float]] = [{"epoch": 0, "val_accuracy": best_acc}]
    if progress:
        progress("linear probe", 1, 1)

    tuning_started = time.monotonic()
    model = _fine_tune(
        encoder,
        head,
        tokenizer,
        features,
        y_all,
        train_idx,
        val_idx,
        recipe,
        budget,
        history,
        progress,
        start_head=heads[start_l2],
        top_half_fallback=layers_fallback,
    )
    tuning_seconds = time.monotonic() - tuning_started

    # 2. calibration on the validation split ------------------------------------------
    model.eval()
    # a model that was not fine-tuned embeds the example rows as the probe did: reuse those
    tuned = recipe.fine_tune and bool(recipe.epochs)
    centroids, example_emb = _class_centroids(
        model,
        tokenizer,
        features,
        y_all,
        train_idx,
        len(label_names),
        recipe.seed,
        keep=example_idx if tuned else (),
    )
    if not tuned:
        example_emb = emb[example_idx]
    similarity_threshold = 0.0
    if val_idx:
        val_emb, val_logits = _embed_and_logits(model, tokenizer, [features[i] for i in val_idx])
        temperature = calibration.fit_temperature(val_logits, y_va)
        # out-of-scope signal: how close a text is to any class it was trained on. The
        # threshold lets through all but ``oos_quantile`` of in-scope validation rows.
        val_sim = (val_emb @ centroids.T).max(-1).values
        similarity_threshold = (
            float(torch.quantile(val_sim, recipe.oos_quantile)) if recipe.oos_quantile else 0.0
        )
        if oos_texts:
            oos_features = tokenize(tokenizer, oos_texts, recipe.max_length)
            oos_emb, _ = _embed_and_logits(model, tokenizer, oos_features)
            oos_sim = (oos_emb @ centroids.T).max(-1).values
            similarity_threshold = calibration.similarity_threshold_for_oos(val_sim, oos_sim)
            validation_oos = {
                "n_oos": len(oos_texts),
                "oos_caught": round(float((oos_sim < similarity_threshold).float().mean()), 6),
            }
        probs_before = val_logits.softmax(-1)
        probs = (val_logits / temperature).softmax(-1)
        conf, pred = probs.max(-1)
        correct = pred == y_va
        threshold = calibration.threshold_for_precision(conf, correct, recipe.target_precision)
        per_class = calibration.per_class_thresholds(
            conf, pred, correct, recipe.target_precision, label_names, min_support=PER_CLASS_MIN_SUPPORT
        )
        covered = (conf >= torch.tensor([per_class.get(label_names[int(p)], threshold) for p in pred])) & (
            val_sim >= similarity_threshold
        )
        validation = {
            "n": len(val_idx),
            "accuracy": round(float(correct.float().mean()), 6),
            "ece_before": round(calibration.ece(probs_before.max(-1).values, correct), 6),
            "ece_after": round(calibration.ece(conf, correct), 6),
            "reliability": calibration.reliability_bins(conf, correct),
            "per_class": calibration.per_class_figures(pred, y_va, covered, label_names),
            "coverage_at_threshold": round(float((conf >= threshold).float().mean()), 6),
            "coverage_at_thresholds": round(float(covered.float().mean()), 6),
            "accuracy_on_covered": (
                round(float(correct[covered].float().mean()), 6) if bool(covered.any()) else None
            ),
            **(validation_oos if oos_texts else {}),
        }
    else:
        temperature, threshold, per_class = 1.0, 0.0, {}
        validation = {"n": 0}

    # 3. small data: train again on every row, as validation chose ------------------------
    refit_epochs = _refit_epochs(recipe, history, len(train_idx), len(label_names), tuning_seconds, budget)
    refit: dict[str, int] | None = None
    if val_idx and refit_epochs is not None:
        # the held-out rows are a tenth of a small data set: after they have chosen the
        # probe's L2 and the epochs, and calibrated, they train too. The calibration and
        # thresholds of the held-out run stay (the refit model has seen those rows).
        train_idx = list(range(len(texts)))
        encoder = load_encoder(base)
        if recipe.init_adapter:
            encoder = warm_start(encoder, recipe, base)
        head = fit_linear_head(emb.clone(), y_all, len(label_names), best_l2)
        start = fit_linear_head(emb.clone(), y_all, len(label_names), start_l2) if refit_epochs else None
        torch.manual_seed(recipe.seed)
        model = _fine_tune(
            encoder,
            head,
            tokenizer,
            features,
            y_all,
            train_idx,
            [],
            replace(recipe, epochs=refit_epochs, max_minutes=None, extra={}),
            budget,
            [],
            progress,
            start_head=start,
        )
        model.eval()
        tuned = recipe.fine_tune and bool(refit_epochs)
        centroids, example_emb = _class_centroids(
            model,
            tokenizer,
            features,
            y_all,
            train_idx,
            len(label_names),
            recipe.seed,
            keep=example_idx if tuned else (),
        )
        if not tuned:
            example_emb = emb[example_idx]
        refit = {"epochs": refit_epochs, "rows": len(train_idx)}

    # 3. save ------------------------------------------------------------------------
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix="deskpilot-train-"))
    try:
        model.encoder.save_pretrained(str(tmp))
        save_file(
            {
                "weight": model.head.weight.detach().contiguous(),
                "bias": model.head.bias.detach().contiguous(),
                "centroids": centroids.contiguous(),
            },
            str(tmp / HEAD_FILE),
        )
        if example_idx:
            examples.save(tmp, example_emb, example_idx)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    counts = Counter(data_labels)
    card = AdapterCard(
        task=task,
        tenant=tenant,
        kind="classifier",
        base_model=base.name,
        labels=label_names,
        data_hash=data_hash(data_texts, data_labels),
        n_train=len(train_idx),
        train_seconds=round(time.monotonic() - started, 2),
        recipe={**asdict(recipe), "probe_l2": best_l2, "init_adapter": adapter_ref(recipe.init_adapter)},
        calibration={"temperature": temperature},
        thresholds={
            "default": threshold,
            "target_precision": recipe.target_precision,
            "similarity": similarity_threshold,
            "oos_quantile": recipe.oos_quantile,
            "oos_tuned_on": int(validation.get("n_oos", 0)),
            "per_class": per_class,
        },
        metrics={"validation": validation, "history": history, "refit": refit},
        extra={"label_counts": dict(sorted(counts.items()))},
    )
    return TrainResult(directory=tmp, card=card, validation=validation)


@torch.inference_mode()
def _embed_and_logits(
    model: MeanPoolClassifier, tokenizer: Any, features: Sequence[dict[str, list[int]]]
) -> tuple[torch.Tensor, torch.Tensor]:
    emb = embed(model.encoder, tokenizer, features, batch_size=64)
    return emb.clone(), model.head(emb).clone()


def _class_centroids(
    model: MeanPoolClassifier,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    y_all: torch.Tensor,
    train_idx: list[int],
    num_labels: int,
    seed: int,
    per_class: int = 32,
    keep: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-length mean embedding per class from a bounded sample of training rows, and the
    embeddings of the ``keep`` rows (in that order), computed in the same pass: rows that
    both need are embedded once."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in train_idx:
        by_class[int(y_all[i])].append(i)
    rng = random.Random(seed)
    chosen = [i for c in sorted(by_class) for i in rng.sample(by_class[c], min(per_class, len(by_class[c])))]
    position = {i: n for n, i in enumerate(chosen)}
    extra = [i for i in dict.fromkeys(keep) if i not in position]
    position.update({i: len(chosen) + n for n, i in enumerate(extra)})
    emb, _ = _embed_and_logits(model, tokenizer, [features[i] for i in chosen + extra])
    sums = torch.zeros(num_labels, emb.shape[1])
    sums.index_add_(0, y_all[chosen], emb[: len(chosen)])
    return F.normalize(sums, dim=-1), emb[[position[i] for i in keep]]


def _fine_tune(
    encoder: nn.Module,
    head: nn.Linear,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    y_all: torch.Tensor,
    train_idx: list[int],
    val_idx: list[int],
    recipe: ClassifierRecipe,
    budget: _Budget,
    history: list[dict[str, float]],
    progress: ProgressFn | None,
    start_head: nn.Linear | None = None,
    top_half_fallback: bool = False,
) -> MeanPoolClassifier:
    """LoRA fine-tuning with the HF Trainer; returns the best state seen (probe included).

    ``head`` is the probe (epoch 0); tuning starts from ``start_head`` when given: a more
    regularised probe. A probe with weak L2 fits the training rows almost perfectly, which
    leaves the encoder next to no gradient to learn from.

    With ``top_half_fallback``, when LoRA on every layer does not fit the time budget,
    only the top half gets LoRA (``recipe.train_layers`` is updated to say so).
    """
    from peft import PeftModel, get_peft_model

    # with recipe.init_adapter, warm_start has wrapped the encoder already (donor LoRA loaded)
    peft_encoder = (
        encoder if isinstance(encoder, PeftModel) else get_peft_model(encoder, lora_config(encoder, recipe))
    )
    model = MeanPoolClassifier(peft_encoder, head, recipe.label_smoothing)
    if not recipe.fine_tune or recipe.epochs == 0 or budget.expired():
        return model

    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    depth = num_layers(encoder) or 0
    probe = {k: v.detach().clone() for k, v in model.head.state_dict().items()}
    if start_head is not None:
        model.head.load_state_dict(start_head.state_dict())

    def prepare() -> tuple[MeanPoolClassifier, Any, list[dict[str, Any]], list[dict[str, Any]]]:
        """The model the Trainer runs, its collator, and the train / validation rows."""
        split = split_encoder(peft_encoder, depth - recipe.train_layers) if recipe.train_layers else None
        if split is None or _cache_bytes(features, encoder) > CACHE_LIMIT_BYTES:

            def token_row(i: int) -> dict[str, Any]:
                return {**features[i], "labels": int(y_all[i])}

            rows = ([token_row(i) for i in train_idx], [token_row(i) for i in val_idx])
            return model, TokenCollator(tokenizer), *rows
        # the frozen lower layers give the same states every epoch: compute them once
        states = _lower_states(split, tokenizer, features, train_idx + val_idx, progress)

        def hidden_row(i: int) -> dict[str, Any]:
            return {"input_ids": features[i]["input_ids"], "hidden": states[i], "labels": int(y_all[i])}

        cached = CachedUpperClassifier(peft_encoder, model.head, split, recipe.label_smoothing)
        return cached, HiddenCollator(), [hidden_row(i) for i in train_idx], [hidden_row(i) for i in val_idx]

    train_model, collator, train_rows, val_rows = prepare()
    epochs, max_steps = _plan_epochs(train_model, collator, train_rows, len(val_rows), recipe, budget)
    if (
        top_half_fallback
        and recipe.train_layers == 0
        and depth > 1
        and (epochs, max_steps) != (recipe.epochs, -1)
    ):
        # every layer does not fit the budget: LoRA on the top half, trained on cached
        # states of the frozen lower half, runs a step several times faster
        recipe.train_layers = max(1, depth // 2)
        if not recipe.extra.get("epochs_given"):
            recipe.epochs = 2 * int(recipe.epochs or 0)  # a step costs a quarter: twice the epochs
        bare = peft_encoder.unload()
        peft_encoder = get_peft_model(bare, lora_config(bare, recipe))
        model = MeanPoolClassifier(peft_encoder, model.head, recipe.label_smoothing)
        train_model, collator, train_rows, val_rows = prepare()
        epochs, max_steps = _plan_epochs(train_model, collator, train_rows, len(val_rows), recipe, budget)
    recipe.extra["planned_epochs"], recipe.extra["planned_max_steps"] = epochs, max_steps
    best = {"acc": history[0]["val_accuracy"] if val_idx else -1.0, "state": _trainable_state(model)}
    best["state"].update({f"head.{k}": v for k, v in probe.items()})  # epoch 0 is the probe itself

    steps_per_epoch = math.ceil(len(train_rows) / recipe.batch_size)
    total_steps = max_steps if max_steps > 0 else steps_per_epoch * epochs
    if total_steps < 1:
        return model

    class Control(TrainerCallback):
        """Progress, time budget and best-epoch selection (kept in memory, no checkpoints)."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if progress:
                progress("fine-tuning", state.global_step, total_steps)
            if budget.expired():
                control.should_training_stop = True  # the Trainer still evaluates the cut epoch
            return control

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> Any:
            acc = float((metrics or {}).get("eval_accuracy", float("nan")))
            history.append({"epoch": round(float(state.epoch or 0), 3), "val_accuracy": acc})
            if acc > best["acc"]:
                best["acc"], best["state"] = acc, _trainable_state(model)
            return control

    def compute_metrics(pred: Any) -> dict[str, float]:
        logits = torch.as_tensor(pred.predictions)
        return {"accuracy": _val_accuracy(logits, torch.as_tensor(pred.label_ids))}

    lora_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": recipe.learning_rate, "weight_decay": recipe.weight_decay},
            {"params": list(model.head.parameters()), "lr": recipe.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    bf16 = use_bf16(recipe.bf16)
    scratch = tempfile.TemporaryDirectory(prefix="deskpilot-trainer-")
    args = TrainingArguments(
        output_dir=scratch.name,
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if val_rows else "no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=bf16,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=train_model,
        args=args,
        train_dataset=_ListDataset(train_rows),
        eval_dataset=_ListDataset(val_rows) if val_rows else None,
        data_collator=collator,
        compute_metrics=compute_metrics if val_rows else None,
        optimizers=(optimizer, None),
        callbacks=[Control()],
    )
    trainer.remove_callback(PrinterCallback)  # metrics go to the card, not to stdout
    with scratch:
        trainer.train()
    if val_rows:
        _load_trainable_state(model, best["state"])
    model.eval()
    return model


class CachedUpperClassifier(MeanPoolClassifier):
    """The same classifier fed with cached lower-layer states: only the upper layers run."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, split: Any, label_smoothing: float = 0.0) -> None:
        super().__init__(encoder, head, label_smoothing)
        self.split = split  # plain attribute: its modules are the encoder's own

    def forward(  # type: ignore[override]
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        logits = self.head(self.split.upper(hidden, attention_mask))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return out


class TokenCollator:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad_batch(self.tokenizer, [{k: v for k, v in r.items() if k != "labels"} for r in rows])
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch


class HiddenCollator:
    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        hidden, mask = pad_hidden([r["hidden"] for r in rows])
        return {"hidden": hidden, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


# cached lower-layer states above this size are recomputed every step instead
CACHE_LIMIT_BYTES = 3 * 1024**3


def _cache_bytes(features: Sequence[dict[str, list[int]]], encoder: nn.Module) -> int:
    width = int(getattr(getattr(encoder, "config", None), "hidden_size", 1024))
    return sum(len(f["input_ids"]) for f in features) * width * 4


@torch.no_grad()
def _lower_states(
    split: Any,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    rows: Sequence[int],
    progress: ProgressFn | None,
) -> dict[int, torch.Tensor]:
    """Per-row hidden states after the frozen layers, without padding (no_grad, not
    inference mode: the tensors feed autograd later)."""
    states: dict[int, torch.Tensor] = {}
    batches = length_sorted_batches([features[i] for i in rows], 64)
    split.bert.eval()
    for done, idx in enumerate(batches, 1):
        chosen = [rows[j] for j in idx]
        batch = pad_batch(tokenizer, [features[i] for i in chosen])
        hidden = split.lower(batch)
        for r, i in enumerate(chosen):
            states[i] = hidden[r, : len(features[i]["input_ids"])].clone()
        if progress:
            progress("caching frozen layers", done, len(batches))
    return states


def _plan_epochs(
    model: nn.Module,
    collator: Any,
    rows: list[dict[str, Any]],
    n_val: int,
    recipe: ClassifierRecipe,
    budget: _Budget,
) -> tuple[int, int]:
    """(epochs, max_steps) that fit the time budget, timed on two real steps.

    The Trainer's learning-rate schedule is fixed up front, so fitting the plan to the
    budget beats cutting a long schedule short. max_steps is -1 unless even one epoch
    does not fit.
    """
    epochs = int(recipe.epochs or 0)
    left = budget.left()
    if math.isinf(left) or not rows or epochs < 1:
        return epochs, -1
    sample = random.Random(recipe.seed).sample(rows, min(recipe.batch_size, len(rows)))
    batch = collator(sample)
    model.train()
    timings = []
    for _ in range(4):  # the first call warms up allocators and kernels
        t0 = time.perf_counter()
        model(**batch)["loss"].backward()
        timings.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    # the median of three: one step's time on a shared machine is noisy, and a plan from a
    # slow one halved Banking77's epochs in one run and not in the next
    per_step = sorted(timings[1:])[1] * 1.1  # + optimizer, collation
    recipe.extra["seconds_per_step"] = round(per_step, 4)
    steps_per_epoch = math.ceil(len(rows) / recipe.batch_size)
    per_epoch = steps_per_epoch * per_step + math.ceil(n_val / recipe.batch_size) * per_step / 3
    usable = left * 0.92 - 15.0  # calibration, centroids and saving come after training
    usable -= math.ceil(int(recipe.extra.get("example_rows", 0)) / 64) * per_step / 3  # examples.py
    if usable >= per_epoch * epochs:
        return epochs, -1
    if usable >= per_epoch:
        return int(usable // per_epoch), -1
    return 1, max(0, int(usable // per_step))


class _ListDataset(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def _load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = set(state) - set(model.state_dict())
    if missing:
        raise RuntimeError(f"best state does not match the model: {sorted(missing)[:3]}")
    model.load_state_dict(state, strict=False)


# --- warm start ----------------------------------------------------------------------
def lora_config(encoder: nn.Module, recipe: Any) -> Any:
    """The LoRA config of every deskpilot encoder adapter (classifier and domain alike)."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=linear_target_modules(encoder, getattr(recipe, "train_layers", 0) or 0),
        bias="none",
    )


def _donor_layers(folder: Path, encoder: nn.Module) -> int:
    """The ``train_layers`` whose target modules are the donor adapter's (0 when none match)."""
    import json

    path = folder / "adapter_config.json"
    target = json.loads(path.read_text(encoding="utf-8")).get("target_modules") if path.is_file() else None
    depth = num_layers(encoder) or 0
    return next((k for k in range(depth) if linear_target_modules(encoder, k) == target), 0)


def _read_card(folder: Path) -> dict[str, Any] | None:
    import json

    path = folder / "card.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def adapter_ref(folder: str | None) -> str | None:
    """``tenant/task/version`` of a registered adapter folder (its path when it has no card)."""
    if folder is None:
        return None
    card = _read_card(Path(folder))
    return f"{card['tenant']}/{card['task']}/{card['version']}" if card else str(folder)


def warm_start(encoder: nn.Module, recipe: ClassifierRecipe, base: BaseModel) -> nn.Module:
    """Wrap ``encoder`` in a fresh LoRA whose weights are copied from ``recipe.init_adapter``.

    The donor is a domain adapter (``deskpilot adapt``) or a classifier of a similar task;
    only its LoRA weights are reused (the head comes from the new data: label sets differ).
    Nothing is merged into the base, so the saved classifier adapter stays valid alone on
    the unmodified base that serving loads. Rank, alpha and target modules must match.
    """
    import json

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(str(recipe.init_adapter))
    ref = adapter_ref(str(folder))
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_file.is_file() or not weights_file.is_file():
        raise InputDataError(f"adapter {ref} has no LoRA weights to start from ({folder})")
    card = _read_card(folder)
    if card and card.get("base_model") != base.name:
        raise InputDataError(
            f"adapter {ref} was trained on base {card.get('base_model')}, not {base.name}",
            hint="warm start needs the same base model",
        )
    donor = json.loads(config_file.read_text(encoding="utf-8"))
    config = lora_config(encoder, recipe)
    wanted = {
        "peft_type": "LORA",
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": config.target_modules,
        "use_dora": False,
        "use_rslora": False,
    }
    different = [f"{k} {donor.get(k)!r} (need {v!r})" for k, v in wanted.items() if donor.get(k, v) != v]
    if different:
        raise InputDataError(
            f"adapter {ref} is not compatible with this classifier: {'; '.join(different)}",
            hint="warm start needs the same LoRA rank, alpha and target modules",
        )
    peft_encoder = get_peft_model(encoder, config)
    state = load_file(str(weights_file))
    expected = get_peft_model_state_dict(peft_encoder)
    if set(state) != set(expected):
        odd = sorted(set(state) ^ set(expected))
        raise InputDataError(
            f"adapter {ref} does not fit this encoder: {len(odd)} LoRA weights differ, e.g. {odd[0]}"
        )
    shapes = [k for k, v in state.items() if v.shape != expected[k].shape]
    if shapes:
        raise InputDataError(f"adapter {ref} does not fit this encoder: {shapes[0]} has another shape")
    set_peft_model_state_dict(peft_encoder, state)
    return peft_encoder
