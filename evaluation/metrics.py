"""Classification metrics over label strings, numpy only.

Kept free of scikit-learn so ``deskpilot evaluate`` works on a bare install; the tests
check the overlapping functions against scikit-learn. Undefined ratios (nothing
covered, no out-of-scope rows, a class never predicted) are ``None``, never a made-up 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

ABSTAIN = "__abstain__"
"""Stand-in prediction for an abstention when scoring macro F1."""

ABSTAIN_ALL_THRESHOLD = math.nextafter(1.0, math.inf)
"""What :func:`threshold_for_precision` returns when no threshold reaches the target:
just above 1.0, so every confidence in [0, 1] falls below it and the classifier abstains."""

_DIGITS = 6


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), _DIGITS)


def _ratio(numerator: int | float, denominator: int | float) -> float | None:
    return None if denominator == 0 else float(numerator) / float(denominator)


def _check_pair(y_true: Sequence[Any], y_pred: Sequence[Any]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no rows to score")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str | None]) -> float:
    """Share of rows whose prediction equals the true label."""
    _check_pair(y_true, y_pred)
    hits = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p)
    return hits / len(y_true)


def _per_class_f1(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> list[float]:
    tp: dict[str, int] = dict.fromkeys(labels, 0)
    true_n: dict[str, int] = dict.fromkeys(labels, 0)
    pred_n: dict[str, int] = dict.fromkeys(labels, 0)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in true_n:
            true_n[t] += 1
            if t == p:
                tp[t] += 1
        if p in pred_n:
            pred_n[p] += 1
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + support): defined whenever support > 0.
    return [2.0 * tp[c] / (pred_n[c] + true_n[c]) for c in labels]


def macro_f1(
    y_true: Sequence[str], y_pred: Sequence[str | None], labels: Collection[str] | None = None
) -> float:
    """Unweighted mean F1 over the classes that occur in ``y_true``.

    ``labels`` restricts the average to those classes; any of them without support in
    ``y_true`` is dropped, as its recall (and so F1) is undefined. Equals scikit-learn's
    ``f1_score(y_true, y_pred, labels=<those classes>, average="macro")``. Predictions
    outside the averaged classes (e.g. an abstention) still count as misses.
    """
    _check_pair(y_true, y_pred)
    present = set(y_true)
    classes = sorted(present if labels is None else present.intersection(labels))
    if not classes:
        raise ValueError("none of the given labels occurs in y_true")
    return float(np.mean(_per_class_f1(y_true, y_pred, classes)))


def expected_calibration_error(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = 15
) -> float:
    """Standard ECE: equal-width bins on [0, 1], |accuracy - mean confidence| weighted by bin size.

    Bins are (lo, hi]; a confidence of exactly 0 goes in the first bin.
    """
    conf = np.asarray(confidences, dtype=float)
    hit = np.asarray(correct, dtype=bool)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise ValueError("confidences and correct must be 1-D and the same length")
    if conf.size == 0:
        raise ValueError("no rows to score")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    if np.any(~np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError("confidences must lie in [0, 1]")
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        total += abs(hit[in_bin].mean() - conf[in_bin].mean()) * in_bin.sum()
    return float(total / conf.size)


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    abstained: Sequence[bool],
    known_labels: Collection[str],
) -> dict[str, Any]:
    """The JSON that ``deskpilot evaluate classifier --json`` prints.

    A row is out of scope (OOS) when its true label is not in ``known_labels``; it is
    answered correctly only by abstaining. An in-scope row is correct only when not
    abstained and predicted right. Undefined ratios are ``None``: ``accuracy_on_covered``
    when every row abstained, ``oos_recall`` without OOS rows, ``in_scope_accuracy`` and
    ``macro_f1`` without in-scope rows, and per class ``precision`` when the class was never
    predicted (without abstaining), ``recall``/``coverage`` when it has no in-scope rows.
    Per-class precision counts predictions on every row, OOS included: a confident answer
    to an OOS query is a false positive for the class it names.
    """
    _check_pair(y_true, y_pred)
    if len(abstained) != len(y_true):
        raise ValueError(f"y_true has {len(y_true)} items but abstained has {len(abstained)}")
    known = set(known_labels)
    n = len(y_true)
    rows = [(t, p, bool(a), t in known) for t, p, a in zip(y_true, y_pred, abstained, strict=True)]
    correct = [(a if not s else (not a and p == t)) for t, p, a, s in rows]

    covered = [c for (_, _, a, _), c in zip(rows, correct, strict=True) if not a]
    in_scope = [(t, p, a) for t, p, a, s in rows if s]
    oos_abstained = [a for _, _, a, s in rows if not s]

    macro = None
    if in_scope:
        macro = macro_f1([t for t, _, _ in in_scope], [ABSTAIN if a else p for _, p, a in in_scope])

    support = Counter(t for t, _, _ in in_scope)
    answered = Counter(t for t, _, a in in_scope if not a)
    hits = Counter(t for t, p, a in in_scope if not a and p == t)
    predicted = Counter(p for _, p, a, _ in rows if not a)
    per_class: dict[str, dict[str, float | int | None]] = {
        str(label): {
            "precision": _round(_ratio(hits[label], predicted[label])),
            "recall": _round(_ratio(hits[label], support[label])),
            "coverage": _round(_ratio(answered[label], support[label])),
            "support": support[label],
        }
        for label in sorted(known)
    }

    return {
        "n": n,
        "accuracy": _round(sum(correct) / n),
        "macro_f1": _round(macro),
        "coverage": _round(len(covered) / n),
        "accuracy_on_covered": _round(_ratio(sum(covered), len(covered))),
        "oos_recall": _round(_ratio(sum(oos_abstained), len(oos_abstained))),
        "in_scope_accuracy": _round(_ratio(hits.total(), len(in_scope))),
        "n_oos": len(oos_abstained),
        "per_class": per_class,
    }


def _sorted_curve(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with the count and hits of rows at or above each."""
    conf = np.asarray(confidences, dtype=float)
    hit = np.asarray(correct, dtype=bool)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise ValueError("confidences and correct must be 1-D and the same length")
    if np.any(~np.isfinite(conf)):
        raise ValueError("confidences must be finite")
    if conf.size == 0:
        empty = np.zeros(0, dtype=int)
        return conf, empty, empty
    order = np.argsort(-conf, kind="stable")
    conf, hit = conf[order], hit[order]
    hits = np.cumsum(hit)
    # last position of each run of equal confidences: everything up to it is covered
    last = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))
    return conf[last], last + 1, hits[last]


