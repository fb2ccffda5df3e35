"""The Business Rule script of docs/connectors/servicenow.md, run in Node.js against emulated
Glide APIs: what it sends must be what deskpilot verifies and parses.

The emulation follows the documented behaviour of each API (``GlideCertificateEncryption.
generateMac``: key base64-encoded, MAC returned in base64; ``GlideElement.changes()``;
``GlideRecord.getValue()``: a string, or null when empty); it is no substitute for a real
instance (see the limitations in the docs page). Skipped where ``node`` is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deskpilot.connectors.servicenow import ServiceNowConnector
from deskpilot.connectors.servicenow.verify import verify
from deskpilot.types import FieldChange, Ticket

DOCS = Path(__file__).resolve().parents[3] / "docs" / "connectors" / "servicenow.md"
NODE = shutil.which("node")
SECRET = "rule-secret-Ω-42"  # non-ASCII on purpose: the script base64-encodes it as UTF-8
URL = "https://deskpilot.acme.example/webhooks/acme/servicenow"
SYS_ID = "46d44a23a9fe19810012d100cca80666"
NETWORK = "287ebd7da9fe198100f92cc8d1d2154e"
BILLING = "b85d44954a3623120004689b2d5dd60a"

HARNESS = r"""
const fs = require('fs');
const crypto = require('crypto');
const spec = JSON.parse(fs.readFileSync(0, 'utf8'));
const cur = spec.values, prev = spec.previous || {};
const value = (rec, name) => (rec[name] === undefined || rec[name] === '' ? null : String(rec[name]));
const current = {
  operation: () => spec.operation,
  getTableName: () => 'incident',
  getValue: (name) => value(cur, name),
};
for (const name of Object.keys(cur).concat(Object.keys(prev))) {
  current[name] = {
    changes: () => spec.operation === 'update' && value(cur, name) !== value(prev, name),
    nil: () => value(cur, name) === null,
  };
}
current.caller_id.email = spec.caller_email;
const previous = spec.operation === 'insert' ? null : {getValue: (name) => value(prev, name)};
const gs = {
  getProperty: (name, fallback) => (name in spec.props ? spec.props[name] : fallback),
  getUserName: () => spec.user,
  warn: (message) => { throw new Error('gs.warn: ' + message); },
};
const GlideStringUtil = {base64Encode: (text) => Buffer.from(text, 'utf8').toString('base64')};
function GlideCertificateEncryption() {}
GlideCertificateEncryption.prototype.generateMac = function (key, algorithm, data) {
  if (algorithm !== 'HmacSHA256') throw new Error('algorithm ' + algorithm);
  return crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(data, 'utf8').digest('base64');
};
let sent = null;
const sn_ws = {RESTMessageV2: function () {
  const message = {headers: {}};
  this.setEndpoint = (url) => { message.endpoint = url; };
  this.setHttpMethod = (method) => { message.method = method; };
  this.setRequestHeader = (name, v) => { message.headers[name] = v; };
  this.setRequestBody = (body) => { message.body = body; };
  this.setMIDServer = () => {};
  this.executeAsync = () => { sent = message; };
}};
const names = ['current', 'previous', 'gs', 'GlideStringUtil', 'GlideCertificateEncryption', 'sn_ws'];
const rule = new Function(...names, spec.script);
rule(current, previous, gs, GlideStringUtil, GlideCertificateEncryption, sn_ws);
process.stdout.write(JSON.stringify(sent));
"""


def rule_script() -> str:
    match = re.search(r"```javascript\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert match is not None, "the docs page lost its Business Rule script"
    return match.group(1)


def run_rule(
    operation: str, user: str, values: dict[str, str], previous: dict[str, str] | None = None
) -> dict[str, Any] | None:
    if NODE is None:
        pytest.skip("node is not installed: the Business Rule script cannot be run")
    spec = {
        "operation": operation,
        "user": user,
        "values": values,
        "previous": previous,
        "caller_email": "ann.lee@example.com",
        "props": {
            "deskpilot.webhook_url": URL,
            "deskpilot.webhook_secret": SECRET,
            "deskpilot.integration_user": "deskpilot.integration",
        },
        "script": rule_script(),
    }
    done = subprocess.run(
        [NODE, "-e", HARNESS], input=json.dumps(spec), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    sent: dict[str, Any] | None = json.loads(done.stdout)
    return sent


def incident(**changes: str) -> dict[str, str]:
    values = {
        "sys_id": SYS_ID,
        "number": "INC0010042",
        "short_description": "Café VPN ☕ drops",
        "description": 'Line one\nline "two"\tand a backslash \\',
        "caller_id": "62826bf03710200044e0bfc8bcbe5df1",
        "assignment_group": NETWORK,
        "assigned_to": "",
        "priority": "3",
        "impact": "2",
        "urgency": "2",
        "category": "network",
        "sys_updated_on": "2025-03-01 09:30:12",
        "sys_updated_by": "ann.lee",
        "sys_mod_count": "0",
    }
    return values | changes


def parse(sent: dict[str, Any], options: dict[str, str] | None = None) -> Any:
    body = sent["body"].encode("utf-8")
    assert verify(sent["headers"], body, secret=SECRET) == "signature"
    return ServiceNowConnector().parse("acme", "", sent["headers"], body, options or {})


def test_an_insert_is_sent_signed_and_parses_to_a_ticket() -> None:
    sent = run_rule("insert", "ann.lee", incident())
    assert sent is not None
    assert (sent["endpoint"], sent["method"]) == (URL, "post")
    assert sent["body"].isascii()  # non-ASCII escaped before signing
    assert set(sent["headers"]) == {"Content-Type", "X-Deskpilot-Timestamp", "X-Deskpilot-Signature"}
    (event,) = parse(sent).events
    ticket = event.payload
    assert isinstance(ticket, Ticket)
    assert ticket.subject == "Café VPN ☕ drops"
    assert ticket.body == 'Line one\nline "two"\tand a backslash \\'
    assert (ticket.requester, ticket.external_id) == ("ann.lee@example.com", SYS_ID)
    assert event.delivery_id == f"{SYS_ID}:2025-03-01 09:30:12:0:ticket"
    assert ticket.metadata["assignment_group"] == NETWORK and "assigned_to" not in ticket.metadata


def test_a_persons_reassignment_is_sent_and_parses_to_a_correction() -> None:
    before = incident()
    after = incident(assignment_group=BILLING, sys_updated_by="beth.anglin", sys_mod_count="2")
    sent = run_rule("update", "beth.anglin", after, before)
    assert sent is not None
    data = json.loads(sent["body"])
    assert (data["event"], data["changed"], data["assigned_to"]) == ("update", ["assignment_group"], None)
    (event,) = parse(sent, {"integration_user": "deskpilot.integration"}).events
    assert event.payload == FieldChange(SYS_ID, "group", BILLING, "beth.anglin", NETWORK)


def test_a_priority_change_is_one_correction() -> None:
    after = incident(impact="1", urgency="1", priority="1", sys_updated_by="beth.anglin", sys_mod_count="3")
    sent = run_rule("update", "beth.anglin", after, incident())
    assert sent is not None
    assert json.loads(sent["body"])["changed"] == ["priority", "impact", "urgency"]
    (event,) = parse(sent, {"integration_user": "deskpilot.integration"}).events
    assert event.payload == FieldChange(SYS_ID, "priority", "1", "beth.anglin", "3")


def test_nothing_is_sent_for_our_own_or_unwatched_updates() -> None:
    ours = incident(assignment_group=BILLING, sys_updated_by="deskpilot.integration", sys_mod_count="1")
    assert run_rule("update", "deskpilot.integration", ours, incident()) is None
    unwatched = incident(short_description="VPN still drops", sys_mod_count="1")
    assert run_rule("update", "ann.lee", unwatched, incident()) is None
