"""Handlers for what people do in outside systems: corrections, and direct questions."""

from __future__ import annotations

import logging
from typing import Any

from deskpilot.errors import AdapterNotFoundError
from deskpilot.store import workflow
from deskpilot.tasks.feedback import labels_for_change, systems_of

from .base import JobRun, PermanentJobError
from .context import WorkerContext
from .triggers import maybe_enqueue_retrain

logger = logging.getLogger("deskpilot.jobs")

ACTOR = "deskpilot-worker"


def apply_feedback(context: WorkerContext, run: JobRun) -> None:
    """Record a correction (or a routed field a person changed) against its ticket."""
    kind, source, data = run.payload["kind"], run.payload["source"], dict(run.payload["event"])
    database = context.database
    with database.session() as session:
        tenant = workflow.tenant_slug(session, run.tenant_id)
    if kind == "feedback":
        pairs = [(str(data["task"]), str(data["label"]))]
    else:
        policy = context.policies.get(tenant)
        if policy is None:
            raise PermanentJobError(f"no routing policy for tenant {tenant!r}: cannot map a {source} change")
        pairs = labels_for_change(policy, source, str(data["field"]), str(data["value"]))
        if not pairs:
            with database.session() as session:
                run.finish(session, {"ignored": f"{data['field']}={data['value']} is no label of the policy"})
            return
    author = str(data.get("author") or source)
    retrain_jobs: list[int] = []
    result: dict[str, Any] = {"recorded": [], "unchanged": []}
    with database.session() as session:
        ticket = None
        if data.get("ticket_id"):
            ticket = workflow.get_ticket(session, run.tenant_id, int(data["ticket_id"]))
        elif data.get("external_id"):
            ticket = workflow.find_ticket(session, run.tenant_id, source, str(data["external_id"]))
        if ticket is None:
            run.finish(session, {"ignored": f"no ticket from {source} with id {data.get('external_id')}"})
            return
        latest = {d.task: d for d in workflow.decisions_for(session, ticket.id)}
        for task, label in dict.fromkeys(pairs):
            decision = latest.get(task)
            if decision is not None and decision.label == label and not decision.abstained:
                result["unchanged"].append(task)  # our own change echoed back, or a confirmation
                continue
            if workflow.has_feedback(session, ticket.id, task, label, author):
                result["unchanged"].append(task)  # one edit reported as two field changes
                continue
            row = workflow.record_feedback(
                session, tenant, task=task, label=label, author=author, ticket_id=ticket.id, source=source
            )
            result["recorded"].append({"task": task, "label": label, "feedback_id": row.id})
            job = maybe_enqueue_retrain(session, run.tenant_id, task, context.settings)
            if job is not None:
                retrain_jobs.append(job)
        run.finish(session, {**result, "ticket_id": ticket.id, "retrain_jobs": retrain_jobs})
    if retrain_jobs and context.notifier is not None:
        context.notifier.notify(retrain_jobs)


def _answer(context: WorkerContext, tenant: str, text: str, tasks: list[str]) -> str:
    predictor = context.predictor()
    lines = []
    for task in tasks:
        try:
            p = predictor.predict(tenant, task, [text])[0]
        except AdapterNotFoundError:
            lines.append(f"{task}: no model yet")
            continue
        verdict = "not sure" if p.abstained else p.label
        others = ", ".join(f"{a.label} {a.score:.2f}" for a in p.alternatives[:2])
        lines.append(f"{task}: {verdict} ({p.label} {p.score:.2f}; then {others})")
    return "\n".join(lines)


def answer_query(context: WorkerContext, run: JobRun) -> None:
    """Classify a person's question with every task of the policy and answer where asked."""
    source, data = run.payload["source"], dict(run.payload["event"])
    with context.database.session() as session:
        tenant = workflow.tenant_slug(session, run.tenant_id)
    policy = context.policies.get(tenant)
    if policy is None:
        raise PermanentJobError(f"no routing policy for tenant {tenant!r}")
    names = sorted(systems_of(policy, source))
    if not names:
        raise PermanentJobError(f"the policy of tenant {tenant!r} has no {source} system to answer through")
    system = policy.systems[names[0]]
    client = context.client(system.connector, system.url, system.credentials, system.options)
    reply = getattr(client, "reply", None)
    if not callable(reply):
        raise PermanentJobError(f"the {source} connector cannot answer questions")
    text = _answer(context, tenant, str(data["text"]), list(policy.tasks))
    response = reply(str(data["reply_url"]), {"response_type": "ephemeral", "text": text})
    with context.database.session() as session:
        run.finish(session, {"answered": True, "response": response})
