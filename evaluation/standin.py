"""A minimal stand-in helpdesk for benchmarks: a threaded HTTP server on a loopback port.

    POST /api/tickets/{id}/actions   -> 200, applied once per ``Idempotency-Key``
    GET  /_stats                     -> {"applied", "requests", "replays", "unauthorised"}

A repeated ``Idempotency-Key`` answers the stored response with ``Idempotent-Replayed:
true`` and counts as a replay, so ``applied`` is the number of distinct actions delivered.
With a token, requests must carry ``Authorization: Bearer <token>`` (else 401).

Run it in its own process, so its threads do not share a GIL with the load generator:
``python -m deskpilot.evaluation.standin --token T`` prints ``{"port": N}`` on stdout once
it listens, then serves until stdin closes or the process is terminated.
"""

from __future__ import annotations

import argparse
import hmac
import json
import re
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_ACTIONS = re.compile(r"/api/tickets/([^/]+)/actions")


class StandinHelpdesk(ThreadingHTTPServer):
    """Counts the actions it is sent; thread-safe. ``start()`` serves in a daemon thread."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, *, token: str | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.token = token
        self.lock = threading.Lock()
        self.stored: dict[str, bytes] = {}
        self.requests = 0
        self.replays = 0
        self.applied = 0
        self.unauthorised = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "applied": self.applied,
                "requests": self.requests,
                "replays": self.replays,
                "unauthorised": self.unauthorised,
            }

    def start(self) -> StandinHelpdesk:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: StandinHelpdesk
    protocol_version = "HTTP/1.1"  # keep-alive: the connector's client reuses connections
    # TCP_NODELAY: else Nagle's algorithm holds the body (a second small segment) back until
    # the client's delayed ACK, ~40 ms a response
    disable_nagle_algorithm = True
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, raw: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/_stats":
            self._send(200, json.dumps(self.server.stats()).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)  # the fields are not checked: the bench counts deliveries
        match = _ACTIONS.fullmatch(urlsplit(self.path).path)
        if match is None:
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        if server.token is not None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {server.token}".encode()):
                with server.lock:
                    server.unauthorised += 1
                self._send(401, b'{"error": {"message": "missing or wrong bearer token"}}')
                return
        key = self.headers.get("Idempotency-Key")
        with server.lock:
            server.requests += 1
            stored = server.stored.get(key) if key else None
            if stored is not None:
                server.replays += 1
                answer, extra = stored, {"Idempotent-Replayed": "true"}
            else:
                server.applied += 1
                answer, extra = (
                    json.dumps({"ticket": {"id": match.group(1)}, "action_id": server.applied}).encode(),
                    {},
                )
                if key:
                    server.stored[key] = answer
        self._send(200, answer, extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A stand-in helpdesk for benchmarks.")
    parser.add_argument("--token", default=None, help="bearer token the requests must carry")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    server = StandinHelpdesk(token=args.token, port=args.port).start()
    sys.stdout.write(json.dumps({"port": server.port}) + "\n")
    sys.stdout.flush()
    try:
        sys.stdin.read()  # until the parent closes our stdin (or terminates us)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
