"""Adapter versions on disk, per tenant and task, with an atomic champion pointer.

Layout: ``<root>/<tenant>/<task>/<version>/`` holding the PEFT files
(``adapter_config.json``, ``adapter_model.safetensors``), the head
(``head.safetensors``) and ``card.json``; ``<root>/<tenant>/<task>/champion.json``
names the serving version. Only JSON and safetensors: nothing is ever unpickled.

A version may also keep the rows it was trained on (``train.jsonl``: one
``{"text", "label"}`` object a line), so it can be retrained with feedback later; a task
may keep a fixed evaluation set (``<root>/<tenant>/<task>/holdout.jsonl``, same format),
written once and never changed, on which every retrained challenger is judged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.errors import AdapterNotFoundError, InputDataError

# adapters that only ever seed other adapters (deskpilot adapt): promoting one is a mistake
UNSERVED_KINDS = frozenset({"domain"})

# ASCII only ([0-9], not \\d, which also matches other scripts' digits); used with fullmatch
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VERSION_RE = re.compile(r"^v([0-9]{1,6})$")
# weights that load by unpickling: never served, whatever else the folder holds
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".npy", ".npz"}
)
WEIGHTS = "adapter_model.safetensors"
CARD = "card.json"
CHAMPION = "champion.json"
TRAIN_ROWS = "train.jsonl"
HOLDOUT = "holdout.jsonl"


def check_name(kind: str, value: str) -> str:
    """Tenant and task names become folder names: allow no path tricks."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InputDataError(
            f"invalid {kind} name {str(value)[:80]!r}",
            hint="use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    return value


def check_folder(path: Path) -> None:
    """Only safetensors weights: refuse a version folder holding pickle files or lacking weights."""
    if not path.is_dir():
        raise AdapterNotFoundError(f"no adapter folder {path.name} ({path.parent.name})")
    unsafe = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.suffix.lower() in PICKLE_SUFFIXES or p.is_symlink()
    )
    if unsafe:
        raise InputDataError(
            f"adapter {path.parent.name}/{path.name} holds files that are not safetensors or JSON: "
            f"{', '.join(unsafe[:5])}; refusing to load it",
            hint="adapters load only from safetensors; remove those files or re-register the adapter",
        )
    if not (path / WEIGHTS).is_file():
        raise AdapterNotFoundError(f"adapter {path.parent.name}/{path.name} has no {WEIGHTS}")


