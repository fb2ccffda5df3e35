"""ONNX Runtime export of one classifier adapter, merged into its base, optionally int8.

The serving engine stays the default: it serves many adapters from one base. A tenant
that runs one hot adapter on small machines can export it merged (no LoRA at run time)
and quantized (dynamic int8 weights, per output channel). The graph computes what the
engine computes: mean pooling over the attention mask, L2 norm, the adapter's linear
head; temperature, thresholds and the out-of-scope similarity are applied from the card,
so an exported model abstains as the engine does.

int8 costs accuracy on small encoders (the issue measured -1.8 points for a naive
export), so :func:`export_onnx` measures the int8 model against the fp32 one on texts
the caller gives (the adapter's validation data by default in the CLI) and records the
difference in ``onnx/export.json``; :class:`OnnxClassifier` refuses an int8 file whose
check failed unless told otherwise.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deskpilot.adapters.catalog import BaseModel, resolve
from deskpilot.adapters.classifier import HEAD_FILE
from deskpilot.adapters.encoding import load_encoder, load_tokenizer, mean_pool, tokenize
from deskpilot.adapters.hardware import usable_cores
from deskpilot.adapters.registry import TRAIN_ROWS, AdapterCard, read_rows_file
from deskpilot.errors import ConfigError, DeskpilotError

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
REPORT_FILE = "export.json"
# the bar for shipping int8: at most this many accuracy points below fp32
MAX_INT8_LOSS_POINTS = 0.5
OPSET = 17
# without labelled check data, int8 is checked on this many of the adapter's training rows
CHECK_ROWS = 2000


@dataclass
class ExportReport:
    task: str
    version: str
    base: str
    fp32_file: str
    int8_file: str | None
    checked_texts: int
    int8_agreement: float | None  # share of texts where int8 and fp32 pick the same label
    int8_loss_points: float | None  # fp32 accuracy - int8 accuracy, on labelled check texts
    int8_ok: bool | None
    seconds: float


class _Exported(nn.Module):
    """input_ids, attention_mask -> (logits, unit embedding), as the engine computes them."""

    def __init__(self, encoder: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        emb = F.normalize(mean_pool(hidden, attention_mask), dim=-1)
        return self.head(emb), emb


def training_sample(adapter_dir: Path, n: int = CHECK_ROWS, seed: int = 0) -> list[str]:
    """Up to ``n`` seeded texts of the rows the adapter was trained on ([] if it kept none)."""
    path = adapter_dir / TRAIN_ROWS
    if not path.is_file():
        return []
    texts = read_rows_file(path)[0]
    return [texts[i] for i in random.Random(seed).sample(range(len(texts)), min(n, len(texts)))]


def _require_onnx() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            "ONNX export needs onnxruntime and onnx",
            hint="pip install 'deskpilot[onnx]'",
        ) from exc
    return onnxruntime


def _merged_module(adapter_dir: Path, base: BaseModel) -> _Exported:
    from peft import PeftModel
    from safetensors.torch import load_file

    encoder = load_encoder(base)
    merged = PeftModel.from_pretrained(encoder, str(adapter_dir)).merge_and_unload()
    head = load_file(str(adapter_dir / HEAD_FILE))
    module = _Exported(merged, head["weight"].float(), head["bias"].float())
    module.eval()
    return module


def export_onnx(
    adapter_dir: Path,
    card: AdapterCard,
    *,
    int8: bool = True,
    check_texts: Sequence[str] = (),
    check_labels: Sequence[str] | None = None,
) -> ExportReport:
    """Write ``adapter_dir/onnx/model.onnx`` (and ``model.int8.onnx``) and the check report."""
    _require_onnx()
    started = time.perf_counter()
    base = resolve(card.base_model)
    out = adapter_dir / ONNX_DIR
    out.mkdir(exist_ok=True)
    module = _merged_module(adapter_dir, base)
    tokenizer = load_tokenizer(base)
    sample = tokenizer(
        ["an example ticket", "a second, longer example ticket text"], padding=True, return_tensors="pt"
    )
    fp32_path = out / FP32_FILE
    # the TorchScript exporter: no onnxscript needed; its deprecation and tracer notices are
    # for torch's developers, not for people exporting an adapter
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            module,
            (sample["input_ids"], sample["attention_mask"]),
            str(fp32_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits", "embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "logits": {0: "batch"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    int8_path: Path | None = None
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8_path = out / INT8_FILE
        # per-channel int8 weights keep far more of a small encoder's accuracy than per-tensor
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
    agreement = loss = None
    ok: bool | None = None
    if int8_path is not None and check_texts:
        full = OnnxClassifier(adapter_dir, card, int8=False)
        small = OnnxClassifier(adapter_dir, card, int8=True, unchecked=True)
        a = full.logits(check_texts).argmax(axis=1)
        b = small.logits(check_texts).argmax(axis=1)
        agreement = float((a == b).mean())
        if check_labels is not None:
            gold = np.array([card.labels.index(g) if g in card.labels else -1 for g in check_labels])
            loss = round(100.0 * (float((a == gold).mean()) - float((b == gold).mean())), 3)
        else:  # without labels, every disagreement may be an error
            loss = round(100.0 * (1.0 - agreement), 3)
        ok = loss <= MAX_INT8_LOSS_POINTS
    report = ExportReport(
        task=card.task,
        version=card.version,
        base=card.base_model,
        fp32_file=str(fp32_path),
        int8_file=str(int8_path) if int8_path else None,
        checked_texts=len(check_texts),
        int8_agreement=agreement,
        int8_loss_points=loss,
        int8_ok=ok,
        seconds=round(time.perf_counter() - started, 1),
    )
    (out / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report


class OnnxClassifier:
    """Runs an exported adapter with ONNX Runtime: top-1 labels and calibrated scores."""

    def __init__(
        self,
        adapter_dir: Path,
        card: AdapterCard,
        *,
        int8: bool = True,
        unchecked: bool = False,
        threads: int | None = None,
        batch_size: int = 64,
    ) -> None:
        ort = _require_onnx()
        folder = adapter_dir / ONNX_DIR
        path = folder / (INT8_FILE if int8 else FP32_FILE)
        if not path.is_file():
            raise DeskpilotError(
                f"no ONNX export at {path}",
                hint=f"run `deskpilot adapters export-onnx --task {card.task}` first",
            )
        if int8 and not unchecked:
            written = folder / REPORT_FILE
            report = json.loads(written.read_text(encoding="utf-8")) if written.is_file() else {}
            if report.get("int8_ok") is not True:
                raise DeskpilotError(
                    f"the int8 export of {card.task} {card.version} lost "
                    f"{report.get('int8_loss_points')} accuracy points (limit {MAX_INT8_LOSS_POINTS})"
                    if report.get("int8_ok") is False
                    else f"the int8 export of {card.task} {card.version} was never checked",
                    hint="use the fp32 export, or re-export with --check-data",
                )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.card = card
        self.tokenizer = load_tokenizer(resolve(card.base_model))
        self.batch_size = batch_size
        self.max_length = int(card.recipe.get("max_length", 128))  # the engine's default too

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        features = tokenize(self.tokenizer, texts, self.max_length)
        n_labels = len(self.card.labels)
        out = np.empty((len(texts), n_labels), dtype=np.float32)
        order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = len(features[idx[0]]["input_ids"])
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                seq = features[i]["input_ids"]
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            logits, _ = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[idx] = logits
        return out

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(label, calibrated probability) per text, top-1 (no abstention)."""
        logits = self.logits(texts) / float(self.card.calibration.get("temperature", 1.0) or 1.0)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return [(self.card.labels[int(j)], float(probs[i, j])) for i, j in enumerate(best)]
