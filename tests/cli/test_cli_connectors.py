"""`deskpilot connectors list`: every connector, and whether a tenant has set it up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import Invoke, assert_ok

from deskpilot.policy import PolicyStore

POLICY = """\
systems:
  desk: {connector: zendesk, url: "https://acme.zendesk.com", credentials: zendesk}
  chat: {connector: slack, url: "https://slack.com/api/", credentials: slackbot}
tasks:
  queue:
    destinations:
      billing: {system: desk, group: "360001"}
triage: {system: desk, group: "360009"}
"""


def _rows(cli: Invoke) -> dict[str, dict[str, object]]:
    result = cli("connectors", "list", "--json")
    assert_ok(result)
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(rows, list)
    return {row["name"]: row for row in rows}


def test_all_six_and_the_generic_one_are_listed_unconfigured_on_a_fresh_home(cli: Invoke) -> None:
    rows = _rows(cli)
    assert {"generic", "slack", "jira", "zendesk", "servicenow", "erpnext", "odoo"} <= set(rows)
    assert not any(row["configured"] for row in rows.values())
    assert all(set(row) >= {"name", "configured"} for row in rows.values())
    assert rows["slack"]["webhook"] == "/webhooks/{tenant}/slack/events" or str(
        rows["slack"]["webhook"]
    ).startswith("/webhooks/{tenant}/slack")


def test_a_webhook_secret_or_a_policy_with_credentials_sets_one_up(
    cli: Invoke, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKPILOT_WEBHOOK_SECRETS", json.dumps({"acme/jira": "s1", "acme": "s2"}))
    monkeypatch.setenv("DESKPILOT_CONNECTOR_SECRETS", json.dumps({"zendesk": "ana@acme.com/token:x"}))
    PolicyStore(home / "policies").put("acme", POLICY)
    rows = _rows(cli)
    assert rows["jira"]["configured"] and rows["jira"]["inbound_tenants"] == ["acme"]
    assert rows["generic"]["configured"]  # the tenant-wide secret
    assert rows["zendesk"]["configured"] and rows["zendesk"]["outbound_tenants"] == ["acme"]
    assert not rows["slack"]["configured"] and rows["slack"]["missing_credentials"] == ["acme"]
    assert not rows["odoo"]["configured"]
    table = cli("connectors", "list")
    assert_ok(table)
    assert "slack" in table.stdout and "no credentials" in table.stdout
