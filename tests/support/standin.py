"""What every stand-in server shares: a real HTTP server on a loopback port for tests.

Not a mock of our clients: requests go through sockets, so timeouts, refused connections,
crashed senders and retries behave as they would against the real system. A stand-in is a
:class:`StandinServer` subclass that keeps only what its system does::

    class Desk(StandinServer):
        label = "Desk"

        def _answer(self, request: Request) -> Answer:
            fault = self._take_fault(request.method, request.path)
            if fault is not None:
                return fault.status, {"error": "injected"}, fault.retry_headers()
            return 200, {"ok": True}, {}

The base gives it the lifecycle (``start``/``stop``, a context manager, ``port``/``url``),
a handler thread per request (a sender that hangs up mid-body is dropped unanswered),
``delay_s`` (a slow server; stopping ends the wait and the request goes unanswered),
``fail_next`` fault injection, the ``requests`` it saw (``seen``) and the encoding of
answers: JSON for data, text for a ``str``, no body for ``None``.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
from base64 import b64encode
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"

# (status, body, extra headers): a JSON-able body, a str (text) or None (no body at all)
Answer = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class Request:
    """One request as it arrived; ``method`` as the stand-in names it (see ``aliases``)."""

    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class SeenRequest:
    """A request a stand-in answered, with the status it got."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """An injected failure, answered instead of the next request it applies to."""

    status: int
    retry_after: float | str | None = None
    method: str | None = None
    path: str | None = None

    def applies(self, method: str, path: str) -> bool:
        return self.method in (None, method) and self.path in (None, path)

    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a credential a request carries with the expected one."""
    return hmac.compare_digest(given.encode(), expected.encode())


def basic_auth(user_and_password: str) -> str:
    """The ``Authorization`` value of HTTP Basic for ``user:password``."""
    return "Basic " + b64encode(user_and_password.encode()).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads: nothing outlives the test
    block_on_close = True
    standin: StandinServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a sender that hung up or was killed mid-request is expected here, not an error
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a sender that stalls mid-request cannot hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self.server.standin._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.body:
            self.wfile.write(reply.body)


class StandinServer:
    """Thread-safe base of the stand-ins; subclasses answer in :meth:`_answer` (or :meth:`_respond`)."""

    label: ClassVar[str] = "server"  # the system's name, in messages and the thread's name
    url_path: ClassVar[str] = ""  # what ``url`` adds to ``http://127.0.0.1:{port}``
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")  # other HTTP methods are 501
    aliases: ClassVar[Mapping[str, str]] = {}  # an HTTP method served as another one
    keep_blank_values: ClassVar[bool] = False  # ``?a=`` gives ``{"a": ""}`` (else it is dropped)
    json_type: ClassVar[str] = "application/json"
    json_separators: ClassVar[tuple[str, str] | None] = None
    text_type: ClassVar[str] = "text/plain"

    def __init__(self, *, delay_s: float = 0.0, port: int = 0) -> None:
        self.delay_s = delay_s
        self.requests: list[Any] = []  # what ``_seen`` made of each answered request
        self._port = port
        self._lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"stand-in {self.label} already started")
        self._stopping.clear()
        server = _Server((HOST, self._port), _Handler)
        server.standin = self
        self._server = server
        self._port = server.server_address[1]  # a restart keeps the port (and the URL)
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.label.lower()}-standin",
            daemon=True,
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"stand-in {self.label} not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:{port}``, where the real system has ``https://{its host}``."""
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """The URL a policy (or a client) is given for this system."""
        return self.base_url + self.url_path

    # test controls ---------------------------------------------------------------------
    def fail_next(
        self, n: int, status: int = 503, retry_after: float | str | None = None, *, method: str | None = None
    ) -> None:
        """The next ``n`` requests (of ``method``, if given) answer ``status`` (with ``Retry-After``
        when given) and change nothing."""
        self._inject(n, Fault(status, retry_after, method))

    def seen(self, method: str | None = None) -> list[Any]:
        """The requests answered so far, optionally only those of one method."""
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    # for subclasses ----------------------------------------------------------------------
    def _inject(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(n))

    def _take_fault(self, method: str, path: str = "") -> Fault | None:
        """The first injected fault that applies to this request, taken off the queue."""
        with self._lock:
            for fault in self._faults:
                if fault.applies(method, path):
                    self._faults.remove(fault)
                    return fault
            return None

    def _record(self, seen: Any) -> None:
        with self._lock:
            self.requests.append(seen)

    def _reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """The answer as this system encodes it: JSON, text for a ``str``, nothing for ``None``."""
        if body is None:
            raw, kind = b"", None
        elif isinstance(body, str):
            raw, kind = body.encode(), self.text_type
        else:
            raw, kind = json.dumps(body, separators=self.json_separators).encode(), self.json_type
        return Reply(status, raw, kind, dict(headers or {}))

    def _answer(self, request: Request) -> Answer:
        """(status, body, extra headers) for one request: the system's routing and checks."""
        raise NotImplementedError

    def _seen(self, request: Request, status: int, headers: Mapping[str, str]) -> Any:
        """What ``requests`` keeps of an answered request."""
        return SeenRequest(request.method, request.path, request.query, request.headers, request.body, status)

    def _respond(self, request: Request) -> Reply | None:
        """Answer, record, reply (recorded first: a test that got the reply sees the request);
        None leaves the request unanswered."""
        status, body, headers = self._answer(request)
        self._record(self._seen(request, status, headers))
        return self._reply(status, body, headers)

    def _delays(self, request: Request) -> bool:
        """Whether ``delay_s`` applies to this request."""
        return True

    def _truncated(self, request: Request) -> None:
        """The sender hung up before the whole body arrived: nothing is answered or applied."""

    # request handling (handler threads) --------------------------------------------------
    def _serve(self, handler: _Handler) -> None:
        method = self.aliases.get(handler.command) or (
            handler.command if handler.command in self.methods else None
        )
        if method is None:  # as http.server answers a method without a do_ handler
            handler.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({handler.command!r})")
            return
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, self.keep_blank_values).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length", "0") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        request = Request(method, parts.path, query, headers, body)
        if len(body) < length:
            self._truncated(request)
            handler.close_connection = True
            return
        if self.delay_s > 0 and self._delays(request) and self._stopping.wait(self.delay_s):
            return  # stopped while delaying
        reply = self._respond(request)
        if reply is not None:
            handler.send(reply)
