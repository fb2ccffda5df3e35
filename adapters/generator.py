"""A causal LM (plus an optional LoRA responder adapter) that drafts replies.

Why it looks like this:
- one generation at a time per model (a lock): on two cores a second concurrent
  generation only slows both down;
- the LoRA adapter is merged into the weights at load time, so a step costs what the
  base model costs (no extra LoRA matmuls per token);
- on a CPU with fast bf16 the linear layers keep int8 weights (per output channel) and
  multiply in bf16: decoding reads every weight once a token, so 1 byte a weight instead
  of 4 made 80 tokens after a 412-token prompt 1.6x faster (SmolLM2-135M, one thread:
  7.0 s fp32, 4.4 s int8); bf16 weights alone were barely faster than fp32 (5.9 s: the
  bf16 matrix-vector kernel is compute-bound). The int8 error is small next to the 4-bit
  quantization the packaged weights already carry (mean KL to fp32 0.006 nats a token);
- greedy decoding with a mild repetition penalty: drafts must be reproducible and a
  135M model sampled at temperature wanders off topic. For a Llama-family model on the CPU
  the greedy tokens come from :mod:`deskpilot.adapters.fastdecoder` (the same search without
  ``generate()``'s per-token machinery); anything else, and sampling, uses ``generate()``;
- the mean log-probability of the chosen tokens comes back with the text, a cheap
  confidence signal for deciding whether a draft is worth showing.

Training lives in :mod:`deskpilot.adapters.generator_training`.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.generation.streamers import BaseStreamer

from deskpilot.adapters.catalog import CHATML_TEMPLATE, BaseModel
from deskpilot.adapters.fastdecoder import FastDecoder
from deskpilot.adapters.hardware import configure_threads, use_bf16
from deskpilot.errors import InputDataError, ModelNotFoundError
from deskpilot.types import Generation

OnToken = Callable[[str], None]
# tokens that end an assistant turn in ChatML models (whichever the vocabulary has)
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>")
REPETITION_PENALTY = 1.1
ROLES = frozenset({"system", "user", "assistant"})
# an over-long prompt keeps this many of its first tokens (the instructions) and its end
PROMPT_HEAD_TOKENS = 64


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft reads a property transformers 5 deprecated; harmless, and raised on every wrap."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


def load_chat_tokenizer(base: BaseModel) -> PreTrainedTokenizerBase:
    """The base's tokenizer, with a ChatML template and a pad token if it lacks them."""
    tokenizer = AutoTokenizer.from_pretrained(str(base.path), local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(base: BaseModel) -> PreTrainedModel:
    """The base causal LM in fp32 (a hub config may say bf16: the caller decides)."""
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(base.path), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load '{base.name}' as a causal language model ({type(exc).__name__})",
            hint="pass a generator base: the packaged default, or a folder/HF id of a causal LM",
        ) from None
    model.eval()  # type: ignore[no-untyped-call]
    return model


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> list[int]:
    """EOS and every ChatML end-of-turn token the vocabulary knows."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, model.generation_config.eos_token_id):
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in STOP_TOKENS if t in vocab)
    return sorted(ids)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the chat-templated messages, ending where the assistant starts."""
    check_messages(messages)
    ids: Any = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [int(i) for i in ids]


