"""Registry security: strict names, safetensors only (pickle files refused), checked uploads, signatures."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from adapters_support import Trained, peft_warning
from safetensors.numpy import save

from deskpilot.adapters.registry import Registry, check_name
from deskpilot.adapters.serving import Engine
from deskpilot.adapters.signing import (
    adapter_digest,
    check_safetensors,
    sign_adapter,
    signature_valid,
)
from deskpilot.errors import AdapterNotFoundError, InputDataError

BAD_NAMES = [
    "",
    "../x",
    "..",
    ".",
    "/etc",
    "a/b",
    "a\\b",
    "x\x00",
    "intent\n",
    " intent",
    "Intent",
    "-intent",
    ".hidden",
    "a" * 64,
    "ｉntent",  # fullwidth i
    "іntent",  # Cyrillic i
    "intent\u200b",  # zero-width space
    "café",
    "%2e%2e",
]
BAD_VERSIONS = [
    "",
    "1",
    "v",
    "v1/..",
    "../v1",
    "v1\n",
    "v1\x00",
    "V1",
    "v-1",
    "v1234567",
    "v٣",
    "v１",
    "v1.0",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_escape_the_registry_are_refused(registry: Registry, name: str) -> None:
    with pytest.raises(InputDataError):
        check_name("task", name)
    with pytest.raises(InputDataError):
        registry.task_dir("acme", name)
    with pytest.raises(InputDataError):
        registry.task_dir(name, "intent")
    assert not registry.root.exists()  # nothing was created while refusing


@pytest.mark.parametrize("value", [None, 5, b"intent", ["intent"]])
def test_names_that_are_not_strings_are_refused(value: Any) -> None:
    with pytest.raises(InputDataError):
        check_name("task", value)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_bad_versions_are_refused(registry: Registry, version: str) -> None:
    with pytest.raises(InputDataError):
        registry.path("acme", "intent", version)


def test_good_names_pass(registry: Registry) -> None:
    assert registry.path("acme", "intent-2_x", "v12") == registry.root / "acme" / "intent-2_x" / "v12"


# --- safetensors only --------------------------------------------------------------------------


def tensors_bytes(**arrays: np.ndarray) -> bytes:
    return save(arrays or {"lora_A": np.zeros((2, 3), dtype=np.float32)})


def version_folder(root: Path, *extra: str) -> Path:
    folder = root / "acme" / "intent" / "v1"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(tensors_bytes())
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "card.json").write_text("{}")
    for name in extra:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\x80\x04K\x01.")  # a pickle
    return folder


def test_clean_folder_loads(registry: Registry) -> None:
    folder = version_folder(registry.root)
    assert registry.load_path("acme", "intent", "v1") == folder


@pytest.mark.parametrize(
    "planted",
    ["adapter_model.bin", "pytorch_model.bin", "head.pt", "x.pth", "rows.pkl", "a.pickle", "sub/m.ckpt"],
)
def test_pickle_files_in_a_version_folder_are_refused(registry: Registry, planted: str) -> None:
    version_folder(registry.root, planted)
    with pytest.raises(InputDataError, match="not safetensors"):
        registry.load_path("acme", "intent", "v1")


def test_folder_without_safetensors_weights_is_refused(registry: Registry) -> None:
    folder = version_folder(registry.root)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterNotFoundError):
        registry.load_path("acme", "intent", "v1")


def test_symlinks_in_a_version_folder_are_refused(registry: Registry, tmp_path: Path) -> None:
    folder = version_folder(registry.root)
    (tmp_path / "elsewhere.safetensors").write_bytes(tensors_bytes())
    os.symlink(tmp_path / "elsewhere.safetensors", folder / "head.safetensors")
    with pytest.raises(InputDataError):
        registry.load_path("acme", "intent", "v1")


@peft_warning
def test_engine_refuses_an_adapter_with_a_pickle_beside_it(
    registry: Registry, register: Any, trained_intent: Trained
) -> None:
    card = register(trained_intent)
    (registry.path("acme", "intent", card.version) / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputDataError, match="not safetensors"):
        Engine(registry).predict("acme", "intent", ["my vpn is down"])


# --- the safetensors header check ---------------------------------------------------------------


def raw_file(header: Any, data: bytes = b"") -> bytes:
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + data


def test_real_safetensors_pass_and_are_described() -> None:
    data = tensors_bytes(a=np.zeros((2, 3), dtype=np.float32), b=np.ones(4, dtype=np.int64))
    info = {t.name: (t.dtype, t.shape) for t in check_safetensors(data)}
    assert info == {"a": ("F32", (2, 3)), "b": ("I64", (4,))}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 7,
        struct.pack("<Q", 10**12) + b"{}",  # header longer than the file
        struct.pack("<Q", 4) + b"nope",  # not JSON
        raw_file([]),  # not an object
        raw_file({}),  # no tensors
        raw_file(
            {"__metadata__": {"a": 1}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4
        ),
        raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "code": "x"}}, b"\0" * 4),
        raw_file({"t": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        raw_file({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
        raw_file({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),  # size mismatch
        raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 4),  # past the end
        raw_file({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8),  # trailing data
        raw_file(
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},  # overlaps a
            },
            b"\0" * 8,
        ),
        raw_file({"t": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4),
        struct.pack("<Q", 100_000) + b"[" * 100_000,  # nesting deeper than the JSON parser goes
    ],
)
def test_malformed_safetensors_are_refused(data: bytes) -> None:
    with pytest.raises(InputDataError):
        check_safetensors(data)


# --- uploads and signatures ----------------------------------------------------------------------


def upload_files(task: str = "intent", **card: Any) -> dict[str, bytes]:
    card_json = {
        "task": task,
        "tenant": "someone-else",
        "kind": "classifier",
        "base_model": "tiny",
        "labels": ["a"],
    }
    return {
        "adapter_config.json": json.dumps({"peft_type": "LORA", "r": 4}).encode(),
        "adapter_model.safetensors": tensors_bytes(),
        "card.json": json.dumps({**card_json, **card}).encode(),
    }


def test_upload_registers_a_candidate_under_the_callers_tenant(registry: Registry) -> None:
    card = registry.register_upload("acme", "intent", upload_files())
    assert (card.tenant, card.task, card.version) == ("acme", "intent", "v1")
    assert registry.champion_version("acme", "intent") is None  # a candidate, not served
    folder = registry.load_path("acme", "intent", "v1")
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "card.json",
    ]
    assert json.loads((folder / "card.json").read_text())["extra"]["uploaded"] is True
    assert [p.name for p in registry.root.iterdir()] == ["acme"]  # the staging folder is gone
    assert registry.register_upload("acme", "intent", upload_files()).version == "v2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter_model.bin": b"\x80\x04."}, "adapter is the files"),
        ({"adapter_model.safetensors": b"\x80\x04K\x01."}, "safetensors"),
        ({"adapter_config.json": b'{"peft_type": "PROMPT_TUNING"}'}, "LORA"),
        ({"adapter_config.json": b"[1]"}, "JSON object"),
        (
            {
                "card.json": json.dumps(
                    {"task": "other", "kind": "classifier", "base_model": "b", "labels": []}
                ).encode()
            },
            "names task",
        ),
        (
            {
                "card.json": json.dumps(
                    {"task": "intent", "kind": "../x", "base_model": "b", "labels": []}
                ).encode()
            },
            "kind",
        ),
        (
            {
                "card.json": json.dumps(
                    {"task": "intent", "kind": "classifier", "base_model": "b", "labels": [1]}
                ).encode()
            },
            "labels",
        ),
        ({"card.json": b"\xff\xfe"}, "UTF-8 JSON"),
        ({"card.json": b"[" * 100_000}, "UTF-8 JSON"),
        (
            {
                "card.json": json.dumps(
                    {"task": "intent", "kind": "classifier", "base_model": "  ", "labels": []}
                ).encode()
            },
            "base_model",
        ),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    registry: Registry, change: dict[str, bytes], message: str
) -> None:
    with pytest.raises(InputDataError, match=message):
        registry.register_upload("acme", "intent", {**upload_files(), **change})
    assert not (registry.root / "acme" / "intent").exists() or not any(
        p.name.startswith("v") for p in (registry.root / "acme" / "intent").iterdir()
    )


def test_signature_covers_every_byte_and_name() -> None:
    files = upload_files()
    signature = sign_adapter("acme-key", files)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert signature_valid("acme-key", files, signature)
    assert not signature_valid("globex-key", files, signature)
    assert not signature_valid(None, files, signature)
    assert not signature_valid("acme-key", files, None)
    assert not signature_valid("acme-key", files, signature.upper())
    tampered = {**files, "adapter_model.safetensors": files["adapter_model.safetensors"][:-1] + b"\x01"}
    assert not signature_valid("acme-key", tampered, signature)
    extra = {**files, "head.safetensors": tensors_bytes()}
    assert not signature_valid("acme-key", extra, signature)
    renamed = {"head.safetensors" if k == "adapter_model.safetensors" else k: v for k, v in files.items()}
    assert not signature_valid("acme-key", renamed, signature)
    assert adapter_digest(files) == adapter_digest(dict(reversed(list(files.items()))))  # order-free


@peft_warning
def test_a_trained_adapter_uploaded_signed_serves_like_the_original(
    registry: Registry, trained_intent: Trained
) -> None:
    """The upload format is the registry's own: a real adapter survives it and predicts the same."""
    folder = trained_intent.directory
    names = ("adapter_config.json", "adapter_model.safetensors", "head.safetensors")
    files = {name: (folder / name).read_bytes() for name in names}
    files["card.json"] = trained_intent.card.to_json().encode()
    assert signature_valid("k", files, sign_adapter("k", files))
    card = registry.register_upload("acme", trained_intent.card.task, files)
    registry.promote("acme", card.task, card.version)
    preds = Engine(registry).predict("acme", card.task, trained_intent.heldout, abstain=False)
    labels = trained_intent.card.labels
    assert [p.label for p in preds] == [labels[int(row.argmax())] for row in trained_intent.expected]
