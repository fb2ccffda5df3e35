"""The labels a person can choose for a task, and the adapter cards pages read."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastapi import Request
from sqlalchemy.orm import Session

from deskpilot.adapters.registry import AdapterCard, Registry
from deskpilot.config import Settings
from deskpilot.errors import DeskpilotError
from deskpilot.store import review
from deskpilot.store.users import ConsoleIdentity

logger = logging.getLogger("deskpilot.gateway")


def registry_of(request: Request) -> Registry:
    settings: Settings = request.app.state.settings
    return Registry(settings.adapters_dir)


def champion_card(registry: Registry, tenant: str, task: str) -> AdapterCard | None:
    try:
        return registry.card(tenant, task)
    except (DeskpilotError, OSError, ValueError):
        return None


def served_labels(request: Request, tenant: str, task: str) -> set[str]:
    """Labels the serving engine knows for the task; empty while it loads or if it fails."""
    predictor = getattr(request.app.state, "predictor", None)
    if predictor is None:
        return set()
    try:
        if not predictor.ready():
            return set()
        return {
            label
            for summary in predictor.adapters(tenant)
            if summary.tenant == tenant and summary.task == task
            for label in summary.labels
        }
    except Exception:  # a label list is a convenience: never fail a page for it
        logger.warning("could not list the adapters of %s", tenant, exc_info=True)
        return set()


def known_labels(
    request: Request, session: Session, identity: ConsoleIdentity, task: str, extra: Iterable[str] = ()
) -> list[str]:
    """The champion card's labels, the engine's, and every label decisions and corrections used."""
    labels = set(review.decided_labels(session, identity.tenant_id, task)) | set(extra)
    card = champion_card(registry_of(request), identity.tenant, task)
    if card is not None:
        labels.update(card.labels)
    labels.update(served_labels(request, identity.tenant, task))
    return sorted(label for label in labels if label)
