"""``deskpilot connectors list``: which connectors are installed, and which are set up.

Registered on the main app by :func:`register` (called from ``deskpilot.cli``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from deskpilot.config import Settings

connectors_app = typer.Typer(help="Connectors to outside systems (Slack, Jira, ...).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON list as the last stdout line.")]


def register(app: typer.Typer) -> None:
    app.add_typer(connectors_app, name="connectors")


def _policy_systems(settings: Settings) -> dict[str, list[tuple[str, bool]]]:
    """connector -> [(tenant, credentials set)] from every tenant's policy file."""
    from deskpilot.policy import PolicyStore

    store = PolicyStore(settings.policies_dir)
    found: dict[str, list[tuple[str, bool]]] = {}
    folder = settings.policies_dir
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            policy = store.get(path.stem)
        except Exception:  # a file named like no tenant, or unreadable: not ours to judge here
            continue
        for system in policy.systems.values() if policy is not None else []:
            ready = not system.credentials or system.credentials in settings.connector_secrets
            found.setdefault(system.connector, []).append((path.stem, ready))
    return found


def status(settings: Settings) -> list[dict[str, Any]]:
    """One row per connector: set up when a tenant has its webhook secret, or a policy uses it
    with its credentials present."""
    from deskpilot.connectors.base import connector_info, known_connectors

    used = _policy_systems(settings)
    rows = []
    for name in known_connectors():
        info = connector_info(name)
        # the generic connector takes the tenant-wide secret; the others "<tenant>/<name>"
        inbound = sorted(
            key.split("/")[0]
            for key in settings.webhook_secrets
            if key.endswith(f"/{name}") or (name == "generic" and "/" not in key)
        )
        outbound = sorted({tenant for tenant, ready in used.get(name, []) if ready})
        missing = sorted({tenant for tenant, ready in used.get(name, []) if not ready})
        rows.append(
            {
                "name": name,
                "title": info.title if info is not None else name,
                "configured": bool(inbound or outbound) and not missing,
                "webhook": f"/webhooks/{{tenant}}/{info.webhook}" if info is not None else None,
                "inbound_tenants": inbound,
                "outbound_tenants": outbound,
                "missing_credentials": missing,
                "setup": info.docs if info is not None else None,
            }
        )
    return rows


@connectors_app.command("list")
def connectors_list_cmd(as_json: JsonOpt = False) -> None:
    """The connectors installed (ours and entry-point plugins) and whether each is set up."""
    from rich.console import Console
    from rich.table import Table

    from deskpilot.cli import emit_json, settings, user_errors

    with user_errors():
        rows = status(settings())
    if as_json:
        emit_json(rows)
        return
    table = Table(title="connectors")
    for column in ("name", "configured", "webhook", "tenants", "setup"):
        table.add_column(column)
    for row in rows:
        tenants = sorted(set(row["inbound_tenants"]) | set(row["outbound_tenants"]))
        missing = row["missing_credentials"]
        problem = f" (no credentials: {', '.join(missing)})" if missing else ""
        table.add_row(
            row["name"],
            ("yes" if row["configured"] else "no") + problem,
            row["webhook"] or "",
            ", ".join(tenants),
            row["setup"] or "",
        )
    Console(width=max(Console().width, 140)).print(table)
