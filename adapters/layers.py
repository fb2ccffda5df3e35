"""Run a BERT-style encoder in two parts: frozen lower layers once, trainable upper layers often.

When LoRA only touches the top layers, the lower layers give the same output for a text
in every epoch. Computing them once and training on the cached hidden states skips
their forward pass (and autograd never visits them), which roughly halves a training
step on a 6-layer encoder. Outputs are identical to the full model (tested).

Works for encoders shaped like BERT (``embeddings`` + ``encoder.layer``: BERT, MiniLM,
RoBERTa, XLM-R, ELECTRA); :func:`split_encoder` returns None for anything else and
the caller runs the whole model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deskpilot.adapters.encoding import mean_pool


def _bare(model: nn.Module) -> nn.Module:
    """The transformer under a PEFT wrapper (LoRA layers are injected in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    layers = getattr(getattr(_bare(model), "encoder", None), "layer", None)
    return layers if isinstance(layers, nn.ModuleList) else None


def num_layers(model: nn.Module) -> int | None:
    layers = encoder_layers(model)
    return len(layers) if layers is not None else None


class EncoderSplit:
    """``lower`` (embeddings + layers[:k]) and ``upper`` (layers[k:] + mean pool + L2)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        self.bert = _bare(model)
        layers = encoder_layers(model)
        if layers is None or not 0 <= k < len(layers):
            raise ValueError(f"cannot split this encoder at layer {k}")
        self.k = k
        self.layers = layers

    def _mask(self, attention_mask: torch.Tensor, hidden: torch.Tensor) -> Any:
        make = getattr(self.bert, "_create_attention_masks", None)
        if callable(make):  # transformers 5: the model's own (sdpa / eager aware) mask
            mask, _ = make(
                attention_mask=attention_mask,
                encoder_attention_mask=None,
                embedding_output=hidden,
                encoder_hidden_states=None,
                cache=None,
            )
            return mask
        return self.bert.get_extended_attention_mask(attention_mask, tuple(attention_mask.shape))

    def lower(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.bert.embeddings(
            input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids")
        )
        mask = self._mask(batch["attention_mask"], hidden)
        for layer in self.layers[: self.k]:
            hidden = layer(hidden, attention_mask=mask)
        return hidden

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = self._mask(attention_mask, hidden)
        for layer in self.layers[self.k :]:
            hidden = layer(hidden, attention_mask=mask)
        return F.normalize(mean_pool(hidden, attention_mask).float(), dim=-1)


def split_encoder(model: nn.Module, k: int) -> EncoderSplit | None:
    """A split at layer ``k`` if the model is BERT-shaped and the split reproduces it."""
    layers = encoder_layers(model)
    if layers is None or not 0 < k < len(layers) or not hasattr(_bare(model), "embeddings"):
        return None
    return EncoderSplit(model, k)


def pad_hidden(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-row ``(length, dim)`` hidden states into a batch and its attention mask."""
    longest = max(s.shape[0] for s in states)
    hidden = states[0].new_zeros(len(states), longest, states[0].shape[1])
    mask = torch.zeros(len(states), longest, dtype=torch.long)
    for row, s in enumerate(states):
        hidden[row, : s.shape[0]] = s
        mask[row, : s.shape[0]] = 1
    return hidden, mask
