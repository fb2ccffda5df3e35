"""run_quality, scoring and the RESULTS.md writer: synthetic files first, then real data."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from deskpilot.errors import InputDataError
from deskpilot.evaluation import report
from deskpilot.evaluation.baselines import SetFitBaseline
from deskpilot.evaluation.bench_quality import (
    DeskpilotTrainer,
    run_quality,
    score_predictions,
    stratified_sample,
    summary,
)
from deskpilot.evaluation.datasets import LabelledSplit

pytest.importorskip("sklearn", reason="the baselines need scikit-learn (the 'eval' extra)")

WORDS = {
    "card_arrival": ["card", "arrive", "post", "delivery", "waiting"],
    "refund": ["refund", "money", "back", "return", "charge"],
    "pin": ["pin", "code", "blocked", "forgot", "digits"],
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_trainer(
    train_texts: list[str], train_labels: list[str], test_texts: list[str]
) -> tuple[list[str], list[bool], list[float], float]:
    """Stands in for deskpilot: keyword match, abstaining (confidence 0.2) when none matches."""
    labels, abstained, confidences = [], [], []
    for text in test_texts:
        hit = next((label for label, words in WORDS.items() if set(words) & set(text.split())), None)
        labels.append(hit or Counter(train_labels).most_common(1)[0][0])
        abstained.append(hit is None)
        confidences.append(0.9 if hit else 0.2)
    return labels, abstained, confidences, 0.01


def write_banking_csvs(root: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = root / "banking77"
    folder.mkdir(parents=True)
    for name, n in (("train.csv", 20), ("test.csv", 8)):
        with open(folder / name, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "category"])
            for label, words in WORDS.items():
                for _ in range(n):
                    writer.writerow([" ".join([*rng.sample(words, 2), "please", "help"]), label])
    return root


# --- RESULTS.md sections ------------------------------------------------------------------


def test_update_section_creates_the_file_and_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    report.update_section(path, "quality", "## Quality\n\nold figures\n")
    report.update_section(path, "throughput", "## Throughput\n\n100 req/s\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(report.TITLE)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, not mkstemp's 0600
    hand_written = text.replace("<!-- throughput:end -->", "<!-- throughput:end -->\n\nA note by hand.")
    path.write_text(hand_written, encoding="utf-8")

    report.update_section(path, "quality", "## Quality\n\nnew figures\n")
    text = path.read_text(encoding="utf-8")
    assert "new figures" in text and "old figures" not in text
    assert "100 req/s" in text and "A note by hand." in text
    assert text.count("<!-- quality:start -->") == 1 and text.count("<!-- quality:end -->") == 1
    assert text.index("quality:start") < text.index("throughput:start")  # stays where it was
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]  # no temporary or lock files


def test_update_section_refuses_broken_markers(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# results\n\n<!-- quality:end -->\n<!-- quality:start -->\n", encoding="utf-8")
    with pytest.raises(ValueError, match="misordered"):
        report.update_section(path, "quality", "x")
    with pytest.raises(ValueError, match="own markers"):
        report.replace_section("", "quality", "<!-- quality:end -->")
    with pytest.raises(ValueError, match="lowercase"):
        report.markers("Quality Section")


# --- scoring ------------------------------------------------------------------------------


def test_score_predictions_treats_oos_answers_and_abstentions_alike() -> None:
    truth = ["a", "b", "oos", "oos", "a"]
    predicted = ["a", "a", "oos", "b", "a"]
    abstained = [False, False, False, True, True]
    scored = score_predictions(truth, predicted, abstained, [0.9, 0.8, 0.7, 0.3, 0.4], ["a", "b", "oos"])
    # right, wrong, OOS answered "oos" (right), OOS abstained (right), in-scope abstained (wrong)
    assert scored["accuracy"] == pytest.approx(3 / 5)
    assert scored["oos_recall"] == 1.0 and scored["n_oos"] == 2
    assert scored["in_scope_accuracy"] == pytest.approx(1 / 3)
    assert scored["coverage"] == pytest.approx(2 / 5)
    assert scored["top1_accuracy"] == pytest.approx(3 / 5)  # "oos" == "oos" counts on top-1
    assert scored["ece"] is not None and scored["coverage_curve"][0][1] == 1.0
    confusion = scored["confusion"]  # top-1: b (F1 0) mistaken for a (F1 0.8)
    assert confusion == {
        "labels": ["b", "a"],
        "columns": ["b", "a", "(other)"],
        "matrix": [[0, 1, 0], [0, 2, 0]],
        "f1": [0.0, 0.8],
    }
    no_conf = score_predictions(["a", "b"], ["a", "b"], [False, False], None, ["a", "b"])
    assert no_conf["ece"] is None and "reliability" not in no_conf


def test_stratified_sample_keeps_every_class() -> None:
    split = LabelledSplit("s", [str(i) for i in range(300)], ["x"] * 200 + ["y"] * 90 + ["z"] * 10)
    sampled = stratified_sample(split, 30, seed=0)
    counts = Counter(sampled.labels)
    assert counts == {"x": 20, "y": 9, "z": 1}
    assert stratified_sample(split, 500, seed=0) is split


# --- run_quality on synthetic files -------------------------------------------------------


def test_run_quality_writes_json_and_markdown(tmp_path: Path) -> None:
    root = write_banking_csvs(tmp_path / "data")
    markdown = tmp_path / "RESULTS.md"
    results = run_quality(
        ["banking77"],
        sample=None,
        seed=0,
        include={"tfidf_svc", "deskpilot"},
        deskpilot_trainer=fake_trainer,
        out_dir=tmp_path / "results",
        data_root=root,
        markdown=markdown,
        plots_dir=tmp_path / "reports",
        command="deskpilot bench quality --datasets banking77",
    )
    saved = json.loads((tmp_path / "results" / "quality.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(results))
    assert saved["command"] == "deskpilot bench quality --datasets banking77"
    assert saved["machine"]["cpu"] and saved["machine"]["cores"] >= 1 and saved["date"]
    methods = saved["datasets"]["banking77"]["methods"]
    assert list(methods) == ["tfidf_svc", "deskpilot"]
    assert methods["tfidf_svc"]["accuracy"] >= 0.9 and methods["tfidf_svc"]["coverage"] == 1.0
    assert methods["deskpilot"]["ece"] is not None
    assert summary(results)["banking77"]["deskpilot"]["train_seconds"] == 0.01

    text = markdown.read_text(encoding="utf-8")
    assert "<!-- quality:start -->" in text and "### banking77" in text
    assert "TF-IDF + LinearSVC" in text and "deskpilot LoRA adapter" in text
    if report.matplotlib_available():
        assert list((tmp_path / "reports").glob("quality-banking77-*.png"))
    else:
        assert report.PLOTS_SKIPPED in text


def test_run_quality_skips_missing_default_datasets_but_not_named_ones(tmp_path: Path) -> None:
    root = write_banking_csvs(tmp_path / "data")
    results = run_quality(
        None,
        sample=None,
        seed=0,
        include={"tfidf_svc"},
        deskpilot_trainer=None,
        out_dir=tmp_path,
        data_root=root,
    )
    assert list(results["datasets"]) == ["banking77", "banking77-10shot"]  # 10-shot: from the same files
    assert {"clinc150", "tickets-en", "company-documents"} <= set(results["skipped"])
    assert "### banking77" in report.render_quality(results)
    with pytest.raises(InputDataError, match="not found"):
        run_quality(
            ["clinc150"], sample=None, seed=0, include={"tfidf_svc"}, out_dir=tmp_path, data_root=root
        )


def test_run_quality_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="unknown dataset: imdb"):
        run_quality(
            ["imdb"], sample=None, seed=0, include={"tfidf_svc"}, out_dir=tmp_path, data_root=tmp_path
        )
    with pytest.raises(InputDataError, match="unknown method: bert"):
        run_quality(None, sample=None, seed=0, include={"bert"}, out_dir=tmp_path, data_root=tmp_path)
    with pytest.raises(InputDataError, match="at least 1"):
        stratified_sample(LabelledSplit("s", ["a"], ["x"]), 0, seed=0)


# --- the real thing, tiny -----------------------------------------------------------------


@pytest.fixture(scope="module")
def root(data_root: Path) -> Path:
    return data_root


@pytest.mark.integration
@pytest.mark.data
@pytest.mark.slow
def test_run_quality_smoke_on_real_data(root: Path, tmp_path: Path) -> None:
    markdown = tmp_path / "RESULTS.md"
    results = run_quality(
        ["banking77"],
        sample=150,
        seed=0,
        include={"tfidf_svc", "frozen_logreg", "setfit", "deskpilot"},
        deskpilot_trainer=DeskpilotTrainer(preset="fast"),
        out_dir=tmp_path / "results",
        data_root=root,
        baselines={"setfit": lambda: SetFitBaseline(max_pairs=32)},
        markdown=markdown,
        plots_dir=tmp_path / "reports",
        command="pytest smoke",
    )
    entry = results["datasets"]["banking77"]
    assert entry["n_labels"] == 77 and 150 <= entry["n_train"] <= 160
    chance = 1 / entry["n_labels"]
    for method in ("tfidf_svc", "frozen_logreg", "setfit", "deskpilot"):
        figures = entry["methods"][method]
        assert figures["top1_accuracy"] > 5 * chance, (method, figures["top1_accuracy"])
        assert figures["train_seconds"] > 0
    pilot = entry["methods"]["deskpilot"]
    assert 0.0 <= pilot["coverage"] <= 1.0 and pilot["ece"] is not None
    assert pilot["info"]["fine_tuned"] is False  # preset fast: linear probe only
    assert (tmp_path / "results" / "quality.json").is_file()
    assert "### banking77" in markdown.read_text(encoding="utf-8")

    # CLINC150: out-of-scope test rows reach the scoring, and abstaining catches them
    oos = run_quality(
        ["clinc150"],
        sample=150,
        seed=0,
        include={"tfidf_svc", "deskpilot"},
        deskpilot_trainer=fake_trainer,
        out_dir=tmp_path / "results",
        data_root=root,
    )["datasets"]["clinc150"]
    assert oos["n_oos_test"] > 0
    assert oos["methods"]["tfidf_svc"]["oos_recall"] == 0.0  # no abstention, no "oos" class
    assert oos["methods"]["deskpilot"]["oos_recall"] > 0.5  # keywords never match CLINC: abstains


def _tiny_results() -> dict[str, object]:
    truth = ["a", "b", "a", "b", "a", "b"]
    scored = score_predictions(
        truth, ["a", "a", "a", "b", "b", "b"], [False] * 6, [0.9, 0.6, 0.8, 0.7, 0.5, 0.95], ["a", "b"]
    )
    return {
        "date": "today",
        "datasets": {"tiny": {"n_train": 6, "n_test": 6, "n_labels": 2, "methods": {"deskpilot": scored}}},
    }


def test_plots_are_skipped_with_a_note_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "matplotlib_available", lambda: False)
    assert report.write_quality_plots(_tiny_results(), tmp_path / "reports") is None
    text = report.publish_quality(_tiny_results(), tmp_path / "RESULTS.md", tmp_path / "reports").read_text(
        "utf-8"
    )
    assert report.PLOTS_SKIPPED in text and not (tmp_path / "reports").exists()


def test_plots_are_drawn_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is optional; plots are skipped without it")
    path = report.publish_quality(_tiny_results(), tmp_path / "RESULTS.md", tmp_path / "reports")
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert names == [
        "quality-tiny-confusion.png",
        "quality-tiny-coverage.png",
        "quality-tiny-reliability.png",
    ]
    assert "](reports/quality-tiny-coverage.png)" in path.read_text("utf-8")
