"""Temperature scaling and confidence thresholds, fitted on held-out rows only."""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """Scalar T minimising NLL of softmax(logits / T) (Guo et al. 2017)."""
    if logits.numel() == 0:
        return 1.0
    logits = logits.detach().float().clone()  # may come from inference_mode
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    return t if math.isfinite(t) and 0.01 < t < 100 else 1.0


def ece(confidences: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> float:
    if confidences.numel() == 0:
        return 0.0
    edges = torch.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges.tolist()):
        in_bin = (confidences > lo) & (confidences <= hi)
        if in_bin.any():
            gap = (confidences[in_bin].mean() - correct[in_bin].float().mean()).abs()
            total += float(gap) * float(in_bin.float().mean())
    return total


def reliability_bins(
    confidences: torch.Tensor, correct: torch.Tensor, n_bins: int = 10
) -> list[dict[str, Any]]:
    """Equal-width confidence bins (``low`` <= conf < ``high``, the last one closed) with the mean
    confidence, the share right and the count of each; empty bins are left out. Saved in
    ``card.json`` (``metrics.validation.reliability``) for the console's reliability plot."""
    conf = confidences.detach().float().flatten()
    hits = correct.detach().float().flatten()
    index = (conf * n_bins).long().clamp(0, n_bins - 1)
    bins: list[dict[str, Any]] = []
    for b in range(n_bins):
        chosen = index == b
        count = int(chosen.sum())
        if count:
            bins.append(
                {
                    "low": round(b / n_bins, 6),
                    "high": round((b + 1) / n_bins, 6),
                    "mean_score": round(float(conf[chosen].mean()), 6),
                    "accuracy": round(float(hits[chosen].mean()), 6),
                    "count": count,
                }
            )
    return bins


def per_class_figures(
    predicted: torch.Tensor, true: torch.Tensor, covered: torch.Tensor, label_names: list[str]
) -> dict[str, dict[str, Any]]:
    """Per class, at the chosen thresholds: ``precision`` of the answers given for it (None when
    it was never answered), ``coverage`` of its rows (share answered, None without rows), and
    ``support``. Saved in ``card.json`` for the console's per-class table."""
    out: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(label_names):
        answered = covered & (predicted == index)
        mine = true == index
        n_answered, n_mine = int(answered.sum()), int(mine.sum())
        out[name] = {
            "precision": round(float((answered & mine).sum()) / n_answered, 6) if n_answered else None,
            "coverage": round(float((covered & mine).sum()) / n_mine, 6) if n_mine else None,
            "support": n_mine,
        }
    return out


def threshold_for_precision(confidences: torch.Tensor, correct: torch.Tensor, target: float) -> float:
    """Lowest confidence threshold at which the covered rows reach ``target`` accuracy.

    0.0 when all rows together already reach it; the highest confidence seen when no
    threshold does (the adapter then abstains on almost everything, which is the honest
    answer for a model that cannot meet the target).
    """
    if confidences.numel() == 0 or target <= 0:
        return 0.0
    order = torch.argsort(confidences, descending=True)
    conf = confidences[order]
    hits = correct[order].float().cumsum(0)
    counts = torch.arange(1, len(conf) + 1, dtype=torch.float32)
    precision = hits / counts
    ok = precision >= target
    if bool(ok[-1]):
        return 0.0
    ok[:-1] &= conf[:-1] != conf[1:]  # never cut between tied confidences: ties are covered together
    if not bool(ok.any()):
        return float(conf[0])
    # the largest covered set meeting the target: cut just below its lowest confidence
    last = int(torch.nonzero(ok).max())
    return float(conf[last])


def per_class_thresholds(
    confidences: torch.Tensor,
    predicted: torch.Tensor,
    correct: torch.Tensor,
    target: float,
    labels: list[str],
    min_support: int = 10,
) -> dict[str, float]:
    """A threshold per predicted class reaching ``target`` precision on that class's rows.

    A class with fewer than ``min_support`` validation predictions keeps the global
    threshold (absent here): a handful of rows cannot set a threshold worth trusting.
    """
    out: dict[str, float] = {}
    for index, label in enumerate(labels):
        rows = predicted == index
        if int(rows.sum()) >= min_support:
            out[label] = threshold_for_precision(confidences[rows], correct[rows], target)
    return out


def similarity_threshold_for_oos(
    in_scope: torch.Tensor, out_of_scope: torch.Tensor, max_in_scope_loss: float = 0.05
) -> float:
    """The similarity cut that best separates known out-of-scope rows from in-scope ones.

    Maximises (in-scope rows kept) + (out-of-scope rows caught), but never gives up more
    than ``max_in_scope_loss`` of the in-scope rows: a few OOS examples must not make the
    classifier abstain on the traffic it was trained for.
    """
    if in_scope.numel() == 0 or out_of_scope.numel() == 0:
        return 0.0
    floor = float(torch.quantile(in_scope, max_in_scope_loss))
    candidates = torch.cat([in_scope, out_of_scope]).unique()
    candidates = candidates[candidates <= floor]
    if candidates.numel() == 0:
        return floor
    kept = (in_scope.unsqueeze(0) >= candidates.unsqueeze(1)).float().mean(1)
    caught = (out_of_scope.unsqueeze(0) < candidates.unsqueeze(1)).float().mean(1)
    return float(candidates[int(torch.argmax(kept + caught))])
