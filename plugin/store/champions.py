"""The database's record of a champion switch: the adapter row, the one-champion status, the audit.

The registry's ``champion.json`` decides what is served; this mirrors a switch made there
(``deskpilot adapters promote|rollback``, the console's Promote and Roll back) into the
``adapters`` table with its audit entry, in the caller's transaction.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from .repositories import get_or_create_tenant, set_champion, upsert_adapter
from .workflow import audit

if TYPE_CHECKING:
    from deskpilot.adapters.registry import AdapterCard


def json_safe(value: Any) -> Any:
    """Card metrics as plain JSON: NaN and infinities (undefined figures) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def record_champion(
    session: Session, card: AdapterCard, *, kind: str, actor: str, previous: str | None
) -> None:
    """``card``'s version is now the champion of its task; ``kind`` names the audit entry
    (``adapter.promoted`` or ``adapter.rolled_back``)."""
    upsert_adapter(
        session,
        card.tenant,
        card.task,
        card.version,
        kind=card.kind,
        base_model=card.base_model,
        metrics=json_safe(card.metrics),
        status="candidate",
    )
    set_champion(session, card.tenant, card.task, card.version)
    owner = get_or_create_tenant(session, card.tenant)
    audit(session, owner.id, kind, actor, {"task": card.task, "version": card.version, "previous": previous})
