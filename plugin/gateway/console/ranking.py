"""The order of the triage queue: labels that teach the model most come first (active learning).

Uncertainty: one minus the margin between the two best calibrated scores of a decision
(a close call is the most informative label), with the normalised entropy of its scores as a
tie-breaker. Diversity: picked greedily, each next item's gain is its uncertainty times how
unlike it is to every item already ahead of it (character-shingle Jaccard similarity), so ten
copies of one outage do not crowd the top. Items at least ``DUPLICATE`` similar to one ahead
are near-duplicates: labelling one teaches what labelling the others would, so they go last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

DUPLICATE = 0.7
SHINGLE = 5
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Candidate:
    key: int
    text: str
    scores: Sequence[float]  # the calibrated scores of the top label and its alternatives


@dataclass(frozen=True, slots=True)
class Ranked:
    key: int
    uncertainty: float
    margin: float
    entropy: float
    novelty: float  # 1 - similarity to the most similar item ranked ahead
    gain: float
    duplicate_of: int | None


def shingles(text: str, size: int = SHINGLE) -> frozenset[str]:
    flat = _SPACE.sub(" ", text.lower()).strip()
    if len(flat) <= size:
        return frozenset({flat}) if flat else frozenset()
    return frozenset(flat[i : i + size] for i in range(len(flat) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def uncertainty(scores: Sequence[float]) -> tuple[float, float, float]:
    """(uncertainty, margin, normalised entropy) of one decision's scores."""
    ordered = sorted((max(0.0, float(s)) for s in scores), reverse=True)
    if not ordered:
        return 1.0, 0.0, 1.0
    second = ordered[1] if len(ordered) > 1 else max(0.0, 1.0 - ordered[0])
    margin = max(0.0, min(1.0, ordered[0] - second))
    rest = max(0.0, 1.0 - sum(ordered))  # mass the scores leave to labels not listed
    probs = [p for p in [*ordered, rest] if p > 0]
    total = sum(probs)
    entropy = -sum((p / total) * math.log(p / total) for p in probs) if total else 0.0
    normalised = entropy / math.log(len(probs)) if len(probs) > 1 else 0.0
    return 1.0 - margin, margin, normalised


def rank(candidates: Sequence[Candidate]) -> list[Ranked]:
    """Greedy uncertainty x novelty order; near-duplicates of an item ahead come last."""
    n = len(candidates)
    measured = [uncertainty(c.scores) for c in candidates]
    grams = [shingles(c.text) for c in candidates]
    nearest = [0.0] * n  # similarity to the most similar item picked so far
    nearest_key: list[int | None] = [None] * n
    left = set(range(n))
    order: list[Ranked] = []
    duplicates: list[Ranked] = []
    while left:
        best = max(
            left,
            key=lambda i: (measured[i][0] * (1.0 - nearest[i]), measured[i][2], -candidates[i].key),
        )
        left.discard(best)
        u, margin, entropy = measured[best]
        novelty = 1.0 - nearest[best]
        is_duplicate = nearest[best] >= DUPLICATE
        item = Ranked(
            key=candidates[best].key,
            uncertainty=round(u, 4),
            margin=round(margin, 4),
            entropy=round(entropy, 4),
            novelty=round(novelty, 4),
            gain=round(u * novelty, 4),
            duplicate_of=nearest_key[best] if is_duplicate else None,
        )
        (duplicates if is_duplicate else order).append(item)
        if is_duplicate:
            continue  # a duplicate adds nothing new to be unlike
        for i in left:
            similarity = jaccard(grams[best], grams[i])
            if similarity > nearest[i]:
                nearest[i] = similarity
                nearest_key[i] = candidates[best].key
    return order + duplicates
