"""The triage order: uncertainty first, near-duplicates last; and the inline SVG plots."""

from __future__ import annotations

import pytest

from deskpilot.gateway.console import svg
from deskpilot.gateway.console.ranking import Candidate, jaccard, rank, shingles, uncertainty


def test_a_close_call_is_more_uncertain_than_a_clear_one() -> None:
    close, margin, _ = uncertainty([0.45, 0.44, 0.11])
    clear, _, _ = uncertainty([0.9, 0.05, 0.05])
    assert close > clear
    assert margin == pytest.approx(0.01)
    # no alternatives: the mass left over is the runner-up
    assert uncertainty([0.8])[1] == pytest.approx(0.6)
    assert uncertainty([0.3])[:2] == (1.0, 0.0)
    assert uncertainty([]) == (1.0, 0.0, 1.0)


def test_entropy_is_normalised() -> None:
    _, _, flat = uncertainty([0.25, 0.25, 0.25, 0.25])
    _, _, peaked = uncertainty([0.97, 0.01, 0.01, 0.01])
    assert flat == pytest.approx(1.0)
    assert 0.0 < peaked < 0.2


def test_rank_orders_by_gain_and_sends_near_duplicates_last() -> None:
    outage = "The VPN is down for the whole Berlin office since 9:00, nobody can connect"
    candidates = [
        Candidate(1, outage, [0.41, 0.40]),
        Candidate(2, outage + "!", [0.42, 0.40]),  # the same report again
        Candidate(3, "Please send me the invoice for March", [0.6, 0.3]),
        Candidate(4, "My keyboard has a sticky space bar", [0.9, 0.05]),
    ]
    ranked = rank(candidates)
    assert [r.key for r in ranked] == [1, 3, 4, 2]
    assert ranked[-1].duplicate_of == 1
    assert [r.gain for r in ranked[:3]] == sorted((r.gain for r in ranked[:3]), reverse=True)
    assert ranked[0].novelty == 1.0


def test_diversity_lowers_the_gain_of_a_similar_item() -> None:
    a = Candidate(1, "printer on floor three jams with every job sent to it", [0.5, 0.49])
    b = Candidate(2, "printer on floor three jams a lot, also the scanner", [0.5, 0.48])
    c = Candidate(3, "salary statement for october is missing", [0.55, 0.40])
    ranked = rank([a, b, c])
    by_key = {r.key: r for r in ranked}
    assert by_key[2].novelty < 1.0 and by_key[3].novelty == 1.0
    assert ranked[0].key == 1


def test_shingles() -> None:
    assert jaccard(shingles("Hello   World"), shingles("hello world")) == 1.0
    assert jaccard(shingles(""), shingles("x")) == 0.0
    assert shingles("abc") == frozenset({"abc"})


def test_reliability_bins_and_ece() -> None:
    pairs = [(0.95, True), (0.92, True), (0.91, False), (0.55, True), (0.52, False), (1.0, True)]
    bins = svg.reliability_bins(pairs)
    assert [(b.low, b.count) for b in bins] == [(0.5, 2), (0.9, 4)]
    top = bins[-1]
    assert top.accuracy == pytest.approx(0.75) and top.mean_score == pytest.approx(
        (0.95 + 0.92 + 0.91 + 1.0) / 4
    )
    ece = svg.expected_calibration_error(bins)
    assert ece == pytest.approx((abs(0.5 - 0.535) * 2 + abs(0.75 - top.mean_score) * 4) / 6)
    assert svg.expected_calibration_error([]) is None
    plot = svg.reliability_plot(bins, "Reliability <of> intent")
    assert plot.startswith('<svg class="plot"') and "Reliability &lt;of&gt; intent" in plot
    assert plot.count('class="bin"') == 2


def test_confidence_bar_is_labelled_and_clamped() -> None:
    bar = svg.confidence_bar(1.7, 0.5, abstained=False)
    assert 'aria-label="confidence 1.00, threshold 0.50"' in bar and 'width="100.0"' in bar
    assert "no score" in svg.confidence_bar(None)