def coverage_curve(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray
) -> list[tuple[float, float, float]]:
    """(threshold, coverage, accuracy_on_covered) at every distinct confidence, threshold ascending.

    A row is covered (answered) when its confidence is >= the threshold, so the first
    point has coverage 1.0. Empty input gives an empty curve.
    """
    thresholds, counts, hits = _sorted_curve(confidences, correct)
    n = int(counts[-1]) if counts.size else 0
    points = [
        (float(t), float(c) / n, float(h) / float(c))
        for t, c, h in zip(thresholds, counts, hits, strict=True)
    ]
    return points[::-1]


def threshold_for_precision(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, target: float
) -> float:
    """Smallest confidence threshold whose covered accuracy reaches ``target``.

    Smallest means most coverage. Returns 0.0 when answering every row already meets the
    target, and :data:`ABSTAIN_ALL_THRESHOLD` (just above 1.0: abstain on everything) when
    no threshold does. A raised target never lowers the threshold.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"target must lie in [0, 1], got {target}")
    thresholds, counts, hits = _sorted_curve(confidences, correct)
    if counts.size == 0:
        raise ValueError("no rows to choose a threshold from")
    # tiny tolerance so that e.g. 9/10 meets a target of 0.9 despite float rounding
    meets = hits / counts >= target - 1e-12
    if meets[-1]:
        return 0.0
    if not meets.any():
        return ABSTAIN_ALL_THRESHOLD
    return float(thresholds[np.flatnonzero(meets)[-1]])
