"""A lean inference path for BERT-family encoders with many LoRA adapters.

The same computation as ``PeftModel(BertModel)`` followed by mean pooling and L2
normalisation, written as a few dozen tensor calls instead of a module tree:

- sequences are *packed*: every linear layer, LayerNorm and GELU runs on the real
  tokens only (no padding), and only attention sees a padded ``[batch, heads, len, dim]``
  view (scattered in and gathered out), per group of rows of similar length, so a batch
  of mixed lengths costs what its tokens cost;
- Q, K and V are one matrix multiplication;
- LoRA is applied per *segment*: rows of one adapter are contiguous, and each adapter
  adds ``(x @ A^T) @ (scale * B)^T`` to its own rows (what PEFT's ``adapter_names`` does),
  so one pass serves any mix of adapters. The resident adapters' LoRA matrices are
  stacked per layer (one slot each), so a pass over many adapters is two grouped matrix
  products per linear layer (``torch._grouped_mm``), not two per adapter and layer;
- a pass that serves one adapter only can use that adapter's *merged* weights
  (``W + scale * B @ A``), computed once and kept for the most recently merged adapter;
- weights may be kept in bfloat16 where the CPU multiplies bf16 natively (AMX or
  AVX512-BF16), pre-packed for oneDNN; embeddings and pooling stay fp32 (LayerNorm
  accumulates in fp32 too). The LoRA stacks are then bf16 as well (half the memory), and
  a mixed pass runs each LoRA product as one multi-threaded ``torch.bmm`` over pieces of
  16 rows of one adapter (fp32 keeps the exact single-threaded grouped products);
- a linear layer that no adapter of the pass adapts (deskpilot may adapt only the top
  layers) gets no LoRA work and shares the base's weights in the merged copy.

Anything this module does not recognise (another architecture, DoRA, trained biases,
rank patterns, ...) is reported by :func:`read_lora` / :func:`supports` so that the
engine falls back to PEFT for it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

LINEARS = ("query", "key", "value", "attn_out", "ff_in", "ff_out")
QKV = ("query", "key", "value")
STEP = 16  # bf16: token counts are padded to a multiple of this ...
BLOCK = 256  # ... and products run on at most this many rows at a time
PIECE = 16  # bf16 LoRA: rows of one adapter are cut into pieces of this many rows ...
PIECES = 8  # ... and the number of pieces is padded to a multiple of this
_MODULE_PATHS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ff_in": "intermediate.dense",
    "ff_out": "output.dense",
}
_KEY_RE = re.compile(r"^(?:base_model\.model\.)?encoder\.layer\.(\d+)\.(.+)\.lora_([AB])\.weight$")
_PATH_TO_NAME = {path: name for name, path in _MODULE_PATHS.items()}
_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def supports(model: Any) -> bool:
    """True for a bare HF ``BertModel`` (eval, absolute positions, a known activation)."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "BertModel"
        and config is not None
        and getattr(config, "model_type", None) == "bert"
        and getattr(config, "position_embedding_type", "absolute") in (None, "absolute")
        and not getattr(config, "is_decoder", False)
        and isinstance(getattr(config, "hidden_act", None), str)
        and config.hidden_act in _ACTIVATIONS
        and hasattr(model, "embeddings")
        and hasattr(model, "encoder")
    )


def read_lora(
    path: Path, num_layers: int
) -> tuple[int, dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]] | None:
    """(rank, {(layer, linear): (A, B * scale)}) of a saved PEFT LoRA adapter of a bare BERT
    encoder, or None if it is not plain LoRA of one rank on the encoder's linear layers."""
    from safetensors.torch import load_file

    config = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    unsupported = (
        config.get("peft_type", "LORA") != "LORA"
        or config.get("use_dora")
        or config.get("lora_bias")
        or config.get("bias", "none") != "none"
        or config.get("modules_to_save")
        or config.get("rank_pattern")
        or config.get("alpha_pattern")
        or config.get("fan_in_fan_out")
        or config.get("layer_replication")
        or config.get("trainable_token_indices")
    )
    if unsupported:
        return None
    r = int(config.get("r", 8))
    alpha = float(config.get("lora_alpha", r))
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    tensors = load_file(str(Path(path) / "adapter_model.safetensors"))
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _KEY_RE.match(key)
        if m is None or m.group(2) not in _PATH_TO_NAME or int(m.group(1)) >= num_layers:
            return None  # LoRA on something the fast path does not know (embeddings, pooler, ...)
        pairs.setdefault((int(m.group(1)), _PATH_TO_NAME[m.group(2)]), {})[m.group(3)] = value
    out = {}
    for where, ab in pairs.items():
        if set(ab) != {"A", "B"} or ab["A"].shape[0] != r or ab["B"].shape[1] != r:
            return None
        out[where] = (ab["A"].float(), ab["B"].float() * scale)
    return r, out


