"""The on-disk registry: versions, champion pointer, promotion and rollback, name checks.

These use placeholder files: the registry never reads the weights, only moves them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deskpilot.adapters.registry import AdapterCard, Registry, check_name
from deskpilot.errors import AdapterNotFoundError, InputDataError

Add = Callable[..., AdapterCard]


def _files(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "incoming" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"lora")
    (folder / "head.safetensors").write_bytes(b"head")
    (folder / "card.json").write_text('{"stale": true}', encoding="utf-8")  # replaced, not moved
    return folder


def _card(task: str = "intent", tenant: str = "acme") -> AdapterCard:
    return AdapterCard(task=task, tenant=tenant, kind="classifier", base_model="tiny", labels=["a", "b"])


@pytest.fixture
def add(registry: Registry, tmp_path: Path) -> Add:
    counter = iter(range(1000))

    def _add(task: str = "intent", tenant: str = "acme", promote: bool | None = None) -> AdapterCard:
        return registry.register(_files(tmp_path, f"f{next(counter)}"), _card(task, tenant), promote=promote)

    return _add


def test_versions_count_up_and_files_move_in(registry: Registry, add: Add) -> None:
    first, second = add(), add()
    assert (first.version, second.version) == ("v1", "v2")
    folder = registry.path("acme", "intent", "v2")
    assert {p.name for p in folder.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.safetensors",
        "card.json",
    }
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert card["version"] == "v2" and card["created_at"] and "stale" not in card
    assert [c.version for c in registry.versions("acme", "intent")] == ["v1", "v2"]
    assert registry.card("acme", "intent", "v1").labels == ["a", "b"]


def test_version_numbers_sort_numerically(registry: Registry, add: Add) -> None:
    for _ in range(11):
        add()
    assert [c.version for c in registry.versions("acme", "intent")][-3:] == ["v9", "v10", "v11"]
    assert add().version == "v12"


def test_first_registration_becomes_champion_later_ones_wait(registry: Registry, add: Add) -> None:
    add()
    assert registry.champion_version("acme", "intent") == "v1"
    add()
    assert registry.champion_version("acme", "intent") == "v1"
    assert registry.card("acme", "intent").version == "v1"
    add(promote=True)
    assert registry.champion_version("acme", "intent") == "v3"


def test_promote_false_on_first_registration_leaves_no_champion(registry: Registry, add: Add) -> None:
    add(promote=False)
    assert registry.champion_version("acme", "intent") is None
    with pytest.raises(AdapterNotFoundError):
        registry.card("acme", "intent")


def test_promote_and_rollback_round_trip(registry: Registry, add: Add) -> None:
    add()
    add()
    add()
    registry.promote("acme", "intent", "v2")
    registry.promote("acme", "intent", "v3")
    assert registry.champion_version("acme", "intent") == "v3"
    assert registry.rollback("acme", "intent") == "v2"
    assert registry.champion_version("acme", "intent") == "v2"
    assert registry.rollback("acme", "intent") == "v1"
    with pytest.raises(AdapterNotFoundError, match="roll back"):
        registry.rollback("acme", "intent")
    assert registry.champion_version("acme", "intent") == "v1"
    registry.promote("acme", "intent", "v3")
    assert registry.rollback("acme", "intent") == "v1"


def test_promoting_the_champion_again_keeps_history_clean(registry: Registry, add: Add) -> None:
    add()
    add()
    registry.promote("acme", "intent", "v2")
    registry.promote("acme", "intent", "v2")
    pointer = json.loads((registry.task_dir("acme", "intent") / "champion.json").read_text(encoding="utf-8"))
    assert pointer["version"] == "v2" and pointer["previous"] == ["v1"]


def test_promote_unknown_version_is_refused(registry: Registry, add: Add) -> None:
    add()
    with pytest.raises(AdapterNotFoundError, match="v7"):
        registry.promote("acme", "intent", "v7")
    with pytest.raises(InputDataError, match="version"):
        registry.promote("acme", "intent", "latest")
    assert registry.champion_version("acme", "intent") == "v1"


def test_champion_pointer_is_written_atomically(registry: Registry, add: Add) -> None:
    add()
    add()
    registry.promote("acme", "intent", "v2")
    registry.rollback("acme", "intent")
    task_dir = registry.task_dir("acme", "intent")
    assert sorted(p.name for p in task_dir.iterdir()) == ["champion.json", "v1", "v2"]
    assert not [p for p in task_dir.rglob(".*")]  # no temp files (".champion.json.xxxx") left
    pointer = json.loads((task_dir / "champion.json").read_text(encoding="utf-8"))
    assert pointer["version"] == "v1"


def test_update_card_rewrites_in_place(registry: Registry, add: Add) -> None:
    card = add()
    card.metrics = {"eval": {"accuracy": 0.75}}
    registry.update_card(card)
    assert registry.card("acme", "intent", "v1").metrics == {"eval": {"accuracy": 0.75}}
    assert not [p for p in registry.path("acme", "intent", "v1").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("bad", ["../x", "A B", "", "Acme", "x/y", ".hidden", "-dash", "a" * 64, "ü"])
def test_invalid_tenant_and_task_names_are_input_errors(registry: Registry, bad: str) -> None:
    with pytest.raises(InputDataError, match="invalid tenant name"):
        registry.tasks(bad)
    with pytest.raises(InputDataError, match="invalid task name"):
        registry.versions("acme", bad)
    with pytest.raises(InputDataError):
        registry.register(Path("."), _card(task=bad))
    with pytest.raises(InputDataError):
        registry.register(Path("."), _card(tenant=bad))
    assert not registry.root.exists()  # nothing was created on the way


@pytest.mark.parametrize("good", ["acme", "a", "team_2", "x-y", "0day", "a" * 63])
def test_valid_names_pass(good: str) -> None:
    assert check_name("task", good) == good


def test_unknown_task_says_how_to_get_one(registry: Registry, add: Add) -> None:
    add()
    with pytest.raises(AdapterNotFoundError) as err:
        registry.card("acme", "priority")
    assert "priority" in err.value.message
    assert err.value.hint and "deskpilot train classifier --task priority" in err.value.hint
    with pytest.raises(AdapterNotFoundError, match="v9"):
        registry.card("acme", "intent", "v9")


def test_tenants_and_tasks_are_listed_separately(registry: Registry, add: Add) -> None:
    assert registry.tenants() == []
    add()
    add(task="priority")
    add(tenant="globex")
    assert registry.tenants() == ["acme", "globex"]
    assert registry.tasks("acme") == ["intent", "priority"]
    assert registry.tasks("globex") == ["intent"]
    assert registry.tasks("initech") == []
    assert registry.versions("globex", "priority") == []


def test_domain_adapters_cannot_be_promoted(registry: Registry, tmp_path: Path) -> None:
    card = AdapterCard(task="domain", tenant="acme", kind="domain", base_model="tiny", labels=[])
    registered = registry.register(_files(tmp_path, "d"), card, promote=False)
    with pytest.raises(InputDataError, match="domain adapter: it is never served"):
        registry.promote("acme", "domain", registered.version)
    assert registry.champion_version("acme", "domain") is None
