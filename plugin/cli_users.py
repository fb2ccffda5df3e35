"""``deskpilot users ...``: the people who sign in to the review console (``/console``).

Passwords are read from a hidden prompt, or from one line of stdin with
``--password-stdin`` (for scripts); they never appear on the command line or in output.
Helpers of :mod:`deskpilot.cli` are imported inside the functions: that module registers this one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

users_app = typer.Typer(help="People who sign in to the review console (/console).", no_args_is_help=True)

TenantOpt = Annotated[str | None, typer.Option(help="The user's team (tenant) [default: settings]")]
EmailOpt = Annotated[str, typer.Option(help="Their email address; they sign in with it.")]
RoleOpt = Annotated[str, typer.Option(help="agent (corrects), lead (also retrains/promotes) or admin.")]
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _in_session(work: Callable[[Session], T]) -> T:
    from deskpilot.cli import settings, user_errors
    from deskpilot.store import Database

    with user_errors():
        db = Database(settings().db_url)
        try:
            db.migrate()
            with db.session() as session:
                return work(session)
        finally:
            db.dispose()


def _row(user: Any, tenant: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled_at is not None,
        "created_at": user.created_at.isoformat(timespec="seconds"),
        "last_login_at": user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else None,
    }


@users_app.command("create")
def create_cmd(
    email: EmailOpt,
    role: RoleOpt = "agent",
    name: Annotated[str, typer.Option(help="How the console greets them.")] = "",
    tenant: TenantOpt = None,
    password_stdin: StdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a console user (asks for the password, at least 10 characters)."""
    from deskpilot.cli import _tenant, emit_json, say
    from deskpilot.store.users import create_user, validate_email, validate_role

    team = _tenant(tenant)
    _in_session(lambda _: (validate_email(email), validate_role(role)))  # fail before asking
    password = _password(password_stdin)
    row = _in_session(lambda s: _row(create_user(s, team, email, password, role=role, name=name), team))
    say(f"created {row['role']} {row['email']} of team '{team}'; they sign in at /console/login")
    if as_json:
        emit_json(row)


@users_app.command("list")
def list_cmd(tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """List a team's console users."""
    from rich.console import Console
    from rich.table import Table

    from deskpilot.cli import _tenant, emit_json, say
    from deskpilot.store.users import list_users

    team = _tenant(tenant)
    rows = _in_session(lambda s: [_row(u, team) for u in list_users(s, team)])
    if as_json:
        emit_json({"tenant": team, "users": rows})
        return
    if not rows:
        say(f"team '{team}' has no console users; add one with: deskpilot users create --email ...")
        return
    table = Table(title=f"console users of '{team}'")
    for column in ("email", "name", "role", "disabled", "last_login_at"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["email"], r["name"], r["role"], "yes" if r["disabled"] else "", r["last_login_at"] or ""
        )
    Console().print(table)


@users_app.command("set-role")
def set_role_cmd(email: EmailOpt, role: RoleOpt, tenant: TenantOpt = None) -> None:
    """Change what a user may do."""
    from deskpilot.cli import _tenant, say
    from deskpilot.store.users import set_role

    team = _tenant(tenant)
    row = _in_session(lambda s: _row(set_role(s, team, email, role), team))
    say(f"{row['email']} of team '{team}' is now {row['role']}")


@users_app.command("set-password")
def set_password_cmd(email: EmailOpt, tenant: TenantOpt = None, password_stdin: StdinOpt = False) -> None:
    """Set a new password; the user is signed out everywhere."""
    from deskpilot.cli import _tenant, say
    from deskpilot.store.users import set_password

    team = _tenant(tenant)
    password = _password(password_stdin)
    _in_session(lambda s: set_password(s, team, email, password))
    say(f"new password set for {email}; their sessions were closed")


def _set_disabled(email: str, tenant: str | None, disabled: bool) -> None:
    from deskpilot.cli import _tenant, say
    from deskpilot.store.users import set_disabled

    team = _tenant(tenant)
    _in_session(lambda s: set_disabled(s, team, email, disabled))
    say(f"{email} of team '{team}' is {'disabled and signed out' if disabled else 'enabled'}")


@users_app.command("disable")
def disable_cmd(email: EmailOpt, tenant: TenantOpt = None) -> None:
    """Stop a user from signing in, and end their sessions now."""
    _set_disabled(email, tenant, True)


@users_app.command("enable")
def enable_cmd(email: EmailOpt, tenant: TenantOpt = None) -> None:
    """Let a disabled user sign in again."""
    _set_disabled(email, tenant, False)
