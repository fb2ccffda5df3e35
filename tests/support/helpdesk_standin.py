"""A real HTTP server on a free loopback port that plays a helpdesk's REST API for tests.

Not a mock of our client: requests go through sockets, so timeouts, refused connections,
crashed senders and retries behave as they would against Zendesk or Jira.

    POST /api/tickets/{id}/actions   {"kind": str, "fields": {...}, ...} -> fields applied once
    GET  /api/tickets/{id}           {"id": ..., "fields": {...}} (404 before any action)

``Idempotency-Key`` works like Stripe's: a repeated key answers the stored response with
``Idempotent-Replayed: true`` and applies nothing; the same key with different parameters is a
422. Concurrent requests with one key are serialised, so the second is a replay.
Use from any test folder: ``from support.helpdesk_standin import HelpdeskStandin``.

    with HelpdeskStandin(token="t") as desk:
        client = GenericClient(desk.url, "t", timeout=2)
        ...
        assert [a.key for a in desk.applied] == ["k1"]
"""

from __future__ import annotations

import hmac
import json
import os
import re
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deskpilot.connectors.generic import GenericConnector
from deskpilot.errors import AuthError

_ACTIONS = re.compile(r"/api/tickets/([^/]+)/actions")
_TICKET = re.compile(r"/api/tickets/([^/]+)")


@dataclass(frozen=True)
class AppliedAction:
    key: str | None
    ticket: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    replayed: bool = False


@dataclass
class _Fault:
    status: int
    retry_after: float | str | None


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads: nothing outlives the test
    block_on_close = True
    standin: HelpdeskStandin

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a sender that hung up or was killed mid-request is expected here, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class HelpdeskStandin:
    """Thread-safe stand-in helpdesk. ``state_file`` keeps applied actions across restarts."""

    def __init__(
        self,
        *,
        token: str | None = None,
        secret: str | None = None,
        state_file: Path | str | None = None,
        delay_s: float = 0.0,
        port: int = 0,
    ) -> None:
        self.token = token
        self.secret = secret  # when set, requests must carry a valid X-Deskpilot-Signature
        self.delay_s = delay_s
        self.state_file = Path(state_file) if state_file is not None else None
        self.applied: list[AppliedAction] = []
        self.requests: list[SeenRequest] = []
        self.replays = 0
        self.tickets: dict[str, dict[str, Any]] = {}
        self._port = port
        self._lock = threading.RLock()
        self._faults: deque[_Fault] = deque()
        self._stored: dict[str, _Stored] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._load()

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> HelpdeskStandin:
        if self._server is not None:
            raise RuntimeError("stand-in helpdesk already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.standin = self
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="helpdesk-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # requests still in their delay are dropped, as by a dying server
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> HelpdeskStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("stand-in helpdesk not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:41234/api``."""
        return f"http://127.0.0.1:{self.port}/api"

    # test controls ---------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """The next ``n`` action POSTs answer ``status`` (with ``Retry-After``) and apply nothing."""
        with self._lock:
            self._faults.extend(_Fault(status, retry_after) for _ in range(n))

    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.tickets.get(ticket_id)
            return dict(found) if found is not None else None

    def applied_keys(self) -> list[str | None]:
        with self._lock:
            return [a.key for a in self.applied]

    # request handling (called from handler threads) ------------------------------------
    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _authorised(self, headers: dict[str, str], body: bytes) -> str | None:
        """None when allowed, else the reason for a 401."""
        if self.token is not None:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a sender that stalls mid-request cannot hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def do_GET(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        match = _TICKET.fullmatch(path)
        found = standin.ticket(unquote(match.group(1))) if match else None
        status = 200 if found is not None else 404
        standin._record(SeenRequest("GET", path, self._headers(), b"", status))
        if match is None or found is None:
            self._send(404, {"error": {"message": f"no ticket at {path}"}})
        else:
            self._send(200, {"id": unquote(match.group(1)), "fields": found})

    def do_POST(self) -> None:
        standin = self.server.standin
        path = urlsplit(self.path).path
        headers = self._headers()
        length = int(headers.get("content-length", "0") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if len(body) < length:  # the sender died mid-request: nothing to answer, nothing applied
            standin._record(SeenRequest("POST", path, headers, body, 0))
            self.close_connection = True
            return
        if standin.delay_s > 0 and standin._stopping.wait(standin.delay_s):
            return  # stopped while delaying
        status, answer, extra, replayed = self._handle_action(path, headers, body)
        standin._record(SeenRequest("POST", path, headers, body, status, replayed))
        self._send(status, answer, extra)

    def _handle_action(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str], bool]:
        standin = self.server.standin
        match = _ACTIONS.fullmatch(path)
        if match is None:
            return 404, {"error": {"message": f"no endpoint at {path}"}}, {}, False
        fault = standin._next_fault()
        if fault is not None:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return fault.status, {"error": {"message": f"injected failure {fault.status}"}}, extra, False
        reason = standin._authorised(headers, body)
        if reason is not None:
            return 401, {"error": {"message": reason}}, {}, False
        data, problem = _valid_action(body)
        if data is None:
            return 400, {"error": {"message": problem}}, {}, False
        status, answer, replayed = standin._act(unquote(match.group(1)), headers.get("idempotency-key"), data)
        return status, answer, ({"Idempotent-Replayed": "true"} if replayed else {}), replayed
