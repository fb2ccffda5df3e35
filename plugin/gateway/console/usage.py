"""Usage: volumes, abstain rate, accuracy measured from corrections, and label drift.

Accuracy counts a judged decision as right when the person's label is the model's top
label (confirmations included), per day of the correction. Drift compares the shares of
predicted labels in the period with the shares in the champion's training data (its card's
``label_counts``) by total variation distance: half the sum of the absolute differences,
0 for the same mix, 1 for disjoint ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from deskpilot.adapters.registry import Registry
from deskpilot.gateway.console import svg
from deskpilot.gateway.console.auth import IdentityDep
from deskpilot.gateway.console.labels import champion_card, registry_of
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, db_session
from deskpilot.store import Database, review
from deskpilot.store.models import utcnow
from deskpilot.store.users import ConsoleIdentity

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class DriftRow:
    label: str
    served: int
    served_share: float
    train_share: float | None

    @property
    def change(self) -> float | None:
        return None if self.train_share is None else self.served_share - self.train_share


@dataclass(frozen=True, slots=True)
class Drift:
    task: str
    rows: list[DriftRow]
    tvd: float | None
    served: int


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def drift(task: str, served: dict[str, int], trained: dict[str, int] | None) -> Drift:
    served_shares = _shares(served)
    train_shares = _shares(trained) if trained else {}
    labels = sorted(set(served) | set(train_shares), key=lambda k: (-served.get(k, 0), k))
    rows = [
        DriftRow(
            label,
            served.get(label, 0),
            served_shares.get(label, 0.0),
            train_shares.get(label) if trained else None,
        )
        for label in labels
    ]
    tvd = total_variation(served_shares, train_shares) if served_shares and train_shares else None
    return Drift(task, rows, tvd, sum(served.values()))


def _load(registry: Registry, database: Database, identity: ConsoleIdentity, days: int) -> dict[str, Any]:
    since = utcnow() - timedelta(days=days)
    with db_session(database) as session:
        volumes = review.daily_volumes(session, identity.tenant_id, since)
        judged = review.judged_decisions(session, identity.tenant_id, since=since)
        drifts = []
        for task in review.tasks(session, identity.tenant_id):
            card = champion_card(registry, identity.tenant, task)
            counts = card.extra.get("label_counts") if card is not None else None
            trained = {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else None
            drifts.append(
                drift(task, review.predicted_label_counts(session, identity.tenant_id, task, since), trained)
            )
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for j in judged:
        per_day[j.day][0] += 1
        per_day[j.day][1] += int(j.correct)
    accuracy = sorted((d, right / n) for d, (n, right) in per_day.items())
    abstain = [(v.day, v.abstained / v.decided if v.decided else None) for v in volumes]
    decided = sum(v.decided for v in volumes)
    return {
        "days": days,
        "volumes": volumes,
        "tickets": sum(v.tickets for v in volumes),
        "decided": decided,
        "abstain_rate": sum(v.abstained for v in volumes) / decided if decided else None,
        "judged": len(judged),
        "accuracy": sum(j.correct for j in judged) / len(judged) if judged else None,
        "accuracy_by_day": accuracy,
        "plot": svg.line_chart(
            {"accuracy (from corrections)": accuracy, "abstain rate": abstain},
            f"Accuracy and abstain rate, last {days} days",
            "share",
        ),
        "drifts": drifts,
    }


@router.get("/usage")
async def usage_page(
    request: Request,
    identity: IdentityDep,
    database: DatabaseDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Response:
    data = await run_in_threadpool(_load, registry_of(request), database, identity, days)
    return render(request, "usage.html", data)
