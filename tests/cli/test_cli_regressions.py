"""Regressions: contract breaches found while writing the CLI tests, now fixed and guarded."""

from __future__ import annotations

import pytest
from adapters_support import INTENT_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import Invoke, TrainedTemplate, assert_ok, error_line, write_csv

TRAIN = ("train", "classifier", "--task", "intent")


def test_error_message_with_brackets(cli: Invoke, tmp_path) -> None:
    write_csv(tmp_path / "odd.csv", ["text", "[/x]"], [("password reset", "access")])
    line = error_line(cli(*TRAIN, "--data", "odd.csv"))
    assert "[/x]" in line


def test_warning_is_one_line(cli: Invoke, tmp_path, tiny_dir) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=4, seed=3)
    rare = [f"rare-label-number-{i}-with-a-long-name" for i in range(4)]
    rows = list(zip(texts + [f"odd ticket {i}" for i in range(4)], labels + rare, strict=True))
    write_csv(tmp_path / "rare.csv", ["text", "label"], rows)
    result = cli(*TRAIN, "--data", "rare.csv", "--base", tiny_dir, "--preset", "fast")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert all(f"'{label}'" in warnings[0] for label in rare), result.stderr


def test_folder_without_suffix_is_called_a_folder(cli: Invoke, tmp_path) -> None:
    (tmp_path / "tickets").mkdir()
    assert "folder" in error_line(cli(*TRAIN, "--data", "tickets"))


def test_jsonl_text_with_line_separator(cli: Invoke, tmp_path) -> None:
    (tmp_path / "sep.jsonl").write_text(
        '{"text": "first line\u2028second line", "label": "access"}\n{"text": "ok", "label": "access"}\n',
        encoding="utf-8",
    )
    line = error_line(cli(*TRAIN, "--data", "sep.jsonl"))
    assert "every row has the label 'access'" in line  # the file was read; only training refused it


def test_invalid_setting_is_one_line(cli: Invoke, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DESKPILOT_MAX_LINE_BYTES", "lots")
    write_csv(tmp_path / "t.csv", ["text", "label"], [("a", "b")])
    result = cli(*TRAIN, "--data", "t.csv")
    line = error_line(result)
    assert "max_line_bytes" in line.lower()
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.filterwarnings(PEFT_GC_WARNING)
def test_train_plain_with_out_of_scope_eval(
    cli: Invoke, trained_template: TrainedTemplate, tmp_path, tiny_dir
) -> None:
    write_csv(
        tmp_path / "oos.csv",
        ["text", "label"],
        [("printer toner jam", "printer"), ("laptop hinge", "laptop")],
    )
    result = cli(
        *TRAIN, "--data", trained_template.train_csv, "--eval", "oos.csv", "--base", tiny_dir, "--epochs", "0"
    )
    assert_ok(result)
