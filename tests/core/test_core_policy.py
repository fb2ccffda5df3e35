"""Routing policy files: the demo example, line-numbered errors, and the reloading store."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from textwrap import dedent
from types import ModuleType

import pytest
from pydantic import ValidationError

from deskpilot.errors import InputDataError, PolicyError
from deskpilot.policy import (
    Destination,
    Policy,
    PolicyStore,
    PolicyValidationError,
    load_policy,
    parse_policy,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy.yaml"

GOOD = dedent(
    """\
    systems:
      helpdesk:
        connector: generic
        url: http://127.0.0.1:8900/api
    tasks:
      queue:
        destinations:
          billing: {system: helpdesk, queue: billing-team}
        min_score: 0.5
    triage:
      system: helpdesk
      queue: triage
    """
)


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deskpilot_demo_tickets_policy", ROOT / "examples/generate_tickets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyValidationError) as info:
        parse_policy(text, "p.yaml")
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# --- the shipped example ------------------------------------------------------------------
def test_example_policy_maps_every_demo_label() -> None:
    demo = _demo()
    policy = load_policy(EXAMPLE)
    assert list(policy.tasks) == ["queue", "priority"]
    queue = policy.tasks["queue"]
    assert set(queue.destinations) == set(demo.QUEUES)
    assert set(queue.thresholds) <= set(demo.QUEUES)
    assert all(d.system == "helpdesk" and d.queue for d in queue.destinations.values())
    assert len({d.queue for d in queue.destinations.values()}) == len(demo.QUEUES)
    assert policy.tasks["priority"].field == "priority"
    helpdesk = policy.systems["helpdesk"]
    assert (helpdesk.connector, helpdesk.url, helpdesk.credentials) == (
        "generic",
        "http://127.0.0.1:8900/api",
        "helpdesk",
    )
    assert policy.triage.describe() == "helpdesk:queue=triage"
    (vip,) = policy.overrides
    assert vip.when.requester_domain_in == [demo.VIP_DOMAIN]
    assert vip.set == {"priority": "high"}
    assert set(vip.set.values()) <= set(demo.PRIORITIES)


# --- line-numbered errors -------------------------------------------------------------------
CASES = {
    "typo-field": (
        GOOD.replace("    min_score: 0.5", "    min_scor: 0.5"),
        [
            "p.yaml:9: tasks.queue.min_scor: unknown field 'min_scor' (did you mean 'min_score'? "
            "allowed: destinations, field, system, default, thresholds, min_score, target_precision, "
            "abstain_to_triage)"
        ],
    ),
    "unknown-system": (
        GOOD.replace("{system: helpdesk, queue: billing", "{system: helpdsk, queue: billing"),
        ["p.yaml:8: tasks.queue.destinations.billing.system: unknown system 'helpdsk' (known: helpdesk)"],
    ),
    "threshold-above-one": (
        GOOD.replace("    min_score: 0.5", "    thresholds:\n      billing: 1.5"),
        ["p.yaml:10: tasks.queue.thresholds.billing: input should be less than or equal to 1 (got 1.5)"],
    ),
    "duplicate-key": (
        GOOD.replace("  queue: triage", "  queue: triage\n  queue: other"),
        ["p.yaml:13: triage.queue: duplicate key 'queue' (first at line 12)"],
    ),
    "yaml-syntax": (
        GOOD.replace("      billing: {system: helpdesk, queue: billing-team}", "      billing: [oops"),
        ["p.yaml:9: invalid YAML: while parsing a flow sequence expected ',' or ']', but got ':'"],
    ),
    "bad-regex": (
        GOOD
        + "overrides:\n  - name: r\n    when:\n      subject_matches: '(unclosed'\n"
        + "    set: {queue: billing}\n",
        [
            "p.yaml:16: overrides[0].when.subject_matches: invalid regular expression: "
            "missing ), unterminated subpattern at position 0"
        ],
    ),
    "empty-condition": (
        GOOD + "overrides:\n  - name: r\n    when: {}\n    set: {queue: billing}\n",
        [
            "p.yaml:15: overrides[0].when: set at least one of requester_in, requester_domain_in, "
            "subject_matches, text_matches, metadata"
        ],
    ),
    "override-unknown-task": (
        GOOD
        + "overrides:\n  - name: vip\n    when: {requester_in: [a@b.c]}\n    set:\n      priorty: high\n",
        ["p.yaml:17: overrides[0].set.priorty: unknown task 'priorty' (known: queue)"],
    ),
    "respond-unknown-task": (
        GOOD + "respond:\n  task: queeu\n  classes: [billing]\n",
        ["p.yaml:14: respond.task: unknown task 'queeu' (known: queue)"],
    ),
    "respond-typo": (
        GOOD + "respond:\n  clases: [billing]\n",
        [
            "p.yaml:14: respond.clases: unknown field 'clases' (did you mean 'classes'? "
            "allowed: responder, task, classes, send_to_customer)"
        ],
    ),
    "missing-triage": (
        GOOD.split("triage:")[0],
        ["p.yaml:1: triage: required when there are tasks (where unsure tickets go)"],
    ),
    "bad-url-and-connector": (
        GOOD.replace("connector: generic", "connector: Help Scout").replace("http://127", "ftp://127"),
        [
            "p.yaml:3: systems.helpdesk.connector: 'Help Scout' is no connector name "
            "(lowercase letters, digits, '-' or '_')",
            "p.yaml:4: systems.helpdesk.url: must be an http:// or https:// URL",
        ],
    ),
    "bad-task-name": (
        GOOD.replace("  queue:\n    destinations", "  Queue Task:\n    destinations"),
        [
            "p.yaml:6: tasks.Queue Task: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        ],
    ),
    "empty-destination": (
        GOOD.replace("{system: helpdesk, queue: billing-team}", "{system: helpdesk}"),
        [
            "p.yaml:8: tasks.queue.destinations.billing: "
            "a destination needs a queue, group, assignee or fields"
        ],
    ),
    "field-needs-system": (
        GOOD.replace("triage:", "  priority:\n    field: priority\ntriage:").replace(
            "systems:\n", "systems:\n  jira: {connector: jira}\n"
        ),
        ["p.yaml:12: tasks.priority.field: say which system gets it: add 'system' (jira, helpdesk)"],
    ),
    "empty-file": ("\n# nothing here\n", ["p.yaml:1: the policy is empty"]),
    "not-a-mapping": ("\n- systems\n- tasks\n", ["p.yaml:2: the policy must be a mapping (key: value)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_names_its_line(case: str) -> None:
    text, expected = CASES[case]
    assert problems(text) == expected


def test_every_problem_is_listed_in_line_order() -> None:
    text = (
        GOOD.replace("connector: generic", "connector: Help Scout")
        .replace("{system: helpdesk, queue: billing", "{system: helpdsk, queue: billing")
        .replace("  queue: triage", "  queue: triage\n  queu: x")
    )
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["3", "8", "13"]
    assert "unknown field 'queu'" in found[2]


def test_a_policy_built_in_python_checks_references_too() -> None:
    data = {
        "systems": {"helpdesk": {"connector": "generic"}},
        "tasks": {"queue": {"destinations": {"billing": {"system": "nope", "queue": "b"}}}},
        "triage": {"system": "helpdesk", "queue": "t"},
    }
    with pytest.raises(
        ValidationError, match=r"tasks\.queue\.destinations\.billing\.system: unknown system 'nope'"
    ):
        Policy.model_validate(data)


def test_ids_and_fields() -> None:
    policy = parse_policy(GOOD.replace("queue: billing-team}", "queue: 42, fields: {team: 7, tag: vip}}"))
    dest = policy.tasks["queue"].destinations["billing"]
    assert dest.queue == "42"
    assert dest.as_fields() == {"queue": "42", "team": 7, "tag": "vip"}
    assert dest.describe() == "helpdesk:queue=42,team=7,tag=vip"
    with pytest.raises(ValidationError, match="set queue as its own key"):
        Destination(system="helpdesk", fields={"queue": "x"})


def test_load_policy_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.yaml: policy file not found"):
        load_policy(tmp_path / "missing.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(GOOD.encode() + b"# caf\xe9\n")
    with pytest.raises(PolicyValidationError, match=r"latin1\.yaml:13: not valid UTF-8 text"):
        load_policy(latin1)


# --- the store ------------------------------------------------------------------------------
def _edit(path: Path, text: str) -> None:
    """An admin's in-place edit, with a clearly later mtime even on coarse file systems."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    later = before + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_store_reloads_on_change_and_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = PolicyStore(tmp_path / "policies")
    assert store.get("acme") is None and store.error("acme") is None
    first = store.put("acme", GOOD)
    assert (tmp_path / "policies" / "acme.yaml").read_text(encoding="utf-8") == GOOD
    cached = store.get("acme")
    assert cached == first and store.get("acme") is cached  # cached while unchanged

    path = tmp_path / "policies" / "acme.yaml"
    _edit(path, GOOD.replace("min_score: 0.5", "min_score: 0.8"))
    second = store.get("acme")
    assert second is not None and second.tasks["queue"].min_score == 0.8

    with caplog.at_level(logging.WARNING, logger="deskpilot.policy"):
        _edit(path, GOOD.replace("min_score: 0.5", "min_score: 2"))
        assert store.get("acme") is second
    assert store.error("acme") == (
        f"{path}:9: tasks.queue.min_score: input should be less than or equal to 1 (got 2)"
    )
    assert "keeping the last good policy" in caplog.text

    _edit(path, GOOD)
    fixed = store.get("acme")
    assert fixed is not None and fixed.tasks["queue"].min_score == 0.5
    assert store.error("acme") is None
    path.unlink()
    assert store.get("acme") is None


