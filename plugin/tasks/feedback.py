"""Corrections made in an outside system, mapped back to task labels through the policy."""

from __future__ import annotations

from deskpilot.policy import Policy


def systems_of(policy: Policy, connector: str) -> set[str]:
    """The policy's names for the systems reached through ``connector``."""
    return {name for name, system in policy.systems.items() if system.connector == connector}


def labels_for_change(policy: Policy, connector: str, field: str, value: str) -> list[tuple[str, str]]:
    """(task, label) pairs a person's change of ``field`` to ``value`` stands for.

    A task that writes its label to ``field`` (e.g. ``priority``) takes the value as the
    label; otherwise the label whose destination in that system has ``field`` = ``value``
    (e.g. the group a label routes to). A value no destination uses maps to nothing.
    """
    systems = systems_of(policy, connector)
    found: list[tuple[str, str]] = []
    for task, spec in policy.tasks.items():
        if spec.field == field:
            found.append((task, value))
            continue
        for label, destination in spec.destinations.items():
            if destination.system in systems and str(destination.as_fields().get(field)) == value:
                found.append((task, label))
                break
    return found
