"""`deskpilot policy check FILE`: a summary when valid, every problem with its line when not."""

from __future__ import annotations

from pathlib import Path

from cli_support import Invoke, assert_ok, describe, error_line

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"

BROKEN = """\
systems:
  helpdesk: {connector: generic}
tasks:
  queue:
    destinations:
      billing: {system: helpdsk, queue: billing-team}
    min_scor: 0.5
triage: {system: helpdesk, queue: triage}
"""


def test_check_the_example_policy(cli: Invoke) -> None:
    result = cli("policy", "check", EXAMPLE)
    assert_ok(result)
    assert result.stdout.splitlines() == [
        f"{EXAMPLE}: ok",
        "tasks: queue (9 labels mapped), priority (sets field priority)",
        "systems: helpdesk (generic)",
        "triage: helpdesk:queue=triage",
        "overrides: vip",
    ]


def test_check_lists_every_problem_with_its_line(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN, encoding="utf-8")
    result = cli("policy", "check", "bad.yaml")  # the working directory is tmp_path
    assert error_line(result) == "error: bad.yaml: 2 problems in the routing policy"
    lines = result.stderr.splitlines()
    assert lines[1:] == [
        "bad.yaml:6: tasks.queue.destinations.billing.system: unknown system 'helpdsk' (known: helpdesk)",
        "bad.yaml:7: tasks.queue.min_scor: unknown field 'min_scor' (did you mean 'min_score'? allowed: "
        "destinations, field, system, default, thresholds, min_score, target_precision, abstain_to_triage)",
    ], describe(result)


def test_check_a_missing_file(cli: Invoke) -> None:
    result = cli("policy", "check", "nope.yaml")
    assert error_line(result) == "error: nope.yaml: policy file not found"
