"""`deskpilot adapt` and `deskpilot train classifier --from-adapter` on the tiny random BERT."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from adapters_support import DEVICE_WORDS, INTENT_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import Invoke, assert_ok, error_line, last_json, write_csv
from safetensors.torch import load_file

pytestmark = pytest.mark.filterwarnings(PEFT_GC_WARNING)

WEIGHTS = "adapter_model.safetensors"


def _unlabelled(path: Path, n: int = 200, column: str = "text") -> Path:
    rng = random.Random(0)
    texts, _ = make_texts({**INTENT_WORDS, **DEVICE_WORDS}, per_label=n // 5 + 1, seed=11)
    rng.shuffle(texts)
    return write_csv(path, [column, "id"], [(t, str(i)) for i, t in enumerate(texts[:n])])


def _labelled(path: Path, words: dict[str, list[str]] = INTENT_WORDS) -> Path:
    return write_csv(path, ["text", "label"], zip(*make_texts(words, 8, seed=3), strict=True))


def _version_dir(home: Path, task: str, version: str = "v1", tenant: str = "default") -> Path:
    return home / "adapters" / tenant / task / version


def _adapt(cli: Invoke, tmp_path: Path, tiny_dir: Path, *extra: str) -> dict:
    data = _unlabelled(tmp_path / "unlabelled.csv")
    result = cli("adapt", "--data", data, "--base", tiny_dir, "--json", *extra)
    assert_ok(result)
    return last_json(result.stdout)


def test_adapt_json_contract_and_files(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    data = _unlabelled(tmp_path / "tickets.csv", column="ticket")
    result = cli(
        "adapt", "--data", data, "--text-column", "ticket", "--name", "helpdesk",
        "--base", tiny_dir, "--epochs", "2", "--json",
    )  # fmt: skip
    assert_ok(result)
    assert len(result.stdout.splitlines()) == 1, result.stdout  # progress stays on stderr
    summary = last_json(result.stdout)
    assert (summary["task"], summary["kind"], summary["version"]) == ("helpdesk", "domain", "v1")
    assert summary["n_texts"] == 200 and summary["heldout_texts"] == 10 and summary["n_train"] == 190
    for key in ("mlm_loss_before", "mlm_loss_after", "train_seconds"):
        assert isinstance(summary[key], float | int) and summary[key] > 0, key
    assert summary["train_steps"] == 2 * 6  # 190 texts, 32 per batch, 2 epochs

    folder = _version_dir(home, "helpdesk")
    assert summary["path"] == str(folder)
    for name in ("card.json", "adapter_config.json", WEIGHTS):
        assert (folder / name).is_file(), name
    assert not (folder / "head.safetensors").exists()  # the MLM head is not kept
    assert not (folder.parent / "champion.json").exists()  # registered, never served
    card = json.loads((folder / "card.json").read_text("utf-8"))
    assert card["kind"] == "domain" and card["metrics"]["mlm_loss_after"] == summary["mlm_loss_after"]

    listed = last_json(cli("adapters", "list", "--json").stdout)["adapters"]
    assert [(a["task"], a["kind"], a["champion"]) for a in listed] == [("helpdesk", "domain", False)]


def test_adapt_without_json_says_how_to_use_it(cli: Invoke, tmp_path: Path, tiny_dir: Path) -> None:
    result = cli("adapt", "--data", _unlabelled(tmp_path / "u.csv"), "--base", tiny_dir)
    assert_ok(result)
    assert "registered domain v1 (domain)" in result.stderr
    assert "--from-adapter domain" in result.stderr


def test_train_from_a_domain_adapter(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    _adapt(cli, tmp_path, tiny_dir)
    _adapt(cli, tmp_path, tiny_dir, "--seed", "1")  # v2: the newest is the default
    train = _labelled(tmp_path / "train.csv")
    args = ("train", "classifier", "--data", train, "--base", tiny_dir, "--epochs", "0", "--json")
    for task, spec, version in (
        ("a", "domain", "v2"),
        ("b", "domain:v1", "v1"),
        ("c", "default/domain", "v2"),
    ):
        result = cli(*args, "--task", task, "--from-adapter", spec)
        assert_ok(result)
        summary = last_json(result.stdout)
        donor = load_file(str(_version_dir(home, "domain", version) / WEIGHTS))
        got = load_file(str(_version_dir(home, task) / WEIGHTS))
        assert set(got) == set(donor), spec
        assert all(torch.equal(got[k], donor[k]) for k in donor), spec  # epochs 0: the donor's LoRA
        card = json.loads((Path(summary["path"]) / "card.json").read_text("utf-8"))
        assert card["recipe"]["init_adapter"] == f"default/domain/{version}"


def test_train_from_a_classifier_of_another_task(
    cli: Invoke, tmp_path: Path, tiny_dir: Path, trained_home: Path
) -> None:
    train = _labelled(tmp_path / "device.csv", DEVICE_WORDS)
    result = cli(
        "train", "classifier", "--task", "device", "--data", train, "--base", tiny_dir,
        "--epochs", "0", "--from-adapter", "intent", "--json",
    )  # fmt: skip
    assert_ok(result)
    card = json.loads((_version_dir(trained_home, "device") / "card.json").read_text("utf-8"))
    assert card["recipe"]["init_adapter"] == "default/intent/v1"
    assert card["labels"] == sorted(DEVICE_WORDS)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nosuch", "no adapter 'nosuch' of tenant 'default' to start from"),
        ("domain:v9", "has no version 'v9'"),
        ("other/domain", "no adapter 'domain' of tenant 'other'"),
        ("domain:latest", "invalid version 'latest'"),
        ("Bad Name", "invalid task name"),
    ],
)
def test_from_adapter_that_does_not_exist(
    cli: Invoke, tmp_path: Path, tiny_dir: Path, spec: str, needle: str
) -> None:
    _adapt(cli, tmp_path, tiny_dir)
    train = _labelled(tmp_path / "train.csv")
    result = cli(
        "train", "classifier", "--task", "t", "--data", train, "--base", tiny_dir, "--from-adapter", spec
    )
    assert needle in error_line(result)


def test_from_an_incompatible_adapter(cli: Invoke, tmp_path: Path, tiny_dir: Path, home: Path) -> None:
    _adapt(cli, tmp_path, tiny_dir)
    config_file = _version_dir(home, "domain") / "adapter_config.json"
    config = json.loads(config_file.read_text("utf-8"))
    config_file.write_text(json.dumps({**config, "r": 8}), "utf-8")
    train = _labelled(tmp_path / "train.csv")
    result = cli(
        "train", "classifier", "--task", "t", "--data", train, "--base", tiny_dir, "--from-adapter", "domain"
    )
    line = error_line(result)
    assert "adapter default/domain/v1 is not compatible" in line and "r 8 (need 16)" in line
    assert not _version_dir(home, "t").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--text-column", "body_text"), "no column 'body_text'"),
        (("--name", "Bad/Name"), "invalid task name 'Bad/Name'"),
        (("--max-minutes", "0"), "--max-minutes must be positive"),
    ],
)
def test_adapt_mistakes(
    cli: Invoke, tmp_path: Path, tiny_dir: Path, args: tuple[str, ...], needle: str
) -> None:
    data = _unlabelled(tmp_path / "u.csv")
    assert needle in error_line(cli("adapt", "--data", data, "--base", tiny_dir, *args))


def test_adapt_needs_enough_texts(cli: Invoke, tmp_path: Path, tiny_dir: Path) -> None:
    data = _unlabelled(tmp_path / "few.csv", n=5)
    assert "at least 20 texts" in error_line(cli("adapt", "--data", data, "--base", tiny_dir))
