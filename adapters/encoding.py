"""Loading encoders and turning texts into mean-pooled, L2-normalised embeddings.

all-MiniLM-L6-v2 (and most sentence encoders) were trained with mean pooling; the BERT
pooler behind a stock CLS head was not, which is why the classifier pools itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from deskpilot.adapters.catalog import BaseModel

ProgressFn = Callable[[str, int, int], None]


def load_tokenizer(base: BaseModel) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(base.path), local_files_only=True)


def load_encoder(base: BaseModel) -> PreTrainedModel:
    """The bare encoder (no pooler, no task head), in eval mode, fp32."""
    kwargs: dict[str, Any] = {"local_files_only": True}
    try:
        model = AutoModel.from_pretrained(str(base.path), add_pooling_layer=False, **kwargs)
    except TypeError:  # architectures without a pooler argument
        model = AutoModel.from_pretrained(str(base.path), **kwargs)
    model.eval()
    return model


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def pooled_embeddings(model: torch.nn.Module, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    out = model(**inputs, **kwargs)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    return F.normalize(mean_pool(hidden, batch["attention_mask"]).float(), dim=-1)


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> list[dict[str, list[int]]]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def length_sorted_batches(features: Sequence[dict[str, list[int]]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (least padding)."""
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    tokenizer: PreTrainedTokenizerBase, features: Sequence[dict[str, list[int]]]
) -> dict[str, torch.Tensor]:
    return dict(tokenizer.pad(list(features), return_tensors="pt"))


@torch.inference_mode()
def embed(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[dict[str, list[int]]],
    *,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
    stage: str = "embedding",
    adapter_names: Sequence[str] | None = None,
) -> torch.Tensor:
    """Embeddings in input order, computed in length-sorted batches.

    ``adapter_names`` (one per row) runs rows of different LoRA adapters in the same
    forward pass (PEFT mixed-adapter batches).
    """
    if not features:
        return torch.empty(0, 0)
    out: list[torch.Tensor | None] = [None] * len(features)
    batches = length_sorted_batches(features, batch_size)
    done = 0
    for idx in batches:
        batch = pad_batch(tokenizer, [features[i] for i in idx])
        kwargs = {"adapter_names": [adapter_names[i] for i in idx]} if adapter_names is not None else {}
        vectors = pooled_embeddings(model, batch, **kwargs)
        for row, i in enumerate(idx):
            out[i] = vectors[row]
        done += len(idx)
        if progress:
            progress(stage, done, len(features))
    return torch.stack([v for v in out if v is not None])
