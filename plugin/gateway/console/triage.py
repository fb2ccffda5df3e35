"""The triage queue: tickets the model abstained on, in the order that teaches it most.

Keyboard: j / k move between items, 1-9 pick a label, Enter records it (see triage.js).
Each label goes through the ticket page's feedback path and returns here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from deskpilot.gateway.console.auth import IdentityDep
from deskpilot.gateway.console.labels import known_labels
from deskpilot.gateway.console.ranking import Candidate, Ranked, rank
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, db_session
from deskpilot.store import Database, review
from deskpilot.store.users import ConsoleIdentity

router = APIRouter(prefix="/console", include_in_schema=False)

SHOWN = 50


@dataclass(frozen=True, slots=True)
class TriageItem:
    ticket: review.InboxRow
    decision: review.DecisionView
    ranked: Ranked
    choices: list[str]  # the model's guesses first (best first), then every other known label


def _scores(decision: review.DecisionView) -> list[float]:
    alternatives = decision.explanation.get("alternatives", [])
    rest = [
        float(a["score"])
        for a in alternatives
        if isinstance(a, dict) and isinstance(a.get("score"), int | float)
    ]
    return ([float(decision.score)] if decision.score is not None else []) + rest


def _choices(decision: review.DecisionView, known: list[str]) -> list[str]:
    guesses = [decision.predicted_label] if decision.predicted_label else []
    alternatives = sorted(
        (a for a in decision.explanation.get("alternatives", []) if isinstance(a, dict) and a.get("label")),
        key=lambda a: -float(a.get("score") or 0.0),
    )
    guesses += [str(a["label"]) for a in alternatives]
    ordered = list(dict.fromkeys(guesses))
    return ordered + [label for label in known if label not in ordered]


def _load(request: Request, database: Database, identity: ConsoleIdentity) -> dict[str, Any]:
    with db_session(database) as session:
        queue = review.triage_queue(session, identity.tenant_id)
        ranked = rank([Candidate(d.id, f"{t.subject}\n{t.body}", _scores(d)) for t, d in queue])
        by_key = {d.id: (t, d) for t, d in queue}
        known: dict[str, list[str]] = {}
        items = []
        for r in ranked[:SHOWN]:
            ticket, decision = by_key[r.key]
            if decision.task not in known:
                known[decision.task] = known_labels(request, session, identity, decision.task)
            items.append(TriageItem(ticket, decision, r, _choices(decision, known[decision.task])))
        return {"items": items, "total": len(queue)}


@router.get("/triage")
async def triage_page(request: Request, identity: IdentityDep, database: DatabaseDep) -> Response:
    data = await run_in_threadpool(_load, request, database, identity)
    return render(request, "triage.html", data)
