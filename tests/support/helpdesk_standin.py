"""A real HTTP server on a free loopback port that plays a helpdesk's REST API for tests.

Not a mock of our client: requests go through sockets, so timeouts, refused connections,
crashed senders and retries behave as they would against Zendesk or Jira.

    POST /api/tickets/{id}/actions   {"kind": str, "fields": {...}, ...} -> fields applied once
    GET  /api/tickets/{id}           {"id": ..., "fields": {...}} (404 before any action)

``Idempotency-Key`` works like Stripe's: a repeated key answers the stored response with
``Idempotent-Replayed: true`` and applies nothing; the same key with different parameters is a
422. Concurrent requests with one key are serialised, so the second is a replay. ``fail_next``
faults and ``delay_s`` apply to the action POSTs.
Use from any test folder: ``from support.helpdesk_standin import HelpdeskStandin``.

    with HelpdeskStandin(token="t") as desk:
        client = GenericClient(desk.url, "t", timeout=2)
        ...
        assert [a.key for a in desk.applied] == ["k1"]
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from deskpilot.connectors.generic import GenericConnector
from deskpilot.errors import AuthError
from support import standin
from support.standin import Answer, Request, StandinServer, same_secret

_ACTIONS = re.compile(r"/api/tickets/([^/]+)/actions")
_TICKET = re.compile(r"/api/tickets/([^/]+)")


@dataclass(frozen=True)
class AppliedAction:
    key: str | None
    ticket: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class SeenRequest(standin.SeenRequest):
    replayed: bool = False


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class HelpdeskStandin(StandinServer):
    """Thread-safe stand-in helpdesk. ``state_file`` keeps applied actions across restarts."""

    label = "helpdesk"
    url_path = "/api"
    requests: list[SeenRequest]

    def __init__(
        self,
        *,
        token: str | None = None,
        secret: str | None = None,
        state_file: Path | str | None = None,
        delay_s: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(delay_s=delay_s, port=port)
        self.token = token
        self.secret = secret  # when set, requests must carry a valid X-Deskpilot-Signature
        self.state_file = Path(state_file) if state_file is not None else None
        self.applied: list[AppliedAction] = []
        self.replays = 0
        self.tickets: dict[str, dict[str, Any]] = {}
        self._stored: dict[str, _Stored] = {}
        self._load()

    # test controls ---------------------------------------------------------------------
    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.tickets.get(ticket_id)
            return dict(found) if found is not None else None

    def applied_keys(self) -> list[str | None]:
        with self._lock:
            return [a.key for a in self.applied]

    # request handling (called from handler threads) ------------------------------------
    def _delays(self, request: Request) -> bool:
        return request.method == "POST"

    def _truncated(self, request: Request) -> None:
        if request.method == "POST":
            self._record(SeenRequest("POST", request.path, request.query, request.headers, request.body, 0))

    def _seen(self, request: Request, status: int, headers: Mapping[str, str]) -> SeenRequest:
        replayed = headers.get("Idempotent-Replayed") == "true"
        return SeenRequest(
            request.method, request.path, request.query, request.headers, request.body, status, replayed
        )

    def _answer(self, request: Request) -> Answer:
        if request.method == "GET":
            match = _TICKET.fullmatch(request.path)
            found = self.ticket(unquote(match.group(1))) if match else None
            if match is None or found is None:
                return 404, {"error": {"message": f"no ticket at {request.path}"}}, {}
            return 200, {"id": unquote(match.group(1)), "fields": found}, {}
        match = _ACTIONS.fullmatch(request.path)
        if match is None:
            return 404, {"error": {"message": f"no endpoint at {request.path}"}}, {}
        fault = self._take_fault("POST", request.path)
        if fault is not None:
            answer = {"error": {"message": f"injected failure {fault.status}"}}
            return fault.status, answer, fault.retry_headers()
        reason = self._authorised(request.headers, request.body)
        if reason is not None:
            return 401, {"error": {"message": reason}}, {}
        data, problem = _valid_action(request.body)
        if data is None:
            return 400, {"error": {"message": problem}}, {}
        status, answer, replayed = self._act(
            unquote(match.group(1)), request.headers.get("idempotency-key"), data
        )
        return status, answer, {"Idempotent-Replayed": "true"} if replayed else {}

    def _authorised(self, headers: dict[str, str], body: bytes) -> str | None:
        """None when allowed, else the reason for a 401."""
        given = headers.get("authorization", "")
        if self.token is not None and not same_secret(given, f"Bearer {self.token}"):
            return "missing or wrong bearer token"
        if self.secret is not None:
            try:
                GenericConnector().verify(headers, body, secret=self.secret)
            except AuthError as exc:
                return str(exc)
        return None

    def _act(self, ticket: str, key: str | None, data: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        """Apply once per key; returns (status, body, replayed)."""
        fingerprint = json.dumps({"ticket": ticket, "request": data}, sort_keys=True)
        with self._lock:
            stored = self._stored.get(key) if key is not None else None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    message = f"Idempotency-Key {key!r} was used with different parameters"
                    return 422, {"error": {"message": message}}, False
                self.replays += 1
                return stored.status, stored.body, True
            record = self.tickets.setdefault(ticket, {})
            record.update(data["fields"])
            self.applied.append(AppliedAction(key, ticket, dict(data["fields"])))
            body = {"ticket": {"id": ticket, "fields": dict(record)}, "action_id": len(self.applied)}
            if key is not None:
                self._stored[key] = _Stored(fingerprint, 200, body)
            self._save()
            return 200, body, False

    # persistence -----------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text(encoding="utf-8"))
        self.applied = [AppliedAction(a["key"], a["ticket"], a["fields"]) for a in state["applied"]]
        self.tickets = state["tickets"]
        self._stored = {k: _Stored(**v) for k, v in state["stored"].items()}

    def _save(self) -> None:
        if self.state_file is None:
            return
        state = {
            "applied": [a.__dict__ for a in self.applied],
            "tickets": self.tickets,
            "stored": {k: v.__dict__ for k, v in self._stored.items()},
        }
        tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_file)


def _valid_action(body: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        return None, f"body is not JSON: {exc}"
    if not isinstance(data, dict):
        return None, "body must be a JSON object"
    if not isinstance(data.get("kind"), str) or not isinstance(data.get("fields"), dict):
        return None, 'body needs "kind" (string) and "fields" (object)'
    return data, ""
