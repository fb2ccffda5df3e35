"""CLI fixtures: an isolated DESKPILOT_HOME per test, the tiny random BERT, one trained home.

Commands run in-process through ``typer.testing.CliRunner``. Training the first adapter
(with ``--eval``, one LoRA epoch) happens once per session into a template home; tests that
need a trained adapter get a copy of it as their own DESKPILOT_HOME.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from adapters_support import INTENT_WORDS, build_tiny_bert, make_texts
from cli_support import PEFT_MESSAGE, Invoke, TrainedTemplate, write_csv
from typer.testing import CliRunner, Result

from deskpilot.cli import app
from deskpilot.config import get_settings


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    """Only this test's settings: no stray DESKPILOT_* variables, no forced colours or width."""
    for name in list(os.environ):
        if name.startswith("DESKPILOT_"):
            mp.delenv(name)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        mp.delenv(name, raising=False)
    mp.setenv("DESKPILOT_HOME", str(home))
    mp.setenv("DESKPILOT_ENV", "test")
    mp.setenv("DESKPILOT_THREADS", "1")
    # the CLI setdefault()s this in os.environ; setting it here lets monkeypatch undo it
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's DESKPILOT_HOME (not created: the CLI must create what it needs)."""
    path = tmp_path / "home"
    monkeypatch.chdir(tmp_path)  # no deskpilot.toml from the working directory
    isolate(monkeypatch, path)
    yield path
    get_settings.cache_clear()


def _invoke(*args: str | Path) -> Result:
    get_settings.cache_clear()
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def cli() -> Invoke:
    """cli("train", "classifier", ...) -> click Result with separate stdout and stderr."""
    return _invoke


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("cli-tiny-bert"))


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> TrainedTemplate:
    """`train classifier --task intent --data train.csv --eval test.csv --epochs 1 --json`."""
    root = tmp_path_factory.mktemp("cli-trained")
    train = write_csv(
        root / "train.csv", ["text", "label"], zip(*make_texts(INTENT_WORDS, 20, seed=1), strict=True)
    )
    test = write_csv(
        root / "test.csv", ["text", "label"], zip(*make_texts(INTENT_WORDS, 5, seed=2), strict=True)
    )
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_MESSAGE, FutureWarning)
        mp.chdir(root)
        isolate(mp, root / "home")
        result = _invoke(
            "train", "classifier", "--task", "intent", "--data", train, "--eval", test,
            "--epochs", "1", "--base", tiny_dir, "--json",
        )  # fmt: skip
    get_settings.cache_clear()
    return TrainedTemplate(root / "home", train, test, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def trained_home(trained_template: TrainedTemplate, home: Path) -> Path:
    """This test's DESKPILOT_HOME, holding a copy of the template's intent v1 (champion)."""
    assert trained_template.exit_code == 0, trained_template.stderr
    shutil.copytree(trained_template.home, home)
    return home