def fit_prompt(ids: list[int], budget: int) -> list[int]:
    """Drop the middle of an over-long prompt: keep its head (instructions) and tail (the ticket)."""
    if len(ids) <= budget:
        return ids
    head = min(PROMPT_HEAD_TOKENS, budget // 4)
    return ids[:head] + ids[len(ids) - (budget - head) :]


def check_messages(messages: Sequence[Mapping[str, str]]) -> None:
    if not messages:
        raise InputDataError("a prompt needs at least one message")
    for m in messages:
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InputDataError(
                "each message needs a role (system, user or assistant) and a string content",
                hint=f"got {dict(m)!r:.120}",
            )


class PieceStreamer(BaseStreamer):
    """Calls ``on_token`` with each new piece of decoded text as tokens arrive.

    The pieces join to exactly the returned text: leading and trailing whitespace is
    held back (the final text is stripped), and so is an incomplete UTF-8 character.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, on_token: OnToken) -> None:
        self.tokenizer = tokenizer
        self.on_token = on_token
        self.tokens: list[int] = []
        self.sent = ""
        self.prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_skipped:  # generate() first pushes the prompt
            self.prompt_skipped = True
            return
        self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, *, final: bool) -> None:
        text = decode(self.tokenizer, self.tokens).lstrip()
        if not final:
            if "\ufffd" in text[len(self.sent) :]:
                return
            text = text.rstrip()
        else:
            text = text.rstrip()
        if len(text) > len(self.sent) and text.startswith(self.sent):
            piece, self.sent = text[len(self.sent) :], text
            self.on_token(piece)


def decode(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int]) -> str:
    return str(tokenizer.decode(list(tokens), skip_special_tokens=True))


@dataclass
class GeneratorModel:
    """A loaded generator: tokenizer, model (LoRA merged in) and its lock."""

    base: BaseModel
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Path | None = None
    repetition_penalty: float = REPETITION_PENALTY
    fast: bool = True

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stop_ids = stop_token_ids(self.tokenizer, self.model)
        # greedy drafts of a Llama-family model on the CPU skip generate() (see fastdecoder)
        self.decoder = FastDecoder.build(self.model) if self.fast else None
        # positions the model knows; a longer prompt loses its middle (see fit_prompt)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)

    @classmethod
    def load(
        cls,
        base: BaseModel,
        adapter: Path | None = None,
        *,
        bf16: str = "auto",
        int8: str = "auto",
        threads: int | None = None,
        device: str = "cpu",
        fast: bool = True,
    ) -> GeneratorModel:
        """Load ``base`` and merge ``adapter`` (a PEFT LoRA folder) into its weights.

        ``int8`` ("auto": on a CPU with fast bf16, unless ``bf16`` is "off", as its matmuls
        run in bf16) stores the linear layers' weights in int8; otherwise ``bf16`` ("auto":
        on CUDA only) converts all weights to bf16 once. ``threads`` sets torch's thread
        count (None leaves it as it is); ``device`` ("cpu", "cuda") where the model runs;
        ``fast`` False always decodes through ``generate()``.
        """
        if threads is not None:
            configure_threads(threads)
        tokenizer = load_chat_tokenizer(base)
        model = load_causal_lm(base)
        if adapter is not None:
            model = merge_adapter(model, Path(adapter))
        if device == "cpu" and inference_int8(int8, bf16):
            quantize_linears(model)
        elif inference_bf16(bf16, device):
            nn.Module.to(model, torch.bfloat16)  # in place
        nn.Module.to(model, device)
        return cls(base, model, tokenizer, adapter=Path(adapter) if adapter else None, fast=fast)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (int8 when the linear layers were quantized)."""
        if any(isinstance(m, Int8Linear) for m in self.model.modules()):
            return torch.int8
        return next(self.model.parameters()).dtype

    def generate(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_new_tokens: int = 80,
        on_token: OnToken | None = None,
        seed: int | None = None,
        temperature: float = 0.0,
    ) -> Generation:
        """Draft the assistant's reply to ``messages`` (greedy unless ``temperature`` > 0)."""
        if not 1 <= max_new_tokens <= self.context // 2:
            raise InputDataError(f"max_new_tokens must be between 1 and {self.context // 2}")
        check_messages(messages)
        with self.lock, torch.random.fork_rng(devices=[]), torch.inference_mode():
            # in the lock: fast tokenizers are not reentrant
            ids = fit_prompt(prompt_ids(self.tokenizer, messages), self.context - max_new_tokens)
            if seed is not None:
                torch.manual_seed(seed)
            started = time.perf_counter()
            streamer = PieceStreamer(self.tokenizer, on_token) if on_token else None
            if self.decoder is not None and temperature <= 0:
                new, logits = self._decode_fast(ids, max_new_tokens, streamer)
            else:
                new, logits = self._decode_generate(ids, max_new_tokens, temperature, streamer)
            seconds = time.perf_counter() - started
        return Generation(
            text=decode(self.tokenizer, new).strip(),
            new_tokens=len(new),
            prompt_tokens=len(ids),
            seconds=round(seconds, 4),
            mean_logprob=mean_logprob(logits, new),
        )

    def _decode_fast(
        self, ids: list[int], max_new_tokens: int, streamer: PieceStreamer | None
    ) -> tuple[list[int], Sequence[torch.Tensor]]:
        assert self.decoder is not None
        if streamer is not None:
            streamer.put(torch.tensor([ids]))  # the prompt first, as generate() does
        tokens, logits = self.decoder.decode(
            ids,
            max_new_tokens,
            self.stop_ids,
            AnswerRepetitionPenalty(self.repetition_penalty, prompt_length=0),
            on_token=(lambda token: streamer.put(torch.tensor([token]))) if streamer is not None else None,
        )
        if streamer is not None:
            streamer.end()
        return tokens, logits

    def _decode_generate(
        self, ids: list[int], max_new_tokens: int, temperature: float, streamer: PieceStreamer | None
    ) -> tuple[list[int], Sequence[torch.Tensor]]:
        model: Any = self.model  # generate() comes from a mixin the stubs do not see
        out = model.generate(
            input_ids=torch.tensor([ids], device=self.model.device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.model.device),
            generation_config=self._config(max_new_tokens, temperature),
            logits_processor=LogitsProcessorList(
                [AnswerRepetitionPenalty(self.repetition_penalty, len(ids))]
            ),
            streamer=streamer,
        )
        return out.sequences[0, len(ids) :].tolist(), out.logits

    def _config(self, max_new_tokens: int, temperature: float) -> GenerationConfig:
        """A config of our own, so a base's sampling defaults never leak in (or warn)."""
        sample: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 0.9} if temperature > 0 else {}
        )
        return GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
            return_dict_in_generate=True,
            output_logits=True,
            **sample,
        )


