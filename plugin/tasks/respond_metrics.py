"""How close a draft is to the reply a person actually sent: ROUGE-L and embedding cosine.

Pure Python and numpy, so training (to tune when to reuse a past answer), ``deskpilot evaluate
responder`` and ``deskpilot bench responder`` all score drafts the same way.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

from .knowledge_index import Embedder

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lowercase word tokens (longest common subsequence); 0 for an empty side."""
    a, b = tokens(candidate), tokens(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def cosines(embedder: Embedder, candidates: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine similarity of each candidate with its reference (0 for an empty candidate)."""
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    if not candidates:
        return []
    filled = [i for i, c in enumerate(candidates) if c.strip()]
    out = [0.0] * len(candidates)
    if filled:
        left = embedder.embed([candidates[i] for i in filled])
        right = embedder.embed([references[i] for i in filled])
        for i, value in zip(filled, (left * right).sum(axis=1).tolist(), strict=True):
            out[i] = float(value)
    return out


def paired_bootstrap(
    first: Sequence[float], second: Sequence[float], *, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``first - second`` and its 95 % percentile bootstrap interval (rows resampled)."""
    if len(first) != len(second) or not first:
        raise ValueError("paired samples must be non-empty and of one length")
    diff = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def split_pairs(n: int, held_out: int, seed: int) -> tuple[list[int], list[int]]:
    """Row indices (train, held out): a fixed-seed shuffle, the last ``held_out`` held out."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = max(0, min(held_out, n - 1))
    return order[: n - held], order[n - held :]