def test_store_broken_first_file_serves_nothing(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("systems: [\n", encoding="utf-8")
    store = PolicyStore(tmp_path)
    assert store.get("acme") is None
    assert (store.error("acme") or "").startswith(f"{tmp_path / 'acme.yaml'}:2: invalid YAML")


def test_store_put_refuses_invalid_text_and_keeps_the_file(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path)
    store.put("acme", GOOD)
    with pytest.raises(PolicyValidationError, match=r"^acme\.yaml:9: tasks\.queue\.min_score"):
        store.put("acme", GOOD.replace("min_score: 0.5", "min_score: -1"))
    assert (tmp_path / "acme.yaml").read_text(encoding="utf-8") == GOOD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme.yaml"]  # no temp files left


@pytest.mark.parametrize("tenant", ["../x", "Acme", "", "a/b", "x" * 64, ".hidden"])
def test_store_refuses_bad_tenant_names(tmp_path: Path, tenant: str) -> None:
    store = PolicyStore(tmp_path)
    with pytest.raises(InputDataError, match="invalid tenant"):
        store.get(tenant)
    with pytest.raises(InputDataError, match="invalid tenant"):
        store.put(tenant, GOOD)
    assert list(tmp_path.iterdir()) == []


def test_store_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path)
    store.put("acme", GOOD)
    seen: list[Policy | None] = []

    def read() -> None:
        seen.extend(store.get("acme") for _ in range(50))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 200 and all(p is seen[0] for p in seen) and seen[0] is not None


def test_alias_bombs_are_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    assert problems("\n".join(lines) + "\n") == [
        "p.yaml:1: more than 100000 values once aliases are expanded"
    ]


def test_anchors_and_aliases_still_work() -> None:
    text = GOOD.replace(
        "{system: helpdesk, queue: billing-team}", "&team {system: helpdesk, queue: billing-team}"
    )
    text = text.replace("triage:\n  system: helpdesk\n  queue: triage\n", "triage: *team\n")
    assert parse_policy(text).triage.describe() == "helpdesk:queue=billing-team"
