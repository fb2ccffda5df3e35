"""When the responder generates and when it reuses: chosen on validation tickets, per metric."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from support.respond_fakes import HashEmbedder

from deskpilot.jobs.responder_training import Pairs, ValidationRows, choose_policy, tune_policy
from deskpilot.tasks.respond import KnowledgeIndex, ResponderPolicy
from deskpilot.types import Generation

KB_QUESTIONS = [
    "charged twice for my monthly subscription",
    "invoice shows the wrong company address",
    "password reset email never arrives",
    "parcel has not arrived and tracking shows nothing",
]
KB_ANSWERS = [
    "We refunded the duplicate payment, it shows within five days.",
    "We corrected the address and sent a new invoice.",
    "Use the reset link and check your spam folder.",
    "Your parcel is delayed at the depot, tracking updates tomorrow.",
]
VAL = Pairs(
    [
        "charged twice for the subscription again",
        "the invoice has the wrong address",
        "password reset email does not arrive",
        "parcel not arrived, tracking empty",
    ],
    [
        "Sorry for the double charge: the duplicate payment is refunded and shows within five days.",
        "Sorry about that: the invoice address is corrected and a new invoice is on its way.",
        "Sorry for the trouble: use the reset link again and check the spam folder too.",
        "Sorry for the wait: the parcel is at the depot and tracking updates by tomorrow.",
    ],
)


class ScriptedGenerator:
    """Answers each validation ticket with ``write(reference)``."""

    def __init__(self, write: Callable[[str], str]) -> None:
        self.write = write
        self.calls = 0

    def generate(self, messages: Sequence[Mapping[str, str]], **_: object) -> Generation:
        self.calls += 1
        prompt = messages[-1]["content"]
        reference = next(a for q, a in zip(VAL.questions, VAL.answers, strict=True) if q in prompt)
        return Generation(self.write(reference), 20, 100, 0.01, -0.1)


def _tune(write: Callable[[str], str]) -> tuple[ResponderPolicy, dict[str, object], ScriptedGenerator]:
    embedder = HashEmbedder()
    index = KnowledgeIndex.from_pairs(KB_QUESTIONS, KB_ANSWERS, None, embedder)
    generator = ScriptedGenerator(write)
    policy, report = tune_policy(index, generator, VAL, embedder, ResponderPolicy(floor=0.05))
    return policy, report, generator


def test_drafts_that_win_on_both_metrics_are_generated() -> None:
    policy, report, generator = _tune(lambda reference: reference)
    assert generator.calls == len(VAL)
    assert report["generated_rows"] == len(VAL)
    assert report["rouge_l_gain"] > 0 and report["cosine_gain"] > 0  # type: ignore[operator]
    assert policy.reuse_similarity == 1.01  # generate whatever the similarity


def scrambled(text: str) -> str:
    words = text.split()
    return " ".join(w for i in range(0, len(words), 3) for w in reversed(words[i : i + 3]))


def test_drafts_that_win_on_meaning_but_lose_on_wording_are_not_generated() -> None:
    # the reference's words, each run of three backwards: the same bag of words (cosine 1 with
    # this embedder), a third of its word order (ROUGE-L about 0.33)
    policy, report, _ = _tune(scrambled)
    assert report["draft_cosine_gain_all"] > 0 > report["draft_rouge_l_gain_all"]  # type: ignore[operator]
    # the mean of the two metrics favours generating; the weaker metric does not
    assert report["draft_cosine_gain_all"] + report["draft_rouge_l_gain_all"] > 0  # type: ignore[operator]
    assert report["generated_rows"] == 0 and report["rouge_l_gain"] == 0.0
    assert policy.reuse_similarity == policy.floor  # reuse whenever anything is above the floor


def test_the_threshold_sits_between_rows_and_tickets_under_the_floor_count_for_nothing() -> None:
    rows = ValidationRows(
        best=[0.2, 0.6, 0.6, 0.6, 0.95],  # under the floor: no draft whatever the policy
        confidence=[0.5] * 5,
        rouge_gain=[0.5, 0.1, 0.1, 0.1, -0.3],
        cosine_gain=[0.5, 0.2, 0.2, 0.2, 0.1],
    )
    policy, report = choose_policy(rows, ResponderPolicy(floor=0.35))
    assert policy.reuse_similarity == 0.775  # halfway between 0.6 and 0.95
    assert report["generated_rows"] == 3
    assert (report["rouge_l_gain"], report["cosine_gain"]) == (round(0.3 / 5, 4), round(0.6 / 5, 4))


def _rows(gains: list[float]) -> ValidationRows:
    # row i has similarity 0.4 + 0.005 i: a threshold generates the rows below it
    return ValidationRows(
        best=[0.4 + 0.005 * i for i in range(len(gains))],
        confidence=[0.5] * len(gains),
        rouge_gain=gains,
        cosine_gain=[g + 0.05 for g in gains],
    )


def test_within_one_standard_error_of_the_best_the_fewest_drafts_are_written() -> None:
    # 40 rows gain 0.2 each, then 40 that gain a little on average (noisily): generating all 80
    # is best on these rows, but by less than its standard error over generating the first 40
    gains = [0.2] * 40 + [0.1, -0.08] * 20 + [-0.3] * 20
    policy, report = choose_policy(_rows(gains), ResponderPolicy(floor=0.35))
    assert report["best_generated_rows"] == 79  # the last +0.1 row before the -0.3 ones
    best, error, k = report["best_gain"], report["standard_error"], report["generated_rows"]
    assert isinstance(best, float) and isinstance(error, float) and isinstance(k, int)
    assert error > 0.01 and 20 < k <= 40  # the noisy rows reuse (and, within the noise, a few sure ones)
    # the fewest rows whose gain is within one standard error of the best (figures rounded)
    assert sum(gains[:k]) / len(gains) >= best - error - 1e-4
    assert sum(gains[: k - 1]) / len(gains) < best - error + 1e-4
    assert policy.reuse_similarity == round(0.4 + 0.005 * (k - 0.5), 4)  # between rows k-1 and k


def test_a_gain_within_noise_of_none_reuses() -> None:
    # a few rows that gain among many that lose as much: the best subset is luck
    gains = [0.3, -0.3, 0.3, -0.3, 0.3, -0.3, 0.3, -0.3, 0.3, -0.3, -0.3, 0.3]
    policy, report = choose_policy(_rows(gains), ResponderPolicy(floor=0.35))
    assert report["best_gain"] > 0  # type: ignore[operator]
    assert report["generated_rows"] == 0 and report["rouge_l_gain"] == 0.0
    assert policy.reuse_similarity == policy.floor
