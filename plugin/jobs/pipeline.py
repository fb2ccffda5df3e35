"""The handlers: classify and route a ticket; deliver one outbox action.

Each reads in one short transaction, does its slow part (models, HTTP) outside any
transaction, and writes its results together with the job's completion in another.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from deskpilot.errors import ActionError, AdapterNotFoundError
from deskpilot.logs import bind_tenant
from deskpilot.policy import Policy
from deskpilot.redaction import scrub
from deskpilot.store import workflow
from deskpilot.tasks.route import matching_overrides, plan_actions, route
from deskpilot.telemetry import count_decisions
from deskpilot.types import Prediction, RouteDecision

from .base import JobRun, PermanentJobError
from .context import WorkerContext

logger = logging.getLogger("deskpilot.jobs")

DECIDED = ("routed", "triage")
ACTOR = "deskpilot-worker"


def no_policy(
    context: WorkerContext, tenant: str, *, of: str = "tenant", fix: str = "write"
) -> PermanentJobError:
    """The job cannot go on until a person fixes the tenant's policy file: say which and how."""
    problem = context.policies.error(tenant)
    path = context.settings.policies_dir / f"{tenant}.yaml"
    return PermanentJobError(
        f"no usable routing policy for {of} {tenant!r}"
        + (f": {problem}" if problem else f": {fix} {path}")
        + "; then retry the job (`deskpilot jobs retry ID`)"
    )


def _explanation(
    prediction: Prediction, similar: list[dict[str, Any]] | None, *, pii: bool = False
) -> dict[str, Any]:
    """What is stored beside the decision. The similar tickets are other people's words: shown in
    the API and the console, so secrets are masked and, with ``redact_pii``, personal data too."""
    shown = [
        {**row, "text": scrub(row["text"], pii=pii)} if isinstance(row.get("text"), str) else row
        for row in similar or []
    ]
    return {
        "alternatives": [{"label": a.label, "score": round(a.score, 4)} for a in prediction.alternatives],
        "reason": prediction.reason,
        "similar": shown,
    }


def _note(decisions: Sequence[RouteDecision], predictions: Mapping[str, Prediction]) -> str:
    """The decision in a sentence or two, for an internal comment in the outside system."""
    parts: list[str] = []
    for d in decisions:
        p = predictions.get(d.task)
        if d.overrides:
            parts.append(f"{d.task}: {d.label} (rule {', '.join(d.overrides)})")
        elif d.abstained or d.label is None:
            guess = f"; best guess {p.label} at {p.score:.2f}" if p is not None else ""
            parts.append(f"{d.task}: not sure, sent to triage{guess}")
        else:
            score = f" at {p.score:.2f}" if p is not None else ""
            version = f", model {p.adapter_version}" if p is not None else ""
            parts.append(f"{d.task}: {d.label}{score}{version}")
    alternatives = [
        f"{d.task} alternatives: " + ", ".join(f"{a.label} {a.score:.2f}" for a in p.alternatives[:3])
        for d in decisions
        if (p := predictions.get(d.task)) is not None and p.alternatives and not d.overrides
    ]
    return (
        "deskpilot routed this ticket. "
        + "; ".join(parts)
        + (". " + "; ".join(alternatives) if alternatives else "")
    )


def _predict(
    context: WorkerContext, tenant: str, tasks: Sequence[str], text: str
) -> dict[str, tuple[Prediction, list[dict[str, Any]] | None] | AdapterNotFoundError]:
    """Each task's prediction with the most similar training tickets (an explanation aid).

    A predictor with ``explain`` (the engine) answers every task in one pass; any other
    :class:`~deskpilot.tasks.classify.Predictor` is asked task by task (and ``similar``, where
    it has one).
    """
    predictor = context.predictor()
    out: dict[str, tuple[Prediction, list[dict[str, Any]] | None] | AdapterNotFoundError] = {}
    explain = getattr(predictor, "explain", None)
    if callable(explain) and tasks:
        answers: dict[str, Any] = explain(tenant, list(tasks), text, k=3)
        for task in tasks:
            answer = answers[task]
            if isinstance(answer, AdapterNotFoundError):
                out[task] = answer
            elif isinstance(answer, Exception):
                raise answer
            else:
                out[task] = (answer[0], answer[1])
        return out
    for task in tasks:
        try:
            out[task] = (predictor.predict(tenant, task, [text])[0], _similar(predictor, tenant, task, text))
        except AdapterNotFoundError as exc:
            out[task] = exc
    return out


def _similar(predictor: Any, tenant: str, task: str, text: str) -> list[dict[str, Any]] | None:
    finder = getattr(predictor, "similar", None)
    if not callable(finder):
        return None
    try:
        found: list[dict[str, Any]] = finder(tenant, task, text, k=3)
    except Exception:  # an explanation must never fail a ticket
        logger.warning("similar-ticket lookup failed for %s/%s", tenant, task, exc_info=True)
        return None
    return found


