"""Settings: environment, TOML file, secrets refused outside development, cheap import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deskpilot.config import DEFAULT_SECRET, Settings, get_settings
from deskpilot.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DESKPILOT_ENV", "DESKPILOT_HOME", "DESKPILOT_CONFIG", "DESKPILOT_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESKPILOT_MAX_BATCH_TEXTS", "7")
    s = Settings()
    assert s.home == tmp_path / "home"
    assert s.max_batch_texts == 7
    assert s.db_url == f"sqlite:///{tmp_path / 'home' / 'deskpilot.db'}"
    assert s.adapters_dir == tmp_path / "home" / "adapters"


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "conf.toml"
    cfg.write_text('env = "development"\nmax_batch_texts = 11\nport = 9001\n', encoding="utf-8")
    monkeypatch.setenv("DESKPILOT_CONFIG", str(cfg))
    monkeypatch.setenv("DESKPILOT_PORT", "9002")
    s = Settings()
    assert (s.env, s.max_batch_texts, s.port) == ("development", 11, 9002)


def test_local_deskpilot_toml_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "deskpilot.toml").write_text("max_text_chars = 123\n", encoding="utf-8")
    assert Settings().max_text_chars == 123


def test_missing_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DESKPILOT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        get_settings()


def test_invalid_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKPILOT_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        get_settings()


def test_default_secret_refused_in_production() -> None:
    s = Settings(env="production")
    assert s.secret_key.get_secret_value() == DEFAULT_SECRET
    with pytest.raises(ConfigError, match="DESKPILOT_SECRET_KEY"):
        s.check_secrets()
    Settings(env="production", secret_key="a-long-random-value-1234567890").check_secrets()
    Settings(env="development").check_secrets()


def test_secret_is_not_shown_in_repr() -> None:
    s = Settings(secret_key="super-secret-value")
    assert "super-secret-value" not in repr(s)


def test_importing_deskpilot_loads_no_torch_or_fastapi() -> None:
    code = (
        "import sys, deskpilot, deskpilot.config, deskpilot.types, deskpilot.errors, deskpilot.dataio, "
        "deskpilot.tasks.classify, deskpilot.adapters, deskpilot.connectors, deskpilot.evaluation\n"
        "bad = [m for m in ('torch', 'transformers', 'peft', 'fastapi') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
