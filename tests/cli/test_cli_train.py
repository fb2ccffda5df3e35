"""`deskpilot train classifier` on the tiny random BERT: the JSON contract, files, input shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapters_support import INTENT_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import (
    Invoke,
    TrainedTemplate,
    assert_fraction,
    assert_ok,
    last_json,
    write_csv,
    write_jsonl,
)

from deskpilot.adapters.classifier import data_hash
from deskpilot.types import join_subject_body

pytestmark = pytest.mark.filterwarnings(PEFT_GC_WARNING)

ADAPTER_FILES = ("card.json", "adapter_config.json", "adapter_model.safetensors", "head.safetensors")


def _card(home: Path, version: str = "v1", task: str = "intent") -> dict:
    return json.loads((home / "adapters" / "default" / task / version / "card.json").read_text("utf-8"))


def test_train_json_contract_and_files(trained_template: TrainedTemplate) -> None:
    assert trained_template.exit_code == 0, trained_template.stderr
    assert "Traceback" not in trained_template.stderr
    # progress, library chatter and the HF Trainer's log dict stay off stdout
    assert len(trained_template.stdout.splitlines()) == 1, trained_template.stdout
    summary = last_json(trained_template.stdout)
    assert summary["task"] == "intent"
    assert summary["version"] == "v1"
    assert summary["champion"] is True
    assert isinstance(summary["train_seconds"], float | int) and summary["train_seconds"] >= 0
    metrics = summary["metrics"]
    assert_fraction(metrics["accuracy"], "accuracy")
    assert_fraction(metrics["macro_f1"], "macro_f1")
    assert metrics["n"] == 15

    version_dir = trained_template.home / "adapters" / "default" / "intent" / "v1"
    assert summary["path"] == str(version_dir)
    for name in ADAPTER_FILES:
        assert (version_dir / name).is_file(), name
    champion = json.loads((version_dir.parent / "champion.json").read_text("utf-8"))
    assert champion["version"] == "v1"
    card = _card(trained_template.home)
    assert card["labels"] == sorted(INTENT_WORDS)
    assert card["metrics"]["eval"]["accuracy"] == metrics["accuracy"]  # eval metrics kept on the card


def _split(text: str) -> tuple[str, str]:
    words = text.split()
    return " ".join(words[:2]), " ".join(words[2:])


def test_subject_and_body_stand_in_for_text(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=8, seed=5)
    parts = [_split(t) for t in texts]
    write_csv(
        tmp_path / "tickets.csv",
        ["subject", "body", "label"],
        [(s, b, y) for (s, b), y in zip(parts, labels, strict=True)],
    )
    result = cli(
        "train",
        "classifier",
        "--task",
        "intent",
        "--data",
        "tickets.csv",
        "--base",
        tiny_dir,
        "--epochs",
        "0",
        "--json",
    )
    assert_ok(result)
    assert last_json(result.stdout)["version"] == "v1"
    joined = [join_subject_body(s, b) for s, b in parts]
    assert "\n\n" in joined[0]
    assert _card(home)["data_hash"] == data_hash(joined, labels)


def test_custom_column_names(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=8, seed=6)
    rows = [(f"T-{i}", y, t) for i, (t, y) in enumerate(zip(texts, labels, strict=True))]
    write_csv(tmp_path / "export.csv", ["id", "queue", "ticket"], rows)
    write_csv(tmp_path / "held.csv", ["id", "queue", "ticket"], rows[:6])
    result = cli(
        "train", "classifier", "--task", "intent", "--data", "export.csv", "--eval", "held.csv",
        "--text-column", "ticket", "--label-column", "queue",
        "--base", tiny_dir, "--epochs", "0", "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = last_json(result.stdout)
    assert summary["metrics"]["n"] == 6
    card = _card(home)
    assert card["labels"] == sorted(INTENT_WORDS)
    assert card["data_hash"] == data_hash(texts, labels)


def test_jsonl_input(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=8, seed=8)
    records = [{"text": t, "label": y, "id": i} for i, (t, y) in enumerate(zip(texts, labels, strict=True))]
    path = write_jsonl(tmp_path / "tickets.jsonl", records)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n")  # a trailing blank line is allowed
    result = cli(
        "train",
        "classifier",
        "--task",
        "intent",
        "--data",
        path,
        "--base",
        tiny_dir,
        "--epochs",
        "0",
        "--json",
    )
    assert_ok(result)
    summary = last_json(result.stdout)
    assert (summary["task"], summary["version"], summary["champion"]) == ("intent", "v1", True)
    assert summary["metrics"] == {}  # no --eval, no eval metrics
    assert _card(home)["data_hash"] == data_hash(texts, labels)


def test_plain_output_goes_to_stderr(cli: Invoke, tmp_path: Path, tiny_dir: Path) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=8, seed=9)
    write_csv(tmp_path / "t.csv", ["text", "label"], zip(texts, labels, strict=True))
    result = cli(
        "train", "classifier", "--task", "intent", "--data", "t.csv", "--base", tiny_dir, "--epochs", "0"
    )
    assert_ok(result)
    assert "registered intent v1 (champion)" in result.stderr
    assert "{" not in result.stdout  # no JSON without --json


def test_oos_data_tunes_the_similarity_threshold(
    cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path
) -> None:
    from adapters_support import DEVICE_WORDS

    texts, labels = make_texts(INTENT_WORDS, per_label=40, seed=16)  # enough to hold out 12
    write_csv(tmp_path / "train.csv", ["text", "label"], list(zip(texts, labels, strict=True)))
    oos, _ = make_texts(DEVICE_WORDS, per_label=10, seed=17)
    write_csv(tmp_path / "oos.csv", ["text"], [(t,) for t in oos])
    result = cli(
        "train", "classifier", "--task", "intent", "--data", "train.csv", "--oos-data", "oos.csv",
        "--base", tiny_dir, "--epochs", "0", "--json",
    )  # fmt: skip
    assert_ok(result)
    card = _card(home)
    assert card["thresholds"]["oos_tuned_on"] == 20
    validation = last_json(result.stdout)["validation"]
    assert validation["n_oos"] == 20 and 0.0 <= validation["oos_caught"] <= 1.0
    missing = cli(
        "train", "classifier", "--task", "intent", "--data", "train.csv", "--oos-data", "nope.csv",
        "--base", tiny_dir, "--epochs", "0",
    )  # fmt: skip
    assert missing.exit_code == 2 and "nope.csv" in missing.stderr
