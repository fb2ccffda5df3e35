"""Slack test fixtures: the documented payloads and a running stand-in Slack."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.slack_standin import SlackStandin

FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def payload() -> Callable[[str], dict[str, Any]]:
    """A fresh copy of ``fixtures/<name>.json`` (see fixtures/README.md for the sources)."""
    return _load


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin(channels=("C0HELP", "C0OTHER")) as server:
        yield server
