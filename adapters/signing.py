"""Signed adapter uploads: an HMAC-SHA256 by the tenant's signing key over the files' digest.

Pure hashlib and json (no torch), so the gateway checks uploads without loading a model.
The canonical digest names every file with its length and sha256, in a fixed order, so a
changed, added, dropped or renamed file changes the signature. ``card.json`` is one of the
signed files and names the task, so a signature cannot be replayed onto another task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deskpilot.errors import InputDataError

SIGNED_FILES = ("adapter_config.json", "adapter_model.safetensors", "card.json")
# a classifier's head travels with it when the adapter is to be served; signed like the rest
OPTIONAL_FILES = ("head.safetensors",)
SIGNATURE_HEADER = "X-Deskpilot-Adapter-Signature"
SIGNATURE_VERSION = "v1"
_DOMAIN = b"deskpilot-adapter-v1\n"

# safetensors dtypes and their sizes in bytes (the format's own list)
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 100_000


def adapter_digest(files: Mapping[str, bytes]) -> bytes:
    """The canonical sha256 of an adapter's files: :data:`SIGNED_FILES` (+ optional ones), by name."""
    names = sorted(files)
    if not set(SIGNED_FILES) <= set(names) <= set(SIGNED_FILES + OPTIONAL_FILES):
        raise InputDataError(
            f"an adapter is the files {', '.join(SIGNED_FILES)} (and optionally "
            f"{', '.join(OPTIONAL_FILES)}); got {', '.join(n[:60] for n in names[:8]) or 'none'}"
        )
    h = hashlib.sha256(_DOMAIN)
    for name in names:
        data = files[name]
        h.update(f"{name}\n{len(data)}\n{hashlib.sha256(data).hexdigest()}\n".encode())
    return h.digest()


def sign_adapter(secret: str, files: Mapping[str, bytes]) -> str:
    """The value of the signature header: ``v1=<hex HMAC-SHA256(secret, digest)>``."""
    if not secret:
        raise InputDataError("the adapter signing key is empty")
    mac = hmac.new(secret.encode("utf-8"), adapter_digest(files), hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def signature_valid(secret: str | None, files: Mapping[str, bytes], header: str | None) -> bool:
    """Constant-time check of ``header`` against the files; False for anything malformed."""
    if not secret or not header or len(header) > 200:
        return False
    try:
        expected = sign_adapter(secret, files)
    except InputDataError:
        return False
    return hmac.compare_digest(expected.encode(), header.strip().encode("ascii", "replace"))


def read_adapter_files(folder: Path) -> dict[str, bytes]:
    """The signed files of an adapter folder (what ``deskpilot adapters sign`` signs)."""
    folder = Path(folder)
    missing = [name for name in SIGNED_FILES if not (folder / name).is_file()]
    if missing:
        raise InputDataError(
            f"{folder} lacks {', '.join(missing)}", hint="point at an adapter version's folder"
        )
    names = SIGNED_FILES + tuple(n for n in OPTIONAL_FILES if (folder / n).is_file())
    return {name: (folder / name).read_bytes() for name in names}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]


def check_safetensors(data: bytes) -> list[TensorInfo]:
    """Validate a safetensors file by its JSON header alone; the tensors are never loaded.

    Accepts only: an 8-byte little-endian header length, a JSON object of tensors (each
    exactly ``dtype``, ``shape``, ``data_offsets``) plus an optional string-to-string
    ``__metadata__``, offsets that tile the data section exactly and sizes that match
    shape x dtype. Anything else is an :class:`InputDataError`.
    """
    if len(data) < 8:
        raise InputDataError("adapter_model.safetensors is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    if size < 2 or size > MAX_HEADER_BYTES or 8 + size > len(data):
        raise InputDataError("adapter_model.safetensors has an invalid header length")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputDataError("adapter_model.safetensors has a header that is not JSON") from None
    if not isinstance(header, dict) or not header:
        raise InputDataError("adapter_model.safetensors has an empty or invalid header")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InputDataError("adapter_model.safetensors: __metadata__ must map strings to strings")
    if not header or len(header) > MAX_TENSORS:
        raise InputDataError("adapter_model.safetensors holds no tensors (or too many)")
    body = len(data) - 8 - size
    spans: list[tuple[int, int]] = []
    tensors: list[TensorInfo] = []
    for name, info in header.items():
        tensors.append(_tensor(name, info, body, spans))
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise InputDataError("adapter_model.safetensors: tensor data overlaps or leaves gaps")
        position = end
    if position != body:
        raise InputDataError("adapter_model.safetensors: data after the last tensor")
    return tensors


def _tensor(name: str, info: object, body: int, spans: list[tuple[int, int]]) -> TensorInfo:
    where = f"adapter_model.safetensors: tensor {name[:100]!r}"
    if not name or len(name) > 1000 or not isinstance(info, dict):
        raise InputDataError(f"{where} is malformed")
    if set(info) != {"dtype", "shape", "data_offsets"}:
        raise InputDataError(f"{where} has fields other than dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise InputDataError(f"{where} has an unknown dtype {str(dtype)[:20]!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape)
    ):
        raise InputDataError(f"{where} has an invalid shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= body
    ):
        raise InputDataError(f"{where} has data offsets outside the file")
    if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise InputDataError(f"{where}: its size does not match its shape and dtype")
    spans.append((offsets[0], offsets[1]))
    return TensorInfo(name=name, dtype=dtype, shape=tuple(shape))
