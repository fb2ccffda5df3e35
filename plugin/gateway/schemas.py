"""Request and response bodies of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from deskpilot.types import AdapterSummary, Prediction

# Task names and versions end up in registry paths: the registry's own rules (adapters/registry.py),
# ASCII only ([0-9], never \d, which matches other scripts' digits too).
TASK_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
VERSION_PATTERN = r"v[0-9]{1,6}"
_NAMES = {
    "task": (
        re.compile(TASK_PATTERN),
        "1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
    ),
    "version": (re.compile(VERSION_PATTERN), "'v' and a number, e.g. v3"),
}


def _check_name(value: str | None, what: str) -> str | None:
    pattern, rule = _NAMES["version" if what == "version" else "task"]
    if value is not None and not pattern.fullmatch(value):
        raise ValueError(f"{what} must be {rule}")
    return value


def _check_text(text: str, where: str) -> None:
    # Lone surrogates and NUL pass JSON parsing but break encoders and databases later.
    if "\x00" in text:
        raise ValueError(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} is not valid Unicode (it contains a lone surrogate)") from None


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task": "intent", "texts": ["My VPN drops every hour", "Invoice 4411 is wrong"]},
                {"task": "intent", "text": "Cannot log in since the update", "abstain": False},
            ]
        },
    )

    task: str = Field(description="Task name, as trained with `deskpilot train classifier --task NAME`")
    texts: list[str] | None = Field(default=None, description="Texts to classify (send this or `text`)")
    text: str | None = Field(default=None, description="One text to classify (send this or `texts`)")
    version: str | None = Field(default=None, description="Adapter version; default: the champion")
    abstain: StrictBool = Field(default=True, description="Abstain below the adapter's stored thresholds")

    @field_validator("task")
    @classmethod
    def _task_name(cls, value: str) -> str:
        _check_name(value, "task")
        return value

    @field_validator("version")
    @classmethod
    def _version_name(cls, value: str | None) -> str | None:
        return _check_name(value, "version")

    @field_validator("texts")
    @classmethod
    def _texts_encodable(cls, value: list[str] | None) -> list[str] | None:
        for i, text in enumerate(value or ()):
            _check_text(text, f"texts[{i}]")
        return value

    @field_validator("text")
    @classmethod
    def _text_encodable(cls, value: str | None) -> str | None:
        if value is not None:
            _check_text(value, "text")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or ())


class AlternativeOut(BaseModel):
    label: str
    score: float


class ClassifyResult(BaseModel):
    label: str
    score: float = Field(description="Calibrated probability of `label`")
    abstained: bool = Field(description="True when the score is below the adapter's threshold")
    alternatives: list[AlternativeOut] = Field(description="Next most likely labels (at most 3)")
    adapter_version: str
    prediction_id: int | None = Field(
        description="Id of the stored prediction, for feedback; null if not stored"
    )

    @classmethod
    def build(cls, prediction: Prediction, prediction_id: int | None) -> ClassifyResult:
        top = sorted(prediction.alternatives, key=lambda a: a.score, reverse=True)[:3]
        return cls(
            label=prediction.label,
            score=prediction.score,
            abstained=prediction.abstained,
            alternatives=[AlternativeOut(label=a.label, score=a.score) for a in top],
            adapter_version=prediction.adapter_version,
            prediction_id=prediction_id,
        )


class ClassifyResponse(BaseModel):
    task: str
    results: list[ClassifyResult] = Field(description="One result per input text, in order")


class AdapterOut(BaseModel):
    tenant: str
    task: str
    version: str
    champion: bool
    base_model: str
    labels: list[str]
    metrics: dict[str, float | None]
    created_at: str

    @classmethod
    def build(cls, summary: AdapterSummary) -> AdapterOut:
        return cls(
            tenant=summary.tenant,
            task=summary.task,
            version=summary.version,
            champion=summary.champion,
            base_model=summary.base_model,
            labels=list(summary.labels),
            metrics=dict(summary.metrics),
            created_at=summary.created_at,
        )


class AdaptersResponse(BaseModel):
    adapters: list[AdapterOut]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    database: bool
    models: bool
    queue: bool = Field(
        description="embedded: the job table is readable and this process's worker threads run; "
        "celery: the broker answers"
    )
    detail: str | None = Field(default=None, description="What is not ready, when something is not")
