"""The original store: content-addressed, written once and atomically, closed to path tricks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from deskpilot.documents.originals import OriginalStore
from deskpilot.errors import InputDataError, NotFoundError

DATA = b"%PDF-1.7 an original invoice"
SHA = hashlib.sha256(DATA).hexdigest()


def test_put_writes_under_a_two_level_fan_out(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    sha, path = store.put(DATA)
    assert sha == SHA
    assert path == tmp_path / SHA[:2] / SHA[2:4] / SHA
    assert path.read_bytes() == DATA
    assert store.get(sha) == DATA
    assert store.path(SHA.upper()) == path  # hex case does not matter
    assert SHA in store and "0" * 64 not in store and "../x" not in store


def test_same_bytes_are_stored_once_and_not_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OriginalStore(tmp_path)
    _, path = store.put(DATA)
    before = path.stat().st_mtime_ns

    def no_rewrite(*args: object) -> None:
        raise AssertionError("an existing original was written again")

    monkeypatch.setattr(os, "replace", no_rewrite)
    assert store.put(DATA) == (SHA, path)
    assert path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [SHA]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OriginalStore(tmp_path)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        store.put(DATA)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert SHA not in store


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab" * 31, "g" * 64, SHA + "/..", "", SHA[:-1] + "\n"])
def test_anything_but_a_sha256_is_refused(tmp_path: Path, bad: str) -> None:
    store = OriginalStore(tmp_path)
    with pytest.raises(InputDataError):
        store.path(bad)
    with pytest.raises(InputDataError):
        store.get(bad)


def test_missing_and_damaged_originals(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.get(SHA)
    _, path = store.put(DATA)
    path.write_bytes(b"tampered")
    with pytest.raises(InputDataError) as caught:
        store.get(SHA)
    assert "damaged" in str(caught.value)
