"""Routing: from classifier answers and a tenant's policy to decisions and outside actions.

Pure functions (no I/O, no clock), so the same ticket, predictions and policy always give
the same decisions, explanations and idempotency keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from typing import Any

from deskpilot.policy import ROUTING_KEYS, Condition, Destination, Policy, TaskPolicy, describe_target
from deskpilot.types import Action, Prediction, RouteDecision, Ticket


def _requester(ticket: Ticket) -> str:
    """The bare, lower-case address (``"Ann <ann@x.com>"`` -> ``ann@x.com``)."""
    return parseaddr(ticket.requester or "")[1].strip().lower()


def _meta(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def condition_matches(cond: Condition, ticket: Ticket) -> bool:
    """Every part that is set must match; regexes ignore case."""
    email = _requester(ticket)
    domain = email.rpartition("@")[2]
    checks = [
        not cond.requester_in or email in cond.requester_in,
        not cond.requester_domain_in
        or any(domain == d or domain.endswith("." + d) for d in cond.requester_domain_in),
        cond.subject_matches is None or re.search(cond.subject_matches, ticket.subject, re.I) is not None,
        cond.text_matches is None or re.search(cond.text_matches, ticket.text, re.I) is not None,
        all(k in ticket.metadata and _meta(ticket.metadata[k]) == v for k, v in cond.metadata.items()),
    ]
    return all(checks)


def describe_condition(cond: Condition) -> str:
    parts = []
    if cond.requester_in:
        parts.append("requester in list")
    if cond.requester_domain_in:
        parts.append(f"requester domain in {', '.join(cond.requester_domain_in)}")
    if cond.subject_matches is not None:
        parts.append(f"subject matches /{cond.subject_matches}/")
    if cond.text_matches is not None:
        parts.append(f"text matches /{cond.text_matches}/")
    parts += [f"{k}={v}" for k, v in cond.metadata.items()]
    return " and ".join(parts)


def matching_overrides(policy: Policy, ticket: Ticket) -> dict[str, tuple[str, str]]:
    """task -> (label, rule name); the first matching rule per task wins."""
    found: dict[str, tuple[str, str]] = {}
    for rule in policy.overrides:
        if condition_matches(rule.when, ticket):
            for task, label in rule.set.items():
                found.setdefault(task, (label, rule.name))
    return found


def _to_triage(policy: Policy, task: str, spec: TaskPolicy, label: str | None, why: str) -> RouteDecision:
    """An unsure or unroutable answer: a person decides (label None means the model abstained)."""
    abstained = label is None
    if not spec.abstain_to_triage:
        return RouteDecision(task, label, None, abstained, explanation=f"{why}; left unrouted")
    triage = policy.ticket_triage()
    target = {"system": triage.system, "fields": triage.as_fields(), "triage": True}
    return RouteDecision(
        task, label, triage.describe(), abstained, explanation=f"{why}; to triage", target=target
    )


def _place(
    policy: Policy, task: str, spec: TaskPolicy, label: str, why: str, overrides: tuple[str, ...] = ()
) -> RouteDecision:
    """A sure label: its destination (or the task default), plus the task's own field."""
    dest: Destination | None = spec.destinations.get(label)
    if dest is None and spec.default is not None:
        dest, why = spec.default, f"{why}; task default"
    system = dest.system if dest is not None else policy.field_system(task)
    if system is None or (dest is None and not spec.field):
        decision = _to_triage(policy, task, spec, label, f"{why}; no destination for label '{label}'")
        return RouteDecision(
            task, label, decision.destination, False, overrides, decision.explanation, decision.target
        )
    fields: dict[str, Any] = dest.as_fields() if dest is not None else {}
    if spec.field:
        fields[spec.field] = label
    target = {"system": system, "fields": fields}
    return RouteDecision(task, label, describe_target(system, fields), False, overrides, why, target)


def _decide(
    policy: Policy, task: str, override: tuple[str, str] | None, pred: Prediction | None
) -> RouteDecision:
    spec = policy.tasks[task]
    if override is not None:
        label, rule_name = override
        rule = next(r for r in policy.overrides if r.name == rule_name)
        why = f"override '{rule_name}': {describe_condition(rule.when)}"
        return _place(policy, task, spec, label, why, overrides=(rule_name,))
    if pred is None:
        return _to_triage(policy, task, spec, None, f"no prediction for task '{task}'")
    guess = f"'{pred.label}' at {pred.score:.2f}"
    if pred.abstained:
        return _to_triage(
            policy, task, spec, None, f"model abstained ({pred.reason or 'unsure'}); best guess {guess}"
        )
    threshold = spec.threshold(pred.label)
    if pred.score < threshold:
        return _to_triage(
            policy, task, spec, None, f"best guess {guess} is below its threshold {threshold:.2f}"
        )
    return _place(policy, task, spec, pred.label, f"model: {guess} (threshold {threshold:.2f})")


def route(policy: Policy, ticket: Ticket, predictions: Mapping[str, Prediction]) -> list[RouteDecision]:
    """One decision per policy task, in policy order; overrides beat the model."""
    overrides = matching_overrides(policy, ticket)
    return [_decide(policy, task, overrides.get(task), predictions.get(task)) for task in policy.tasks]


def _merge(policy: Policy, decisions: Sequence[RouteDecision]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Fields per system in task order; earlier tasks keep theirs except a task's own field."""
    merged: dict[str, dict[str, Any]] = {}
    triaged: set[str] = set()
    for decision in decisions:
        if not decision.target:
            continue
        system = decision.target["system"]
        fields = merged.setdefault(system, {})
        spec = policy.tasks.get(decision.task)
        own = spec.field if spec is not None else None
        for key, value in decision.target["fields"].items():
            if key not in fields or key == own:
                fields[key] = value
        if decision.target.get("triage"):
            triaged.add(system)
    return merged, triaged


def plan_actions(
    policy: Policy,
    tenant: str,
    ticket_id: int,
    external_id: str | None,
    decisions: Sequence[RouteDecision],
    *,
    decision_key: str,
) -> list[Action]:
    """One ``route`` action per system. A ticket sent to triage is not also sent to a team."""
    merged, triaged = _merge(policy, decisions)
    triage = policy.ticket_triage()
    if triage.system in triaged:
        fields = merged[triage.system]
        for key in ROUTING_KEYS:
            fields.pop(key, None)
        fields.update(triage.as_fields())
    return [
        Action(
            tenant=tenant,
            system=system,
            connector=policy.systems[system].connector,
            kind="route",
            ticket_id=ticket_id,
            external_id=external_id,
            fields=dict(fields),
            idempotency_key=f"{decision_key}:{system}",
        )
        for system, fields in merged.items()
        if fields
    ]
