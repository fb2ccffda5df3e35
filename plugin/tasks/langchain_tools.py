"""deskpilot's classifiers and routing as LangChain tools, for agents built on LangChain.

An agent can ask "which queue does this ticket belong to, and how sure are you?" and get the
same answer the pipeline would act on: the calibrated score, whether the model abstains, and
(with the tenant's policy) the destination. Mistakes the agent can fix (an unknown task, an
empty text) come back as the tool's answer, not as an exception that ends the agent's run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field

from deskpilot.errors import AdapterNotFoundError, DeskpilotError
from deskpilot.policy import Policy
from deskpilot.types import Prediction, RouteDecision, Ticket

from .classify import Predictor, classify
from .route import matching_overrides, route

PolicySource = Policy | Callable[[], Policy | None] | None
"""A fixed policy, or a callable that returns the current one (e.g. ``lambda: store.get(t)``)."""
MAX_TEXT_CHARS = 20_000


class ClassifyArgs(BaseModel):
    text: str = Field(description="the ticket text: subject and body")
    task: str = Field(description="the classifier task, e.g. 'queue' or 'priority'")


class RouteArgs(BaseModel):
    text: str = Field(description="the ticket body (or subject and body)")
    subject: str = Field(default="", description="the ticket subject, if separate")
    requester: str | None = Field(default=None, description="the requester's email address, if known")


def _policy(source: PolicySource) -> Policy | None:
    return source() if callable(source) else source


def _prediction(prediction: Prediction) -> dict[str, Any]:
    return {
        "task": prediction.task,
        "label": prediction.label,
        "score": round(float(prediction.score), 4),
        "abstained": prediction.abstained,
        "reason": prediction.reason,
        "alternatives": [{"label": a.label, "score": round(a.score, 4)} for a in prediction.alternatives],
        "adapter_version": prediction.adapter_version,
    }


def _decision(decision: RouteDecision, prediction: Prediction | None) -> dict[str, Any]:
    return {
        "task": decision.task,
        "label": decision.label,
        "score": round(float(prediction.score), 4) if prediction is not None else None,
        "abstained": decision.abstained,
        "destination": decision.destination,
        "explanation": decision.explanation,
        "overrides": list(decision.overrides),
    }


def make_classify_tool(
    predictor: Predictor, tenant: str, policy: PolicySource = None, *, max_chars: int = MAX_TEXT_CHARS
) -> StructuredTool:
    """``deskpilot_classify(text, task)`` -> label, score, abstained, alternatives and, when a
    policy knows the task, the destination that label routes to."""

    def run(text: str, task: str) -> dict[str, Any]:
        try:
            prediction = classify(predictor, tenant, task, [text], max_texts=1, max_chars=max_chars)[0]
        except DeskpilotError as exc:
            raise ToolException(str(exc)) from exc
        out = _prediction(prediction)
        out["destination"] = None
        current = _policy(policy)
        if current is not None and task in current.tasks:
            ticket = Ticket(subject="", body=text)
            decision = next(d for d in route(current, ticket, {task: prediction}) if d.task == task)
            out["destination"] = decision.destination
            out["explanation"] = decision.explanation
        return out

    return StructuredTool.from_function(
        func=run,
        name="deskpilot_classify",
        description=(
            "Classify a helpdesk ticket with one of deskpilot's fine-tuned classifiers. Returns the "
            "label, a calibrated score, whether the model abstains (then a person should decide) "
            "and, if the routing policy covers the task, the destination."
        ),
        args_schema=ClassifyArgs,
        handle_tool_error=True,
    )


def make_route_tool(
    predictor: Predictor, tenant: str, policy: PolicySource, *, max_chars: int = MAX_TEXT_CHARS
) -> StructuredTool:
    """``deskpilot_route(text, subject, requester)`` -> one decision per policy task, as the
    pipeline would take it (overrides first, per-label thresholds, triage when unsure)."""

    def run(text: str, subject: str = "", requester: str | None = None) -> dict[str, Any]:
        current = _policy(policy)
        if current is None:
            raise ToolException(f"tenant {tenant!r} has no usable routing policy")
        ticket = Ticket(subject=subject, body=text, requester=requester)
        overridden = matching_overrides(current, ticket)
        predictions: dict[str, Prediction] = {}
        for task in current.tasks:
            if task in overridden:
                continue
            try:
                predictions[task] = classify(
                    predictor, tenant, task, [ticket.text], max_texts=1, max_chars=max_chars
                )[0]
            except AdapterNotFoundError:
                continue  # routed to triage below, with the reason
            except DeskpilotError as exc:
                raise ToolException(str(exc)) from exc
        decisions = route(current, ticket, predictions)
        return {
            "decisions": [_decision(d, predictions.get(d.task)) for d in decisions],
            "triage": any(d.target.get("triage") for d in decisions),
        }

    return StructuredTool.from_function(
        func=run,
        name="deskpilot_route",
        description=(
            "Route a helpdesk ticket with the tenant's policy: for each classifier task, the label, "
            "its calibrated score, whether the model abstained and where the ticket goes."
        ),
        args_schema=RouteArgs,
        handle_tool_error=True,
    )


def deskpilot_tools(predictor: Predictor, tenant: str, policy: PolicySource = None) -> list[StructuredTool]:
    """The classify tool, plus the route tool when there is a policy."""
    tools = [make_classify_tool(predictor, tenant, policy)]
    if policy is not None:
        tools.append(make_route_tool(predictor, tenant, policy))
    return tools
