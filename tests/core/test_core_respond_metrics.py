"""Scores for drafts: ROUGE-L, cosine, the paired bootstrap and the fixed-seed split."""

from __future__ import annotations

import pytest
from support.respond_fakes import HashEmbedder

from deskpilot.tasks.respond_metrics import cosines, paired_bootstrap, rouge_l, split_pairs


def test_rouge_l_is_the_lcs_f1_of_words() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS "the cat the mat" = 4 of 6 and 4 of 5 words
    assert rouge_l("the cat sat on the mat", "the cat ate the mat") == pytest.approx(
        2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    )
    assert rouge_l("", "anything") == 0.0 and rouge_l("Refund!", "refund") == 1.0
    assert rouge_l("alpha beta", "gamma delta") == 0.0


def test_cosines_score_empty_drafts_zero() -> None:
    got = cosines(HashEmbedder(), ["refund the charge", ""], ["refund the charge", "anything"])
    assert got[0] == pytest.approx(1.0) and got[1] == 0.0
    with pytest.raises(ValueError):
        cosines(HashEmbedder(), ["a"], [])


def test_paired_bootstrap_brackets_the_mean_difference() -> None:
    better = [0.6, 0.7, 0.5, 0.8, 0.65] * 20
    worse = [0.5, 0.6, 0.5, 0.6, 0.55] * 20
    mean, low, high = paired_bootstrap(better, worse, rounds=500)
    assert mean == pytest.approx(0.1) and 0 < low <= mean <= high
    same = paired_bootstrap(worse, worse, rounds=100)
    assert same == (0.0, 0.0, 0.0)


def test_split_is_fixed_by_the_seed_and_disjoint() -> None:
    train, held = split_pairs(100, 30, seed=7)
    assert len(held) == 30 and sorted(train + held) == list(range(100))
    assert split_pairs(100, 30, seed=7) == (train, held) and split_pairs(100, 30, seed=8) != (train, held)