def _draft(
    context: WorkerContext, tenant: str, policy: Policy, decisions: Sequence[RouteDecision], text: str
) -> dict[str, Any] | None:
    """A suggested reply when the policy asks for one for this ticket's class; never fails a ticket."""
    spec = policy.respond
    if spec is None:
        return None
    labels = {d.task: (None if d.abstained else d.label) for d in decisions}
    task = spec.task or next(iter(policy.tasks))
    label = spec.drafts_for(labels, next(iter(policy.tasks)))
    if label is None:
        return None
    try:
        draft = context.responders().respond(tenant, text, task=spec.responder, label=label)
    except Exception as exc:  # a draft is a courtesy: routing goes on without one
        logger.warning("no draft for a %s ticket of %s", label, tenant, exc_info=True)
        return {"task": task, "text": None, "reason": f"the responder failed: {exc}", "mode": "none"}
    return {
        "task": task,
        "text": draft.text,
        "mode": draft.mode,
        "confidence": round(draft.confidence, 4),
        "sources": list(draft.sources),
        "reason": draft.reason,
        "adapter_version": draft.adapter_version,
        # a tenant's policy may allow sending drafts of some classes to the customer
        "send_to_customer": draft.text is not None and label in spec.send_to_customer,
    }


def process_ticket(context: WorkerContext, run: JobRun) -> None:
    ticket_id = int(run.payload["ticket_id"])
    database = context.database
    with database.session() as session:
        record = workflow.get_ticket(session, run.tenant_id, ticket_id)
        if record is None or record.state in DECIDED:
            run.finish(session, {"ticket_id": ticket_id, "state": record.state if record else "deleted"})
            return
        tenant = workflow.tenant_slug(session, run.tenant_id)
        bind_tenant(tenant)
        ticket = workflow.ticket_of(record)
        external_id = record.external_id
        record.state = "processing"

    policy = context.policies.get(tenant)
    if policy is None:
        raise no_policy(context, tenant)
    predictions: dict[str, Prediction] = {}
    explanations: dict[str, dict[str, Any]] = {}
    overridden = matching_overrides(policy, ticket)
    # a rule decides an overridden task: the model is not asked (and not loaded)
    asked = [task for task in policy.tasks if task not in overridden]
    for task, answer in _predict(context, tenant, asked, ticket.text).items():
        if isinstance(answer, AdapterNotFoundError):
            explanations[task] = {"error": answer.message}
            continue
        prediction, similar = answer
        predictions[task] = prediction
        explanations[task] = _explanation(prediction, similar, pii=context.settings.redact_pii)
    decisions = route(policy, ticket, predictions)
    draft = _draft(context, tenant, policy, decisions, ticket.text)
    planned = plan_actions(
        policy, tenant, ticket_id, external_id, decisions, decision_key=f"{tenant}:ticket:{ticket_id}"
    )
    action_context: dict[str, Any] = {
        "note": _note(decisions, predictions),
        "ticket_metadata": dict(ticket.metadata),
        "decisions": [
            {
                "task": d.task,
                "label": d.label,
                "score": round(predictions[d.task].score, 4) if d.task in predictions else None,
                "abstained": d.abstained,
            }
            for d in decisions
        ],
        "triage": any(d.abstained for d in decisions),
    }
    if draft is not None:
        explanations.setdefault(draft["task"], {})["draft"] = draft
        action_context["draft"] = draft
        if draft["text"]:
            action_context["note"] += (
                f"\n\nSuggested reply (confidence {draft['confidence']:.2f}):\n{draft['text']}"
            )
    actions = [replace(action, context=action_context) for action in planned]

    with database.session() as session:
        record = workflow.lock_ticket(session, ticket_id)
        if record is None or record.state in DECIDED:  # another worker got there first
            run.finish(session, {"ticket_id": ticket_id, "state": record.state if record else "deleted"})
            return
        decision_ids, job_ids = workflow.record_decisions(
            session,
            record,
            decisions,
            predictions,
            actions,
            explanations,
            actor=ACTOR,
            max_attempts=context.settings.job_max_attempts,
        )
        run.finish(
            session,
            {"ticket_id": ticket_id, "state": record.state, "decisions": decision_ids, "jobs": job_ids},
        )
    count_decisions("tickets", decisions, predictions)  # committed: counted once
    run.follow_ups.extend(job_ids)  # delivered next by this worker: see JobRun.follow_ups


def deliver_action(context: WorkerContext, run: JobRun) -> None:
    outbox_id = int(run.payload["outbox_id"])
    database = context.database
    with database.session() as session:
        row = workflow.get_outbox(session, outbox_id)
        if row is None or row.state != "pending":
            run.finish(session, {"outbox_id": outbox_id, "state": row.state if row else "deleted"})
            return
        action = workflow.action_of(session, row)

    policy = context.policies.get(action.tenant)
    system = policy.systems.get(action.system) if policy is not None else None
    try:
        if system is None:
            raise PermanentJobError(
                f"the routing policy of tenant {action.tenant!r} has no system {action.system!r} any more"
            )
        client = context.client(system.connector, system.url, system.credentials, system.options)
        response = client.act(action)
    except (ActionError, PermanentJobError) as exc:
        transient = isinstance(exc, ActionError) and exc.transient
        with database.session() as session:
            row = workflow.get_outbox(session, outbox_id, lock=True)
            if row is not None and row.state == "pending":
                workflow.mark_outbox(
                    session,
                    row,
                    done=False,
                    actor=ACTOR,
                    error=scrub(str(exc), pii=context.settings.redact_pii),
                    dead=not transient or run.attempts >= run.max_attempts,
                )
        raise

    with database.session() as session:
        run.finish(session, {"outbox_id": outbox_id, "response": response})
        row = workflow.get_outbox(session, outbox_id, lock=True)
        if row is not None and row.state == "pending":
            workflow.mark_outbox(session, row, done=True, actor=ACTOR, response=response)
