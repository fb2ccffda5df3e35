"""Routing decisions and the actions planned from them (pure logic, no models)."""

from __future__ import annotations

from dataclasses import replace
from textwrap import dedent

import pytest

from deskpilot.policy import Policy, parse_policy
from deskpilot.tasks.route import matching_overrides, plan_actions, route
from deskpilot.types import Prediction, RouteDecision, Ticket

POLICY = parse_policy(
    dedent(
        """\
        systems:
          helpdesk: {connector: generic, url: http://127.0.0.1:8900/api, credentials: helpdesk}
          jira: {connector: jira}
        tasks:
          queue:
            destinations:
              billing: {system: helpdesk, queue: billing-team, fields: {priority: normal, tag: money}}
              it_security: {system: helpdesk, queue: it-security, group: secops}
              bugs: {system: jira, fields: {project: BUG}}
            min_score: 0.5
            thresholds: {it_security: 0.7}
          priority:
            field: priority
            system: helpdesk
            min_score: 0.4
          product:
            destinations:
              widgets: {system: helpdesk, queue: widgets-team, fields: {tag: widgets}}
            default: {system: helpdesk, fields: {product: misc}}
            abstain_to_triage: false
        triage: {system: helpdesk, queue: triage}
        overrides:
          - name: vip
            when: {requester_domain_in: [bigcorp.example]}
            set: {priority: high}
          - name: security-words
            when: {subject_matches: "phish|breach"}
            set: {queue: it_security, priority: urgent}
          - name: flagged
            when: {requester_in: [Boss@Acme.example], metadata: {vip: "true", plan: gold}}
            set: {product: widgets}
        """
    )
)
TICKET = Ticket(subject="Invoice twice", body="I was charged twice.", requester="ann@acme.example")


def pred(
    task: str, label: str, score: float, *, abstained: bool = False, reason: str | None = None
) -> Prediction:
    return Prediction(label, score, abstained, (), task, "v1", reason=reason)


def confident() -> dict[str, Prediction]:
    return {
        "queue": pred("queue", "billing", 0.93),
        "priority": pred("priority", "low", 0.81),
        "product": pred("product", "widgets", 0.9),
    }


def decide(ticket: Ticket = TICKET, **changes: Prediction | None) -> dict[str, RouteDecision]:
    predictions = {**confident(), **changes}
    got = route(POLICY, ticket, {k: v for k, v in predictions.items() if v is not None})
    assert [d.task for d in got] == ["queue", "priority", "product"]
    return {d.task: d for d in got}


def test_confident_answers_go_to_their_destinations() -> None:
    d = decide()
    assert d["queue"] == RouteDecision(
        task="queue",
        label="billing",
        destination="helpdesk:queue=billing-team,priority=normal,tag=money",
        abstained=False,
        overrides=(),
        explanation="model: 'billing' at 0.93 (threshold 0.50)",
        target={
            "system": "helpdesk",
            "fields": {"queue": "billing-team", "priority": "normal", "tag": "money"},
        },
    )
    assert d["priority"].destination == "helpdesk:priority=low"
    assert d["priority"].target == {"system": "helpdesk", "fields": {"priority": "low"}}
    assert d["priority"].explanation == "model: 'low' at 0.81 (threshold 0.40)"


def test_override_wins_and_is_recorded() -> None:
    vip = replace(TICKET, requester="Big Boss <Boss@Sales.BigCorp.example>")
    d = decide(vip, priority=pred("priority", "low", 0.99))
    assert d["priority"].label == "high" and not d["priority"].abstained
    assert d["priority"].overrides == ("vip",)
    assert d["priority"].explanation == "override 'vip': requester domain in bigcorp.example"
    assert d["priority"].target == {"system": "helpdesk", "fields": {"priority": "high"}}
    assert d["queue"].overrides == ()  # other tasks still follow the model
    # a look-alike domain is not the VIP domain
    assert decide(replace(TICKET, requester="x@notbigcorp.example"))["priority"].label == "low"


def test_override_applies_even_without_a_model() -> None:
    vip = replace(TICKET, requester="boss@bigcorp.example")
    assert decide(vip, priority=None)["priority"].label == "high"


def test_first_matching_rule_per_task_wins() -> None:
    both = Ticket(subject="PHISHING mail", body="?", requester="ceo@bigcorp.example")
    assert matching_overrides(POLICY, both) == {
        "priority": ("high", "vip"),
        "queue": ("it_security", "security-words"),
    }
    d = decide(both)
    assert (d["queue"].label, d["queue"].overrides) == ("it_security", ("security-words",))
    assert d["queue"].explanation == "override 'security-words': subject matches /phish|breach/"


@pytest.mark.parametrize(
    ("requester", "metadata", "hit"),
    [
        ("boss@acme.example", {"vip": True, "plan": "gold", "x": 1}, True),
        ("BOSS@ACME.EXAMPLE", {"vip": "true", "plan": "gold"}, True),
        ("boss@acme.example", {"vip": False, "plan": "gold"}, False),
        ("boss@acme.example", {"vip": True}, False),
        ("other@acme.example", {"vip": True, "plan": "gold"}, False),
        (None, {"vip": True, "plan": "gold"}, False),
    ],
)
def test_every_part_of_a_condition_must_match(
    requester: str | None, metadata: dict[str, object], hit: bool
) -> None:
    ticket = replace(TICKET, requester=requester, metadata=metadata)
    assert ("product" in matching_overrides(POLICY, ticket)) is hit


