"""Versions, evaluation, prediction and API keys, each in a copy of the session's trained home."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from adapters_support import DEVICE_WORDS, INTENT_WORDS, PEFT_GC_WARNING, make_texts
from cli_support import Invoke, TrainedTemplate, assert_fraction, assert_ok, last_json, write_csv

from deskpilot.config import get_settings
from deskpilot.store import Database, authenticate_key

pytestmark = pytest.mark.filterwarnings(PEFT_GC_WARNING)

FRACTIONS = ("accuracy", "macro_f1", "coverage", "accuracy_on_covered")
PREDICT_LINE = re.compile(r"^(access|billing|network)\t[01]\.\d{4}\t(ok|abstained)$")


def _adapters(cli: Invoke) -> dict[str, bool]:
    result = cli("adapters", "list", "--json")
    assert_ok(result)
    payload = last_json(result.stdout)
    assert payload["tenant"] == "default"
    return {a["version"]: a["champion"] for a in payload["adapters"] if a["task"] == "intent"}


def test_versions_promote_and_rollback(
    cli: Invoke, trained_home: Path, trained_template: TrainedTemplate, tiny_dir: Path
) -> None:
    result = cli(
        "train", "classifier", "--task", "intent", "--data", trained_template.train_csv,
        "--base", tiny_dir, "--epochs", "0", "--json",
    )  # fmt: skip
    assert_ok(result)
    summary = last_json(result.stdout)
    assert (summary["version"], summary["champion"]) == ("v2", False)  # a new version waits for promotion
    assert _adapters(cli) == {"v1": True, "v2": False}

    assert_ok(promoted := cli("adapters", "promote", "--task", "intent", "--version", "v2"))
    assert "now serving v2" in promoted.stderr
    assert _adapters(cli) == {"v1": False, "v2": True}
    predicted = cli("predict", "--task", "intent", "--json", "wifi router down")
    assert_ok(predicted)
    assert last_json(predicted.stdout)["results"][0]["adapter_version"] == "v2"

    assert_ok(rolled := cli("adapters", "rollback", "--task", "intent"))
    assert "now serving v1" in rolled.stderr
    assert _adapters(cli) == {"v1": True, "v2": False}

    # the database mirrors the registry (best effort, but it works on the embedded SQLite)
    from deskpilot.store import list_adapter_records

    db = Database(get_settings().db_url)
    try:
        with db.session() as session:
            records = {r.version: r.status for r in list_adapter_records(session, "default", "intent")}
    finally:
        db.dispose()
    assert records["v1"] == "champion" and records["v2"] != "champion", records


def _set_threshold(home: Path, value: float, version: str = "v1") -> None:
    path = home / "adapters" / "default" / "intent" / version / "card.json"
    card = json.loads(path.read_text("utf-8"))
    card["thresholds"]["default"] = value
    card["thresholds"]["per_class"] = {}
    path.write_text(json.dumps(card), "utf-8")


def _evaluate(cli: Invoke, data: Path, *extra: str) -> dict[str, Any]:
    result = cli("evaluate", "classifier", "--task", "intent", "--data", data, "--json", *extra)
    assert_ok(result)
    report = last_json(result.stdout)
    for key in FRACTIONS:
        if report[key] is not None or key != "accuracy_on_covered":
            assert_fraction(report[key], key)
    return report


def test_evaluate_in_scope(cli: Invoke, trained_home: Path, trained_template: TrainedTemplate) -> None:
    report = _evaluate(cli, trained_template.test_csv)
    assert report["n"] == 15
    assert report["oos_recall"] is None  # no labels the adapter does not know
    assert report["version"] == "v1"

    plain = cli("evaluate", "classifier", "--task", "intent", "--data", trained_template.test_csv)
    assert_ok(plain)
    assert "accuracy_on_covered" in plain.stdout and "n/a" in plain.stdout  # oos_recall shown as n/a
    assert "per class" in plain.stdout and "precision" in plain.stdout
    for label in INTENT_WORDS:
        assert label in plain.stdout


def test_evaluate_abstention_and_out_of_scope(
    cli: Invoke, trained_home: Path, trained_template: TrainedTemplate, tmp_path: Path
) -> None:
    texts, labels = make_texts(INTENT_WORDS, per_label=5, seed=2)
    oos_texts, oos_labels = make_texts(DEVICE_WORDS, per_label=3, seed=11)
    data = write_csv(
        tmp_path / "mixed.csv", ["text", "label"], zip(texts + oos_texts, labels + oos_labels, strict=True)
    )
    # a threshold at the median confidence makes the adapter abstain on about half the rows
    scored = cli("predict", "--task", "intent", "--json", *texts, *oos_texts)
    assert_ok(scored)
    scores = [r["score"] for r in last_json(scored.stdout)["results"]]
    _set_threshold(trained_home, statistics.median(scores))

    report = _evaluate(cli, data)
    assert report["n"] == 21
    assert 0.0 < report["coverage"] < 1.0
    assert_fraction(report["oos_recall"], "oos_recall")

    everything = _evaluate(cli, data, "--no-abstain")
    assert everything["coverage"] == 1.0
    assert everything["oos_recall"] == 0.0  # never abstaining answers every OOS row wrongly
    assert everything["accuracy"] == everything["accuracy_on_covered"]


def test_predict_lines_and_json(cli: Invoke, trained_home: Path) -> None:
    texts = ("my password expired and the login is locked", "the wifi router keeps dropping the vpn")
    result = cli("predict", "--task", "intent", *texts)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    for line in lines:
        assert PREDICT_LINE.match(line), line

    as_json = cli("predict", "--task", "intent", "--version", "v1", "--json", *texts)
    assert_ok(as_json)
    payload = last_json(as_json.stdout)
    assert payload["task"] == "intent"
    assert [r["text"] for r in payload["results"]] == list(texts)
    for row, line in zip(payload["results"], lines, strict=True):
        assert row["label"] in INTENT_WORDS
        assert_fraction(row["score"], "score")
        assert isinstance(row["abstained"], bool)
        assert row["adapter_version"] == "v1"
        assert line.split("\t")[0] == row["label"]

    _set_threshold(trained_home, 1.5)  # above any confidence: always abstain
    result = cli("predict", "--task", "intent", *texts)
    assert_ok(result)
    assert [line.split("\t")[2] for line in result.stdout.splitlines()] == ["abstained", "abstained"]


def test_keys_create_authenticates(cli: Invoke, home: Path) -> None:
    result = cli("keys", "create", "--tenant", "acme", "--json")
    assert_ok(result)
    info = last_json(result.stdout)
    key = info["key"]
    assert info["tenant"] == "acme" and key.startswith("dpk_")

    plain = cli("keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "read")
    assert_ok(plain)
    plain_key = plain.stdout.strip()
    assert plain.stdout == plain_key + "\n" and plain_key.startswith("dpk_")  # only the key on stdout
    assert "shown once" in plain.stderr

    db = Database(get_settings().db_url)
    try:
        with db.session() as session:
            principal = authenticate_key(session, key)
            reader = authenticate_key(session, plain_key)
            stranger = authenticate_key(session, key[:-1] + ("B" if key.endswith("A") else "A"))
    finally:
        db.dispose()
    assert principal is not None and principal.tenant == "acme"
    assert principal.scopes == frozenset({"read", "write"})
    assert reader is not None and reader.scopes == frozenset({"read"})
    assert stranger is None
    assert (home / "deskpilot.db").is_file()
