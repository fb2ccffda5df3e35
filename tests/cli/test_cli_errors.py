"""A person's mistakes: exit code 2, one ``error:`` line naming the problem, no traceback."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from adapters_support import INTENT_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import Invoke, assert_ok, error_line, write_csv

TEXTS, LABELS = make_texts(INTENT_WORDS, per_label=4, seed=7)
GOOD_ROWS = list(zip(TEXTS, LABELS, strict=True))


def _good(folder: Path) -> None:
    write_csv(folder / "good.csv", ["text", "label"], GOOD_ROWS)


def _latin1_line3(folder: Path) -> None:
    (folder / "bad.csv").write_bytes(
        b"text,label\npassword reset please,access\ncaf\xe9 wifi is down,network\ninvoice refund,billing\n"
    )


def _empty_text_line4(folder: Path) -> None:
    write_csv(folder / "gap.csv", ["text", "label"], [*GOOD_ROWS[:2], ("", "billing"), *GOOD_ROWS[2:]])


def _one_label(folder: Path) -> None:
    write_csv(folder / "same.csv", ["text", "label"], [(t, "access") for t in TEXTS])


def _bad_jsonl_line2(folder: Path) -> None:
    (folder / "bad.jsonl").write_text(
        '{"text": "password reset", "label": "access"}\n{"text": "invoice", "label": }\n', encoding="utf-8"
    )


def _long_line2(folder: Path) -> None:
    write_csv(folder / "long.csv", ["text", "label"], [("wifi " * 40, "network"), *GOOD_ROWS])


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needles: tuple[str, ...]
    files: Callable[[Path], object] = _good
    env: dict[str, str] = field(default_factory=dict)


TRAIN = ("train", "classifier", "--task", "intent")
CASES = [
    Case("missing-file", (*TRAIN, "--data", "nope.csv"), ("nope.csv", "not found")),
    Case(
        "missing-eval-file",
        (*TRAIN, "--data", "good.csv", "--eval", "held.csv"),
        ("held.csv", "not found"),
    ),
    Case(
        "folder",
        (*TRAIN, "--data", "tickets.csv"),
        ("tickets.csv", "folder"),
        files=lambda d: (d / "tickets.csv").mkdir(),
    ),
    Case(
        "unsupported-extension",
        (*TRAIN, "--data", "tickets.xlsx"),
        ("tickets.xlsx", ".xlsx", "unsupported"),
        files=lambda d: (d / "tickets.xlsx").write_bytes(b"PK\x03\x04"),
    ),
    Case("invalid-utf8", (*TRAIN, "--data", "bad.csv"), ("bad.csv line 3", "UTF-8"), files=_latin1_line3),
    Case(
        "missing-text-column",
        (*TRAIN, "--data", "cols.csv"),
        ("cols.csv", "no column 'text'", "columns: ticket, label"),
        files=lambda d: write_csv(d / "cols.csv", ["ticket", "label"], GOOD_ROWS),
    ),
    Case(
        "missing-label-column",
        (*TRAIN, "--data", "cols.csv"),
        ("cols.csv", "no column 'label'", "columns: text, queue"),
        files=lambda d: write_csv(d / "cols.csv", ["text", "queue"], GOOD_ROWS),
    ),
    Case(
        "empty-text",
        (*TRAIN, "--data", "gap.csv"),
        ("gap.csv line 4", "'text'", "empty"),
        files=_empty_text_line4,
    ),
    Case(
        "line-over-configured-limit",
        (*TRAIN, "--data", "long.csv"),
        ("long.csv line 2", "limit of 100", "DESKPILOT_MAX_LINE_BYTES"),
        files=_long_line2,
        env={"DESKPILOT_MAX_LINE_BYTES": "100"},
    ),
    Case(
        "single-label",
        (*TRAIN, "--data", "same.csv"),
        ("same.csv", "'access'", "two labels"),
        files=_one_label,
    ),
    Case(
        "malformed-jsonl",
        (*TRAIN, "--data", "bad.jsonl"),
        ("bad.jsonl line 2", "invalid JSON"),
        files=_bad_jsonl_line2,
    ),
    Case(
        "jsonl-not-an-object",
        (*TRAIN, "--data", "list.jsonl"),
        ("list.jsonl line 2", "JSON object"),
        files=lambda d: (d / "list.jsonl").write_text('{"text": "a", "label": "b"}\n["a", "b"]\n'),
    ),
    Case(
        "invalid-task-name",
        ("train", "classifier", "--task", "../etc", "--data", "good.csv"),
        ("invalid task name", "'../etc'"),
    ),
    Case(
        "invalid-tenant-name",
        (*TRAIN, "--tenant", "Acme Corp", "--data", "good.csv"),
        ("invalid tenant name", "'Acme Corp'"),
    ),
    Case(
        "evaluate-missing-file",
        ("evaluate", "classifier", "--task", "intent", "--data", "nope.jsonl"),
        ("nope.jsonl", "not found"),
    ),
    Case(
        "evaluate-no-adapter",
        ("evaluate", "classifier", "--task", "intent", "--data", "good.csv"),
        ("no adapter", "'intent'", "deskpilot train classifier --task intent"),
    ),
    Case(
        "predict-no-adapter",
        ("predict", "--task", "intent", "password reset please"),
        ("no adapter", "'intent'", "deskpilot train classifier --task intent"),
    ),
    Case("predict-invalid-task", ("predict", "--task", "../etc", "hello"), ("invalid task name", "'../etc'")),
    Case("predict-empty-text", ("predict", "--task", "intent", "  "), ("texts[0]", "empty")),
    Case(
        "promote-unknown-version",
        ("adapters", "promote", "--task", "intent", "--version", "v3"),
        ("'intent'", "no version 'v3'"),
    ),
    Case(
        "promote-invalid-version",
        ("adapters", "promote", "--task", "intent", "--version", "latest"),
        ("invalid version 'latest'",),
    ),
    Case("rollback-without-history", ("adapters", "rollback", "--task", "intent"), ("'intent'", "roll back")),
    Case("list-invalid-tenant", ("adapters", "list", "--tenant", "../x"), ("invalid tenant name", "'../x'")),
    Case("keys-invalid-tenant", ("keys", "create", "--tenant", "../x"), ("invalid tenant", "'../x'")),
    Case("keys-invalid-scope", ("keys", "create", "--scope", "root"), ("root",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_user_error(case: Case, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case.files(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    line = error_line(cli(*case.args))
    for needle in case.needles:
        assert needle in line, line


def test_unknown_preset_is_refused(cli: Invoke, tmp_path: Path, tiny_dir: Path) -> None:
    _good(tmp_path)
    result = cli(*TRAIN, "--data", "good.csv", "--base", tiny_dir, "--preset", "bogus")
    # a usage error: Typer's own message, exit code 2, before any data is read
    assert result.exit_code == 2 and result.stdout == ""
    assert "'bogus' is not one of" in result.stderr and "'auto'" in result.stderr


def test_50mb_line_is_refused_fast_and_in_bounded_memory(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:
        fh.write(b"text,label\npassword reset please,access\n")
        chunk = b"wifi " * (1 << 18)  # 1.25 MiB
        for _ in range(40):
            fh.write(chunk)
        fh.write(b",network\ninvoice refund,billing\n")
    size = path.stat().st_size
    assert size > 50_000_000
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = cli(*TRAIN, "--data", path)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    line = error_line(result)
    assert "huge.csv line 3" in line, line  # the header is line 1
    assert "1,000,000" in line, line  # the byte limit
    assert elapsed < 5.0, f"took {elapsed:.1f}s"
    assert peak < 8 * size, f"peak {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"


@pytest.mark.filterwarnings(PEFT_GC_WARNING)
def test_rare_label_warns_but_trains(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    rows = [*GOOD_ROWS, ("printer toner jam again", "printer")]
    write_csv(tmp_path / "rare.csv", ["text", "label"], rows)
    result = cli(*TRAIN, "--data", "rare.csv", "--base", tiny_dir, "--epochs", "0")
    assert_ok(result)
    lines = result.stderr.splitlines()
    assert any(line.startswith("warning:") for line in lines), result.stderr
    # one line per warning is checked in test_cli_known_bugs; here only that it names the label
    assert "'printer'" in result.stderr
    assert (home / "adapters" / "default" / "intent" / "v1" / "card.json").is_file()
