"""deskpilot classify/route as LangChain tools, over a fake Predictor and a real policy."""

from __future__ import annotations

from collections.abc import Sequence
from textwrap import dedent

from langchain_core.tools import BaseTool

from deskpilot.errors import AdapterNotFoundError
from deskpilot.policy import Policy, parse_policy
from deskpilot.tasks.langchain_tools import deskpilot_tools, make_classify_tool, make_route_tool
from deskpilot.types import AdapterSummary, Alternative, Prediction

POLICY = parse_policy(
    dedent(
        """\
        systems:
          helpdesk: {connector: generic, url: http://127.0.0.1:8900/api}
        tasks:
          queue:
            destinations:
              billing: {system: helpdesk, queue: billing-team}
              shipping: {system: helpdesk, queue: logistics}
            min_score: 0.5
          priority:
            field: priority
        triage: {system: helpdesk, queue: triage}
        overrides:
          - name: vip
            when: {requester_domain_in: [bigcorp.example]}
            set: {priority: high}
        """
    )
)


class FakePredictor:
    """Billing words -> billing at 0.93; anything else -> shipping at 0.41 (below threshold)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        if task not in ("queue", "priority"):
            raise AdapterNotFoundError(f"no adapter for task {task!r}")
        out = []
        for text in texts:
            self.asked.append((tenant, task, text))
            if task == "priority":
                out.append(Prediction("normal", 0.8, False, (), task, "p1"))
            elif "invoice" in text or "charged" in text:
                out.append(Prediction("billing", 0.93, False, (Alternative("shipping", 0.05),), task, "v2"))
            else:
                out.append(Prediction("shipping", 0.41, False, (Alternative("billing", 0.3),), task, "v2"))
        return out

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        return []

    def ready(self) -> bool:
        return True


def test_classify_tool_returns_label_score_abstained_and_destination() -> None:
    predictor = FakePredictor()
    tool = make_classify_tool(predictor, "acme", POLICY)
    assert isinstance(tool, BaseTool) and tool.name == "deskpilot_classify"
    assert set(tool.args) == {"text", "task"}
    out = tool.invoke({"text": "I was charged twice on my invoice", "task": "queue"})
    assert (out["label"], out["score"], out["abstained"]) == ("billing", 0.93, False)
    assert out["destination"] == "helpdesk:queue=billing-team"
    assert out["alternatives"] == [{"label": "shipping", "score": 0.05}]
    assert predictor.asked == [("acme", "queue", "I was charged twice on my invoice")]


def test_an_unsure_answer_goes_to_triage() -> None:
    out = make_classify_tool(FakePredictor(), "acme", POLICY).invoke({"text": "where is it", "task": "queue"})
    assert out["label"] == "shipping" and out["destination"] == "helpdesk:queue=triage"
    assert "below its threshold" in out["explanation"]


def test_without_a_policy_there_is_no_destination() -> None:
    out = make_classify_tool(FakePredictor(), "acme").invoke({"text": "invoice", "task": "queue"})
    assert out["label"] == "billing" and out["destination"] is None


def test_mistakes_come_back_as_the_tools_answer() -> None:
    tool = make_classify_tool(FakePredictor(), "acme", POLICY)
    assert "no adapter for task 'colour'" in tool.invoke({"text": "hello", "task": "colour"})
    assert "empty" in tool.invoke({"text": "  ", "task": "queue"})


def test_route_tool_decides_every_policy_task_with_overrides_first() -> None:
    predictor = FakePredictor()
    tool = make_route_tool(predictor, "acme", lambda: POLICY)
    out = tool.invoke({"text": "charged twice", "subject": "Invoice", "requester": "ann@bigcorp.example"})
    by_task = {d["task"]: d for d in out["decisions"]}
    assert by_task["queue"]["label"] == "billing" and by_task["queue"]["score"] == 0.93
    assert by_task["queue"]["destination"] == "helpdesk:queue=billing-team"
    assert by_task["priority"]["label"] == "high" and by_task["priority"]["overrides"] == ["vip"]
    assert by_task["priority"]["score"] is None
    assert out["triage"] is False
    assert [task for _, task, _ in predictor.asked] == ["queue"]  # the override spared the model


def test_route_tool_without_a_policy_says_so() -> None:
    def no_policy() -> Policy | None:
        return None

    tool = make_route_tool(FakePredictor(), "acme", no_policy)
    assert "no usable routing policy" in tool.invoke({"text": "hello"})


def test_tool_set() -> None:
    assert [t.name for t in deskpilot_tools(FakePredictor(), "acme")] == ["deskpilot_classify"]
    names = [t.name for t in deskpilot_tools(FakePredictor(), "acme", POLICY)]
    assert names == ["deskpilot_classify", "deskpilot_route"]
