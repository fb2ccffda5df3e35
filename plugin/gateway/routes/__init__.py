"""One APIRouter per resource; :func:`deskpilot.gateway.app.create_app` includes them all."""

from __future__ import annotations

from deskpilot.gateway.routes import adapters, classify, health

routers = (health.router, classify.router, adapters.router)

__all__ = ["routers"]
