"""A lean greedy decoding loop for Llama-family causal LMs (SmolLM2 and its kin) on a CPU.

Why it exists: for SmolLM2-135M with int8 weights on two cores, a generated token after a
~450-token prompt cost ~37 ms through ``generate()``, of which ~12 ms is reading the weights;
the rest is the generic machinery around them: the KV cache grown by concatenation, masks,
dtype casts around every projection, logits processors and stopping criteria, and some
eighty small tensor calls per layer, each with Python and dispatch overhead. This loop does
the same arithmetic as ``LlamaForCausalLM`` with:

- q/k/v and gate/up as one product each (the fused weights are views of one tensor, so the
  model's own layers keep working and nothing is stored twice);
- a KV cache allocated once per draft and written in place;
- RMSNorm as one call, no attention mask (the one new token sees every earlier one);
- greedy choice after the caller's logits processor (the responder's repetition penalty).

The prompt itself (the prefill: many tokens in one pass) goes through the model as usual and
fills the cache. :meth:`FastDecoder.build` returns None for anything it does not recognise,
and the caller then uses ``generate()``; sampling always does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION = ("q_proj", "k_proj", "v_proj")
GATE_UP = ("gate_proj", "up_proj")


class _Product:
    """One matrix product over several bias-free projections fused by output rows.

    int8 projections (``Int8Linear``: ``qweight`` int8, ``scale`` bf16) run the int8 x bf16
    kernel, as they do alone for a few rows; fp32 ones ``F.linear``. The layers are re-pointed
    at row slices of the fused tensor, so their weights are not duplicated.
    """

    def __init__(self, layers: Sequence[Any]) -> None:
        if all(_is_int8(m) for m in layers):
            self.int8 = True
            self.weight = torch.cat([m.qweight for m in layers]).contiguous()
            self.scale = torch.cat([m.scale for m in layers]).contiguous()
            start = 0
            for m in layers:
                rows = m.qweight.shape[0]
                m.qweight, m.scale = self.weight[start : start + rows], self.scale[start : start + rows]
                start += rows
        elif all(type(m) is nn.Linear and m.bias is None and m.weight.dtype == torch.float32 for m in layers):
            self.int8 = False
            self.scale = torch.empty(0)
            self.weight = torch.cat([m.weight.detach() for m in layers]).contiguous()
            start = 0
            for m in layers:
                rows = m.weight.shape[0]
                m.weight = nn.Parameter(self.weight[start : start + rows], requires_grad=False)
                start += rows
        else:
            raise _Unsupported

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8:
            return torch._weight_int8pack_mm(x.to(torch.bfloat16), self.weight, self.scale).float()
        return F.linear(x, self.weight)


class _Unsupported(Exception):
    """A layer this loop does not know how to run: the caller falls back to generate()."""


def _is_int8(module: Any) -> bool:
    return type(module).__name__ == "Int8Linear" and hasattr(module, "qweight")


@dataclass
class _Layer:
    in_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: _Product
    out: _Product
    gate_up: _Product
    down: _Product


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class FastDecoder:
    """Greedy decoding for one Llama-family model (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        config = model.config
        inner = model.model
        self.model = model
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.hidden = int(config.hidden_size)
        self.head_dim = int(getattr(config, "head_dim", None) or self.hidden // self.heads)
        self.intermediate = int(config.intermediate_size)
        self.eps = float(config.rms_norm_eps)
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.rotary = inner.rotary_emb
        self.lm_head = model.lm_head
        self.layers: list[_Layer] = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append(
                _Layer(
                    in_norm=layer.input_layernorm.weight.detach(),
                    post_norm=layer.post_attention_layernorm.weight.detach(),
                    qkv=_Product([getattr(attn, n) for n in ATTENTION]),
                    out=_Product([attn.o_proj]),
                    gate_up=_Product([getattr(mlp, n) for n in GATE_UP]),
                    down=_Product([mlp.down_proj]),
                )
            )
        self.scaling = float(getattr(inner.layers[0].self_attn, "scaling", self.head_dim**-0.5))

    @classmethod
    def build(cls, model: Any) -> FastDecoder | None:
        """A decoder for ``model`` when it is a plain Llama on the CPU, else None."""
        config = getattr(model, "config", None)
        if (
            config is None
            or getattr(config, "model_type", None) != "llama"
            or getattr(config, "hidden_act", None) != "silu"
            or getattr(config, "attention_bias", False)
            or getattr(config, "mlp_bias", False)
            or next(model.parameters()).device.type != "cpu"
            or not hasattr(torch, "_weight_int8pack_mm")
        ):
            return None
        try:
            return cls(model)
        except (_Unsupported, AttributeError):
            return None

    @torch.inference_mode()
    def decode(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int],
        process: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        on_token: Callable[[int], None] | None = None,
    ) -> tuple[list[int], list[torch.Tensor]]:
        """(new tokens, the raw logits ``[1, vocab]`` that chose each one).

        ``process(reply_ids [1, n], logits [1, vocab])`` adjusts the scores before the greedy
        choice, as a logits processor does (the caller's repetition penalty, given a prompt
        length of 0: it sees the reply's tokens only). A stop token ends the draft and is
        returned with it, as ``generate()`` does.
        """
        length = len(prompt)
        out = self.model(
            input_ids=torch.tensor([list(prompt)]),
            attention_mask=torch.ones(1, length, dtype=torch.long),
            use_cache=True,
            logits_to_keep=1,
        )
        total = length + max_new_tokens
        # transformers 5 calls it ``cache``; earlier versions ``past_key_values``
        past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        keys, values = self._cache(past, length, total)
        positions = torch.arange(length, total).unsqueeze(0)
        cos, sin = self.rotary(self.embed[:1].unsqueeze(0), positions)
        cos, sin = cos[0], sin[0]  # [steps, head_dim]
        logits = out.logits[0, -1:].float()
        stops = set(stop_ids)
        tokens: list[int] = []
        raw: list[torch.Tensor] = []
        for step in range(max_new_tokens):
            raw.append(logits)
            token = int(process(torch.tensor([tokens], dtype=torch.long), logits)[0].argmax())
            tokens.append(token)
            if on_token is not None:
                on_token(token)
            if token in stops or step + 1 == max_new_tokens:
                break
            logits = self._step(token, length + step, cos[step], sin[step], keys, values)
        return tokens, raw

    def _cache(self, past: object, length: int, total: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The prefill's keys and values, copied into buffers with room for the reply."""
        layers = getattr(past, "layers", None)
        if layers is None or len(layers) != len(self.layers):
            raise RuntimeError("unexpected KV cache layout")  # build() vets the model; this is a bug
        keys, values = [], []
        for layer in layers:
            k = torch.empty(1, self.kv_heads, total, self.head_dim)
            v = torch.empty(1, self.kv_heads, total, self.head_dim)
            k[:, :, :length] = layer.keys
            v[:, :, :length] = layer.values
            keys.append(k)
            values.append(v)
        return keys, values

    def _step(
        self,
        token: int,
        position: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
    ) -> torch.Tensor:
        """Logits ``[1, vocab]`` after feeding ``token`` at ``position``."""
        heads, kv_heads, dim, hidden = self.heads, self.kv_heads, self.head_dim, self.hidden
        q_width, kv_width = heads * dim, kv_heads * dim
        x = self.embed[token].unsqueeze(0)
        for layer, k_cache, v_cache in zip(self.layers, keys, values, strict=True):
            h = F.rms_norm(x, (hidden,), layer.in_norm, self.eps)
            qkv = layer.qkv(h)
            q = qkv[:, :q_width].view(1, heads, 1, dim)
            k = qkv[:, q_width : q_width + kv_width].view(1, kv_heads, 1, dim)
            q = q * cos + _rotate_half(q) * sin
            k_cache[:, :, position] = (k * cos + _rotate_half(k) * sin)[:, :, 0]
            v_cache[:, :, position] = qkv[:, q_width + kv_width :].view(1, kv_heads, dim)
            attended = F.scaled_dot_product_attention(
                q,
                k_cache[:, :, : position + 1],
                v_cache[:, :, : position + 1],
                scale=self.scaling,
                enable_gqa=heads != kv_heads,
            )
            x = x + layer.out(attended.reshape(1, q_width))
            h = F.rms_norm(x, (hidden,), layer.post_norm, self.eps)
            gate, up = layer.gate_up(h).split(self.intermediate, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        x = F.rms_norm(x, (hidden,), self.norm, self.eps)
        logits: torch.Tensor = self.lm_head(x).float()
        return logits
