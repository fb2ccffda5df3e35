"""One APIRouter per resource; :func:`deskpilot.gateway.app.create_app` includes them all."""

from __future__ import annotations

from deskpilot.gateway.routes import (
    adapters,
    classify,
    connector_webhooks,
    documents,
    feedback,
    health,
    jobs,
    keys,
    metrics,
    respond,
    tickets,
    webhooks,
)

routers = (
    health.router,
    classify.router,
    adapters.router,
    tickets.router,
    webhooks.router,  # before connector_webhooks: /webhooks/{tenant}/generic/{source} is its own
    documents.router,  # before connector_webhooks: /webhooks/{tenant}/email is its own
    connector_webhooks.router,
    feedback.router,
    jobs.router,
    respond.router,
    keys.router,
    metrics.router,
)

__all__ = ["routers"]
