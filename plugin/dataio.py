"""Read labelled rows from CSV or JSONL with errors that name file, line and column.

Shared by the CLI (training, evaluation) and the evaluation package. Pure Python.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deskpilot.errors import InputDataError
from deskpilot.types import join_subject_body

ENCODINGS = ("utf-8-sig",)


@dataclass(frozen=True, slots=True)
class Rows:
    """Texts and (optionally) labels read from one file, in file order."""

    path: Path
    texts: list[str]
    labels: list[str] | None
    lines: list[int]
    extra: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.texts)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise InputDataError(f"{path}: unsupported file type {suffix or '(none)'}", hint="use .csv or .jsonl")


def _open_text(path: Path) -> str:
    if not path.exists():
        raise InputDataError(f"{path}: file not found")
    if path.is_dir():
        raise InputDataError(f"{path}: is a folder, expected a .csv or .jsonl file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputDataError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            hint="re-save the file as UTF-8",
        ) from None


def _check_line_sizes(path: Path, text: str, max_line_bytes: int) -> None:
    start = 0
    line_no = 1
    while True:
        end = text.find("\n", start)
        stop = len(text) if end < 0 else end
        if stop - start > max_line_bytes:
            size = len(text[start:stop].encode("utf-8"))
            if size > max_line_bytes:
                raise InputDataError(
                    f"{path} line {line_no}: line is {size:,} bytes, over the limit of {max_line_bytes:,}",
                    hint="split or shorten it, or raise DESKPILOT_MAX_LINE_BYTES",
                )
        if end < 0:
            return
        start = end + 1
        line_no += 1


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    dialect: type[csv.Dialect] = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    if not reader.fieldnames:
        raise InputDataError(f"{path}: empty file, expected a header row")
    try:
        for record in reader:
            line = reader.line_num
            if None in record:
                raise InputDataError(f"{path} line {line}: more fields than the header has")
            yield line, {k: (v if v is not None else "") for k, v in record.items()}
    except csv.Error as exc:
        raise InputDataError(f"{path} line {reader.line_num}: {exc}") from None


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    # split on \n only: str.splitlines() also breaks at U+2028 and friends, valid inside JSON strings
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path} line {line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise InputDataError(f"{path} line {line_no}: expected a JSON object per line")
        yield line_no, {str(k): "" if v is None else str(v) for k, v in obj.items()}


def read_rows(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    require_labels: bool = True,
    keep_columns: tuple[str, ...] = (),
    max_line_bytes: int = 1_000_000,
    max_text_chars: int | None = None,
) -> Rows:
    """Read a file; ``subject`` + ``body`` stand in for a missing ``text_column``.

    Raises :class:`InputDataError` for anything a person must fix before training.
    """
    path = Path(path)
    if path.is_dir():
        raise InputDataError(f"{path}: is a folder, expected a .csv or .jsonl file")
    kind = _format(path)
    text = _open_text(path)
    _check_line_sizes(path, text, max_line_bytes)
    records = _csv_records(path, text) if kind == "csv" else _jsonl_records(path, text)

    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    extra: dict[str, list[str]] = {c: [] for c in keep_columns}
    columns_checked = False
    use_subject_body = False
    for line, rec in records:
        if not columns_checked:
            columns_checked = True
            use_subject_body = text_column not in rec and ("subject" in rec or "body" in rec)
            if text_column not in rec and not use_subject_body:
                raise InputDataError(
                    f"{path}: no column '{text_column}' (columns: {', '.join(rec) or 'none'})",
                    hint="pass --text-column, or give subject and body columns",
                )
            if label_column and require_labels and label_column not in rec:
                raise InputDataError(
                    f"{path}: no column '{label_column}' (columns: {', '.join(rec)})",
                    hint="pass --label-column",
                )
        value = (
            join_subject_body(rec.get("subject"), rec.get("body"))
            if use_subject_body
            else rec.get(text_column, "")
        )
        value = value.strip()
        if not value:
            column = "subject/body" if use_subject_body else text_column
            raise InputDataError(
                f"{path} line {line}: column '{column}' is empty", hint="fill or remove that row"
            )
        if max_text_chars is not None and len(value) > max_text_chars:
            value = value[:max_text_chars]
        texts.append(value)
        lines.append(line)
        if label_column and label_column in rec:
            label = rec[label_column].strip()
            if require_labels and not label:
                raise InputDataError(f"{path} line {line}: column '{label_column}' is empty")
            labels.append(label)
        for column in keep_columns:
            extra[column].append(rec.get(column, ""))
    if not texts:
        raise InputDataError(f"{path}: no data rows")
    has_labels = bool(label_column) and len(labels) == len(texts)
    return Rows(path=path, texts=texts, labels=labels if has_labels else None, lines=lines, extra=extra)


def check_trainable(rows: Rows, *, min_per_class: int = 2) -> list[str]:
    """Refuse data a classifier cannot learn from; return warnings for rare labels."""
    if rows.labels is None:
        raise InputDataError(f"{rows.path}: no labels to train on")
    counts = Counter(rows.labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise InputDataError(
            f"{rows.path}: every row has the label '{only}'; a classifier needs at least two labels"
        )
    rare = sorted(label for label, n in counts.items() if n < min_per_class)
    if rare:
        shown = ", ".join(f"'{r}' ({counts[r]})" for r in rare[:10])
        more = f" and {len(rare) - 10} more" if len(rare) > 10 else ""
        return [
            f"{len(rare)} label(s) have too few examples to hold any out for validation: {shown}{more}; "
            "they are trained on but not validated"
        ]
    return []


def stratified_indices(
    labels: Sequence[str], fraction: float, seed: int = 0, min_per_class: int = 2
) -> tuple[list[int], list[int]]:
    """Row indices (kept, held out), each in original order, holding out ~``fraction`` per class.

    A class with at least ``min_per_class`` rows gives ``round(n * fraction)`` of them,
    but at least one and never all; rarer classes stay wholly in the kept part.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}")
    if fraction == 0.0:
        return list(range(len(labels))), []
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    held: list[int] = []
    for label in sorted(by_label):
        members = by_label[label]
        if len(members) < max(min_per_class, 2):
            continue
        k = min(max(1, round(len(members) * fraction)), len(members) - 1)
        held.extend(rng.sample(members, k))
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held_set)
