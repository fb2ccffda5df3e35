"""Sign-in, sessions, CSRF and roles of the review console."""

from __future__ import annotations

import pytest
from console_support import PASSWORD, USERS, Seeded, csrf_of, page_csrf, sign_in
from fastapi.testclient import TestClient
from sqlalchemy import select

from deskpilot.config import Settings
from deskpilot.errors import ConfigError, ConflictError, InputDataError
from deskpilot.gateway import create_app
from deskpilot.store import Database
from deskpilot.store.models import ConsoleSession, ConsoleUser
from deskpilot.store.users import authenticate_user, create_user, set_disabled, set_password, set_role


def test_pages_send_a_stranger_to_the_sign_in_form(client: TestClient) -> None:
    response = client.get("/console/models", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fmodels"
    form = client.get("/console/login")
    assert form.status_code == 200
    assert '<html lang="en">' in form.text
    assert 'href="#main"' in form.text  # skip link
    assert '<label for="password">' in form.text
    assert "default-src 'self'" in form.headers["content-security-policy"]


def test_sign_in_opens_a_session_and_redirects_to_next(client: TestClient, database: Database) -> None:
    page = client.get("/console/login?next=/console/usage")
    response = client.post(
        "/console/login",
        data={
            "tenant": "acme",
            "email": "LEAD@acme.test",  # emails are case-insensitive
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "/console/usage",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/usage"
    cookie = response.headers["set-cookie"]
    assert "deskpilot_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    inbox = client.get("/console")
    assert inbox.status_code == 200
    assert "Lead · acme" in inbox.text
    with database.session() as session:
        stored = session.scalars(select(ConsoleSession.token_hash)).all()
    token = client.cookies.get("deskpilot_session")
    assert token and len(stored) == 1 and token not in stored[0]  # only a keyed hash is kept


@pytest.mark.parametrize(
    ("tenant", "email", "password"),
    [
        ("acme", "lead@acme.test", "wrong password!"),
        ("acme", "nobody@acme.test", PASSWORD),
        ("globex", "lead@acme.test", PASSWORD),  # a user of another tenant
        ("no-such", "lead@acme.test", PASSWORD),
    ],
)
def test_sign_in_fails_the_same_way_for_every_wrong_guess(
    client: TestClient, tenant: str, email: str, password: str
) -> None:
    page = client.get("/console/login")
    response = client.post(
        "/console/login",
        data={"tenant": tenant, "email": email, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "wrong team, email or password" in response.text
    assert "deskpilot_session" not in response.headers.get("set-cookie", "")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_sign_in_without_the_form_token_is_refused(client: TestClient) -> None:
    client.get("/console/login")
    tenant, email, _ = USERS["lead"]
    response = client.post(
        "/console/login",
        data={"tenant": tenant, "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "security token is missing or out of date" in response.text


def test_next_never_leaves_the_console(client: TestClient) -> None:
    tenant, email, _ = USERS["agent"]
    for target in ("https://evil.example/", "//evil.example/x", "/v1/audit"):
        client.cookies.clear()
        page = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={
                "tenant": tenant,
                "email": email,
                "password": PASSWORD,
                "csrf_token": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/console"


def test_a_post_without_csrf_is_403_and_changes_nothing(
    client: TestClient, seeded: Seeded, database: Database
) -> None:
    sign_in(client, "agent")
    ticket = seeded.tickets["Cannot log in"]
    data = {"decision_id": str(seeded.decisions["Cannot log in"]), "action": "confirm"}
    missing = client.post(f"/console/tickets/{ticket}/feedback", data=data, follow_redirects=False)
    wrong = client.post(
        f"/console/tickets/{ticket}/feedback", data={**data, "csrf_token": "x" * 64}, follow_redirects=False
    )
    for response in (missing, wrong):
        assert response.status_code == 403
        assert "security token" in response.text
        assert response.headers["content-type"].startswith("text/html")
    with database.session() as session:
        from deskpilot.store.models import FeedbackRecord

        assert session.scalars(select(FeedbackRecord)).all() == []


def test_csrf_token_of_one_session_does_not_work_in_another(app: object, seeded: Seeded) -> None:
    with TestClient(app) as first, TestClient(app) as second:  # type: ignore[arg-type]
        sign_in(first, "agent")
        sign_in(second, "agent")
        stolen = page_csrf(first)
        ticket = seeded.tickets["Cannot log in"]
        response = second.post(
            f"/console/tickets/{ticket}/feedback",
            data={
                "decision_id": str(seeded.decisions["Cannot log in"]),
                "action": "confirm",
                "csrf_token": stolen,
            },
            follow_redirects=False,
        )
        assert response.status_code == 403


def test_sign_out_ends_the_session(client: TestClient, database: Database) -> None:
    sign_in(client, "agent")
    token = page_csrf(client)
    old_cookie = client.cookies.get("deskpilot_session")
    response = client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    with database.session() as session:
        assert session.scalars(select(ConsoleSession)).all() == []
    client.cookies.set("deskpilot_session", old_cookie or "", path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(client: TestClient, database: Database) -> None:
    sign_in(client, "agent")
    assert client.get("/console", follow_redirects=False).status_code == 200
    with database.session() as session:
        set_disabled(session, "acme", "agent@acme.test", True)
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert sign_in(client, "agent").status_code == 401


def test_users_store_rules(database: Database, seeded: Seeded) -> None:
    with database.session() as session:
        with pytest.raises(ConflictError):
            create_user(session, "acme", "agent@acme.test", PASSWORD)
        with pytest.raises(InputDataError):
            create_user(session, "acme", "new@acme.test", "short")
        with pytest.raises(InputDataError):
            create_user(session, "acme", "not-an-email", PASSWORD)
        with pytest.raises(InputDataError):
            create_user(session, "acme", "new@acme.test", PASSWORD, role="root")
        user = set_role(session, "acme", "agent@acme.test", "lead")
        assert user.role == "lead"
        stored = session.scalars(select(ConsoleUser.password_hash).where(ConsoleUser.id == user.id)).one()
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        set_password(session, "acme", "agent@acme.test", "a brand new passphrase")
        assert authenticate_user(session, "acme", "agent@acme.test", PASSWORD) is None
        assert authenticate_user(session, "acme", "agent@acme.test", "a brand new passphrase") is not None


def test_production_refuses_the_default_secret(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="DESKPILOT_SECRET_KEY"):
        create_app(Settings(env="production", home=tmp_path, workers=0))  # type: ignore[arg-type]


def test_production_cookies_are_secure(tmp_path: object, database: Database, seeded: Seeded) -> None:
    settings = Settings(
        env="production", home=tmp_path, workers=0, secret_key="a-long-random-production-secret"
    )  # type: ignore[arg-type]
    with TestClient(create_app(settings, database=database), base_url="https://testserver") as client:
        page = client.get("/console/login")
        assert "secure" in page.headers["set-cookie"].lower()
        response = sign_in(client, "lead")
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()


def test_repeated_wrong_passwords_are_slowed_down(
    settings: Settings, database: Database, seeded: Seeded
) -> None:
    limited = settings.model_copy(update={"rate_limit_auth_failures": "3/minute"})
    with TestClient(create_app(limited, database=database)) as client:
        statuses = [sign_in(client, "lead", password="not the password").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        refused = sign_in(client, "lead")  # even the right password waits now
        assert refused.status_code == 429
        assert "Too many attempts" in refused.text and int(refused.headers["retry-after"]) >= 1
