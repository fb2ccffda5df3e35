"""The handler that classifies a received document, reads its key fields and files it in the ERP.

Same shape as :func:`deskpilot.jobs.pipeline.process_ticket`: read in one short transaction,
run the model and the field rules outside any, write the decision, the outbox action and the
job's completion together. The delivery job that follows performs the ERP calls.
"""

from __future__ import annotations

from typing import Any

from deskpilot.documents.classify_text import classification_text
from deskpilot.documents.fields import extract_fields
from deskpilot.documents.originals import OriginalStore
from deskpilot.errors import AdapterNotFoundError
from deskpilot.store import workflow
from deskpilot.store.documents import get_document
from deskpilot.store.models import DocumentRecord, utcnow
from deskpilot.tasks.route_document import decide_document, document_action
from deskpilot.telemetry import count_decisions
from deskpilot.types import Prediction

from .base import JobRun
from .context import WorkerContext
from .pipeline import no_policy

ACTOR = "deskpilot-worker"
DONE = ("filed", "triage", "rejected")


def _note(filename: str, label: str | None, prediction: Prediction | None, fields: dict[str, Any]) -> str:
    if label is None:
        guess = (
            f" (best guess {prediction.label} at {prediction.score:.2f})" if prediction is not None else ""
        )
        head = f"deskpilot could not tell what {filename} is{guess}: please file it."
    else:
        head = f"deskpilot filed {filename} as {label}" + (
            f" at {prediction.score:.2f}, model {prediction.adapter_version}."
            if prediction is not None
            else "."
        )
    found = ", ".join(f"{name} {item['value']}" for name, item in fields.items())
    return head + (f" Fields read: {found}." if found else "")


def process_document(context: WorkerContext, run: JobRun) -> None:
    document_id = int(run.payload["document_id"])
    database = context.database
    with database.session() as session:
        doc = get_document(session, run.tenant_id, document_id)
        if doc is None or doc.state in DONE or doc.ticket_id is None:
            run.finish(session, {"document_id": document_id, "state": doc.state if doc else "deleted"})
            return
        tenant = workflow.tenant_slug(session, run.tenant_id)
        record = workflow.get_ticket(session, run.tenant_id, doc.ticket_id)
        text = record.body if record is not None else ""
        title_lines = [str(t) for t in (doc.meta or {}).get("title_lines", [])]
        info: dict[str, Any] = {
            "sha256": doc.sha256,
            "filename": doc.filename,
            "media_type": doc.media_type,
            "size": doc.size,
        }
        ticket_id = doc.ticket_id
        doc.state = "processing"

    policy = context.policies.get(tenant)
    if policy is None or policy.documents is None:
        raise no_policy(context, tenant, of="the documents of tenant", fix="add a 'documents:' section to")
    docs = policy.documents
    prediction: Prediction | None = None
    why_none = ""
    try:
        prediction = context.predictor().predict(tenant, docs.task, [classification_text(text, title_lines)])[
            0
        ]
    except AdapterNotFoundError as exc:
        why_none = exc.message
    decision = decide_document(docs, prediction, why_none)
    fields = {name: f.as_dict() for name, f in extract_fields(text, decision.label).items()}
    values = {name: item["value"] for name, item in fields.items()}
    path = OriginalStore(context.settings.documents_dir).path(info["sha256"])
    action_context: dict[str, Any] = {
        "document": {**info, "path": str(path), "id": document_id},
        "fields": values,
        "doctype": decision.label,
        "triage": decision.abstained or bool(decision.target.get("triage")),
        "note": _note(info["filename"], decision.label, prediction, fields),
    }
    action = document_action(policy, tenant, document_id, ticket_id, decision, action_context)
    explanation: dict[str, Any] = {"fields": fields}
    if prediction is not None:
        explanation["alternatives"] = [
            {"label": a.label, "score": round(a.score, 4)} for a in prediction.alternatives
        ]
    else:
        explanation["error"] = why_none

    with database.session() as session:
        ticket = workflow.lock_ticket(session, ticket_id)
        doc = session.get(DocumentRecord, document_id, with_for_update=True, populate_existing=True)
        if ticket is None or doc is None or doc.state in DONE:  # another worker got there first
            run.finish(session, {"document_id": document_id, "state": doc.state if doc else "deleted"})
            return
        predictions = {docs.task: prediction} if prediction is not None else {}
        decision_ids, job_ids = workflow.record_decisions(
            session,
            ticket,
            [decision],
            predictions,
            [action],
            {docs.task: explanation},
            actor=ACTOR,
            max_attempts=context.settings.job_max_attempts,
        )
        doc.state = "triage" if action_context["triage"] else "filed"
        doc.doctype = decision.label
        doc.score = round(float(prediction.score), 4) if prediction is not None else None
        doc.abstained = decision.abstained
        doc.fields = fields
        doc.updated_at = utcnow()
        run.finish(
            session,
            {"document_id": document_id, "state": doc.state, "decisions": decision_ids, "jobs": job_ids},
        )
    count_decisions("documents", [decision], predictions)  # committed: counted once
    run.follow_ups.extend(job_ids)