def test_text_matches_looks_at_subject_and_body() -> None:
    policy = parse_policy(
        dedent(
            """\
            systems: {hd: {connector: generic}}
            tasks: {priority: {field: priority}}
            triage: {system: hd, queue: t}
            overrides:
              - {name: down, when: {text_matches: "\\\\bOUTAGE\\\\b"}, set: {priority: urgent}}
            """
        )
    )
    assert matching_overrides(policy, Ticket("hi", "total outage since 9am")) == {
        "priority": ("urgent", "down")
    }
    assert matching_overrides(policy, Ticket("outage", "")) == {"priority": ("urgent", "down")}
    assert matching_overrides(policy, Ticket("outages", "")) == {}


def test_abstention_goes_to_triage_with_the_best_guess_explained() -> None:
    d = decide(queue=pred("queue", "billing", 0.41, abstained=True, reason="out of scope"))["queue"]
    assert (d.label, d.abstained, d.destination) == (None, True, "helpdesk:queue=triage")
    assert d.explanation == "model abstained (out of scope); best guess 'billing' at 0.41; to triage"
    assert d.target == {"system": "helpdesk", "fields": {"queue": "triage"}, "triage": True}


def test_per_class_threshold() -> None:
    low = decide(queue=pred("queue", "it_security", 0.65))["queue"]
    assert (low.label, low.abstained, low.destination) == (None, True, "helpdesk:queue=triage")
    assert low.explanation == "best guess 'it_security' at 0.65 is below its threshold 0.70; to triage"
    # the same score clears the task-wide minimum for another label, and a tie passes
    assert decide(queue=pred("queue", "billing", 0.65))["queue"].label == "billing"
    assert decide(queue=pred("queue", "it_security", 0.7))["queue"].destination == (
        "helpdesk:queue=it-security,group=secops"
    )


def test_unmapped_label_goes_to_triage_or_the_default() -> None:
    d = decide(queue=pred("queue", "hr", 0.99))["queue"]
    assert (d.label, d.abstained, d.destination) == ("hr", False, "helpdesk:queue=triage")
    assert d.explanation == "model: 'hr' at 0.99 (threshold 0.50); no destination for label 'hr'; to triage"
    assert d.target["triage"] is True
    product = decide(product=pred("product", "gadgets", 0.9))["product"]
    assert (product.label, product.destination) == ("gadgets", "helpdesk:product=misc")
    assert product.explanation == "model: 'gadgets' at 0.90 (threshold 0.00); task default"


def test_missing_model_and_no_triage() -> None:
    d = decide(queue=None)["queue"]
    assert (d.label, d.abstained, d.destination) == (None, True, "helpdesk:queue=triage")
    assert d.explanation == "no prediction for task 'queue'; to triage"
    p = decide(product=pred("product", "widgets", 0.2, abstained=True))["product"]
    assert (p.destination, p.target, p.abstained) == (None, {}, True)
    assert p.explanation == "model abstained (unsure); best guess 'widgets' at 0.20; left unrouted"


def _plan(
    decisions: list[RouteDecision], policy: Policy = POLICY
) -> list[tuple[str, str, dict[str, object], str]]:
    actions = plan_actions(policy, "acme", 7, "HD-7", decisions, decision_key="d42")
    assert all(
        (a.tenant, a.kind, a.ticket_id, a.external_id) == ("acme", "route", 7, "HD-7") for a in actions
    )
    return [(a.system, a.connector, a.fields, a.idempotency_key) for a in actions]


def test_plan_merges_per_system_in_task_order() -> None:
    decisions = list(decide().values())
    assert _plan(decisions) == [
        # queue's own priority 'normal' loses to the priority task's own field; queue's tag
        # is kept over the later product task's tag, as is queue's queue
        ("helpdesk", "generic", {"queue": "billing-team", "priority": "low", "tag": "money"}, "d42:helpdesk"),
    ]
    assert _plan(decisions) == _plan(decisions)  # stable keys for retries


def test_plan_one_action_per_system() -> None:
    decisions = list(decide(queue=pred("queue", "bugs", 0.8)).values())
    assert _plan(decisions) == [
        ("jira", "jira", {"project": "BUG"}, "d42:jira"),
        (
            "helpdesk",
            "generic",
            {"priority": "low", "queue": "widgets-team", "tag": "widgets"},
            "d42:helpdesk",
        ),
    ]


def test_plan_triage_wins_over_teams() -> None:
    decisions = list(decide(queue=pred("queue", "billing", 0.2)).values())
    plan = _plan(decisions)
    # product's confident 'widgets-team' must not route the ticket while it waits in triage
    assert plan == [
        ("helpdesk", "generic", {"queue": "triage", "priority": "low", "tag": "widgets"}, "d42:helpdesk")
    ]
    # a group set by a team destination is cleared as well
    sec = [
        route(POLICY, TICKET, {"queue": pred("queue", "it_security", 0.9)})[0],
        RouteDecision("priority", None, "helpdesk:queue=triage", True, target=dict(POLICY_TRIAGE)),
    ]
    assert _plan(sec) == [("helpdesk", "generic", {"queue": "triage"}, "d42:helpdesk")]


POLICY_TRIAGE = {"system": "helpdesk", "fields": {"queue": "triage"}, "triage": True}
