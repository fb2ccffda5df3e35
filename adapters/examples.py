"""Training rows kept as embeddings, so a decision can cite the most similar training tickets.

``examples.safetensors`` beside the adapter holds ``embeddings`` (``[n, hidden]`` fp16, unit
length, from the fine-tuned encoder: the space the out-of-scope centroids live in) and
``indices`` (int64: which rows of ``train.jsonl`` they are). Only indices are stored, not
texts: the texts stay in one place (``train.jsonl``), and the card's data hash tells whether
that file still holds the rows the indices point into.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deskpilot.adapters.registry import TRAIN_ROWS, read_rows_file

EXAMPLES_FILE = "examples.safetensors"
# rows kept per adapter: 5000 x 384 dims x 2 bytes is 3.8 MB for the default encoder
MAX_EXAMPLES = 5000
TEXT_CHARS = 300


def sample_rows(labels: Sequence[str], seed: int = 0, limit: int | None = None) -> list[int]:
    """Indices (sorted) of the rows to keep: all of them up to ``limit`` (default
    ``MAX_EXAMPLES``), else a seeded sample in which every class keeps its share and at
    least one row, so rare classes can still be cited."""
    limit = MAX_EXAMPLES if limit is None else limit
    if len(labels) <= limit:
        return list(range(len(labels)))
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    rng = random.Random(seed)
    classes = sorted(by_class)
    if len(classes) >= limit:  # more classes than room: one row each of a sample of classes
        return sorted(rng.choice(by_class[c]) for c in rng.sample(classes, limit))
    share = {c: limit * len(by_class[c]) / len(labels) for c in classes}
    take = {c: min(len(by_class[c]), max(1, int(share[c]))) for c in classes}
    # the rounding leftover goes to the largest remainders; the "at least one" excess is taken
    # back from the largest classes
    for c in sorted(classes, key=lambda c: (int(share[c]) - share[c], c)):
        if sum(take.values()) >= limit:
            break
        if take[c] < len(by_class[c]):
            take[c] += 1
    while sum(take.values()) > limit:
        take[max(classes, key=lambda c: (take[c], c))] -= 1
    return sorted(i for c in classes for i in rng.sample(by_class[c], take[c]))


def save(folder: Path, embeddings: torch.Tensor, indices: Sequence[int]) -> None:
    from safetensors.torch import save_file

    if len(indices) != len(embeddings):
        raise ValueError(f"{len(embeddings)} example embeddings for {len(indices)} indices")
    save_file(
        {
            "embeddings": embeddings.detach().to(torch.float16).contiguous(),
            "indices": torch.tensor(list(indices), dtype=torch.int64),
        },
        str(Path(folder) / EXAMPLES_FILE),
    )


@dataclass(frozen=True)
class Examples:
    """One adapter version's kept rows: unit embeddings and what they were."""

    embeddings: torch.Tensor  # [n, hidden] fp16 (half the memory; scored in fp32)
    texts: tuple[str, ...]
    labels: tuple[str, ...]

    def search(self, query: torch.Tensor, k: int) -> list[dict[str, Any]]:
        """The ``k`` rows closest to a unit-length ``query`` (cosine), best first."""
        if k < 1 or not self.texts or query.shape[-1] != self.embeddings.shape[1]:
            return []
        scores = self.embeddings.float() @ query.float().reshape(-1)
        top, idx = scores.topk(min(k, len(self.texts)))
        return [
            {"text": self.texts[i][:TEXT_CHARS], "label": self.labels[i], "score": round(min(1.0, s), 4)}
            for s, i in zip(top.tolist(), idx.tolist(), strict=True)
        ]


def load(folder: Path, rows_match: Callable[[list[str], list[str]], bool] | None = None) -> Examples | None:
    """The kept rows of an adapter folder; None when it has none (older adapters), when
    ``train.jsonl`` is missing, or when ``rows_match`` says that file is not what was trained on."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / EXAMPLES_FILE).is_file() or not (folder / TRAIN_ROWS).is_file():
        return None
    texts, labels = read_rows_file(folder / TRAIN_ROWS)
    if rows_match is not None and not rows_match(texts, labels):
        return None
    tensors = load_file(str(folder / EXAMPLES_FILE))
    embeddings, indices = tensors.get("embeddings"), tensors.get("indices")
    if embeddings is None or indices is None or embeddings.ndim != 2 or len(indices) != len(embeddings):
        return None
    rows = indices.tolist()
    if any(not 0 <= i < len(texts) for i in rows):
        return None
    return Examples(
        embeddings=embeddings.to(torch.float16),
        texts=tuple(texts[i][:TEXT_CHARS] for i in rows),
        labels=tuple(labels[i] for i in rows),
    )


class ExampleCache:
    """Loaded :class:`Examples` of the last few adapter versions (LRU), reloaded when a file
    changes (``stat`` signature), so a replaced ``train.jsonl`` is never cited with stale indices."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self._entries: OrderedDict[Path, tuple[tuple[Any, ...], Examples | None]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _signature(folder: Path) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in (EXAMPLES_FILE, TRAIN_ROWS):
            try:
                st = (folder / name).stat()
                out.append((st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def get(
        self, folder: Path, rows_match: Callable[[list[str], list[str]], bool] | None = None
    ) -> Examples | None:
        signature = self._signature(folder)
        with self._lock:
            hit = self._entries.get(folder)
            if hit is not None and hit[0] == signature:
                self._entries.move_to_end(folder)
                return hit[1]
        # loaded outside the lock: a slow load never holds up another version's lookups
        value = load(folder, rows_match)
        with self._lock:
            self._entries[folder] = (signature, value)
            self._entries.move_to_end(folder)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
        return value
