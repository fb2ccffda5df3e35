"""The console in a real browser: Debian's Chromium driven by Playwright against a real uvicorn.

Sign in, correct a routing, see the correction counted on the models page, label from the
triage queue with the keyboard, promote a version as a lead. Screenshots go to
``$DESKPILOT_TEST_ARTIFACTS`` (else the test's tmp_path); with ``DESKPILOT_UPDATE_SCREENSHOTS=1``
the inbox and ticket shots also replace ``docs/screenshots/`` (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from console_support import PASSWORD, USERS, Seeded, StaticPredictor, screenshot_dir

from deskpilot.adapters.registry import Registry
from deskpilot.config import Settings
from deskpilot.gateway import create_app
from deskpilot.store import Database
from deskpilot.store.models import JobRecord

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.browser


def _require_browser() -> tuple[Any, Any]:
    reason = None
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not CHROMIUM.exists():
        reason = f"Chromium not found at {CHROMIUM} (apt install chromium)"
    if reason is not None:
        if os.environ.get("DESKPILOT_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright, expect


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(settings: Settings, database: Database, seeded: Seeded) -> Iterator[str]:
    """The gateway on a free loopback port, served by uvicorn in a thread."""
    app = create_app(settings, predictor=StaticPredictor(), database=database)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright, _ = _require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _sign_in(page: Any, base: str, who: str) -> None:
    tenant, email, _ = USERS[who]
    page.goto(f"{base}/console")
    assert "/console/login" in page.url  # a stranger is sent to the sign-in form
    page.get_by_label("Team").fill(tenant)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console")


def _work_on(database: Database, job_id: int, **values: Any) -> None:
    """What a worker writes to a retrain job's row as it goes."""
    with database.session() as session:
        job = session.get(JobRecord, job_id)
        assert job is not None
        for name, value in values.items():
            setattr(job, name, value)


def _feedback_count(page: Any) -> int:
    return int(page.get_by_test_id("feedback-new-intent").inner_text())


def test_review_flow_in_chromium(
    browser: Any, server: str, seeded: Seeded, settings: Settings, database: Database, tmp_path: Path
) -> None:
    _, expect = _require_browser()
    shots = screenshot_dir(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    # an agent signs in; the inbox shows the routed tickets and highlights abstentions
    _sign_in(page, server, "agent")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("tr.abstained").count() == 4
    page.screenshot(path=str(shots / "inbox.png"), full_page=True)
    page.keyboard.press("Tab")  # the first stop is the skip link, and it works
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # filter with the form (GET parameters)
    page.get_by_label("Search").fill("printer")
    page.get_by_role("button", name="Apply").click()
    assert page.locator("table.inbox tbody tr").count() == 2
    page.get_by_role("link", name="Clear").click()

    page.goto(f"{server}/console/models")
    before = _feedback_count(page)
    assert page.get_by_role("button", name="Promote v2").count() == 0  # agents do not see it

    # correct a routing on a ticket
    page.goto(f"{server}/console")
    page.get_by_role("link", name="Cannot log in").click()
    page.get_by_text("Most similar training tickets").wait_for()
    page.screenshot(path=str(shots / "ticket.png"), full_page=True)
    page.get_by_label("Change to…").select_option("access")
    page.get_by_role("button", name="Change", exact=True).click()
    page.get_by_text("your correction was recorded").wait_for()

    page.goto(f"{server}/console/models")
    assert _feedback_count(page) == before + 1  # counted for the next retraining

    # the triage queue by keyboard: j/k move, 1 picks the best guess, Enter records it
    page.goto(f"{server}/console/triage")
    waiting = page.locator(".triage-item").count()
    first = page.locator(".triage-item h2 a").first.inner_text()
    page.keyboard.press("j")
    page.keyboard.press("k")
    page.keyboard.press("1")
    assert page.locator(".triage-item").first.locator("input[type=radio]").first.is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator(".triage-item").count() == waiting - 1
    assert first not in [a.inner_text() for a in page.locator(".triage-item h2 a").all()]
    page.screenshot(path=str(shots / "triage.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server}/console/login")

    # a lead promotes v2
    _sign_in(page, server, "lead")
    page.goto(f"{server}/console/models")
    page.get_by_role("button", name="Promote v2").click()
    page.get_by_text("serving v2").wait_for()
    assert Registry(settings.adapters_dir).champion_version("acme", "intent") == "v2"
    # retrain: the job's progress shows up live (the page polls its status every 2 s)
    page.get_by_role("button", name="Retrain with corrections").click()
    page.get_by_text("Done: retrain job").wait_for()
    box = page.locator(".job[data-job-id]")
    job_id = int(box.get_attribute("data-job-id") or 0)
    _work_on(database, job_id, state="running", progress={"phase": "training", "percent": 40.0})
    expect(box.locator("progress")).to_have_js_property("value", 40, timeout=10_000)
    expect(box.locator(".job-status")).to_contain_text("running · training 40%")
    page.screenshot(path=str(shots / "models.png"), full_page=True)
    _work_on(
        database,
        job_id,
        state="done",
        progress={"phase": "done", "percent": 100.0},
        result={"promoted": False, "reason": "the challenger is worse on the holdout"},
    )
    page.get_by_text("the challenger is worse on the holdout").wait_for(timeout=10_000)
    page.goto(f"{server}/console/usage")
    assert page.locator("svg.plot").count() == 1
    page.screenshot(path=str(shots / "usage.png"), full_page=True)
    context.close()

    assert errors == []  # no script errors, no CSP violations
    for name in ("inbox.png", "ticket.png", "triage.png", "models.png", "usage.png"):
        assert (shots / name).stat().st_size > 10_000
    if os.environ.get("DESKPILOT_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for name in ("inbox.png", "ticket.png"):
            shutil.copyfile(shots / name, DOCS / name)


def test_without_chromium_the_test_skips_or_under_ci_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("DESKPILOT_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        _require_browser()
    monkeypatch.setenv("DESKPILOT_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="Chromium not found"):
        _require_browser()
