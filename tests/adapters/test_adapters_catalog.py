"""Base-model resolution: the packaged default offline, local folders, hub ids offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deskpilot.adapters.catalog import PACKAGED_ENCODER, resolve
from deskpilot.errors import ModelNotFoundError

OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json
    from deskpilot.adapters.catalog import resolve
    from deskpilot.adapters.encoding import embed, load_encoder, load_tokenizer, tokenize

    base = resolve(None)
    tokenizer = load_tokenizer(base)
    encoder = load_encoder(base)
    vectors = embed(encoder, tokenizer, tokenize(tokenizer, ["my vpn drops every morning"], 128))
    print(json.dumps({"name": base.name, "path": str(base.path), "shape": list(vectors.shape),
                      "norm": float(vectors.norm(dim=-1)[0])}))
    """
)


@pytest.mark.integration
@pytest.mark.slow
def test_packaged_default_resolves_and_embeds_fully_offline(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf-home"),  # an empty cache: nothing may come from it
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", OFFLINE_SCRIPT],  # as strict as pyproject
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["name"] == PACKAGED_ENCODER
    assert (Path(out["path"]) / "config.json").is_file()
    assert out["shape"] == [1, 384]
    assert out["norm"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("alias", [None, "", "default", "minilm", "all-MiniLM-L6-v2"])
def test_aliases_name_the_packaged_default(alias: str | None) -> None:
    base = resolve(alias)
    assert base.name == PACKAGED_ENCODER
    assert (base.path / "config.json").is_file()


def test_local_folder_resolves_to_its_absolute_path(tiny_dir: Path) -> None:
    base = resolve(str(tiny_dir))
    assert base.path == tiny_dir.resolve()
    assert base.name == str(tiny_dir.resolve())


def test_missing_local_folder_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as err:
        resolve(str(missing))
    assert str(missing) in str(err.value)
    assert "does not exist" in str(err.value)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as err:
        resolve(str(folder))
    assert "config.json" in str(err.value)
    assert str(folder) in str(err.value)


def test_unknown_hub_id_offline_says_which_and_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_id = "deskpilot-tests/no-such-encoder-3f9c"
    with pytest.raises(ModelNotFoundError) as err:
        resolve(model_id)
    assert model_id in err.value.message
    assert "HF_HUB_OFFLINE" in err.value.message
    assert err.value.hint is not None
    assert f"hf download {model_id}" in err.value.hint
    assert "local folder" in err.value.hint
