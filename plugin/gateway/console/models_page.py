"""Models: each task's adapter versions, how the champion does, and retrain / promote / roll back.

Only leads and admins see the buttons, and the server refuses the actions to anyone else.
Promote and roll back switch the registry's champion pointer and mirror the switch into the
database with its audit entry (as ``deskpilot adapters promote`` does); a failed mirror puts
the pointer back. Retrain queues the same ``retrain`` job as ``deskpilot retrain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from deskpilot.adapters.registry import TRAIN_ROWS, AdapterCard, Registry, check_name
from deskpilot.config import Settings
from deskpilot.errors import ConflictError, DeskpilotError, NotFoundError
from deskpilot.gateway.console import svg
from deskpilot.gateway.console.auth import FormDep, IdentityDep, ManagerDep
from deskpilot.gateway.console.labels import registry_of
from deskpilot.gateway.console.templating import render
from deskpilot.gateway.deps import DatabaseDep, JobNotifierDep, SettingsDep, db_session, notify_jobs
from deskpilot.jobs.triggers import enqueue_retrain, retrain_state
from deskpilot.store import Database, list_adapter_records, queue, review
from deskpilot.store.champions import json_safe, record_champion
from deskpilot.store.models import JobRecord
from deskpilot.store.users import ConsoleIdentity
from deskpilot.store.workflow import RETRAIN, audit, count_feedback

router = APIRouter(prefix="/console", include_in_schema=False)

TaskName = Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
JobId = Annotated[int, Path(ge=1, le=2**62)]


@dataclass
class ClassRow:
    label: str
    train_rows: int | None
    threshold: float | None
    card_precision: float | None
    card_coverage: float | None
    served: int
    coverage: float | None
    judged: int
    precision: float | None


@dataclass
class TaskView:
    task: str
    versions: list[AdapterCard] = field(default_factory=list)
    champion: str | None = None
    statuses: dict[str, str] = field(default_factory=dict)
    classes: list[ClassRow] = field(default_factory=list)
    reliability: Any = None
    reliability_source: str = ""
    ece: float | None = None
    feedback_new: int = 0
    feedback_total: int = 0
    job: JobRecord | None = None
    can_rollback: bool = False


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _card_per_class(card: AdapterCard) -> dict[str, dict[str, Any]]:
    """Per-class figures a card may carry (an evaluation's ``per_class``), else nothing."""
    for part in ("eval", "validation", "gate"):
        section = card.metrics.get(part)
        per_class = section.get("per_class") if isinstance(section, dict) else None
        if isinstance(per_class, dict):
            return per_class
    return {}


def _card_bins(card: AdapterCard) -> list[svg.Bin]:
    """Reliability bins a card may carry (``metrics.validation.reliability``: low, high, ...)."""
    raw = card.metrics.get("validation", {}).get("reliability") if isinstance(card.metrics, dict) else None
    if not isinstance(raw, list):
        return []
    bins = []
    for item in raw:
        try:
            bins.append(
                svg.Bin(
                    float(item["low"]),
                    float(item["high"]),
                    float(item["mean_score"]),
                    float(item["accuracy"]),
                    int(item["count"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            return []
    return bins


def _classes(card: AdapterCard | None, served: dict[str, review.ServedClass]) -> list[ClassRow]:
    labels = sorted(set(card.labels if card else []) | set(served))
    counts = card.extra.get("label_counts", {}) if card else {}
    per_class_thresholds = card.thresholds.get("per_class", {}) if card else {}
    default = card.thresholds.get("default") if card else None
    from_card = _card_per_class(card) if card else {}
    rows = []
    for label in labels:
        s = served.get(label, review.ServedClass())
        figures = from_card.get(label, {})
        threshold = per_class_thresholds.get(label, default)
        rows.append(
            ClassRow(
                label=label,
                train_rows=counts.get(label) if isinstance(counts.get(label), int) else None,
                threshold=float(threshold) if isinstance(threshold, int | float) else None,
                card_precision=figures.get("precision"),
                card_coverage=figures.get("coverage"),
                served=s.served,
                coverage=_ratio(s.covered, s.served),
                judged=s.judged,
                precision=_ratio(s.right, s.judged),
            )
        )
    return rows


def _latest_retrain(database_session: Any, tenant_id: int, task: str) -> JobRecord | None:
    jobs = queue.list_jobs(database_session, tenant_id=tenant_id, kind=RETRAIN, limit=50)
    return next((j for j in jobs if j.payload.get("task") == task), None)


def _load(registry: Registry, database: Database, identity: ConsoleIdentity) -> list[TaskView]:
    with db_session(database) as session:
        names = set(review.tasks(session, identity.tenant_id))
        names.update(registry.tasks(identity.tenant))
        statuses: dict[str, dict[str, str]] = {}
        for record in list_adapter_records(session, identity.tenant):
            statuses.setdefault(record.task, {})[record.version] = record.status
        views = []
        for task in sorted(names):
            view = TaskView(task=task, statuses=statuses.get(task, {}))
            try:
                view.versions = registry.versions(identity.tenant, task)
                view.champion = registry.champion_version(identity.tenant, task)
            except (DeskpilotError, OSError, ValueError):
                pass
            card = next((c for c in view.versions if c.version == view.champion), None)
            view.classes = _classes(card, review.served_by_class(session, identity.tenant_id, task))
            bins = _card_bins(card) if card else []
            view.reliability_source = "validation rows (card.json)"
            if not bins:
                judged = review.judged_decisions(session, identity.tenant_id, task)
                bins = svg.reliability_bins([(j.score, j.correct) for j in judged])
                view.reliability_source = f"{len(judged)} decisions people confirmed or changed"
            view.reliability = svg.reliability_plot(bins, f"Reliability of {task}")
            view.ece = svg.expected_calibration_error(bins)
            state = retrain_state(session, identity.tenant_id, task)
            view.feedback_new = count_feedback(
                session, identity.tenant_id, task, after_id=state.consumed_upto
            )
            view.feedback_total = count_feedback(session, identity.tenant_id, task)
            view.job = _latest_retrain(session, identity.tenant_id, task)
            view.can_rollback = len(view.versions) > 1 and view.champion is not None
            views.append(view)
        return views


@router.get("/models")
async def models_page(request: Request, identity: IdentityDep, database: DatabaseDep) -> Response:
    views = await run_in_threadpool(_load, registry_of(request), database, identity)
    return render(request, "models.html", {"tasks": views, "message": request.query_params.get("done")})


# actions ---------------------------------------------------------------------------------


def _mirror(
    database: Database, identity: ConsoleIdentity, card: AdapterCard, kind: str, previous: str | None
) -> None:
    with db_session(database) as session:
        record_champion(session, card, kind=kind, actor=f"console:{identity.email}", previous=previous)


def change_champion(
    registry: Registry, database: Database, identity: ConsoleIdentity, task: str, version: str | None
) -> str:
    """Promote ``version`` (or roll back when None); returns the version now serving."""
    check_name("task", task)
    previous = registry.champion_version(identity.tenant, task)
    if version is None:
        serving = registry.rollback(identity.tenant, task)
        kind = "adapter.rolled_back"
    else:
        registry.promote(identity.tenant, task, version)
        serving, kind = version, "adapter.promoted"
    try:
        _mirror(database, identity, registry.card(identity.tenant, task, serving), kind, previous)
    except BaseException:
        if previous is not None and previous != serving:
            registry.promote(identity.tenant, task, previous)  # files and database agree again
        raise
    return serving


@router.post("/models/{task}/promote")
async def promote(
    request: Request, task: TaskName, identity: ManagerDep, form: FormDep, database: DatabaseDep
) -> Response:
    version = form.get("version")
    if not isinstance(version, str) or not version:
        raise NotFoundError("choose a version to promote")
    serving = await run_in_threadpool(
        change_champion, registry_of(request), database, identity, task, version
    )
    return RedirectResponse(f"/console/models?done=promoted+{task}+{serving}#task-{task}", status_code=303)


@router.post("/models/{task}/rollback")
async def rollback(
    request: Request, task: TaskName, identity: ManagerDep, form: FormDep, database: DatabaseDep
) -> Response:
    serving = await run_in_threadpool(change_champion, registry_of(request), database, identity, task, None)
    return RedirectResponse(
        f"/console/models?done=rolled+back+{task}+to+{serving}#task-{task}", status_code=303
    )


def request_retrain(
    registry: Registry, database: Database, settings: Settings, identity: ConsoleIdentity, task: str
) -> tuple[int, bool]:
    """The task's retrain job: a queued or running one, else a new one. (id, new)."""
    champion = registry.champion_version(identity.tenant, task)
    if champion is None:
        raise ConflictError(
            f"task {task!r} has no champion to retrain",
            hint=f"train one first: deskpilot train classifier --task {task} --data FILE",
        )
    if not (registry.path(identity.tenant, task, champion) / TRAIN_ROWS).is_file():
        raise ConflictError(
            f"{task} {champion} did not keep its training rows, so it cannot be retrained",
            hint=f"train it again: deskpilot train classifier --task {task} --data FILE",
        )
    with db_session(database) as session:
        pending = retrain_state(session, identity.tenant_id, task).pending
        if pending is not None:
            return pending, False
        job_id = enqueue_retrain(
            session, identity.tenant_id, task, settings, reason="console", requested_by=identity.email
        )
        audit(
            session,
            identity.tenant_id,
            "retrain.requested",
            f"console:{identity.email}",
            {"task": task, "job_id": job_id},
        )
        return job_id, True


@router.post("/models/{task}/retrain")
async def retrain(
    request: Request,
    task: TaskName,
    identity: ManagerDep,
    form: FormDep,
    database: DatabaseDep,
    settings: SettingsDep,
    notifier: JobNotifierDep,
    background: BackgroundTasks,
) -> Response:
    job_id, new = await run_in_threadpool(
        request_retrain, registry_of(request), database, settings, identity, task
    )
    if new:
        background.add_task(notify_jobs, notifier, [job_id])
    return RedirectResponse(f"/console/models?done=retrain+job+{job_id}+queued#task-{task}", status_code=303)


def _job(database: Database, identity: ConsoleIdentity, job_id: int) -> dict[str, Any]:
    with db_session(database) as session:
        job = queue.get_job(session, job_id, identity.tenant_id)
        if job is None:
            raise NotFoundError(f"no job {job_id} in your team")
        result = job.result or {}
        return {
            "id": job.id,
            "kind": job.kind,
            "state": job.state,
            "attempts": job.attempts,
            "progress": json_safe(dict(job.progress or {})),
            "promoted": result.get("promoted"),
            "reason": result.get("reason"),
            "error": job.last_error if job.state == "dead" else None,
        }


@router.get("/api/jobs/{job_id}")
async def job_status(job_id: JobId, identity: IdentityDep, database: DatabaseDep) -> JSONResponse:
    """What the models page polls every 2 s while a retrain runs."""
    body = await run_in_threadpool(_job, database, identity, job_id)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
