"""Dataset loaders against the real evaluation data, and the splitting helpers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deskpilot.errors import InputDataError
from deskpilot.evaluation.datasets import (
    OOS_LABEL,
    banking77,
    banking77_fewshot,
    bitext,
    bitext_pairs,
    clinc150,
    company_documents,
    data_dir,
    load_file,
    multilingual_tickets,
    split_validation,
    stratified_indices,
    with_oos,
)


@pytest.fixture(scope="module")
def root(data_root: Path) -> Path:
    return data_root


# no data needed ----------------------------------------------------------------------


def test_data_dir_follows_settings(tmp_path: Path) -> None:
    from deskpilot.config import Settings

    assert data_dir(Settings(data_dir=tmp_path)) == tmp_path
    assert data_dir(Settings(data_dir=tmp_path / "missing")) is None


def test_missing_files_raise_input_data_error(tmp_path: Path) -> None:
    for loader in (banking77, clinc150, bitext, multilingual_tickets, company_documents):
        with pytest.raises(InputDataError, match="not found"):
            loader(tmp_path)


def test_load_file_reads_through_dataio(tmp_path: Path) -> None:
    path = tmp_path / "tickets.csv"
    path.write_text("subject,body,queue\nPrinter,It jams,it\nInvoice,,billing\n", encoding="utf-8")
    split = load_file(path, text_column="text", label_column="queue")
    assert split.texts == ["Printer\n\nIt jams", "Invoice"]
    assert split.labels == ["it", "billing"]
    with pytest.raises(InputDataError, match="no column 'label'"):
        load_file(path)


def test_split_validation_keeps_rare_classes_in_train() -> None:
    labels = ["a"] * 20 + ["b"] * 10 + ["c"]
    texts = [f"t{i}" for i in range(len(labels))]
    train, valid = split_validation(texts, labels, fraction=0.1, seed=3)
    assert Counter(valid.labels) == {"a": 2, "b": 1}
    assert "c" in train.labels
    assert sorted(train.texts + valid.texts) == sorted(texts)
    assert split_validation(texts, labels, fraction=0.1, seed=3) == (train, valid)
    with pytest.raises(ValueError):
        split_validation(texts, labels, fraction=1.0)


# real data ---------------------------------------------------------------------------


@pytest.mark.data
def test_banking77(root: Path) -> None:
    data = banking77(root)
    assert (len(data.train), len(data.test)) == (10_003, 3_080)
    assert len(data.labels) == 77
    assert set(data.test.labels) == set(data.labels)


@pytest.mark.data
def test_banking77_fewshot_is_deterministic(root: Path) -> None:
    data = banking77_fewshot(root, shots=10, seed=0)
    assert len(data.train) == 770
    assert set(Counter(data.train.labels).values()) == {10}
    assert len(data.test) == 3_080
    assert banking77_fewshot(root, shots=10, seed=0).train == data.train
    assert banking77_fewshot(root, shots=10, seed=1).train != data.train
    assert set(data.train.texts) <= set(banking77(root).train.texts)


@pytest.mark.data
def test_clinc150(root: Path) -> None:
    data = clinc150(root)
    assert data.valid is not None
    assert (len(data.train), len(data.valid), len(data.test)) == (15_000, 3_000, 4_500)
    sizes = {k: len(v) for k, v in data.extra.items()}
    assert sizes == {"oos_train": 100, "oos_val": 100, "oos_test": 1_000}
    assert len(data.labels) == 150
    assert OOS_LABEL not in data.labels
    assert all(label == OOS_LABEL for split in data.extra.values() for label in split.labels)
    full_test = with_oos(data)
    assert len(full_test) == 5_500
    assert full_test.labels.count(OOS_LABEL) == 1_000


@pytest.mark.data
def test_split_validation_is_stratified_and_disjoint(root: Path) -> None:
    train = banking77(root).train
    kept, held = stratified_indices(train.labels, fraction=0.1, seed=0)
    assert not set(kept) & set(held)
    assert sorted(kept + held) == list(range(len(train)))
    fit, valid = split_validation(train.texts, train.labels, fraction=0.1, seed=0)
    assert len(fit) + len(valid) == len(train)
    assert valid.texts == [train.texts[i] for i in held]
    totals, in_valid = Counter(train.labels), Counter(valid.labels)
    assert set(in_valid) == set(totals)
    for label, n in totals.items():
        assert in_valid[label] == round(n * 0.1)


@pytest.mark.data
def test_other_datasets_load(root: Path) -> None:
    support = bitext(root)
    assert len(support) == 4_514
    assert len(set(support.labels)) == 27
    questions, answers, intents = bitext_pairs(root)
    assert len(questions) == len(answers) == len(intents) == 4_514

    tickets = multilingual_tickets(root, language="en")
    assert len(tickets.train) + len(tickets.test) == 1_690
    assert set(tickets.test.labels) <= set(tickets.train.labels)
    assert len(tickets.labels) == 10
    assert {"priority", "type", "answer"} <= set(tickets.train.columns)
    assert set(tickets.train.columns["language"]) == {"en"}
    assert multilingual_tickets(root, language="en") == tickets

    docs = company_documents(root)
    assert len(docs.train) + len(docs.test) == 2_676
    assert len(docs.labels) == 4
    assert len(docs.test) == pytest.approx(2_676 * 0.2, abs=4)
