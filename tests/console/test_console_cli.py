"""``deskpilot users ...``: create, list, set-role, set-password, disable; then sign in with it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import csrf_of
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from deskpilot.cli import app
from deskpilot.config import Settings, get_settings
from deskpilot.gateway import create_app
from deskpilot.store import Database

PASSWORD = "a long enough passphrase"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("DESKPILOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESKPILOT_ENV", "test")
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def run(*args: str, stdin: str | None = None) -> Result:
    get_settings.cache_clear()
    return CliRunner().invoke(app, list(args), input=stdin)


def test_users_lifecycle_and_sign_in(home: Path) -> None:
    created = run(
        "users",
        "create",
        "--tenant",
        "acme",
        "--email",
        "Ana@Acme.test",
        "--role",
        "lead",
        "--name",
        "Ana",
        "--password-stdin",
        "--json",
        stdin=PASSWORD + "\n",
    )
    assert created.exit_code == 0, created.output
    row = json.loads(created.stdout.strip().splitlines()[-1])
    assert (row["email"], row["role"], row["disabled"]) == ("ana@acme.test", "lead", False)
    assert PASSWORD not in created.output

    again = run(
        "users", "create", "--tenant", "acme", "--email", "ana@acme.test", "--password-stdin", stdin=PASSWORD
    )
    assert again.exit_code == 2 and "already has a user" in again.output
    weak = run(
        "users", "create", "--tenant", "acme", "--email", "bo@acme.test", "--password-stdin", stdin="short\n"
    )
    assert weak.exit_code == 2 and "10 to 1024 characters" in weak.output
    bad_role = run("users", "create", "--tenant", "acme", "--email", "bo@acme.test", "--role", "boss")
    assert bad_role.exit_code == 2 and "invalid role" in bad_role.output

    assert (
        run("users", "set-role", "--tenant", "acme", "--email", "ana@acme.test", "--role", "admin").exit_code
        == 0
    )
    listed = run("users", "list", "--tenant", "acme", "--json")
    users = json.loads(listed.stdout.strip().splitlines()[-1])["users"]
    assert [(u["email"], u["role"]) for u in users] == [("ana@acme.test", "admin")]

    new_password = "another long passphrase"
    assert (
        run(
            "users",
            "set-password",
            "--tenant",
            "acme",
            "--email",
            "ana@acme.test",
            "--password-stdin",
            stdin=new_password,
        ).exit_code
        == 0
    )
    missing = run("users", "set-role", "--tenant", "acme", "--email", "nobody@acme.test", "--role", "agent")
    assert missing.exit_code == 2 and "has no user" in missing.output

    settings = Settings(env="test", home=home, workers=0)
    database = Database(settings.db_url)
    try:
        with TestClient(create_app(settings, database=database)) as client:

            def sign_in(password: str) -> int:
                client.cookies.clear()
                page = client.get("/console/login")
                return client.post(
                    "/console/login",
                    data={
                        "tenant": "acme",
                        "email": "ana@acme.test",
                        "password": password,
                        "csrf_token": csrf_of(page.text),
                    },
                    follow_redirects=False,
                ).status_code

            assert sign_in(PASSWORD) == 401
            assert sign_in(new_password) == 303
            assert run("users", "disable", "--tenant", "acme", "--email", "ana@acme.test").exit_code == 0
            assert client.get("/console", follow_redirects=False).status_code == 303  # signed out
            assert sign_in(new_password) == 401
            assert run("users", "enable", "--tenant", "acme", "--email", "ana@acme.test").exit_code == 0
            assert sign_in(new_password) == 303
    finally:
        database.dispose()
