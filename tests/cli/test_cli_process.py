"""`--help` everywhere, and the CLI as a real process: exit codes and the stdout/stderr split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_support import Invoke, assert_ok, subprocess_env

from deskpilot import __version__
from deskpilot.cli import app


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under a (Typer-vendored) click group, the group itself first."""
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_every_command_is_covered() -> None:
    names = {" ".join(p) for p in COMMANDS}
    expected = {
        "", "train", "train classifier", "evaluate", "evaluate classifier", "predict",
        "adapters", "adapters list", "adapters promote", "adapters rollback",
        "keys", "keys create", "serve", "version",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "deskpilot" for p in COMMANDS])
def test_help(cli: Invoke, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert_ok(result)
    assert "Usage:" in result.stdout


def test_version(cli: Invoke) -> None:
    result = cli("version")
    assert_ok(result)
    assert result.stdout == f"{__version__}\n"


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deskpilot.cli", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(home),
        cwd=home.parent,
        timeout=120,
        check=False,
    )


def test_process_help(home: Path) -> None:
    done = _run(home, "--help")
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "predict" in done.stdout
    assert done.stderr == ""


def test_process_user_error(home: Path) -> None:
    done = _run(home, "train", "classifier", "--task", "intent", "--data", "missing.csv")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: missing.csv") and "not found" in lines[0]
    assert "\x1b[" not in done.stderr  # no colour codes when stderr is not a terminal


def test_process_json_on_stdout_only(home: Path) -> None:
    done = _run(home, "keys", "create", "--tenant", "acme", "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    info = json.loads(lines[0])
    assert info["tenant"] == "acme" and info["key"].startswith("dpk_")
    assert info["key"] not in done.stderr
