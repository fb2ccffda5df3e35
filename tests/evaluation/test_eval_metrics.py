"""Metrics: hand-computed cases, the abstain/out-of-scope contract, and agreement with scikit-learn."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from deskpilot.evaluation.metrics import (
    ABSTAIN,
    ABSTAIN_ALL_THRESHOLD,
    accuracy,
    classification_report,
    coverage_curve,
    expected_calibration_error,
    macro_f1,
    threshold_for_precision,
)


def _random_labels(seed: int, n: int = 300, k: int = 6) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    classes = [f"c{i}" for i in range(k)]
    y_true = [rng.choice(classes) for _ in range(n)]
    # mostly right, sometimes a wrong class or one that never occurs in y_true
    y_pred = [t if rng.random() < 0.6 else rng.choice([*classes, "stray"]) for t in y_true]
    return y_true, y_pred


# accuracy / macro F1 -------------------------------------------------------------------


def test_accuracy_hand_computed() -> None:
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "a"]) == 0.75


def test_macro_f1_hand_computed() -> None:
    # a: P=1, R=1/2 -> 2/3; b: P=2/3, R=1 -> 4/5
    assert macro_f1(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_skips_classes_without_support() -> None:
    # "c" is only ever predicted: it lowers a's recall but is not averaged itself
    assert macro_f1(["a", "a", "b"], ["a", "c", "b"]) == pytest.approx((2 / 3 + 1.0) / 2)
    assert macro_f1(["a", "a", "b"], ["a", "c", "b"], labels=["a", "b", "z"]) == pytest.approx(
        (2 / 3 + 1) / 2
    )
    assert macro_f1(["a", "a", "b"], ["a", "c", "b"], labels=["b"]) == 1.0


def test_mismatched_or_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        macro_f1([], [])
    with pytest.raises(ValueError):
        macro_f1(["a"], ["a"], labels=["z"])


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_and_macro_f1_match_sklearn(seed: int) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = _random_labels(seed)
    assert accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    expected = sk.f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    subset = ["c0", "c2", "c5"]
    expected = sk.f1_score(y_true, y_pred, labels=subset, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred, labels=subset) == pytest.approx(expected, abs=1e-12)


# calibration ---------------------------------------------------------------------------


def test_ece_of_perfectly_calibrated_bins_is_zero() -> None:
    conf = [0.2] * 10 + [0.8] * 10 + [1.0] * 4
    correct = [True] * 2 + [False] * 8 + [True] * 8 + [False] * 2 + [True] * 4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed() -> None:
    # one bin, confidence 0.9, accuracy 1.0 -> 0.1; and two bins weighted by size
    assert expected_calibration_error([0.9] * 4, [True] * 4) == pytest.approx(0.1)
    value = expected_calibration_error([0.0, 0.5, 0.5, 0.5], [False, True, True, True], n_bins=2)
    assert value == pytest.approx(0.75 * 0.5)


def test_ece_refuses_out_of_range_confidences() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error([1.2], [True])


# the report contract ----------------------------------------------------------------


def _mixed_case() -> dict:
    y_true = ["a", "a", "b", "oos", "oos", "b"]
    y_pred = ["a", "b", "b", "a", "b", "b"]
    abstained = [False, False, True, True, False, False]
    return classification_report(y_true, y_pred, abstained, known_labels=["a", "b"])


def test_report_hand_computed() -> None:
    report = _mixed_case()
    assert set(report) == {
        "n",
        "accuracy",
        "macro_f1",
        "coverage",
        "accuracy_on_covered",
        "oos_recall",
        "in_scope_accuracy",
        "n_oos",
        "per_class",
    }
    assert report["n"] == 6
    assert report["n_oos"] == 2
    assert report["accuracy"] == 0.5  # rows 1, 4 (OOS abstained), 6
    assert report["coverage"] == round(4 / 6, 6)
    assert report["accuracy_on_covered"] == 0.5  # rows 1 and 6 of 1, 2, 5, 6
    assert report["oos_recall"] == 0.5
    assert report["in_scope_accuracy"] == 0.5
    # in scope: a -> F1 2/3; b -> 2*1 / (2 predicted + 2 support) = 1/2 (the abstention is a miss)
    assert report["macro_f1"] == round((2 / 3 + 0.5) / 2, 6)
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "coverage": 1.0, "support": 2}
    # b was predicted (unabstained) on rows 2, 5 (an OOS row) and 6: precision 1/3
    assert report["per_class"]["b"] == {
        "precision": round(1 / 3, 6),
        "recall": 0.5,
        "coverage": 0.5,
        "support": 2,
    }


def test_report_all_abstained() -> None:
    report = classification_report(["a", "b", "x"], ["a", "b", "a"], [True] * 3, known_labels=["a", "b"])
    assert report["coverage"] == 0.0
    assert report["accuracy_on_covered"] is None  # nothing answered: undefined, not 0
    assert report["accuracy"] == round(1 / 3, 6)  # only the OOS row is right
    assert report["in_scope_accuracy"] == 0.0
    assert report["oos_recall"] == 1.0
    assert report["macro_f1"] == 0.0
    assert report["per_class"]["a"] == {"precision": None, "recall": 0.0, "coverage": 0.0, "support": 1}


def test_report_without_oos_or_without_in_scope_rows() -> None:
    no_oos = classification_report(["a", "b"], ["a", "a"], [False, False], known_labels=["a", "b", "c"])
    assert no_oos["n_oos"] == 0
    assert no_oos["oos_recall"] is None
    assert no_oos["accuracy"] == no_oos["in_scope_accuracy"] == 0.5
    assert no_oos["per_class"]["c"] == {"precision": None, "recall": None, "coverage": None, "support": 0}

    only_oos = classification_report(["x", "y"], ["a", None], [False, True], known_labels=["a"])
    assert only_oos["in_scope_accuracy"] is None
    assert only_oos["macro_f1"] is None
    assert only_oos["oos_recall"] == 0.5
    assert only_oos["per_class"]["a"]["precision"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_report_is_bounded_json_and_matches_sklearn(seed: int) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    y_true, y_pred = _random_labels(seed)
    y_true = [t if rng.random() > 0.15 else "oos" for t in y_true]
    abstained = [rng.random() < 0.3 for _ in y_true]
    known = [f"c{i}" for i in range(6)]
    report = classification_report(y_true, y_pred, abstained, known)
    assert json.loads(json.dumps(report)) == report

    fractions = [v for k, v in report.items() if k not in ("n", "n_oos", "per_class")]
    fractions += [v for c in report["per_class"].values() for k, v in c.items() if k != "support"]
    for value in fractions:
        assert value is None or (0.0 <= value <= 1.0 and round(value, 6) == value)

    scope = [i for i, t in enumerate(y_true) if t in known]
    true_in = [y_true[i] for i in scope]
    pred_in = [ABSTAIN if abstained[i] else y_pred[i] for i in scope]
    expected = sk.f1_score(true_in, pred_in, labels=np.unique(true_in), average="macro", zero_division=0)
    assert report["macro_f1"] == pytest.approx(expected, abs=1e-6)
    assert report["in_scope_accuracy"] == pytest.approx(sk.accuracy_score(true_in, pred_in), abs=1e-6)


# coverage and thresholds --------------------------------------------------------------

CONF = [0.9, 0.8, 0.8, 0.3]
CORRECT = [True, True, False, False]


def test_coverage_curve_hand_computed() -> None:
    curve = coverage_curve(CONF, CORRECT)
    assert curve == [
        pytest.approx((0.3, 1.0, 0.5)),
        pytest.approx((0.8, 0.75, 2 / 3)),
        pytest.approx((0.9, 0.25, 1.0)),
    ]
    assert coverage_curve([], []) == []


def test_threshold_for_precision_hand_computed() -> None:
    assert threshold_for_precision(CONF, CORRECT, 0.5) == 0.0  # met at full coverage
    assert threshold_for_precision(CONF, CORRECT, 0.6) == 0.8
    assert threshold_for_precision(CONF, CORRECT, 1.0) == 0.9
    never = threshold_for_precision([0.7, 1.0], [False, False], 0.5)
    assert never == ABSTAIN_ALL_THRESHOLD
    assert never > 1.0


def test_threshold_for_precision_is_monotonic_and_meets_target() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(500)
    correct = rng.random(500) < conf  # roughly calibrated, so accuracy rises with confidence
    previous = 0.0
    for target in np.linspace(0.0, 1.0, 41):
        threshold = threshold_for_precision(conf, correct, float(target))
        assert threshold >= previous
        previous = threshold
        if threshold <= 1.0:
            covered = conf >= threshold
            assert correct[covered].mean() >= target - 1e-12


def test_threshold_for_precision_refuses_bad_target() -> None:
    with pytest.raises(ValueError):
        threshold_for_precision(CONF, CORRECT, 1.5)
