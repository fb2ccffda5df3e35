"""Helpers for the CLI tests: data files, and the checks behind the CLI's output contracts.

Contracts (plugin/cli.py, DESIGN.md "Contracts"): ``--json`` prints one JSON object as the
last stdout line; a person's mistake is exactly one ``error:`` line on stderr, exit code 2,
and never a traceback.
"""

from __future__ import annotations

import csv
import json
import os
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import Result

Invoke = Callable[..., Result]
"""The ``cli`` fixture: ``cli("train", "classifier", ...)`` runs the app in-process."""

PEFT_MESSAGE = "`is_gradient_checkpointing` is deprecated"
"""The message part of ``adapters_support.PEFT_GC_WARNING``, for ``warnings.filterwarnings``."""


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def describe(result: Result) -> str:
    """Everything worth seeing when a CLI assertion fails."""
    parts = [f"exit code {result.exit_code}", f"stdout:\n{result.stdout}", f"stderr:\n{result.stderr}"]
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        parts.append("exception:\n" + "".join(traceback.format_exception(*result.exc_info)))
    return "\n".join(parts)


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, describe(result)
    assert "Traceback" not in result.output, describe(result)


def last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "nothing on stdout"
    payload = json.loads(lines[-1])
    assert isinstance(payload, dict), lines[-1]
    return payload


def error_line(result: Result) -> str:
    """Check the user-error contract and return the one ``error:`` line."""
    assert result.exit_code == 2, describe(result)
    assert isinstance(result.exception, SystemExit), describe(result)
    assert "Traceback" not in result.output, describe(result)
    assert result.stdout == "", describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, describe(result)
    return errors[0]


def assert_fraction(value: Any, name: str = "value") -> None:
    assert isinstance(value, float | int) and not isinstance(value, bool), f"{name}={value!r}"
    assert 0.0 <= value <= 1.0, f"{name}={value!r}"


def subprocess_env(home: Path) -> dict[str, str]:
    """The parent's environment minus deskpilot settings and colour forcing, one torch thread."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DESKPILOT_")
        and k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    }
    env.update(
        DESKPILOT_HOME=str(home),
        DESKPILOT_ENV="test",
        DESKPILOT_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


@dataclass(frozen=True)
class TrainedTemplate:
    """The session's first training: its files, its output, and the data it used."""

    home: Path
    train_csv: Path
    test_csv: Path
    exit_code: int
    stdout: str
    stderr: str
