"""Temperature scaling, expected calibration error and the precision threshold."""

from __future__ import annotations

import pytest
import torch

from deskpilot.adapters.calibration import ece, fit_temperature, threshold_for_precision


def _calibrated(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 2.0
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    return logits, labels


def test_fit_temperature_recovers_two_for_overconfident_logits() -> None:
    logits, labels = _calibrated(4000, 4, seed=0)
    assert fit_temperature(logits * 2.0, labels) == pytest.approx(2.0, rel=0.08)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.08)
    assert fit_temperature(logits * 0.5, labels) == pytest.approx(0.5, rel=0.08)


def test_fit_temperature_accepts_inference_tensors_and_empty_input() -> None:
    logits, labels = _calibrated(500, 3, seed=1)
    with torch.inference_mode():
        frozen = logits * 2.0
    assert fit_temperature(frozen, labels) > 1.0
    assert fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0


def test_fit_temperature_leaves_saturated_logits_at_one() -> None:
    # every prediction right by a huge margin: no finite T in (0.01, 100) is better than T = 1
    logits = torch.tensor([[50.0, 0.0], [0.0, 50.0]] * 10)
    labels = torch.tensor([0, 1] * 10)
    assert fit_temperature(logits, labels) == 1.0


def test_ece_of_calibrated_data_is_near_zero_and_of_overconfident_data_is_not() -> None:
    g = torch.Generator().manual_seed(2)
    conf = torch.rand(20000, generator=g) * 0.7 + 0.3
    correct = torch.rand(20000, generator=g) < conf
    assert ece(conf, correct) < 0.02
    assert ece(torch.full((1000,), 0.99), torch.rand(1000, generator=g) < 0.6) == pytest.approx(
        0.39, abs=0.05
    )
    assert ece(torch.empty(0), torch.empty(0, dtype=torch.bool)) == 0.0


def test_ece_of_exact_bins() -> None:
    conf = torch.tensor([0.9, 0.9, 0.6, 0.6])
    correct = torch.tensor([True, False, True, True])
    # bin 0.9: gap |0.9 - 0.5| = 0.4, bin 0.6: gap |0.6 - 1.0| = 0.4, each half the rows
    assert ece(conf, correct) == pytest.approx(0.4, abs=1e-6)


@pytest.mark.parametrize(
    ("conf", "correct", "target", "expected"),
    [
        # everything together already meets the target: serve everything
        ([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 1], 0.9, 0.0),
        ([0.9, 0.8, 0.7, 0.6], [1, 1, 1, 0], 0.75, 0.0),
        # the two most confident rows are right, the rest wrong: cut at 0.8
        ([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0], 0.9, 0.8),
        # order of the input does not matter
        ([0.6, 0.9, 0.7, 0.8], [0, 1, 0, 1], 0.9, 0.8),
        # the largest set meeting the target wins, even past a dip: 3/4 at 0.7
        ([0.95, 0.9, 0.8, 0.7, 0.6], [1, 0, 1, 1, 0], 0.75, 0.7),
        # nothing meets it: the highest confidence seen
        ([0.9, 0.8], [0, 0], 0.5, 0.9),
        # target 0 and empty input
        ([0.9, 0.8], [0, 0], 0.0, 0.0),
        ([], [], 0.9, 0.0),
    ],
)
def test_threshold_for_precision_examples(
    conf: list[float], correct: list[int], target: float, expected: float
) -> None:
    got = threshold_for_precision(torch.tensor(conf), torch.tensor(correct, dtype=torch.bool), target)
    assert got == pytest.approx(expected)


def test_threshold_covers_rows_that_meet_the_target() -> None:
    g = torch.Generator().manual_seed(3)
    conf = torch.rand(2000, generator=g)
    correct = torch.rand(2000, generator=g) < conf  # calibrated: high confidence is usually right
    t = threshold_for_precision(conf, correct, 0.9)
    covered = conf >= t
    assert 0.0 < t < 1.0
    assert float(correct[covered].float().mean()) >= 0.9
    assert int(covered.sum()) > 100


def test_threshold_respects_ties() -> None:
    conf = torch.tensor([0.9, 0.8, 0.8])
    correct = torch.tensor([True, True, False])
    t = threshold_for_precision(conf, correct, 0.9)
    covered = conf >= t
    assert float(correct[covered].float().mean()) >= 0.9  # today t == 0.8 covers 2/3 right


def test_per_class_thresholds_follow_each_class_and_skip_thin_ones() -> None:
    from deskpilot.adapters.calibration import per_class_thresholds

    # class 0: always right; class 1: wrong below 0.7; class 2: only 3 predictions
    conf = torch.tensor([0.5, 0.6, 0.7, 0.8, 0.9] * 4 + [0.5, 0.6, 0.7, 0.8, 0.9] * 4 + [0.4, 0.5, 0.6])
    pred = torch.tensor([0] * 20 + [1] * 20 + [2] * 3)
    correct = torch.cat([torch.ones(20), (conf[20:40] >= 0.7).float(), torch.zeros(3)]).bool()
    out = per_class_thresholds(conf, pred, correct, 0.9, ["a", "b", "c"], min_support=10)
    assert out == {"a": 0.0, "b": pytest.approx(0.7)}


def test_oos_similarity_threshold_separates_and_protects_in_scope() -> None:
    from deskpilot.adapters.calibration import similarity_threshold_for_oos

    g = torch.Generator().manual_seed(0)
    in_scope = 0.8 + 0.05 * torch.randn(500, generator=g)
    oos = 0.5 + 0.05 * torch.randn(200, generator=g)
    cut = similarity_threshold_for_oos(in_scope, oos)
    assert float((in_scope >= cut).float().mean()) >= 0.95
    assert float((oos < cut).float().mean()) >= 0.95
    # overlapping OOS examples may not push the cut past 5 % of in-scope rows
    close = 0.8 + 0.05 * torch.randn(200, generator=g)
    cut = similarity_threshold_for_oos(in_scope, close, max_in_scope_loss=0.05)
    assert float((in_scope >= cut).float().mean()) >= 0.95 - 1e-6
    assert similarity_threshold_for_oos(in_scope, torch.empty(0)) == 0.0
