"""Settings from ``DESKPILOT_*`` environment variables and an optional TOML file.

Nothing is read at import time: call :func:`get_settings`. The TOML file is
``$DESKPILOT_CONFIG`` if set, else ``deskpilot.toml`` in the working directory if present.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from deskpilot.errors import ConfigError

DEFAULT_SECRET = "change-me"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "deskpilot"


def _config_file() -> Path | None:
    explicit = os.environ.get("DESKPILOT_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"DESKPILOT_CONFIG points at {path}, which is not a file")
        return path
    local = Path("deskpilot.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DESKPILOT_", extra="ignore", validate_default=True)

    env: Literal["development", "test", "production"] = "production"
    home: Path = Field(default_factory=_default_home)
    data_dir: Path | None = None
    database_url: str | None = None
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)

    # models
    base_model: str = DEFAULT_ENCODER
    model_cache: Path | None = None
    device: str = "cpu"
    bf16: Literal["auto", "on", "off"] = "auto"
    threads: int | None = None
    # servers let glibc keep freed memory for the next pass (adapters/hardware.tune_malloc)
    malloc_tuning: bool = True

    # classification
    target_precision: float = Field(default=0.9, ge=0.0, le=1.0)
    max_text_chars: int = Field(default=20_000, ge=1)
    max_line_bytes: int = Field(default=1_000_000, ge=1)
    max_adapters_resident: int = Field(default=64, ge=1)
    engine_batch_texts: int = Field(default=64, ge=1)
    engine_max_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)

    # responders: the generator base (packaged SmolLM2 by default; any causal LM id or folder)
    # and, optionally, a LangChain chat model used instead of it: "package.module:factory",
    # a callable returning a BaseChatModel (a hosted model, say)
    generator_model: str = "default"
    responder_task: str = "reply"
    responder_chat_model: str | None = None
    responder_max_new_tokens: int = Field(default=80, ge=1, le=1024)

    # gateway
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_batch_texts: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    record_predictions: bool = True
    default_tenant: str = "default"

    # operations: logs (json: one object per line, for production log shippers), personal data
    # in logs and stored previews, and who may read /metrics (unset: loopback clients only)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    redact_pii: bool = False
    metrics_token: SecretStr | None = None

    # webhooks and outside systems. Secrets are keyed by tenant ("acme") or by tenant and
    # source ("acme/zendesk", the more specific wins); connector credentials by the name a
    # policy's ``systems.<name>.credentials`` gives. Set them as JSON objects in the env.
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_tolerance_s: int = Field(default=300, ge=1, le=3600)
    connector_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    connector_timeout_s: float = Field(default=10.0, gt=0, le=300)
    policy_dir: Path | None = None

    # abuse limits ("N/second|minute|hour|day"; "" or "0" disables one): per API key, per
    # webhook source (tenant + system [+ route]), and per client IP for failed authentications
    # (checked before the key lookup). Counters live in memory, or in Redis for several
    # gateway processes ("redis://host:6379/0").
    rate_limit_per_key: str = "600/minute"
    rate_limit_webhook: str = "1200/minute"
    rate_limit_auth_failures: str = "30/minute"
    rate_limit_storage_url: str = "memory://"
    # adapter uploads (POST /v1/adapters/{task}) must be signed with the tenant's key: a JSON
    # object tenant -> secret (`deskpilot adapters sign DIR --tenant T` prints the signature)
    adapter_signing_keys: dict[str, SecretStr] = Field(default_factory=dict)
    adapter_upload_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)

    # jobs
    queue_backend: Literal["embedded", "celery"] = "embedded"
    broker_url: str = "redis://127.0.0.1:6379/0"
    workers: int = Field(default=1, ge=0, le=64)
    job_lease_s: float = Field(default=120.0, ge=1.0)
    job_max_attempts: int = Field(default=5, ge=1, le=100)
    job_backoff_s: float = Field(default=2.0, ge=0.0)
    job_backoff_max_s: float = Field(default=300.0, ge=0.0)
    job_poll_s: float = Field(default=0.2, gt=0.0, le=60.0)

    # documents (uploads, email attachments): what one file may cost; see documents/model.py
    doc_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    doc_max_pages: int = Field(default=200, ge=1)
    doc_max_depth: int = Field(default=3, ge=0, le=20)
    doc_max_attachments: int = Field(default=50, ge=1)
    doc_max_unpacked_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    doc_max_compression_ratio: float = Field(default=200.0, ge=2.0)
    doc_ocr_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    doc_max_files: int = Field(default=20, ge=1, le=1000)  # files in one upload request
    doc_max_image_pixels: int = Field(default=60_000_000, ge=1)
    doc_max_text_chars: int = Field(default=2_000_000, ge=1)

    # feedback and retraining: a challenger is promoted only if it is not worse than the
    # champion by more than these margins (macro-F1 and accuracy on covered predictions)
    retrain_after_corrections: int = Field(default=0, ge=0)
    retrain_interval_minutes: float = Field(default=0.0, ge=0.0)
    promotion_margin_f1: float = Field(default=0.0, ge=0.0, le=1.0)
    promotion_margin_covered_accuracy: float = Field(default=0.0, ge=0.0, le=1.0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("home", "data_dir", "model_cache", "policy_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    # derived locations -------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'deskpilot.db'}"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def policies_dir(self) -> Path:
        return self.policy_dir or self.home / "policies"

    def adapter_signing_key(self, tenant: str) -> str | None:
        secret = self.adapter_signing_keys.get(tenant)
        return secret.get_secret_value() or None if secret is not None else None

    def webhook_secret(self, tenant: str, source: str) -> str | None:
        secret = self.webhook_secrets.get(f"{tenant}/{source}") or self.webhook_secrets.get(tenant)
        return secret.get_secret_value() if secret is not None else None

    @property
    def documents_dir(self) -> Path:
        """The content-addressed originals of received documents."""
        return self.home / "documents"

    @property
    def cache_dir(self) -> Path:
        return self.model_cache or self.home / "models"

    @property
    def is_development(self) -> bool:
        return self.env in ("development", "test")

    def evaluation_data_dir(self) -> Path | None:
        """``DESKPILOT_DATA_DIR`` or ``../shared/data`` beside the project, if it exists."""
        if self.data_dir is not None:
            return self.data_dir if self.data_dir.is_dir() else None
        candidate = Path(__file__).resolve().parents[2] / "shared" / "data"
        return candidate if candidate.is_dir() else None

    def check_secrets(self) -> None:
        """Refuse default secrets outside development (called by servers, not by import)."""
        if self.is_development:
            return
        if self.secret_key.get_secret_value() in ("", DEFAULT_SECRET):
            raise ConfigError(
                "DESKPILOT_SECRET_KEY is unset or the default",
                hint="set DESKPILOT_SECRET_KEY to a long random value, or DESKPILOT_ENV=development "
                "for a local trial",
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}", hint="check DESKPILOT_* variables and the TOML file"
        ) from None
    except Exception as exc:  # TOML syntax errors
        raise ConfigError(f"invalid settings: {' '.join(str(exc).split())}") from None
