"""End to end through the workflow engine: signed Slack requests in, a threaded decision out
(seen by the stand-in Slack), a person's "Route to…" choice recorded as feedback, and a slash
command answered at its response_url."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from support.slack_standin import BOT_USER_ID, DEFAULT_TOKEN, SlackStandin
from support.workflow_harness import KeywordPredictor, Keywords, Workflow, run_workflow

from deskpilot.policy import parse_policy

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
# a keyword decides the label; no keyword, the model abstains
INTENT = Keywords(
    {"vpn": "network", "invoice": "billing", "password": "access"},
    "other",
    ("network", "billing", "access", "other"),
)

POLICY = """\
version: 1
systems:
  chat:
    connector: slack
    url: {url}
    credentials: slack-bot
    options:
      channels: C0HELP
      bot_user_id: {bot}
      labels: network,billing,access
tasks:
  intent:
    destinations:
      network: {{system: chat, queue: network-team, assignee: U0NETLEAD}}
      billing: {{system: chat, queue: billing-team}}
      access: {{system: chat, queue: access-team}}
    min_score: 0.5
triage:
  system: chat
  queue: triage
"""


@dataclass
class Env(Workflow):
    slack: SlackStandin

    def post(self, route: str, body: bytes, *, secret: str = SIGNING_SECRET, **headers: str) -> Any:
        ts = str(int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        assert signature is not None
        kind = "application/json" if route == "events" else "application/x-www-form-urlencoded"
        sent = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": kind}
        return self.http.post(f"/webhooks/acme/slack/{route}", content=body, headers=sent | headers)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandin) -> Iterator[Env]:
    with run_workflow(
        tmp_path,
        monkeypatch,
        KeywordPredictor({"intent": INTENT}),
        policy=POLICY.format(url=slack.url, bot=BOT_USER_ID),
        make=partial(Env, slack=slack),
        job_backoff_s=0.05,
        webhook_secrets={"acme/slack": SIGNING_SECRET},
        connector_secrets={"slack-bot": DEFAULT_TOKEN},
    ) as env:
        yield env


def message_event(fixtures: Path, ts: str, text: str, event_id: str = "Ev0E2E0001") -> bytes:
    data = json.loads((fixtures / "event_message.json").read_text(encoding="utf-8"))
    data["event"].update(ts=ts, event_ts=ts, text=text)
    data["event_id"] = event_id
    return json.dumps(data).encode()


FIXTURES = Path(__file__).parent / "fixtures"


def test_url_verification_and_bad_signatures(env: Env) -> None:
    body = (FIXTURES / "url_verification.json").read_bytes()
    answer = env.post("events", body)
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    forged = env.post("events", body, secret="not-the-signing-secret")
    assert forged.status_code == 401 and "does not match" in forged.text
    unsigned = env.http.post("/webhooks/acme/slack/events", content=body)
    assert unsigned.status_code == 401 and "missing X-Slack-Request-Timestamp" in unsigned.text
    other_tenant = env.http.post("/webhooks/globex/slack/events", content=body)
    assert other_tenant.status_code == 401


def test_a_channel_message_is_routed_in_its_thread_and_a_correction_recorded(env: Env) -> None:
    slack = env.slack
    ts = slack.post_user_message("C0HELP", "VPN drops every 10 minutes")
    body = message_event(FIXTURES, ts, "VPN drops every 10 minutes\nSince this morning.")
    first = env.post("events", body)
    assert first.status_code == 200, first.text
    [accepted] = first.json()["accepted"]
    assert accepted["kind"] == "ticket" and accepted["duplicate"] is False
    # Slack retries the same event (same event_id, freshly signed): stored once
    again = env.post("events", body, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and again.json()["accepted"][0]["duplicate"] is True
    # our own reply echoed back by the Events API is ignored
    own = json.loads((FIXTURES / "event_own_post.json").read_text(encoding="utf-8"))
    echoed = env.post("events", json.dumps(own).encode())
    assert echoed.status_code == 200 and echoed.json() == {"accepted": [], "ignored": "a bot's message"}

    env.run_jobs()
    [reply] = slack.replies("C0HELP", ts)
    assert reply["user"] == BOT_USER_ID and reply["thread_ts"] == ts
    assert reply["text"] == "deskpilot: routed to queue network-team, assignee U0NETLEAD"
    summary = reply["blocks"][0]["text"]["text"]
    assert summary == "*Routed*: queue `network-team` · assignee <@U0NETLEAD>\n• intent: *network* (90%)"
    assert reply["blocks"][1]["text"]["text"].startswith(
        "deskpilot routed this ticket. intent: network at 0.90"
    )
    assert reply["metadata"]["event_type"] == "deskpilot_decision"
    assert [c.method for c in slack.calls] == ["conversations.replies", "chat.postMessage"]

    # a person picks "billing" in the Route to… select: Slack posts the block_actions payload
    [actions] = [b for b in reply["blocks"] if b["type"] == "actions"]
    choose = json.loads((FIXTURES / "block_actions_route.json").read_text(encoding="utf-8"))
    choose["actions"][0]["block_id"] = actions["block_id"]
    choose["actions"][0]["selected_option"]["value"] = "billing"
    choose["message"]["ts"] = reply["ts"]
    clicked = env.post("interactivity", urlencode({"payload": json.dumps(choose)}).encode())
    assert clicked.status_code == 200, clicked.text
    assert [a["kind"] for a in clicked.json()["accepted"]] == ["feedback"]
    env.run_jobs()
    assert env.feedback() == [("intent", "billing", "U0BOB", "slack")]

    # "Correct" on the model's own label confirms it: nothing to learn, nothing recorded
    confirm = json.loads((FIXTURES / "block_actions_correct.json").read_text(encoding="utf-8"))
    button = actions["elements"][0]
    assert button["action_id"] == "deskpilot_correct"
    confirm["actions"][0].update(block_id=actions["block_id"], value=button["value"])
    assert env.post("interactivity", urlencode({"payload": json.dumps(confirm)}).encode()).status_code == 200
    env.run_jobs()
    assert env.feedback() == [("intent", "billing", "U0BOB", "slack")]
    assert len(slack.replies("C0HELP", ts)) == 1  # corrections post nothing


def test_an_unsure_message_goes_to_triage_in_its_thread(env: Env) -> None:
    ts = env.slack.post_user_message("C0HELP", "the coffee machine is sad")
    assert env.post(
        "events", message_event(FIXTURES, ts, "the coffee machine is sad", "Ev0E2E0002")
    ).is_success
    env.run_jobs()
    [reply] = env.slack.replies("C0HELP", ts)
    assert reply["text"] == "deskpilot: sent to triage to queue triage"
    [actions] = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert [e["type"] for e in actions["elements"]] == ["static_select"]  # nothing to confirm


def test_a_rate_limited_post_is_retried_after_retry_after_without_a_duplicate(env: Env) -> None:
    ts = env.slack.post_user_message("C0HELP", "password reset please")
    env.slack.fail_next(1, 429, retry_after=1, method="chat.postMessage")
    assert env.post("events", message_event(FIXTURES, ts, "password reset please", "Ev0E2E0003")).is_success
    started = time.monotonic()
    env.run_jobs()
    assert env.slack.replies("C0HELP", ts) == []  # the delivery waits for Slack's Retry-After
    while not env.slack.replies("C0HELP", ts) and time.monotonic() - started < 10:
        time.sleep(0.1)
        env.run_jobs()
    assert time.monotonic() - started >= 1.0
    [reply] = env.slack.replies("C0HELP", ts)
    assert reply["text"] == "deskpilot: routed to queue access-team"
    assert [c.status for c in env.slack.calls_to("chat.postMessage")] == [429, 200]


def test_a_slash_command_is_answered_at_once_then_at_its_response_url(env: Env) -> None:
    form = json.loads((FIXTURES / "slash_command.json").read_text(encoding="utf-8"))
    form["response_url"] = env.slack.response_url()
    answer = env.post("commands", urlencode(form).encode())
    assert answer.status_code == 200
    assert answer.json() == {"response_type": "ephemeral", "text": "Classifying…"}
    env.run_jobs()
    [posted] = env.slack.hook_posts
    assert posted["response_type"] == "ephemeral"
    assert posted["text"].startswith("intent: billing (billing 0.90")


def test_the_policy_on_the_setup_page_is_valid() -> None:
    page = (Path(__file__).parents[3] / "docs" / "connectors" / "slack.md").read_text(encoding="utf-8")
    [snippet] = [block for block in page.split("```yaml\n")[1:] if block.startswith("version: 1")]
    policy = parse_policy(snippet.split("```")[0], "docs/connectors/slack.md")
    assert policy.systems["chat"].connector == "slack"
    assert policy.systems["chat"].options["bot_user_id"] == "U0BOT1234"
