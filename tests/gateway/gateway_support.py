"""Test doubles and assertions shared by the gateway tests (a module, not fixtures, to type them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from deskpilot.errors import AdapterNotFoundError
from deskpilot.types import AdapterSummary, Alternative, Prediction

# (tenant, task) -> labels. Only acme has "intent" v1; only globex has "priority".
ADAPTERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("acme", "intent"): ("network", "billing", "access", "other"),
    ("globex", "intent"): ("hr", "it"),
    ("globex", "priority"): ("low", "high"),
}
KEYWORDS = {"vpn": "network", "invoice": "billing", "password": "access", "laptop": "it", "urgent": "high"}


class FakePredictor:
    """Deterministic stand-in for the serving Engine: keyword labels, 404 for unknown tasks."""

    def __init__(self, *, ready: bool = True) -> None:
        self.is_ready = ready
        self.calls: list[tuple[str, str, list[str], str | None, bool]] = []
        self.adapter_calls: list[str] = []
        self.closed = False

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        labels = ADAPTERS.get((tenant, task))
        if labels is None or version not in (None, "v1"):
            raise AdapterNotFoundError(f"no adapter for task {task!r} of tenant {tenant!r}")
        self.calls.append((tenant, task, list(texts), version, abstain))
        return [self._one(task, labels, text, abstain) for text in texts]

    @staticmethod
    def _one(task: str, labels: tuple[str, ...], text: str, abstain: bool) -> Prediction:
        hit = next((label for word, label in KEYWORDS.items() if word in text.lower()), None)
        label = hit if hit in labels else labels[-1]
        score = 0.9 if hit in labels else 0.4
        rest = [lab for lab in labels if lab != label]
        alternatives = tuple(Alternative(lab, round((1 - score) / (i + 2), 4)) for i, lab in enumerate(rest))
        return Prediction(
            label=label,
            score=score,
            abstained=abstain and score < 0.5,
            alternatives=alternatives,
            task=task,
            adapter_version="v1",
            threshold=0.5,
        )

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        self.adapter_calls.append(tenant)
        return [
            AdapterSummary(
                tenant=t,
                task=task,
                version="v1",
                champion=True,
                base_model="all-MiniLM-L6-v2",
                labels=labels,
                metrics={"accuracy": 0.9, "macro_f1": None},
                created_at="2025-01-01T00:00:00Z",
            )
            for (t, task), labels in ADAPTERS.items()
            if t == tenant
        ]

    def ready(self) -> bool:
        return self.is_ready

    def close(self) -> None:
        self.closed = True


@dataclass
class Keys:
    acme: str
    acme_read: str
    acme_write: str
    globex: str
    revoked: str


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class _Response(Protocol):
    """What the tests read from a response (TestClient may sit on httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Any: ...
    def json(self) -> Any: ...


def assert_error(response: _Response, status: int, code: str | None = None) -> dict[str, object]:
    """The response is ``status`` with the one JSON error shape; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "hint"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["hint"] is None or isinstance(error["hint"], str)
    if code is not None:
        assert error["code"] == code, error
    assert response.headers.get("x-request-id")
    return dict(error)