class AnswerRepetitionPenalty(LogitsProcessor):
    """The usual repetition penalty, on the reply's own tokens only.

    transformers' built-in one also penalises every prompt token, which steers a draft away
    from the words of the ticket and of the retrieved answers it should reuse.
    """

    def __init__(self, penalty: float, prompt_length: int) -> None:
        self.penalty = penalty
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0 or self.penalty == 1.0:
            return scores
        picked = scores.gather(1, generated)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        out: torch.FloatTensor = scores.scatter(1, generated, picked)  # type: ignore[assignment]
        return out


def mean_logprob(logits: Sequence[torch.Tensor] | None, chosen: Sequence[int]) -> float | None:
    """Mean log-probability (under the unpenalised model) of the tokens generated."""
    if not logits or not chosen:
        return None
    steps = torch.stack([step[0] for step in logits[: len(chosen)]]).float()
    picked = steps.log_softmax(-1)[torch.arange(len(chosen)), torch.tensor(chosen)]
    return round(float(picked.mean()), 4)


def merge_adapter(model: PreTrainedModel, adapter: Path) -> PreTrainedModel:
    """Fold a LoRA adapter into the base weights (W + BA), leaving a plain model."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ModelNotFoundError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    merged: PreTrainedModel = peft_model.merge_and_unload()
    merged.eval()  # type: ignore[no-untyped-call]
    return merged


def _check_switch(name: str, setting: str) -> None:
    if setting not in ("auto", "on", "off"):
        raise InputDataError(f"{name} must be auto, on or off, not '{setting}'")


def inference_bf16(setting: str, device: str = "cpu") -> bool:
    """bf16 weights: on CUDA by default; on CPU only when asked (not faster than fp32 there)."""
    _check_switch("bf16", setting)
    if setting == "auto":
        return device.startswith("cuda") and use_bf16("auto", device)
    return setting == "on"


def inference_int8(setting: str, bf16: str = "auto") -> bool:
    """int8 weights: by default where the int8 x bf16 kernel exists and bf16 math is fast
    (and allowed: ``bf16="off"`` asks for fp32 arithmetic)."""
    _check_switch("int8", setting)
    _check_switch("bf16", bf16)
    if setting == "off" or not hasattr(torch, "_weight_int8pack_mm"):
        return False
    return setting == "on" or (bf16 != "off" and use_bf16("auto", "cpu"))


class Int8Linear(nn.Module):
    """A bias-free linear layer with int8 weights and one bf16 scale per output row.

    One row at a time (decoding) runs the int8 x bf16 kernel directly; many rows (the
    prompt) de-quantize to bf16 first, which is what the CPU's bf16 matrix units want.
    """

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("qweight", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out = self.decode_rows(rows) if rows.shape[0] <= 4 else self.dense_rows(rows)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def decode_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(rows, self.qweight, self.scale)

    def dense_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return F.linear(rows, self.qweight.to(torch.bfloat16) * self.scale[:, None])

    @torch.inference_mode()
    def agrees(self) -> bool:
        """Both paths give the same answer on a random row (the kernel has shape quirks)."""
        probe = torch.randn(1, self.in_features, generator=torch.Generator().manual_seed(0))
        fast, dense = self.decode_rows(probe.bfloat16()).float(), self.dense_rows(probe.bfloat16()).float()
        return bool(torch.allclose(fast, dense, rtol=0.05, atol=0.05 * float(dense.abs().max()) + 1e-3))


def quantize_linears(model: nn.Module) -> int:
    """Swap bias-free nn.Linear layers (attention, MLP, LM head) for Int8Linear ones.

    Only where the int8 kernel is known to be right: the input width a multiple of 32
    (other widths gave wrong results or crashed in torch 2.13), checked on a probe row.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.bias is not None or child.in_features % 32:
                continue
            layer = Int8Linear(child.weight)
            if layer.agrees():
                setattr(parent, name, layer)
                swapped += 1
    return swapped