@dataclass
class AdapterCard:
    """Everything needed to serve and judge an adapter, saved as ``card.json``."""

    task: str
    tenant: str
    kind: str
    base_model: str
    labels: list[str]
    version: str = ""
    created_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    n_train: int = 0
    train_seconds: float = 0.0
    recipe: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterCard:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _json_object(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InputDataError(f"{name} is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise InputDataError(f"{name} must be a JSON object")
    return value


def _uploaded_card(data: dict[str, Any], tenant: str, task: str) -> AdapterCard:
    """The card of an upload, checked field by field; tenant and version are the server's."""
    if data.get("task") != task:
        raise InputDataError(f"card.json names task {str(data.get('task'))[:80]!r}, not {task!r}")
    kind, base, labels = data.get("kind"), data.get("base_model"), data.get("labels")
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", kind):
        raise InputDataError("card.json: kind must be a name such as 'classifier'")
    if not isinstance(base, str) or not base.strip() or len(base) > 500:
        raise InputDataError("card.json: base_model must be a non-empty string")
    if not isinstance(labels, list) or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in labels):
        raise InputDataError("card.json: labels must be a list of strings")
    for key in ("metrics", "recipe", "calibration", "thresholds", "extra"):
        if not isinstance(data.get(key, {}), dict):
            raise InputDataError(f"card.json: {key} must be a JSON object")
    for key in ("data_hash", "created_at"):
        if not isinstance(data.get(key, ""), str):
            raise InputDataError(f"card.json: {key} must be a string")
    for key in ("n_train", "train_seconds"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputDataError(f"card.json: {key} must be a number")
    card = AdapterCard.from_dict({**data, "tenant": tenant, "version": "", "created_at": ""})
    card.extra = {**card.extra, "uploaded": True}
    return card


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rows_text(texts: Sequence[str], labels: Sequence[str]) -> str:
    if len(texts) != len(labels):
        raise InputDataError(f"{len(texts)} texts but {len(labels)} labels; they must pair up")
    return "".join(
        json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
        for t, y in zip(texts, labels, strict=True)
    )


def read_rows_file(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a ``train.jsonl`` / ``holdout.jsonl`` file."""
    texts: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row["label"]
        except (ValueError, KeyError, TypeError):
            text = label = None
        if not isinstance(text, str) or not isinstance(label, str):
            raise InputDataError(f"{path}:{number}: expected a JSON object with string 'text' and 'label'")
        texts.append(text)
        labels.append(label)
    return texts, labels


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def task_dir(self, tenant: str, task: str) -> Path:
        return self.root / check_name("tenant", tenant) / check_name("task", task)

    def path(self, tenant: str, task: str, version: str) -> Path:
        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise InputDataError(
                f"invalid version {str(version)[:80]!r}", hint="versions look like v1, v2, ..."
            )
        return self.task_dir(tenant, task) / version

    def load_path(self, tenant: str, task: str, version: str) -> Path:
        """The folder to load a version from, refused if it holds any pickle-format weights.

        PEFT falls back to ``adapter_model.bin`` (``torch.load``) when the safetensors file is
        missing; a folder with such a file is refused outright, before anything reads it.
        """
        path = self.path(tenant, task, version)
        check_folder(path)
        return path

    def tenants(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name))

    def tasks(self, tenant: str) -> list[str]:
        base = self.root / check_name("tenant", tenant)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and NAME_RE.fullmatch(p.name))

    def versions(self, tenant: str, task: str) -> list[AdapterCard]:
        base = self.task_dir(tenant, task)
        if not base.is_dir():
            return []
        found = []
        for p in base.iterdir():
            m = VERSION_RE.fullmatch(p.name)
            if m and (p / CARD).is_file():
                found.append((int(m.group(1)), p))
        return [self._read_card(p) for _, p in sorted(found)]

    def _read_card(self, path: Path) -> AdapterCard:
        return AdapterCard.from_dict(json.loads((path / CARD).read_text(encoding="utf-8")))

    def card(self, tenant: str, task: str, version: str | None = None) -> AdapterCard:
        if version is None:
            champion = self.champion_version(tenant, task)
            if champion is None:
                raise AdapterNotFoundError(
                    f"no adapter is registered for task '{task}' (tenant '{tenant}')",
                    hint=f"train one: deskpilot train classifier --task {task} --data FILE",
                )
            version = champion
        path = self.path(tenant, task, version)
        if not (path / CARD).is_file():
            raise AdapterNotFoundError(f"task '{task}' has no version '{version}' (tenant '{tenant}')")
        return self._read_card(path)

    def champion_version(self, tenant: str, task: str) -> str | None:
        pointer = self.task_dir(tenant, task) / CHAMPION
        if not pointer.is_file():
            return None
        version = json.loads(pointer.read_text(encoding="utf-8")).get("version")
        return version if isinstance(version, str) else None

    def register(
        self,
        files: Path,
        card: AdapterCard,
        *,
        promote: bool | None = None,
        rows: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> AdapterCard:
        """Move a finished adapter folder in as the next version.

        ``promote=None`` promotes only when the task has no champion yet. ``rows`` (texts,
        labels): the training rows, kept as ``train.jsonl`` for retraining.
        """
        base = self.task_dir(card.tenant, card.task)
        base.mkdir(parents=True, exist_ok=True)
        existing = [int(m.group(1)) for p in base.iterdir() if (m := VERSION_RE.fullmatch(p.name))]
        number = max(existing, default=0) + 1
        while True:
            card.version = f"v{number}"
            target = base / card.version
            try:
                target.mkdir()
                break
            except FileExistsError:
                number += 1
        card.created_at = card.created_at or datetime.now(UTC).isoformat(timespec="seconds")
        for item in Path(files).iterdir():
            if item.name != CARD:
                shutil.move(str(item), target / item.name)
        shutil.rmtree(files, ignore_errors=True)
        if rows is not None:
            _atomic_write(target / TRAIN_ROWS, _rows_text(*rows))
        _atomic_write(target / CARD, card.to_json())
        if promote or (promote is None and self.champion_version(card.tenant, card.task) is None):
            self.promote(card.tenant, card.task, card.version)
        return card

    def register_upload(self, tenant: str, task: str, files: dict[str, bytes]) -> AdapterCard:
        """Register uploaded files as a new candidate version (never promoted by the upload).

        Only the known file names are accepted; the weights must be valid safetensors (header
        checked, nothing loaded) and the card must name this task.
        """
        from deskpilot.adapters.signing import OPTIONAL_FILES, SIGNED_FILES, adapter_digest, check_safetensors

        check_name("tenant", tenant)
        check_name("task", task)
        adapter_digest(files)  # exactly the known names
        for name in (WEIGHTS, *OPTIONAL_FILES):
            if name in files:
                check_safetensors(files[name])
        config = _json_object(files["adapter_config.json"], "adapter_config.json")
        if config.get("peft_type") != "LORA":
            raise InputDataError('adapter_config.json: "peft_type" must be "LORA"')
        card = _uploaded_card(_json_object(files[CARD], CARD), tenant, task)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".upload-"))
        try:
            for name in (*SIGNED_FILES, *OPTIONAL_FILES):
                if name in files and name != CARD:
                    (staging / name).write_bytes(files[name])
            return self.register(staging, card, promote=False)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def promote(self, tenant: str, task: str, version: str) -> None:
        path = self.path(tenant, task, version)
        if not (path / CARD).is_file():
            raise AdapterNotFoundError(f"task '{task}' has no version '{version}' (tenant '{tenant}')")
        if self._read_card(path).kind in UNSERVED_KINDS:
            raise InputDataError(
                f"{tenant}/{task} {version} is a domain adapter: it is never served",
                hint=f"use it to start a classifier: --from-adapter {task}:{version}",
            )
        previous = self.champion_version(tenant, task)
        history = self._history(tenant, task)
        if previous and previous != version:
            history.append(previous)
        payload = {
            "version": version,
            "previous": history[-20:],
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _atomic_write(self.task_dir(tenant, task) / CHAMPION, json.dumps(payload, indent=2))

    def _history(self, tenant: str, task: str) -> list[str]:
        pointer = self.task_dir(tenant, task) / CHAMPION
        if not pointer.is_file():
            return []
        previous = json.loads(pointer.read_text(encoding="utf-8")).get("previous", [])
        return [v for v in previous if isinstance(v, str)]

    def rollback(self, tenant: str, task: str) -> str:
        """Serve the previous champion again; returns the version now serving."""
        history = self._history(tenant, task)
        current = self.champion_version(tenant, task)
        while history:
            candidate = history.pop()
            if candidate != current and (self.path(tenant, task, candidate) / CARD).is_file():
                payload = {
                    "version": candidate,
                    "previous": history,
                    "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                _atomic_write(self.task_dir(tenant, task) / CHAMPION, json.dumps(payload, indent=2))
                return candidate
        raise AdapterNotFoundError(
            f"task '{task}' has no earlier version to roll back to (tenant '{tenant}')"
        )

    def update_card(self, card: AdapterCard) -> None:
        """Rewrite a registered version's card (e.g. to add evaluation metrics)."""
        path = self.path(card.tenant, card.task, card.version)
        if not (path / CARD).is_file():
            raise AdapterNotFoundError(f"task '{card.task}' has no version '{card.version}'")
        _atomic_write(path / CARD, card.to_json())

    # training rows and the task's fixed holdout ---------------------------------------
    def save_rows(
        self, tenant: str, task: str, version: str, texts: Sequence[str], labels: Sequence[str]
    ) -> Path:
        """Keep (or replace) the rows a registered version was trained on."""
        path = self.path(tenant, task, version)
        if not (path / CARD).is_file():
            raise AdapterNotFoundError(f"task '{task}' has no version '{version}' (tenant '{tenant}')")
        _atomic_write(path / TRAIN_ROWS, _rows_text(texts, labels))
        return path / TRAIN_ROWS

    def rows(self, tenant: str, task: str, version: str) -> tuple[list[str], list[str]] | None:
        """The rows a version was trained on; None when it did not keep them (older versions)."""
        path = self.path(tenant, task, version) / TRAIN_ROWS
        return read_rows_file(path) if path.is_file() else None

    def holdout(self, tenant: str, task: str) -> tuple[list[str], list[str]] | None:
        """The task's fixed evaluation rows, or None before the first retrain made them."""
        path = self.task_dir(tenant, task) / HOLDOUT
        return read_rows_file(path) if path.is_file() else None

    def create_holdout(
        self, tenant: str, task: str, texts: Sequence[str], labels: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """Write the task's holdout once; if it exists already, that one is returned unchanged.

        Written to a temporary file and hard-linked into place, which fails when the file
        exists: of two concurrent first retrains, one writes and both use the same rows.
        """
        base = self.task_dir(tenant, task)
        base.mkdir(parents=True, exist_ok=True)
        target = base / HOLDOUT
        if not target.is_file():
            fd, tmp = tempfile.mkstemp(dir=base, prefix=f".{HOLDOUT}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(_rows_text(texts, labels))
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):  # another writer was first
                    os.link(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return read_rows_file(target)
