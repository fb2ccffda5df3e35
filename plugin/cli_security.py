"""``deskpilot keys list|rotate|revoke`` and ``deskpilot adapters sign``.

Registered on the main app's sub-apps by :func:`register` (called from ``deskpilot.cli``);
the shared helpers are imported inside the commands, as in ``cli_jobs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
TenantOpt = Annotated[str | None, typer.Option(help="The key's tenant [default: settings]")]
KeyIdArg = Annotated[int, typer.Argument(help="The key's id (`deskpilot keys list` shows it).", min=1)]


def register(keys_app: typer.Typer, adapters_app: typer.Typer) -> None:
    keys_app.command("list")(keys_list_cmd)
    keys_app.command("rotate")(keys_rotate_cmd)
    keys_app.command("revoke")(keys_revoke_cmd)
    adapters_app.command("sign")(adapters_sign_cmd)


@contextmanager
def _session() -> Iterator[Session]:
    from deskpilot.cli import settings, user_errors
    from deskpilot.store import Database

    with user_errors():
        db = Database(settings().db_url)
        try:
            db.migrate()
            with db.session() as session:
                yield session
        finally:
            db.dispose()


def keys_list_cmd(tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """The tenant's keys: id, name, prefix, scopes, state (never the keys themselves)."""
    from rich.console import Console
    from rich.table import Table

    from deskpilot.cli import _tenant, emit_json
    from deskpilot.store import key_state, list_api_keys

    tenant = _tenant(tenant)
    with _session() as session:
        rows = [
            {
                "key_id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes,
                "state": key_state(k),
                "created_at": k.created_at.isoformat(timespec="seconds"),
                "last_used_at": k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else None,
                "expires_at": k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
            }
            for k in list_api_keys(session, tenant)
        ]
    if as_json:
        emit_json({"tenant": tenant, "keys": rows})
        return
    columns = ("key_id", "name", "prefix", "scopes", "state", "last_used_at", "expires_at")
    table = Table(title=f"API keys of tenant '{tenant}'")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "") for c in columns))
    Console().print(table)


def keys_rotate_cmd(
    key_id: KeyIdArg,
    tenant: TenantOpt = None,
    grace_minutes: Annotated[
        int, typer.Option(min=0, max=43_200, help="How long the old key stays valid, in minutes.")
    ] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Issue a new key with the same name and scopes; the old one works until the grace period ends."""
    from deskpilot.cli import _tenant, emit_json, fail, say
    from deskpilot.store import rotate_api_key

    tenant = _tenant(tenant)
    with _session() as session:
        rotated = rotate_api_key(session, key_id, tenant, timedelta(minutes=grace_minutes))
        if rotated is None:
            fail(f"tenant '{tenant}' has no live API key {key_id} (`deskpilot keys list` shows them)")
        new, plaintext, old = rotated
        info = {
            "tenant": tenant,
            "key_id": new.id,
            "name": new.name,
            "scopes": new.scopes,
            "key": plaintext,
            "old_key_id": old.id,
            "old_key_expires_at": old.revoked_at.isoformat(timespec="seconds") if old.revoked_at else None,
        }
    if as_json:
        emit_json(info)
        return
    say(f"new API key {info['key_id']} for tenant '{tenant}' (shown once, store it safely);")
    say(f"the old key {key_id} stays valid until {info['old_key_expires_at']}:")
    typer.echo(plaintext)


def keys_revoke_cmd(key_id: KeyIdArg, tenant: TenantOpt = None) -> None:
    """Revoke a key now (ends a rotated key's grace period too)."""
    from deskpilot.cli import _tenant, fail, say
    from deskpilot.store import revoke_api_key

    tenant = _tenant(tenant)
    with _session() as session:
        if not revoke_api_key(session, key_id, tenant):
            fail(f"tenant '{tenant}' has no API key {key_id} (`deskpilot keys list` shows them)")
    say(f"API key {key_id} of tenant '{tenant}' is revoked")


def adapters_sign_cmd(
    folder: Annotated[Path, typer.Argument(help="An adapter version's folder (adapter_config.json, ...).")],
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the signature for uploading this adapter (header X-Deskpilot-Adapter-Signature).

    Signed with the tenant's key from DESKPILOT_ADAPTER_SIGNING_KEYS.
    """
    from deskpilot.adapters.signing import SIGNATURE_HEADER, read_adapter_files, sign_adapter
    from deskpilot.cli import _tenant, emit_json, fail, settings, user_errors

    tenant = _tenant(tenant)
    secret = settings().adapter_signing_key(tenant)
    if not secret:
        fail(
            f"no adapter signing key for tenant '{tenant}': set "
            f'DESKPILOT_ADAPTER_SIGNING_KEYS=\'{{"{tenant}": "<a long random secret>"}}\''
        )
    with user_errors():
        files = read_adapter_files(folder)
        signature = sign_adapter(secret, files)
    if as_json:
        emit_json(
            {"tenant": tenant, "header": SIGNATURE_HEADER, "signature": signature, "files": sorted(files)}
        )
        return
    typer.echo(signature)
