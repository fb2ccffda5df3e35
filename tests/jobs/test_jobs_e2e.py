"""The whole loop with real processes: webhook -> ticket -> classify/route -> helpdesk ->
correction -> retrain -> promotion -> the next ticket served by the new version.

Once on the embedded default (``deskpilot serve`` with its worker threads, SQLite), once
scaled out (``deskpilot serve`` + ``deskpilot worker --backend celery``, Redis, PostgreSQL).
The encoder is the real packaged one, trained as a quick linear probe (``--preset fast``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobs_support import redis_url, require_port
from support.helpdesk_standin import HelpdeskStandin
from support.served import ROOT, demo_generator, serve

from deskpilot.connectors.generic import sign

TOKEN = "helpdesk-token"
WEBHOOK_SECRET = "whsec-e2e-0123456789"
TENANT = "default"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "deskpilot.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, f"deskpilot {' '.join(args)}: {out.stderr[-3000:]}"
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter folder with queue and priority classifiers, copied into each backend's home."""
    home = tmp_path_factory.mktemp("trained")
    gen = demo_generator()
    gen.write_csv(gen.generate(n=600, seed=5), home / "train.csv")
    env = _env(home)
    for task in ("queue", "priority"):
        _cli(env, "train", "classifier", "--task", task, "--data", str(home / "train.csv"),
             "--label-column", task, "--preset", "fast", "--json")  # fmt: skip
    return home


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPILOT_")}
    env.update(
        DESKPILOT_HOME=str(home),
        DESKPILOT_ENV="development",
        HF_HUB_OFFLINE="1",
        DESKPILOT_WEBHOOK_SECRETS=json.dumps({TENANT: WEBHOOK_SECRET}),
        DESKPILOT_CONNECTOR_SECRETS=json.dumps({"helpdesk": TOKEN}),
        DESKPILOT_JOB_POLL_S="0.1",
        # the challenger sees 15 % fewer original rows than the CLI-trained champion did
        DESKPILOT_PROMOTION_MARGIN_F1="0.05",
        DESKPILOT_PROMOTION_MARGIN_COVERED_ACCURACY="0.05",
    )
    env.update(extra)
    return env


class Flow:
    def __init__(self, url: str, key: str, desk: HelpdeskStandin, env: dict[str, str]) -> None:
        self.url, self.key, self.desk, self.env = url, key, desk, env
        self.http = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})

    def webhook(self, delivery: str, subject: str, body: str, external_id: str) -> httpx.Response:
        payload = {
            "type": "ticket",
            "ticket": {
                "subject": subject,
                "body": body,
                "requester": "ana@example.com",
                "external_id": external_id,
            },
        }
        raw = json.dumps(payload).encode()
        headers = {**sign(WEBHOOK_SECRET, raw, delivery_id=delivery), "Content-Type": "application/json"}
        return httpx.post(
            f"{self.url}/webhooks/{TENANT}/generic/email", content=raw, headers=headers, timeout=30
        )

    def settled(self, ticket_id: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ticket: dict[str, Any] = self.http.get(f"/v1/tickets/{ticket_id}").json()
            if ticket["actions"] and all(a["state"] == "done" for a in ticket["actions"]):
                return ticket
            time.sleep(0.2)
        pytest.fail(f"ticket {ticket_id} was not processed in {timeout} s: {ticket}")


@pytest.fixture(params=["embedded", pytest.param("celery", marks=pytest.mark.services)])
def flow(request: pytest.FixtureRequest, trained: Path, tmp_path: Path) -> Iterator[Flow]:
    home = tmp_path / "home"
    shutil.copytree(trained / "adapters", home / "adapters")
    desk = HelpdeskStandin(token=TOKEN).start()
    policy = (ROOT / "examples" / "policy.yaml").read_text(encoding="utf-8")
    (home / "policies").mkdir()
    (home / "policies" / f"{TENANT}.yaml").write_text(
        policy.replace("http://127.0.0.1:8900/api", desk.url), encoding="utf-8"
    )
    worker: subprocess.Popen[bytes] | None = None
    if request.param == "celery":
        broker = redis_url().rsplit("/", 1)[0] + "/14"
        require_port(broker, "Redis")
        pg_url: str = request.getfixturevalue("pg_url")
        env = _env(
            home, DESKPILOT_QUEUE_BACKEND="celery", DESKPILOT_BROKER_URL=broker, DESKPILOT_DATABASE_URL=pg_url
        )
        # the champions trained into SQLite are registered in the PostgreSQL store too
        for task in ("queue", "priority"):
            promote = ["adapters", "promote", "--task", task, "--version", "v1"]
            subprocess.run(
                [sys.executable, "-m", "deskpilot.cli", *promote],
                env=env, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        with (home / "worker.log").open("w") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deskpilot.cli",
                    "worker",
                    "--backend",
                    "celery",
                    "--concurrency",
                    "1",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
    else:
        env = _env(home, DESKPILOT_WORKERS="1")
    try:
        with serve(env, home) as url:
            key = _cli(env, "keys", "create", "--json")["key"]
            flow = Flow(url, key, desk, env)
            try:
                yield flow
            finally:
                flow.http.close()
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        desk.stop()


def test_webhook_to_helpdesk_then_feedback_retrain_promote(flow: Flow) -> None:
    first = flow.webhook("d-1", "Charged twice", "I was charged twice for my subscription this month", "T-1")
    assert first.status_code == 202, first.text
    again = flow.webhook("d-1", "Charged twice", "I was charged twice for my subscription this month", "T-1")
    assert again.status_code == 202 and again.json() == {**first.json(), "duplicate": True}

    ticket = flow.settled(first.json()["ticket_id"])
    queue = {d["task"]: d for d in ticket["decisions"]}["queue"]
    assert queue["adapter_version"] == "v1" and queue["predicted_label"] == "billing", queue
    assert queue["explanation"]["alternatives"], queue
    applied = flow.desk.ticket("T-1")
    assert applied is not None and applied["queue"] in ("billing-team", "triage"), applied
    assert [a.ticket for a in flow.desk.applied] == ["T-1"]  # the duplicate delivery did nothing

    # a person corrects the queue; the retrain job learns it and the gate lets it through
    correction = flow.http.post(
        "/v1/feedback",
        json={"ticket_id": ticket["id"], "task": "queue", "label": "sales", "author": "lead@example.com"},
    )
    assert correction.status_code == 201, correction.text
    assert correction.json()["previous_label"] in ("billing", None)
    outcome = _cli(flow.env, "retrain", "--task", "queue", "--json")
    assert outcome["promoted"] is True, outcome
    assert outcome["champion"] == "v2", outcome

    second = flow.webhook("d-2", "Refund", "Please refund the duplicate charge on my card", "T-2")
    assert second.status_code == 202, second.text
    ticket2 = flow.settled(second.json()["ticket_id"])
    queue2 = {d["task"]: d for d in ticket2["decisions"]}["queue"]
    assert queue2["adapter_version"] == "v2", queue2
    history = [h["kind"] for h in flow.http.get(f"/v1/tickets/{ticket['id']}").json()["history"]]
    assert (
        history[:2] == ["ticket.received", "decision"] and "feedback" in history and "action.done" in history
    )
