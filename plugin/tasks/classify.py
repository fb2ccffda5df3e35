"""Classification over a :class:`Predictor`: the seam between the core and the models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from deskpilot.errors import InputDataError
from deskpilot.types import AdapterSummary, Prediction


class Predictor(Protocol):
    """What serving engines (``deskpilot.adapters.serving.Engine``) offer the core."""

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]: ...

    def adapters(self, tenant: str) -> list[AdapterSummary]: ...

    def ready(self) -> bool: ...


def classify(
    predictor: Predictor,
    tenant: str,
    task: str,
    texts: Sequence[str],
    *,
    max_texts: int,
    max_chars: int,
    version: str | None = None,
    abstain: bool = True,
) -> list[Prediction]:
    """Validate a request and classify it; limits come from settings."""
    if not texts:
        raise InputDataError("'texts' is empty: send at least one text")
    if len(texts) > max_texts:
        raise InputDataError(f"{len(texts)} texts in one request; the limit is {max_texts}")
    for i, text in enumerate(texts):
        if not text.strip():
            raise InputDataError(f"texts[{i}] is empty")
        if len(text) > max_chars:
            raise InputDataError(f"texts[{i}] has {len(text):,} characters; the limit is {max_chars:,}")
    return predictor.predict(tenant, task, texts, version=version, abstain=abstain)
