"""The inbox: recent tickets and documents, where they went and how sure the model was.

Filters and search are GET query parameters, so a filtered view is a link people can share.
Blank form fields arrive as empty strings and mean "no filter".
"""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from deskpilot.errors import InputDataError
from deskpilot.gateway.console.auth import IdentityDep
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, db_session
from deskpilot.store import Database, review
from deskpilot.store.models import TICKET_STATES
from deskpilot.store.users import ConsoleIdentity

router = APIRouter(prefix="/console", include_in_schema=False)

Text = Annotated[str, Query(max_length=200)]
PAGE = 50


def _score(value: str, name: str) -> float | None:
    if not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise InputDataError(f"{name} must be a number from 0 to 1, not {value[:20]!r}", hint="e.g. 0.5")
    return number


def _day(value: str, name: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InputDataError(f"{name} must be a date like 2026-01-31, not {value[:20]!r}") from None


def _page(database: Database, identity: ConsoleIdentity, filters: review.InboxFilters) -> dict[str, object]:
    with db_session(database) as session:
        rows = review.inbox(session, identity.tenant_id, filters)
        return {
            "rows": rows,
            "sources": review.sources(session, identity.tenant_id),
            "labels": review.decided_labels(session, identity.tenant_id),
        }


@router.get("")
async def inbox(
    request: Request,
    identity: IdentityDep,
    database: DatabaseDep,
    q: Text = "",
    label: Text = "",
    source: Text = "",
    kind: Annotated[str, Query(pattern="^(|ticket|document)$")] = "",
    state: Text = "",
    min_score: Annotated[str, Query(alias="min", max_length=20)] = "",
    max_score: Annotated[str, Query(alias="max", max_length=20)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=20)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=20)] = "",
    abstained: Annotated[str, Query(max_length=5)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    if state and state not in TICKET_STATES:
        raise InputDataError(f"unknown state {state!r}", hint=f"one of {', '.join(TICKET_STATES)}")
    filters = review.InboxFilters(
        q=q.strip() or None,
        label=label or None,
        source=source or None,
        kind=kind or None,
        state=state or None,
        min_score=_score(min_score, "min"),
        max_score=_score(max_score, "max"),
        date_from=_day(date_from, "from"),
        date_to=_day(date_to, "to"),
        abstained_only=abstained in ("1", "on", "true"),
        before_id=before,
        limit=PAGE,
    )
    data = await run_in_threadpool(_page, database, identity, filters)
    rows = data["rows"]
    older = None
    if isinstance(rows, list) and len(rows) == PAGE:
        params = dict(request.query_params)
        params["before"] = str(rows[-1].id)
        older = "?" + urlencode(params)
    return render(
        request,
        "inbox.html",
        {
            **data,
            "f": {
                "q": q,
                "label": label,
                "source": source,
                "kind": kind,
                "state": state,
                "min": min_score,
                "max": max_score,
                "from": date_from,
                "to": date_to,
                "abstained": filters.abstained_only,
            },
            "states": TICKET_STATES,
            "older": older,
        },
    )