class _Arena:
    """The LoRA matrices of every resident adapter, stacked: slot ``i`` is one adapter.

    Per layer, ``a[name]`` is ``[capacity, in, r]`` (A transposed) and ``b[name]`` is
    ``[capacity, r, out]`` ((scale * B) transposed), in ``dtype`` (fp32, or bf16 when the
    encoder runs bf16: half the memory, and bf16 products); Q, K and V share ``a["qkv"]``
    (``[capacity, hidden, 3r]``) and have a ``b`` each. A stack exists only once some
    adapter adapts that linear layer (adapters of the top layers cost nothing below); a
    slot of an adapter without LoRA there is zeros. Capacity doubles as needed (slots not
    yet used cost no resident memory); freed slots are reused.
    """

    def __init__(
        self, num_layers: int, hidden: int, intermediate: int, rank: int, dtype: torch.dtype = torch.float32
    ) -> None:
        self.rank = rank
        self.dtype = dtype
        self.capacity = 8
        self.free: list[int] = list(range(self.capacity - 1, -1, -1))
        self.a_shapes = {
            "qkv": (hidden, 3 * rank),
            "attn_out": (hidden, rank),
            "ff_in": (hidden, rank),
            "ff_out": (intermediate, rank),
        }
        self.b_shapes = {
            "query": (rank, hidden),
            "key": (rank, hidden),
            "value": (rank, hidden),
            "attn_out": (rank, hidden),
            "ff_in": (rank, intermediate),
            "ff_out": (rank, hidden),
        }
        self.a: list[dict[str, torch.Tensor]] = [{} for _ in range(num_layers)]
        self.b: list[dict[str, torch.Tensor]] = [{} for _ in range(num_layers)]
        # which slots have LoRA on each linear layer ("qkv": on any of Q, K, V): a layer no
        # adapter of a pass adapts is skipped (deskpilot may adapt the top layers only)
        self.has: list[dict[str, set[int]]] = [
            {n: set() for n in (*LINEARS, "qkv")} for _ in range(num_layers)
        ]

    def _occupied(self) -> list[int]:
        free = set(self.free)
        return [i for i in range(self.capacity) if i not in free]

    def _stack(self, stacks: dict[str, torch.Tensor], name: str, shape: tuple[int, int]) -> torch.Tensor:
        """The stack for ``name``, made on first use with zeros in the occupied slots."""
        if name not in stacks:
            stack = torch.empty(self.capacity, *shape, dtype=self.dtype)
            for slot in self._occupied():
                stack[slot].zero_()
            stacks[name] = stack
        return stacks[name]

    def _grow(self) -> None:
        capacity = 2 * self.capacity
        for layer in (*self.a, *self.b):
            for name, old in layer.items():
                new = torch.empty(capacity, *old.shape[1:], dtype=old.dtype)
                new[: self.capacity] = old
                layer[name] = new
        self.free.extend(range(capacity - 1, self.capacity - 1, -1))
        self.capacity = capacity

    def add(self, weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]) -> int:
        if not self.free:
            self._grow()
        slot = self.free.pop()
        r = self.rank
        for i, (a_stacks, b_stacks) in enumerate(zip(self.a, self.b, strict=True)):
            for part, name in enumerate(QKV):
                if (i, name) in weights:
                    a, b = weights[(i, name)]
                    qkv = self._stack(a_stacks, "qkv", self.a_shapes["qkv"])
                    if slot not in self.has[i]["qkv"]:
                        qkv[slot].zero_()  # the parts this adapter leaves out stay zero
                    qkv[slot, :, part * r : (part + 1) * r] = a.t()
                    self._stack(b_stacks, name, self.b_shapes[name])[slot] = b.t()
                    self.has[i][name].add(slot)
                    self.has[i]["qkv"].add(slot)
            for name in ("attn_out", "ff_in", "ff_out"):
                if (i, name) in weights:
                    a, b = weights[(i, name)]
                    self._stack(a_stacks, name, self.a_shapes[name])[slot] = a.t()
                    self._stack(b_stacks, name, self.b_shapes[name])[slot] = b.t()
                    self.has[i][name].add(slot)
            # stacks other adapters made: zeros for a layer this one does not adapt
            for stacks, names in ((a_stacks, ("qkv", "attn_out", "ff_in", "ff_out")), (b_stacks, LINEARS)):
                for name in names:
                    if name in stacks and slot not in self.has[i][name]:
                        stacks[name][slot].zero_()
        return slot

    def remove(self, slot: int) -> None:
        for layer in self.has:
            for slots in layer.values():
                slots.discard(slot)
        self.free.append(slot)

    def adapts(self, layer: int, name: str, slots: Sequence[int]) -> bool:
        """Whether any of ``slots`` has LoRA on that linear layer."""
        return not self.has[layer][name].isdisjoint(slots)

    def pair(self, slot: int, layer: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(A^T ``[in, r]``, (scale * B)^T ``[r, out]``) of one adapter's linear layer."""
        if name in QKV:
            part = QKV.index(name)
            a = self.a[layer]["qkv"][slot, :, part * self.rank : (part + 1) * self.rank]
        else:
            a = self.a[layer][name][slot]
        return a, self.b[layer][name][slot]


@dataclass
class _Lora:
    """The LoRA plan of one pass: rows ``[0, rows)`` are grouped by slot, in slot order.

    For bf16 products (:func:`_pieces`) each group is also cut into *pieces* of ``PIECE``
    rows: ``at`` is each row's place in a ``[pieces * PIECE]`` grid, ``piece_slots`` the slot
    of each piece (the piece count padded to a multiple of ``PIECES``; padding pieces are
    zeros, with the first group's slot).
    """

    rows: int
    slots: list[int]  # the slot of each group, ascending
    offsets: torch.Tensor  # int32 [capacity]: cumulative row ends, one per arena slot
    ends: list[int]  # row end of each group in ``slots``
    at: torch.Tensor | None = None
    piece_slots: torch.Tensor | None = None

    def groups(self) -> list[tuple[int, int, int]]:
        starts = [0, *self.ends[:-1]]
        return list(zip(self.slots, starts, self.ends, strict=True))

    def cut(self) -> None:
        """Fill ``at`` and ``piece_slots`` (see the class docstring)."""
        shifts, sizes, piece_slots = [], [], []
        for slot, start, end in self.groups():
            shifts.append(len(piece_slots) * PIECE - start)
            sizes.append(end - start)
            piece_slots.extend([slot] * -(-(end - start) // PIECE))
        padded = -(-len(piece_slots) // PIECES) * PIECES
        piece_slots.extend([self.slots[0]] * (padded - len(piece_slots)))
        self.at = torch.arange(self.rows) + torch.repeat_interleave(torch.tensor(shifts), torch.tensor(sizes))
        self.piece_slots = torch.tensor(piece_slots)


_GROUPED_MM = getattr(torch, "_grouped_mm", None)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run small products on one thread: splitting a 20-row product across cores costs more
    in fork/join than it saves, and ``torch._grouped_mm`` on several CPU threads was measured
    a hundred times slower (torch 2.13). The thread count is process-wide: a pass on another
    base running at the same moment in another thread runs single-threaded meanwhile (the
    micro-batcher runs all passes on one thread, so servers never see this)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _grouped(x: torch.Tensor, stack: torch.Tensor, plan: _Lora) -> torch.Tensor:
    """``x[rows of group g] @ stack[slot g]`` for every group, as one ``[rows, out]``."""
    if len(plan.slots) == 1:
        return x @ stack[plan.slots[0]]
    if _GROUPED_MM is not None:
        out: torch.Tensor = _GROUPED_MM(x, stack, offs=plan.offsets)
        return out
    return torch.cat([x[s:e] @ stack[slot] for slot, s, e in plan.groups()])  # pragma: no cover


def _pieces(x: torch.Tensor, stack: torch.Tensor, plan: _Lora) -> torch.Tensor:
    """:func:`_grouped` for bf16, on a ``[pieces, PIECE, in]`` grid: ``x`` is that grid (or
    ``[rows, in]``, scattered into it) and so is the result. One ``torch.bmm`` over pieces,
    each with its slot's matrix: bf16 products per group would each be a product of a new
    shape, and oneDNN compiles a kernel per shape (hundreds of milliseconds for a mixed
    pass); ``torch._grouped_mm`` in bf16 is slower than fp32. Shapes here are bounded: a
    piece is ``PIECE`` rows and the piece count a multiple of ``PIECES``."""
    assert plan.at is not None and plan.piece_slots is not None
    pieces = len(plan.piece_slots)
    if x.dim() == 2:
        grid = x.new_zeros(pieces * PIECE, x.shape[1]).index_copy_(0, plan.at, x)
        x = grid.view(pieces, PIECE, -1)
    return torch.bmm(x, stack.index_select(0, plan.piece_slots))


@dataclass
class _LayerWeights:
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    attn_out_w: torch.Tensor
    attn_out_b: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    ff_in_w: torch.Tensor
    ff_in_b: torch.Tensor
    ff_out_w: torch.Tensor
    ff_out_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor


@dataclass
class _Group:
    """Rows that share one padded attention call.

    ``tokens``: their token positions in the packed layout (None: all rows, in order);
    ``slot``: where each of their tokens sits in the ``[batch, longest]`` grid (None: no
    padding needed); ``mask``: which grid positions are real tokens.
    """

    batch: int
    longest: int
    tokens: torch.Tensor | None = None
    slot: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def _attention_groups(lengths: Sequence[int]) -> list[_Group]:
    """Rows grouped by length for attention, so short rows are not padded to the longest.

    Attention costs ``len^2`` per row: padding a 10-token row to 80 would cost 64 times its
    due. Rows (longest first) join a group while at least half as long as its first row.
    """
    if len(set(lengths)) == 1:
        return [_Group(len(lengths), lengths[0])]
    order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
    parts: list[list[int]] = []
    for r in order:
        if parts and 2 * lengths[r] > lengths[parts[-1][0]]:
            parts[-1].append(r)
        else:
            parts.append([r])
    if len(parts) == 1:
        parts = [list(range(len(lengths)))]  # one group: keep the packed order (no gather)
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    groups = []
    for rows in parts:
        longest = max(lengths[r] for r in rows)
        group = _Group(len(rows), longest)
        if len(parts) > 1:
            group.tokens = torch.tensor([starts[r] + i for r in rows for i in range(lengths[r])])
        if any(lengths[r] != longest for r in rows):
            group.slot = torch.tensor(
                [j * longest + i for j, r in enumerate(rows) for i in range(lengths[r])]
            )
            sizes = torch.tensor([lengths[r] for r in rows])
            group.mask = (torch.arange(longest)[None, :] < sizes[:, None])[:, None, None, :]
        groups.append(group)
    return groups


def _packing_works(dtype: torch.dtype) -> bool:
    """Whether this torch build has oneDNN's packed linear (a private op) and it agrees
    with ``F.linear``; if not, plain weights are used."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        w = torch.randn(24, 16).to(dtype)
        x = torch.randn(3, 16).to(dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.allclose(got.float(), F.linear(x, w).float(), atol=1e-2, rtol=1e-2))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class FastEncoder:
    """Packed, LoRA-aware inference over a ``BertModel``'s weights (see the module docstring).

    Not thread-safe: the caller serialises passes and adapter changes (the engine's lock).
    """

    def __init__(self, model: Any, *, dtype: torch.dtype = torch.float32) -> None:
        if not supports(model):
            raise ValueError(f"{type(model).__name__} is not a supported BERT encoder")
        config = model.config
        self.dtype = dtype
        # oneDNN (which runs bf16 products) keeps a compiled kernel, about 1 MB, per distinct
        # shape; padding the token count to a multiple of STEP and cutting it into blocks of
        # at most BLOCK rows bounds the shapes (and that memory) to BLOCK / STEP per weight
        self.bucketed = dtype != torch.float32
        # bf16 weights pre-packed in oneDNN's blocked layout (as torch.compile's CPU freezing
        # does): not re-laid-out on every product, about 30 % faster for a few rows
        self.packed = self.bucketed and _packing_works(dtype)
        act = str(config.hidden_act)
        self._fused_act = (
            ("gelu", "none")
            if act == "gelu"
            else ("gelu", "tanh")
            if act == "gelu_pytorch_tanh"
            else (act, "")
        )
        self.hidden = int(config.hidden_size)
        self.intermediate = int(config.intermediate_size)
        self.heads = int(config.num_attention_heads)
        self.eps = float(config.layer_norm_eps)
        self.act = _ACTIVATIONS[config.hidden_act]
        self.max_positions = int(config.max_position_embeddings)
        emb = model.embeddings
        # embeddings stay fp32 and shared with the HF model (no copy)
        self.word = emb.word_embeddings.weight.detach()
        self.position = emb.position_embeddings.weight.detach()
        self.type0 = emb.token_type_embeddings.weight.detach()[0]
        self.emb_ln = (emb.LayerNorm.weight.detach(), emb.LayerNorm.bias.detach())
        self._fp32: list[dict[str, torch.Tensor]] = []  # the base's own weights, for merging
        self.layers: list[_LayerWeights] = []
        for layer in model.encoder.layer:
            modules = {name: layer.get_submodule(path) for name, path in _MODULE_PATHS.items()}
            # PEFT may have wrapped these linears already: read the base layer's weights
            w = {n: getattr(m, "base_layer", m).weight.detach() for n, m in modules.items()}
            b = {n: getattr(m, "base_layer", m).bias.detach() for n, m in modules.items()}
            self._fp32.append(w)
            ln1, ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
            self.layers.append(
                _LayerWeights(
                    qkv_w=self._weight(torch.cat([w[n] for n in QKV])),
                    qkv_b=self._cast(torch.cat([b[n] for n in QKV])),
                    attn_out_w=self._weight(w["attn_out"]),
                    attn_out_b=self._cast(b["attn_out"]),
                    ln1_w=self._cast(ln1.weight.detach()),
                    ln1_b=self._cast(ln1.bias.detach()),
                    ff_in_w=self._weight(w["ff_in"]),
                    ff_in_b=self._cast(b["ff_in"]),
                    ff_out_w=self._weight(w["ff_out"]),
                    ff_out_b=self._cast(b["ff_out"]),
                    ln2_w=self._cast(ln2.weight.detach()),
                    ln2_b=self._cast(ln2.bias.detach()),
                )
            )
        self.arena: _Arena | None = None
        self.adapters: dict[str, int] = {}  # adapter key -> arena slot
        self.bare: set[str] = set()  # adapter keys whose LoRA is all zero: the base itself
        self.merged_key: str | None = None
        self._merged: list[_LayerWeights] | None = None
        self._streak: tuple[str | None, int] = (None, 0)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _weight(self, t: torch.Tensor) -> torch.Tensor:
        """A linear layer's weight as the products want it: cast, and packed for oneDNN."""
        return self._pack(self._cast(t))

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._reorder_linear_weight(t, None) if self.packed else t

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dtype == self.dtype else t.to(self.dtype).contiguous()

    def warm(self) -> None:
        """Run one pass per bucketed shape, so kernels are compiled (and their memory
        taken) at start-up rather than by the first requests."""
        if not self.bucketed:
            return
        for n in range(STEP, min(BLOCK, self.max_positions) + 1, STEP):
            self.embed([[0] * n], [None])

    # --- adapters ------------------------------------------------------------------------
    def load(self, key: str, path: Path) -> bool:
        """Read a saved adapter into a slot; False when it needs PEFT (see :func:`read_lora`)."""
        found = read_lora(path, self.num_layers)
        if found is None:
            return False
        rank, weights = found
        # an untrained LoRA (B = 0, e.g. a --preset fast probe) changes nothing: run the bare
        # base for it, with no slot and nothing to merge
        weights = {where: ab for where, ab in weights.items() if bool(ab[1].any())}
        if not weights:
            self.remove(key)
            self.bare.add(key)
            return True
        if self.arena is None:
            # bf16 encoders keep LoRA in bf16 too (half the memory; see _pieces)
            self.arena = _Arena(self.num_layers, self.hidden, self.intermediate, rank, self.dtype)
        elif self.arena.rank != rank:
            return False  # one rank per base on the fast path; others go through PEFT
        self.remove(key)
        self.adapters[key] = self.arena.add(weights)
        return True

    def remove(self, key: str) -> None:
        self.bare.discard(key)
        slot = self.adapters.pop(key, None)
        if slot is not None and self.arena is not None:
            self.arena.remove(slot)
        if self.merged_key == key:
            self.unmerge()

    def merge(self, key: str) -> None:
        """Keep ``W + scale * B @ A`` for ``key`` (replacing any other merged adapter)."""
        if self.merged_key == key or self.arena is None:
            return
        slot = self.adapters[key]
        merged = []
        for index, (weights, fp32) in enumerate(zip(self.layers, self._fp32, strict=True)):
            adapted = [n for n in LINEARS if self.arena.adapts(index, n, [slot])]
            new = {n: self._merged_weight(fp32[n], self.arena.pair(slot, index, n)) for n in adapted}
            changes = {}  # layers without LoRA keep (share) the base's weights
            if any(n in new for n in QKV):
                qkv = [new[n] if n in new else self._cast(fp32[n]) for n in QKV]
                changes["qkv_w"] = self._pack(torch.cat(qkv))
            for n in ("attn_out", "ff_in", "ff_out"):
                if n in new:
                    changes[f"{n}_w"] = self._pack(new[n])
            merged.append(_LayerWeights(**{**weights.__dict__, **changes}))
        self._merged, self.merged_key = merged, key

    def _merged_weight(self, base: torch.Tensor, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        a_t, b_t = pair  # summed in fp32, then cast once
        return (base.float() + (a_t.float() @ b_t.float()).t()).to(self.dtype).contiguous()

    def unmerge(self) -> None:
        self._merged, self.merged_key = None, None

    # --- inference -----------------------------------------------------------------------
    @torch.inference_mode()
    def embed(
        self,
        token_ids: Sequence[Sequence[int]],
        keys: Sequence[str | None],
        *,
        batch_size: int = 64,
        merge_after: int = 2,
    ) -> torch.Tensor:
        """Unit-length mean-pooled embeddings ``[n, hidden]`` (fp32), in input order.

        ``keys[i]`` names row i's adapter (None: the bare base). Rows are length-sorted into
        passes of ``batch_size``; inside a pass rows of one adapter are contiguous. A pass of
        one adapter uses merged weights once that adapter has had ``merge_after`` such passes
        in a row (or straight away for a full pass), so a steady single-task load runs at
        merged speed while a mixed load never pays for re-merging.
        """
        n = len(token_ids)
        out = torch.empty(n, self.hidden)
        if n == 0:
            return out
        if self.bare:
            keys = [None if k in self.bare else k for k in keys]
        order = sorted(range(n), key=lambda i: -len(token_ids[i]))
        for start in range(0, n, batch_size):
            chunk = order[start : start + batch_size]
            # rows grouped by adapter, in slot order; rows without an adapter last
            last = len(self.adapters) + self.arena.capacity if self.arena is not None else 0
            slot_of = [self.adapters[k] if (k := keys[i]) is not None else last for i in chunk]
            ordered = sorted(range(len(chunk)), key=slot_of.__getitem__)
            chunk = [chunk[j] for j in ordered]
            chunk_keys = [keys[i] for i in chunk]
            rows = [token_ids[i] for i in chunk]
            weights = self.layers
            if len(set(chunk_keys)) == 1 and chunk_keys[0] is not None:
                weights = self._single(chunk_keys[0], len(chunk), batch_size, merge_after)
            else:
                self._streak = (None, 0)
            plan = None if weights is self._merged else self._plan(chunk_keys, rows)
            out[torch.tensor(chunk)] = self._forward(rows, weights, plan)
        return out

    def _single(self, key: str, n_rows: int, batch_size: int, merge_after: int) -> list[_LayerWeights]:
        """Weights for a pass of one adapter: merged ones when it is (or becomes) the hot one."""
        streak = self._streak[1] + 1 if self._streak[0] == key else 1
        self._streak = (key, streak)
        if self.merged_key != key and (streak >= merge_after or n_rows >= batch_size):
            self.merge(key)
        if self.merged_key == key and self._merged is not None:
            return self._merged
        return self.layers

    def _plan(self, keys: Sequence[str | None], rows: Sequence[Sequence[int]]) -> _Lora | None:
        """Which packed rows get which adapter's LoRA; rows arrive grouped in slot order."""
        if self.arena is None:
            return None
        counts = [0] * self.arena.capacity
        slots: list[int] = []
        ends: list[int] = []
        covered = 0
        for key, row in zip(keys, rows, strict=True):
            if key is None:
                break  # keyless rows come last: plain base model
            slot = self.adapters[key]
            covered += len(row)
            counts[slot] += len(row)
            if slots and slots[-1] == slot:
                ends[-1] = covered
            else:
                slots.append(slot)
                ends.append(covered)
        if not slots:
            return None
        offsets = torch.tensor(counts, dtype=torch.int32).cumsum(0, dtype=torch.int32)
        plan = _Lora(covered, slots, offsets, ends)
        if self.arena.dtype != torch.float32:
            plan.cut()
        return plan

    def _forward(
        self,
        rows: Sequence[Sequence[int]],
        weights: list[_LayerWeights],
        plan: _Lora | None,
    ) -> torch.Tensor:
        batch, hidden = len(rows), self.hidden
        lengths = [len(r) for r in rows]
        total = sum(lengths)
        padded = -(-total // STEP) * STEP if self.bucketed else total
        flat = [t for r in rows for t in r]
        ids = torch.tensor(flat + [0] * (padded - total), dtype=torch.long)
        if batch == 1:
            positions = torch.arange(total)
        else:
            length_t = torch.tensor(lengths)
            starts = torch.cumsum(length_t, 0) - length_t
            row_of = torch.repeat_interleave(torch.arange(batch), length_t)
            positions = torch.arange(total) - starts[row_of]
        if padded > total:
            positions = F.pad(positions, (0, padded - total))
        groups = _attention_groups(lengths)
        x = self.word[ids] + self.type0
        x = x + self.position[positions]
        x = F.layer_norm(x, (hidden,), *self.emb_ln, self.eps).to(self.dtype)
        for index, w in enumerate(weights):
            qkv = self._linear(x, w.qkv_w, w.qkv_b)
            if self._adapts(plan, index, "qkv"):
                self._lora_qkv(x, qkv, plan, index)
            real = qkv[:total]
            if len(groups) == 1 and groups[0].tokens is None:
                ctx = self._attend(real, groups[0])
            else:
                ctx = real.new_empty(total, hidden)
                for group in groups:
                    ctx.index_copy_(0, group.tokens, self._attend(real.index_select(0, group.tokens), group))
            if padded > total:
                ctx = F.pad(ctx, (0, 0, 0, padded - total))
            h = self._linear(ctx, w.attn_out_w, w.attn_out_b)
            if self._adapts(plan, index, "attn_out"):
                self._lora(ctx, h, plan, index, "attn_out")
            x = F.layer_norm(h + x, (hidden,), w.ln1_w, w.ln1_b, self.eps)
            if self._adapts(plan, index, "ff_in"):
                h = self._linear(x, w.ff_in_w, w.ff_in_b)
                self._lora(x, h, plan, index, "ff_in")
                h = self.act(h)
            elif self.packed:  # no LoRA to add first: the activation runs fused
                h = self._linear(x, w.ff_in_w, w.ff_in_b, self._fused_act)
            else:
                h = self.act(self._linear(x, w.ff_in_w, w.ff_in_b))
            y = self._linear(h, w.ff_out_w, w.ff_out_b)
            if self._adapts(plan, index, "ff_out"):
                self._lora(h, y, plan, index, "ff_out")
            x = F.layer_norm(y + x, (hidden,), w.ln2_w, w.ln2_b, self.eps)
        x = x[:total].float()
        if batch == 1:
            pooled = x.mean(0, keepdim=True)
        else:
            pooled = torch.zeros(batch, hidden).index_add_(0, row_of, x) / length_t[:, None].to(x.dtype)
        return F.normalize(pooled, dim=-1)

    def _attend(self, qkv: torch.Tensor, group: _Group) -> torch.Tensor:
        """Self-attention of one group's rows: ``[tokens, 3 * hidden] -> [tokens, hidden]``."""
        tokens, hidden = len(qkv), self.hidden
        if group.slot is None:  # rows of one length: no padding, no mask
            q, k, v = qkv.view(group.batch, group.longest, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(tokens, hidden)
        grid = qkv.new_zeros(group.batch * group.longest, 3 * hidden)
        grid.index_copy_(0, group.slot, qkv)
        q, k, v = grid.view(group.batch, group.longest, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=group.mask)
        return ctx.transpose(1, 2).reshape(group.batch * group.longest, hidden).index_select(0, group.slot)

    def _linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        act: tuple[str, str] = ("none", ""),
    ) -> torch.Tensor:
        if not self.bucketed:
            return F.linear(x, weight, bias)
        blocks = [x[start : start + BLOCK] for start in range(0, len(x), BLOCK)]
        if self.packed:
            outs = [torch.ops.mkldnn._linear_pointwise(b, weight, bias, act[0], [], act[1]) for b in blocks]
        else:
            outs = [F.linear(b, weight, bias) for b in blocks]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _adapts(self, plan: _Lora | None, index: int, name: str) -> bool:
        return plan is not None and self.arena is not None and self.arena.adapts(index, name, plan.slots)

    def _lora(self, x: torch.Tensor, y: torch.Tensor, plan: _Lora, index: int, name: str) -> None:
        """``y += x @ A^T @ (scale * B)^T``, each row group with its own adapter's matrices."""
        arena, n = self.arena, plan.rows
        if arena is None:
            return
        with self._lora_threads(arena):
            if arena.dtype == torch.float32:
                xa = _grouped(x[:n].float(), arena.a[index][name], plan)
                delta = _grouped(xa, arena.b[index][name], plan)
            else:
                delta = self._ungrid(
                    _pieces(_pieces(x[:n], arena.a[index][name], plan), arena.b[index][name], plan), plan
                )
        y[:n].add_(delta.to(y.dtype))

    def _lora_qkv(self, x: torch.Tensor, qkv: torch.Tensor, plan: _Lora, index: int) -> None:
        arena, n, h = self.arena, plan.rows, self.hidden
        if arena is None:
            return
        r = arena.rank
        fp32 = arena.dtype == torch.float32
        with self._lora_threads(arena):
            # [n, 3r] (or the bf16 grid, [pieces, PIECE, 3r]): Q, K and V at once
            xa = (
                _grouped(x[:n].float(), arena.a[index]["qkv"], plan)
                if fp32
                else _pieces(x[:n], arena.a[index]["qkv"], plan)
            )
            deltas = [
                (
                    p,
                    _grouped(xa[:, p * r : (p + 1) * r], arena.b[index][name], plan)
                    if fp32
                    else self._ungrid(
                        _pieces(xa[..., p * r : (p + 1) * r], arena.b[index][name], plan), plan
                    ),
                )
                for p, name in enumerate(QKV)
                if arena.adapts(index, name, plan.slots)
            ]
        for part, delta in deltas:
            qkv[:n, part * h : (part + 1) * h].add_(delta.to(qkv.dtype))

    @staticmethod
    def _lora_threads(arena: _Arena) -> Any:
        """fp32 grouped products run on one thread (see :func:`_one_thread`); a bf16 product
        is one ``torch.bmm`` over all pieces, which uses every thread like the base model."""
        return _one_thread() if arena.dtype == torch.float32 else nullcontext()

    @staticmethod
    def _ungrid(grid: torch.Tensor, plan: _Lora) -> torch.Tensor:
        """``[pieces, PIECE, out]`` back to ``[rows, out]``."""
        assert plan.at is not None
        return grid.reshape(-1, grid.shape[-1]).index_select(0, plan.at)
