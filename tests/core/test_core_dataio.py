"""The CSV/JSONL reader: columns, subject+body, and errors that name file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpilot.dataio import check_trainable, read_rows
from deskpilot.errors import InputDataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_custom_columns_and_quoted_newlines(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", 'msg,cat\n"line one\nline two",a\nplain,b\n')
    rows = read_rows(f, text_column="msg", label_column="cat")
    assert rows.texts == ["line one\nline two", "plain"]
    assert rows.labels == ["a", "b"]
    assert rows.lines == [3, 4]  # the physical line where each record ends


def test_subject_and_body_are_joined_when_text_is_absent(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "subject,body,label\nRefund,I want my money back,billing\n,only body,x\n")
    rows = read_rows(f)
    assert rows.texts == ["Refund\n\nI want my money back", "only body"]


def test_jsonl_and_extra_columns(tmp_path: Path) -> None:
    f = write(
        tmp_path / "d.jsonl", '{"text": "a", "label": "x", "answer": "hi"}\n\n{"text": "b", "label": 3}\n'
    )
    rows = read_rows(f, keep_columns=("answer",))
    assert rows.labels == ["x", "3"]
    assert rows.extra["answer"] == ["hi", ""]


def test_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_bytes("\ufefftext,label\nhello,a\n".encode())
    assert read_rows(f).texts == ["hello"]


@pytest.mark.parametrize(
    ("content", "kwargs", "pattern"),
    [
        ("text,label\nok,a\n,b\n", {}, r"d\.csv line 3: column 'text' is empty"),
        ("text,label\nok,\n", {}, r"line 2: column 'label' is empty"),
        ("body_text,label\nok,a\n", {}, r"no column 'text' \(columns: body_text, label\)"),
        ("text,cat\nok,a\n", {}, r"no column 'label'"),
        ("text,label\n", {}, "no data rows"),
        ("", {}, "empty file"),
        ("text,label\nok,a,extra\n", {}, "line 2: more fields than the header"),
    ],
)
def test_bad_csv_is_named_precisely(
    tmp_path: Path, content: str, kwargs: dict[str, str], pattern: str
) -> None:
    with pytest.raises(InputDataError, match=pattern):
        read_rows(write(tmp_path / "d.csv", content), **kwargs)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_bytes(b"text,label\nok,a\ncaf\xe9,b\n")
    with pytest.raises(InputDataError, match=r"line 3: not valid UTF-8"):
        read_rows(f)


def test_oversized_line_is_refused_before_parsing(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "text,label\n" + "x" * 5000 + ",a\n")
    with pytest.raises(InputDataError, match=r"line 2: line is 5,002 bytes, over the limit of 1,000"):
        read_rows(f, max_line_bytes=1000)


def test_missing_file_folder_and_extension(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="file not found"):
        read_rows(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputDataError, match="is a folder"):
        read_rows(tmp_path / "dir.csv")
    with pytest.raises(InputDataError, match=r"unsupported file type \.xlsx"):
        read_rows(write(tmp_path / "d.xlsx", "x"))


def test_bad_jsonl_line(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"line 2: invalid JSON"):
        read_rows(write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{oops\n'))
    with pytest.raises(InputDataError, match=r"line 1: expected a JSON object"):
        read_rows(write(tmp_path / "e.jsonl", "[1, 2]\n"))


def test_long_texts_are_truncated_to_the_limit(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path / "d.csv", "text,label\n" + "y" * 50 + ",a\n"), max_text_chars=10)
    assert rows.texts == ["y" * 10]


def test_check_trainable(tmp_path: Path) -> None:
    single = read_rows(write(tmp_path / "s.csv", "text,label\na,x\nb,x\n"))
    with pytest.raises(InputDataError, match="every row has the label 'x'"):
        check_trainable(single)
    rare = read_rows(write(tmp_path / "r.csv", "text,label\na,x\nb,x\nc,y\n"))
    warnings = check_trainable(rare)
    assert len(warnings) == 1 and "'y' (1)" in warnings[0]
    unlabelled = read_rows(write(tmp_path / "u.csv", "text\na\n"), require_labels=False)
    with pytest.raises(InputDataError, match="no labels"):
        check_trainable(unlabelled)
