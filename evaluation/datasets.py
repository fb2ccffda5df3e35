"""Loaders for the public evaluation datasets in ``../shared/data`` (or ``DESKPILOT_DATA_DIR``).

Every CSV/JSONL file goes through :func:`deskpilot.dataio.read_rows`, so a broken file
fails the same way here as in ``deskpilot train``. Splits that the datasets do not ship
are carved deterministically (fixed seed, stratified) so benchmark numbers are repeatable.
The data is read in place and never copied into the project.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from deskpilot.dataio import read_rows, stratified_indices
from deskpilot.errors import InputDataError

if TYPE_CHECKING:
    from deskpilot.config import Settings

OOS_LABEL = "oos"
"""CLINC150's label for out-of-scope queries."""

_DATA_HINT = "set DESKPILOT_DATA_DIR to the folder holding the evaluation datasets"


@dataclass(frozen=True, slots=True)
class LabelledSplit:
    """Texts with one label each; ``columns`` carries extra per-row fields (e.g. priority)."""

    name: str
    texts: list[str]
    labels: list[str]
    columns: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")
        for key, values in self.columns.items():
            if len(values) != len(self.texts):
                raise ValueError(f"{self.name}: column '{key}' has {len(values)} values, not {len(self)}")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, indices: Sequence[int], name: str | None = None) -> LabelledSplit:
        """The rows at ``indices``, in that order, extra columns included."""
        return LabelledSplit(
            name=name or self.name,
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            columns={k: [v[i] for i in indices] for k, v in self.columns.items()},
        )

    def __add__(self, other: LabelledSplit) -> LabelledSplit:
        keys = self.columns.keys() & other.columns.keys()
        return LabelledSplit(
            name=f"{self.name}+{other.name}",
            texts=self.texts + other.texts,
            labels=self.labels + other.labels,
            columns={k: self.columns[k] + other.columns[k] for k in keys},
        )


@dataclass(frozen=True, slots=True)
class Dataset:
    """A benchmark: train and test, an optional validation split, and named extra splits."""

    name: str
    train: LabelledSplit
    test: LabelledSplit
    valid: LabelledSplit | None = None
    extra: dict[str, LabelledSplit] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Sorted labels of the training split."""
        return sorted(set(self.train.labels))


# locations ---------------------------------------------------------------------------


def data_dir(settings: Settings | None = None) -> Path | None:
    """``DESKPILOT_DATA_DIR`` or ``../shared/data`` beside the project; None if absent."""
    if settings is None:
        from deskpilot.config import get_settings  # pydantic only when a caller needs it

        settings = get_settings()
    found: Path | None = settings.evaluation_data_dir()
    return found


def _root(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    found = data_dir()
    if found is None:
        raise InputDataError("no evaluation data folder found", hint=_DATA_HINT)
    return found


def _locate(root: str | Path | None, folder: str, filename: str) -> Path:
    """``root/folder/filename``; ``root`` may also be the dataset folder itself."""
    base = _root(root)
    for candidate in (base / folder / filename, base / filename):
        if candidate.is_file():
            return candidate
    raise InputDataError(f"{folder}: {base / folder / filename} not found", hint=_DATA_HINT)


def _read(
    path: Path, name: str, text_column: str, label_column: str, keep: tuple[str, ...] = ()
) -> LabelledSplit:
    rows = read_rows(path, text_column=text_column, label_column=label_column, keep_columns=keep)
    if rows.labels is None:  # read_rows already refuses a missing label column; kept for type narrowing
        raise InputDataError(f"{path}: no labels in column '{label_column}'")
    return LabelledSplit(name=name, texts=rows.texts, labels=rows.labels, columns=dict(rows.extra))


def load_file(path: str | Path, text_column: str = "text", label_column: str = "label") -> LabelledSplit:
    """Any labelled CSV/JSONL file, read exactly as ``deskpilot train`` reads it."""
    path = Path(path)
    return _read(path, path.stem, text_column, label_column)


# splitting ---------------------------------------------------------------------------


def holdout(
    split: LabelledSplit,
    fraction: float,
    seed: int = 0,
    min_per_class: int = 2,
    names: tuple[str, str] = ("train", "test"),
) -> tuple[LabelledSplit, LabelledSplit]:
    """Stratified (kept, held-out) splits of ``split``, extra columns carried along."""
    kept, held = stratified_indices(split.labels, fraction, seed, min_per_class)
    return split.take(kept, names[0]), split.take(held, names[1])


def split_validation(
    texts: Sequence[str], labels: Sequence[str], fraction: float = 0.1, seed: int = 0, min_per_class: int = 2
) -> tuple[LabelledSplit, LabelledSplit]:
    """(train, valid) carved from training data, so tuning never looks at the test set."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    whole = LabelledSplit("train", list(texts), list(labels))
    return holdout(whole, fraction, seed, min_per_class, names=("train", "valid"))


# datasets ----------------------------------------------------------------------------


def banking77(root: str | Path | None = None) -> Dataset:
    """Banking77 official split: 10,003 train / 3,080 test queries, 77 intents."""
    train = _read(_locate(root, "banking77", "train.csv"), "train", "text", "category")
    test = _read(_locate(root, "banking77", "test.csv"), "test", "text", "category")
    return Dataset("banking77", train, test)


