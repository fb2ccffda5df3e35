"""The policy's ``documents`` section and where a classified document is filed (pure logic)."""

from __future__ import annotations

from textwrap import dedent

import pytest

from deskpilot.policy import PolicyValidationError, parse_policy
from deskpilot.tasks.route_document import decide_document, document_action
from deskpilot.types import Alternative, Prediction

DOCS_ONLY = dedent(
    """\
    systems:
      erp: {connector: erpnext, url: "http://erp.example", credentials: erp}
    documents:
      min_score: 0.6
      thresholds: {invoice: 0.8}
      destinations:
        invoice: {system: erp, create: purchase_invoice, assignee: ap@acme.example}
        purchase_order: {system: erp, create: task, queue: Purchasing}
      triage: {system: erp, create: task, queue: Document triage}
    """
)


def _pred(label: str, score: float, *, abstained: bool = False) -> Prediction:
    return Prediction(label, score, abstained, (Alternative("other", 0.01),), "doctype", "v3")


def test_a_documents_only_policy_needs_no_ticket_tasks_or_triage() -> None:
    policy = parse_policy(DOCS_ONLY, "p.yaml")
    assert policy.tasks == {} and policy.triage is None
    assert policy.documents is not None and policy.documents.task == "doctype"


def test_documents_section_mistakes_name_their_line() -> None:
    wrong = DOCS_ONLY.replace("purchase_order: {system: erp", "purchase_order: {system: crm")
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(wrong, "p.yaml")
    assert info.value.problems == [
        "p.yaml:8: documents.destinations.purchase_order.system: unknown system 'crm' (known: erp)"
    ]
    with pytest.raises(PolicyValidationError) as info:
        parse_policy("systems:\n  erp: {connector: erpnext}\n", "p.yaml")
    assert "a policy needs tasks (for tickets), documents, or both" in info.value.problems[0]


@pytest.mark.parametrize(
    ("prediction", "label", "target", "triage"),
    [
        (
            _pred("invoice", 0.85),
            "invoice",
            {"create": "purchase_invoice", "assignee": "ap@acme.example"},
            False,
        ),
        (_pred("invoice", 0.75), None, {"create": "task", "queue": "Document triage"}, True),  # under 0.8
        (_pred("purchase_order", 0.65), "purchase_order", {"create": "task", "queue": "Purchasing"}, False),
        (
            _pred("purchase_order", 0.9, abstained=True),
            None,
            {"create": "task", "queue": "Document triage"},
            True,
        ),
        (
            _pred("shipping_order", 0.99),
            "shipping_order",
            {"create": "task", "queue": "Document triage"},
            True,
        ),
        (None, None, {"create": "task", "queue": "Document triage"}, True),  # no doctype model yet
    ],
)
def test_where_a_document_goes(
    prediction: Prediction | None, label: str | None, target: dict[str, str], triage: bool
) -> None:
    policy = parse_policy(DOCS_ONLY, "p.yaml")
    assert policy.documents is not None
    decision = decide_document(policy.documents, prediction, "no adapter for doctype")
    assert decision.label == label
    assert decision.target == {"system": "erp", "fields": target, "triage": triage}
    action = document_action(policy, "acme", 7, 12, decision, {"note": "n"})
    assert (action.kind, action.connector, action.ticket_id) == ("file_document", "erpnext", 12)
    assert action.idempotency_key == "acme:document:7:erp"  # stable per document: retries file it once
