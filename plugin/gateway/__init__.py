"""HTTP gateway: FastAPI app over the classify task, the store and a Predictor."""

from __future__ import annotations

from deskpilot.gateway.app import create_app

__all__ = ["create_app"]
