"""Reliability bins saved with a classifier's validation metrics (the console plots them)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from deskpilot.adapters.calibration import per_class_figures, reliability_bins


def test_bins_hold_mean_confidence_share_right_and_count() -> None:
    conf = torch.tensor([0.95, 0.92, 0.91, 1.0, 0.55, 0.52, 0.05])
    correct = torch.tensor([True, True, False, True, True, False, False])
    bins = reliability_bins(conf, correct)
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [(0.0, 0.1, 1), (0.5, 0.6, 2), (0.9, 1.0, 4)]
    top = bins[-1]
    assert top["accuracy"] == 0.75 and top["mean_score"] == pytest.approx(
        (0.95 + 0.92 + 0.91 + 1.0) / 4, abs=1e-6
    )
    assert bins[1]["accuracy"] == 0.5


def test_no_rows_no_bins() -> None:
    assert reliability_bins(torch.tensor([]), torch.tensor([], dtype=torch.bool)) == []


def test_a_trained_card_keeps_its_validation_reliability(trained_intent: Any) -> None:
    validation = trained_intent.card.metrics["validation"]
    bins = validation["reliability"]
    assert bins and sum(b["count"] for b in bins) == validation["n"]
    assert all(0.0 <= b["low"] < b["high"] <= 1.0 and 0.0 <= b["accuracy"] <= 1.0 for b in bins)


def test_per_class_precision_and_coverage_at_the_thresholds() -> None:
    predicted = torch.tensor([0, 0, 1, 1, 0, 2])
    true = torch.tensor([0, 1, 1, 1, 0, 0])
    covered = torch.tensor([True, True, True, False, False, False])
    figures = per_class_figures(predicted, true, covered, ["a", "b", "c"])
    # a: answered twice (rows 0, 1), right once; its rows 0, 4, 5, one answered
    assert figures["a"] == {"precision": 0.5, "coverage": pytest.approx(1 / 3, abs=1e-6), "support": 3}
    assert figures["b"] == {"precision": 1.0, "coverage": pytest.approx(2 / 3, abs=1e-6), "support": 3}
    assert figures["c"] == {"precision": None, "coverage": None, "support": 0}


def test_a_trained_card_keeps_per_class_figures(trained_intent: Any) -> None:
    card = trained_intent.card
    per_class = card.metrics["validation"]["per_class"]
    assert set(per_class) == set(card.labels)
    assert sum(f["support"] for f in per_class.values()) == card.metrics["validation"]["n"]
