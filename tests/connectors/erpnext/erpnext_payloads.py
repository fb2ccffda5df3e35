"""Fixture loading for the ERPNext tests: the bytes Frappe would put on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "whsec-erpnext-0a1b2c3d4e5f"
API_USER = "deskpilot@example.com"


def payload(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    data.update(changes)
    return data


def wire(data: dict[str, Any]) -> bytes:
    """As Frappe sends it: ``json.dumps(data, default=str)`` (default separators, ASCII escapes)."""
    return json.dumps(data, default=str).encode("utf-8")


def body(name: str, **changes: Any) -> bytes:
    return wire(payload(name, **changes))