def banking77_fewshot(root: str | Path | None = None, shots: int = 10, seed: int = 0) -> Dataset:
    """``shots`` seeded training examples per intent (all of a rarer one), official test set.

    The sample keeps file order, and is the same for the same seed on any machine.
    """
    if shots < 1:
        raise ValueError("shots must be at least 1")
    full = banking77(root)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(full.train.labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    picked: list[int] = []
    for label in sorted(by_label):
        members = by_label[label]
        picked.extend(rng.sample(members, min(shots, len(members))))
    return Dataset(f"banking77-{shots}shot-seed{seed}", full.train.take(sorted(picked)), full.test)


ClincVariant = Literal["full", "small", "imbalanced", "oos_plus"]


def clinc150(root: str | Path | None = None, variant: ClincVariant = "full") -> Dataset:
    """CLINC150 in-scope train/val/test, with ``oos_train``/``oos_val``/``oos_test`` in ``extra``."""
    path = _locate(root, "clinc150", f"data_{variant}.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc})") from None
    splits: dict[str, LabelledSplit] = {}
    for key in ("train", "val", "test", "oos_train", "oos_val", "oos_test"):
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputDataError(f"{path}: no list under key '{key}'")
        texts: list[str] = []
        labels: list[str] = []
        for n, item in enumerate(items):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise InputDataError(f"{path}: {key}[{n}] is not a [text, intent] pair")
            texts.append(item[0])
            labels.append(item[1])
        splits[key] = LabelledSplit(key, texts, labels)
    extra = {k: splits[k] for k in ("oos_train", "oos_val", "oos_test")}
    return Dataset(f"clinc150-{variant}", splits["train"], splits["test"], splits["val"], extra)


def with_oos(dataset: Dataset, split: Literal["train", "val", "test"] = "test") -> LabelledSplit:
    """An in-scope split followed by its out-of-scope rows (label ``oos``), e.g. CLINC150's 5,500-row test."""
    base = {"train": dataset.train, "val": dataset.valid, "test": dataset.test}[split]
    oos = dataset.extra.get(f"oos_{split}")
    if base is None or oos is None:
        raise InputDataError(f"{dataset.name} has no '{split}' split with out-of-scope rows")
    joined = base + oos
    return LabelledSplit(f"{split}+oos", joined.texts, joined.labels, joined.columns)


_BITEXT_FILE = "Bitext_Sample_Customer_Support_Training_Dataset.8b6ca3d.csv"


def bitext(root: str | Path | None = None, label: Literal["intent", "category"] = "intent") -> LabelledSplit:
    """Bitext customer support (4,514 rows): instruction -> intent (27) or category (11).

    Ships as one file without a split; use :func:`holdout` for one. ``columns`` holds the
    other label and the agent ``response``.
    """
    other = "category" if label == "intent" else "intent"
    path = _locate(root, "bitext_customer_support", _BITEXT_FILE)
    return _read(path, "bitext", "instruction", label, keep=(other, "response"))


def bitext_pairs(root: str | Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """(questions, answers, intents) for evaluating drafted replies and retrieval."""
    split = bitext(root)
    return split.texts, split.columns["response"], split.labels


_TICKET_FILES = {
    # the two share one taxonomy (10 queues, 4 types) and carry answers
    "complete_rows": (
        "aa_dataset-tickets-multi-lang-5-2-50-version.PREFIX_complete_rows.csv",
        "dataset-tickets-multi-lang3-4k.PREFIX_complete_rows.csv",
    ),
    # German only, its own 10 queues, no type or answer
    "german_normalized": ("dataset-tickets-german_normalized.csv",),
}
TICKET_COLUMNS = ("priority", "type", "answer", "language")


def _unescape(text: str) -> str:
    # Many bodies hold a literal backslash-n where the source had line breaks.
    return text.replace("\\n", "\n").strip()


def multilingual_tickets(
    root: str | Path | None = None,
    language: str = "en",
    seed: int = 0,
    test_size: float = 0.2,
    source: Literal["complete_rows", "german_normalized"] = "complete_rows",
) -> Dataset:
    """Synthetic helpdesk tickets of one language: subject + body -> queue, split 80/20 by queue.

    ``source`` picks files that share a queue taxonomy (they must not be mixed).
    ``columns`` keeps priority, type, answer and language ("" where a file lacks one).
    """
    if source not in _TICKET_FILES:
        raise ValueError(f"source must be one of {', '.join(_TICKET_FILES)}")
    parts: list[LabelledSplit] = []
    for filename in _TICKET_FILES[source]:
        path = _locate(root, "multilingual_support_tickets", filename)
        parts.append(_read(path, filename, "text", "queue", keep=TICKET_COLUMNS))
    whole = parts[0]
    for part in parts[1:]:
        whole = whole + part
    keep = [i for i, lang in enumerate(whole.columns["language"]) if lang.strip().lower() == language.lower()]
    if not keep:
        found = ", ".join(sorted(set(whole.columns["language"])))
        raise InputDataError(
            f"multilingual_support_tickets ({source}): no rows in language '{language}' (found: {found})"
        )
    rows = whole.take(keep)
    columns = dict(rows.columns)
    columns["answer"] = [_unescape(a) for a in columns["answer"]]
    rows = LabelledSplit("tickets", [_unescape(t) for t in rows.texts], rows.labels, columns)
    train, test = holdout(rows, test_size, seed)
    return Dataset(f"tickets-{source}-{language}", train, test)


def company_documents(root: str | Path | None = None, seed: int = 0, test_size: float = 0.2) -> Dataset:
    """Text extracted from business PDFs -> invoice / purchase Order / ShippingOrder / report.

    Labels are kept as the source spells them; the split is stratified and seeded.
    """
    path = _locate(root, "company_documents", "company-document-text.csv")
    rows = _read(path, "company_documents", "text", "label")
    train, test = holdout(rows, test_size, seed)
    return Dataset("company_documents", train, test)
