"""Where a classified document is filed: the policy's ``documents`` section, as pure logic.

A sure class with a destination becomes that ERP record (a draft purchase invoice, a task in a
team's project); an unsure answer, a class without a destination or no doctype model at all
goes to the documents' triage destination, where a person decides.
"""

from __future__ import annotations

from typing import Any

from deskpilot.policy import DocumentDestination, DocumentsPolicy, Policy
from deskpilot.types import Action, Prediction, RouteDecision


def _describe(dest: DocumentDestination) -> str:
    return f"{dest.system}:" + ",".join(f"{k}={v}" for k, v in dest.as_fields().items())


def _target(dest: DocumentDestination, triage: bool) -> dict[str, Any]:
    return {"system": dest.system, "fields": dest.as_fields(), "triage": triage}


def decide_document(
    docs: DocumentsPolicy, prediction: Prediction | None, why_none: str = ""
) -> RouteDecision:
    """One decision for the doctype task; ``prediction`` None means there is no model to ask."""
    if prediction is None:
        reason = why_none or "no doctype model"
        return RouteDecision(
            docs.task,
            None,
            _describe(docs.triage),
            True,
            explanation=f"{reason}; to triage",
            target=_target(docs.triage, True),
        )
    label = prediction.label
    threshold = max(docs.threshold(label), prediction.threshold)
    if prediction.abstained or prediction.score < threshold:
        why = (
            f"score {prediction.score:.2f} under {threshold:.2f}"
            if not prediction.abstained
            else (prediction.reason or "the model abstained")
        )
        return RouteDecision(
            docs.task,
            None,
            _describe(docs.triage),
            True,
            explanation=f"{why}; to triage",
            target=_target(docs.triage, True),
        )
    dest = docs.destinations.get(label)
    if dest is None:
        return RouteDecision(
            docs.task,
            label,
            _describe(docs.triage),
            False,
            explanation=f"{label}: no destination for this class; to triage",
            target=_target(docs.triage, True),
        )
    return RouteDecision(
        docs.task,
        label,
        _describe(dest),
        False,
        explanation=f"{label} at {prediction.score:.2f}",
        target=_target(dest, False),
    )


def document_action(
    policy: Policy,
    tenant: str,
    document_id: int,
    ticket_id: int,
    decision: RouteDecision,
    context: dict[str, Any],
) -> Action:
    """The ``file_document`` action for ``decision``; its key is stable per document and system."""
    system = decision.target["system"]
    return Action(
        tenant=tenant,
        system=system,
        connector=policy.systems[system].connector,
        kind="file_document",
        ticket_id=ticket_id,
        external_id=None,
        fields=dict(decision.target["fields"]),
        idempotency_key=f"{tenant}:document:{document_id}:{system}",
        context=context,
    )
