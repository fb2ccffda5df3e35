"""``deskpilot bench ingress``: signed webhooks at a fixed rate into ``deskpilot serve``.

One run, on loopback, in a temporary ``DESKPILOT_HOME`` (SQLite, the embedded worker pool):

1. the routing policy: ``trained`` (default) is the demo policy (``examples/policy.yaml``)
   with its ``queue`` and ``priority`` classifiers trained first on demo tickets
   (``deskpilot train classifier --preset fast``: a linear probe on the packaged encoder);
   ``rules`` is a policy whose overrides decide every task of every ticket, so no model runs
   and the figures are about ingress, the queue and the outbox alone;
2. a stand-in helpdesk (:mod:`deskpilot.evaluation.standin`, its own process) receives the
   outbox actions and counts each ``Idempotency-Key`` once;
3. ``deskpilot serve`` starts as a child process with ``DESKPILOT_WORKERS`` worker threads;
   once ``/readyz`` answers, an open-loop generator sends ``rate`` signed deliveries a second
   for ``duration_s`` to ``POST /webhooks/{tenant}/generic/{source}`` (distinct delivery ids,
   demo ticket texts, a pool of ``connections`` keep-alive connections). Request *i* is due
   at ``t0 + i / rate`` whatever happened to the others, and its ack latency runs from that
   due time to the 202 (so a slow server cannot hide its queueing by slowing the sender:
   no coordinated omission); anything but a 202 is an error;
4. after the last send, the bench waits (at most ``drain_timeout_s``) until every accepted
   ticket is processed: decided (``routed``/``triage``) with all its outbox actions done. It
   reads the SQLite file read-only (no write lock taken) instead of polling the API.

Figures go to ``evaluation/results/ingress.json`` (with machine, date and command line) and
to the ``ingress`` section of ``evaluation/RESULTS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib.util
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.errors import ConfigError, InputDataError
from deskpilot.evaluation import report

BENCH = "ingress"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
EXAMPLES = HERE.parent / "examples"
MODELS = ("trained", "rules")
TENANT = "bench"
SOURCE = "loadgen"
HELPDESK_TOKEN = "bench-helpdesk-token"
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef"
DECIDED = ("routed", "triage")
UNIQUE_TICKETS = 2000  # demo tickets generated; more deliveries reuse their texts
# settings of the caller's that still apply in the temporary home (models, threads)
PASSTHROUGH = (
    "DESKPILOT_BASE_MODEL",
    "DESKPILOT_MODEL_CACHE",
    "DESKPILOT_DEVICE",
    "DESKPILOT_BF16",
    "DESKPILOT_THREADS",
)

TARGETS = {
    "errors": 0,  # ==
    "unprocessed": 0,  # sent - processed ==
    "duplicates": 0,  # ==
    "ack_p99_ms": 500.0,  # <=
    "rps_vs_rate": 0.98,  # rps / rate >=
}

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]

RULES_POLICY = """\
# deskpilot bench ingress --model rules: the overrides decide every task, no model runs.
version: 1
systems:
  helpdesk:
    connector: generic
    url: {url}
    credentials: helpdesk
tasks:
  queue:
    destinations:
      billing: {{system: helpdesk, queue: billing-team}}
      technical_support: {{system: helpdesk, queue: technical-support}}
  priority:
    field: priority
triage:
  system: helpdesk
  queue: triage
overrides:
  - name: billing-words
    when:
      text_matches: "invoice|charge|refund|payment|bill"
    set:
      queue: billing
  - name: everything-else
    when:
      text_matches: "."
    set:
      queue: technical_support
      priority: medium
"""


@dataclass
class IngressConfig:
    """How the benchmark runs (recorded in the results)."""

    rate: float = 200.0
    duration_s: float = 60.0
    workers: int = 2
    model: str = "trained"
    connections: int = 64
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 600.0
    ready_timeout_s: float = 300.0
    train_rows: int = 600
    seed: int = 0
    job_poll_s: float | None = None  # None: the server's default
    extra_env: dict[str, str] = field(default_factory=dict)
    # True: the workers run as a separate `deskpilot worker --threads N` process, so they do
    # not share the gateway's interpreter lock; False: threads inside `deskpilot serve`
    worker_process: bool = False

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputDataError(f"unknown model '{self.model}'", hint=f"choose from {', '.join(MODELS)}")
        if not (self.rate > 0 and self.duration_s > 0):
            raise InputDataError("--rate and --duration must be positive")
        if self.workers < 1 or self.connections < 1:
            raise InputDataError(
                "--workers and --connections must be at least 1",
                hint="the bench measures ingress with a worker running",
            )
        if self.requests < 1:
            raise InputDataError("--rate x --duration must give at least one request")

    @property
    def requests(self) -> int:
        return round(self.rate * self.duration_s)


# --- demo tickets and policies ------------------------------------------------------------


def _generator() -> Any:
    """``examples/generate_tickets.py`` (not packaged: it lives beside the sources)."""
    path = EXAMPLES / "generate_tickets.py"
    if not path.is_file():
        raise ConfigError(
            f"bench ingress needs the demo ticket generator at {path}, which is missing",
            hint="run the bench from a deskpilot source checkout (the examples/ folder)",
        )
    spec = importlib.util.spec_from_file_location("generate_tickets", path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
        raise ConfigError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def demo_tickets(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` demo ticket rows (texts repeat after :data:`UNIQUE_TICKETS`)."""
    rows: list[dict[str, str]] = _generator().generate(min(n, UNIQUE_TICKETS), seed)
    return [rows[i % len(rows)] for i in range(n)]


def delivery_bodies(rows: Sequence[dict[str, str]], run_id: str) -> list[bytes]:
    """One webhook body per row, each with its own ``external_id``."""
    bodies = []
    for i, row in enumerate(rows):
        ticket = {
            "subject": row["subject"],
            "body": row["body"],
            "requester": row["requester"],
            "external_id": f"{run_id}-{i}",
            "metadata": {"bench": BENCH, "seq": i},
        }
        bodies.append(json.dumps({"type": "ticket", "ticket": ticket}).encode())
    return bodies


def policy_text(model: str, helpdesk_url: str) -> str:
    if model == "rules":
        return RULES_POLICY.format(url=helpdesk_url)
    path = EXAMPLES / "policy.yaml"
    if not path.is_file():
        raise ConfigError(f"bench ingress needs the demo policy at {path}, which is missing")
    text = path.read_text(encoding="utf-8")
    if "http://127.0.0.1:8900/api" not in text:
        raise ConfigError(f"{path} no longer points its helpdesk at http://127.0.0.1:8900/api")
    return text.replace("http://127.0.0.1:8900/api", helpdesk_url)


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_env(home: Path, cfg: IngressConfig) -> dict[str, str]:
    """The environment of every child: this home only, plus the caller's model settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKPILOT_") or k in PASSTHROUGH}
    env.update(
        DESKPILOT_HOME=str(home),
        DESKPILOT_ENV="development",
        DESKPILOT_QUEUE_BACKEND="embedded",
        DESKPILOT_WORKERS=str(cfg.workers),
        DESKPILOT_WEBHOOK_SECRETS=json.dumps({TENANT: WEBHOOK_SECRET}),
        DESKPILOT_CONNECTOR_SECRETS=json.dumps({"helpdesk": HELPDESK_TOKEN}),
        # one source at full rate is what the per-source webhook limit stops: lifted for the run
        DESKPILOT_RATE_LIMIT_WEBHOOK="0",
        DESKPILOT_RATE_LIMIT_PER_KEY="0",
        TOKENIZERS_PARALLELISM="false",
    )
    if cfg.job_poll_s is not None:
        env["DESKPILOT_JOB_POLL_S"] = str(cfg.job_poll_s)
    env.update(cfg.extra_env)
    return env


def _cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run ``deskpilot ARGS --json`` in a child; its last stdout line is the answer."""
    proc = subprocess.run(
        [sys.executable, "-m", "deskpilot.cli", *args, "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"deskpilot {' '.join(args)} failed:\n{tail}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def train_models(
    home: Path,
    env: dict[str, str],
    cfg: IngressConfig,
    log: Log,
    tasks: Sequence[str] = ("queue", "priority"),
) -> dict[str, Any]:
    """Train the demo classifiers of ``tasks`` (linear probes) into ``home``."""
    rows = _generator().generate(cfg.train_rows, cfg.seed + 1)
    data = home / "train.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    trained = {}
    for task in tasks:
        log(f"training the demo '{task}' classifier on {len(rows)} tickets (--preset fast)")
        answer = _cli(
            env, home, "train", "classifier", "--task", task, "--data", str(data),
            "--label-column", task, "--tenant", TENANT, "--preset", "fast",
        )  # fmt: skip
        trained[task] = {
            "version": answer.get("version"),
            "train_seconds": answer.get("train_seconds"),
            "labels": answer.get("labels"),
            "validation_accuracy": (answer.get("validation") or {}).get("accuracy"),
        }
    return trained


@contextlib.contextmanager
def standin_helpdesk(env: dict[str, str], cwd: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The stand-in helpdesk in its own process: yields (its API base URL, the process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deskpilot.evaluation.standin", "--token", HELPDESK_TOKEN],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        if not line:
            raise RuntimeError("the stand-in helpdesk did not start")
        port = int(json.loads(line)["port"])
        yield f"http://127.0.0.1:{port}/api", proc
    finally:
        _stop(proc, close_stdin=True)


def _stop(proc: subprocess.Popen[Any], *, close_stdin: bool = False, timeout: float = 30) -> None:
    if close_stdin and proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None and not close_stdin:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def worker_process(env: dict[str, str], home: Path, cfg: IngressConfig) -> Iterator[None]:
    """``deskpilot worker --threads N`` beside the gateway, when the config asks for one."""
    if not cfg.worker_process:
        yield
        return
    with (home / "worker.log").open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deskpilot.cli", "worker", "--threads", str(cfg.workers)],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        yield
    finally:
        _stop(proc)


@contextlib.contextmanager
def serve(env: dict[str, str], home: Path, timeout_s: float) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``deskpilot serve`` on a free loopback port; yields (URL, process) once /readyz is 200."""
    import httpx

    port = free_port()
    log = home / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deskpilot.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"deskpilot serve exited with code {proc.returncode}:\n{_log_tail(log)}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"deskpilot serve was not ready within {timeout_s:g} s:\n{_log_tail(log)}")
            time.sleep(0.2)
        yield url, proc
    finally:
        _stop(proc)


def _log_counts(path: Path) -> dict[str, Any]:
    """Warnings and errors the server logged (at --log-level warning), and the last lines."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    errors = sum(line.startswith(("ERROR", "CRITICAL")) or "Traceback" in line for line in lines)
    warnings = sum(line.startswith("WARNING") for line in lines)
    return {"errors": errors, "warnings": warnings, "tail": lines[-20:] if errors or warnings else []}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (None without psutil or once it is gone)."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except Exception:  # psutil missing, or the process has exited
        return None


# --- the load -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    """Per-request outcomes of one open-loop run (times in seconds on ``perf_counter``)."""

    latencies_ms: list[float]
    lags_ms: list[float]
    statuses: list[int]
    error_kinds: Counter[str]
    error_samples: list[str]
    replayed: int
    first_due: float
    last_sent: float
    last_answer: float


class TransportError(Exception):
    """The connection failed or closed before a whole response came back."""


class ClosedBeforeAnswer(TransportError):
    """The server closed the connection before sending a status line (e.g. keep-alive expiry)."""


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one server: a load generator's lean client.

    At most ``size`` connections; a request waits (FIFO) for a free one, and that wait counts
    in its latency. A kept-alive connection the server has closed in the meantime is
    replaced once, before anything was read from it, as browsers and httpx do. Why not httpx:
    under a backlog its pool costs milliseconds of CPU per request, as much as the server
    being measured, on the same cores.
    """

    def __init__(self, host: str, port: int, size: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._slots: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.LifoQueue()
        )
        for _ in range(size):
            self._slots.put_nowait(None)  # not connected yet
        self._open: set[asyncio.StreamWriter] = set()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        raw = (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode("latin-1") + body
        conn = await self._slots.get()
        keep = False
        try:
            async with asyncio.timeout(self.timeout_s):
                for _ in range(2):
                    reused = conn is not None
                    if conn is None:
                        conn = await self._connect()
                    reader, writer = conn
                    try:
                        writer.write(raw)
                        status, answer, keep = await _read_response(reader)
                        return status, answer
                    except (ClosedBeforeAnswer, ConnectionResetError, BrokenPipeError):
                        self._drop(writer)
                        conn = None
                        if not reused:
                            raise
            raise TransportError("unreachable")  # pragma: no cover - the loop returns or raises
        finally:
            if conn is not None and not keep:
                self._drop(conn[1])
                conn = None
            self._slots.put_nowait(conn)

    async def aclose(self) -> None:
        writers, self._open = list(self._open), set()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response."""
    line = await reader.readline()
    if not line:
        raise ClosedBeforeAnswer("the server closed the connection without answering")
    try:
        status = int(line.split()[1])
    except (IndexError, ValueError):
        raise TransportError(f"not an HTTP status line: {line[:80]!r}") from None
    headers: dict[str, str] = {}
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        body = b"".join(parts)
    else:
        body = b""
    return status, body, headers.get("connection", "").lower() != "close"


async def _drive(
    url: str,
    bodies: Sequence[bytes],
    delivery_ids: Sequence[str],
    cfg: IngressConfig,
    progress: Progress,
) -> LoadResult:
    from urllib.parse import urlsplit

    from deskpilot.connectors.generic import sign

    n = len(bodies)
    latencies = [math.nan] * n
    lags = [0.0] * n
    statuses = [0] * n
    kinds: Counter[str] = Counter()
    samples: list[str] = []
    replayed = 0
    done = 0
    last_sent = 0.0
    path = f"/webhooks/{TENANT}/generic/{SOURCE}"
    parts = urlsplit(url)
    pool = Http1Pool(parts.hostname or "127.0.0.1", parts.port or 80, cfg.connections, cfg.request_timeout_s)

    async def one(i: int, due: float) -> None:
        nonlocal done, replayed, last_sent
        started = time.perf_counter()
        lags[i] = (started - due) * 1000
        last_sent = max(last_sent, started)
        headers = sign(WEBHOOK_SECRET, bodies[i], delivery_id=delivery_ids[i])
        headers["Content-Type"] = "application/json"
        try:
            status, answer = await pool.post(path, bodies[i], headers)
            statuses[i] = status
            if status == 202:
                replayed += bool(json.loads(answer).get("duplicate"))
            else:
                kinds[f"HTTP {status}"] += 1
                if len(samples) < 5:
                    samples.append(f"{status}: {answer[:300].decode('utf-8', 'replace')}")
        except (OSError, TransportError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            statuses[i] = -1
            kinds[type(exc).__name__] += 1
            if len(samples) < 5:
                samples.append(f"{type(exc).__name__}: {exc}")
        latencies[i] = (time.perf_counter() - due) * 1000
        done += 1

    async def report() -> None:
        while done < n:
            progress("sending", done, n)
            await asyncio.sleep(0.25)

    reporter = asyncio.create_task(report())
    tasks = []
    try:
        first_due = time.perf_counter() + 0.05
        for i in range(n):
            due = first_due + i / cfg.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        last_answer = time.perf_counter()
        await reporter
    finally:
        await pool.aclose()
    progress("sending", done, n)
    return LoadResult(latencies, lags, statuses, kinds, samples, replayed, first_due, last_sent, last_answer)


def drive(
    url: str, bodies: Sequence[bytes], delivery_ids: Sequence[str], cfg: IngressConfig, progress: Progress
) -> LoadResult:
    """Send every body once, request *i* due at ``t0 + i / rate`` (open loop)."""
    return asyncio.run(_drive(url, bodies, delivery_ids, cfg, progress))


# --- counting in the database -------------------------------------------------------------


class StoreCounts:
    """Counts read from the gateway's SQLite file, read-only (no write lock is ever taken)."""

    def __init__(self, db_file: Path) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(f"sqlite:///file:{db_file}?mode=ro&uri=true")

    def __call__(self) -> dict[str, int]:
        from sqlalchemy import and_, exists, func, select

        from deskpilot.store.models import JobRecord, OutboxAction, TicketRecord

        open_action = exists().where(
            and_(OutboxAction.ticket_id == TicketRecord.id, OutboxAction.state != "done")
        )
        with self.engine.connect() as conn:
            tickets = conn.execute(
                select(func.count(), func.count(func.distinct(TicketRecord.external_id)))
            ).one()
            processed = conn.execute(
                select(func.count()).where(TicketRecord.state.in_(DECIDED), ~open_action)
            ).scalar_one()
            by_state: dict[str, int] = dict(
                conn.execute(select(TicketRecord.state, func.count()).group_by(TicketRecord.state)).all()
            )
            outbox: dict[str, int] = dict(
                conn.execute(select(OutboxAction.state, func.count()).group_by(OutboxAction.state)).all()
            )
            jobs: dict[str, int] = dict(
                conn.execute(select(JobRecord.state, func.count()).group_by(JobRecord.state)).all()
            )
        return {
            "tickets": int(tickets[0]),
            "duplicates": int(tickets[0]) - int(tickets[1]),
            "processed": int(processed),
            "tickets_failed": int(by_state.get("failed", 0)),
            "tickets_triage": int(by_state.get("triage", 0)),
            "tickets_routed": int(by_state.get("routed", 0)),
            "outbox_done": int(outbox.get("done", 0)),
            "outbox_pending": int(outbox.get("pending", 0)),
            "actions_dead": int(outbox.get("dead", 0)),
            "jobs_open": int(jobs.get("queued", 0)) + int(jobs.get("running", 0)),
            "jobs_dead": int(jobs.get("dead", 0)),
        }

    def close(self) -> None:
        self.engine.dispose()


def wait_until_processed(
    counts: Callable[[], dict[str, int]], expected: int, timeout_s: float, progress: Progress
) -> tuple[dict[str, int], float, bool]:
    """Poll until ``expected`` tickets are processed, nothing is left to run, or the timeout.

    Returns (the last counts, seconds waited, whether everything was processed).
    """
    started = time.perf_counter()
    while True:
        now = counts()
        progress("processing", now["processed"], expected)
        if now["processed"] >= expected:
            return now, time.perf_counter() - started, True
        stuck = now["jobs_open"] == 0 and now["outbox_pending"] == 0 and now["tickets"] >= expected
        if stuck or time.perf_counter() - started > timeout_s:
            return now, time.perf_counter() - started, False
        time.sleep(0.2)


# --- the run ------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else math.nan


def _stats(base_url: str) -> dict[str, int]:
    import httpx

    answer: dict[str, int] = httpx.get(base_url.rsplit("/api", 1)[0] + "/_stats", timeout=10).json()
    return answer


def checks(figures: dict[str, Any], rate: float) -> dict[str, dict[str, Any]]:
    """Each requirement: the measured value, its target and whether it is met."""
    values = {
        "errors": figures["errors"],
        "unprocessed": figures["sent"] - figures["processed"],
        "duplicates": figures["duplicates"],
        "ack_p99_ms": figures["ack_p99_ms"],
        "rps_vs_rate": round(figures["rps"] / rate, 3),
    }
    out = {}
    for name, target in TARGETS.items():
        value = values[name]
        if name == "ack_p99_ms":
            met, text = value <= target, f"<= {target:g}"
        elif name == "rps_vs_rate":
            met, text = value >= target, f">= {target:g}"
        else:
            met, text = value == target, f"== {target}"
        out[name] = {"value": value, "target": text, "met": bool(met)}
    return out


def run_ingress(
    config: IngressConfig | None = None,
    *,
    out_dir: Path | None = RESULTS_DIR,
    markdown: Path | None = RESULTS_MD,
    command: str | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the ingress benchmark; writes ``out_dir/ingress.json`` (and the ``ingress`` section
    of ``markdown``) unless they are None, and returns the results."""
    cfg = config or IngressConfig()
    say = log or (lambda message: None)
    tick = progress or (lambda stage, done, total: None)
    started = datetime.now(UTC)
    n = cfg.requests
    run_id = f"ingress-{started.strftime('%Y%m%dT%H%M%S')}"
    rows = demo_tickets(n, cfg.seed)
    bodies = delivery_bodies(rows, run_id)
    delivery_ids = [f"{run_id}-{i}" for i in range(n)]

    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-ingress-") as tmp:
        home = Path(tmp)
        env = bench_env(home, cfg)
        model_info: dict[str, Any] = {"kind": cfg.model}
        if cfg.model == "trained":
            t = time.perf_counter()
            model_info["tasks"] = train_models(home, env, cfg, say)
            model_info["setup_seconds"] = round(time.perf_counter() - t, 1)
        with standin_helpdesk(env, home) as (helpdesk_url, desk):
            (home / "policies").mkdir(exist_ok=True)
            (home / "policies" / f"{TENANT}.yaml").write_text(
                policy_text(cfg.model, helpdesk_url), encoding="utf-8"
            )
            say(f"starting deskpilot serve ({cfg.workers} worker threads, SQLite, model: {cfg.model})")
            serve_env = {**env, "DESKPILOT_WORKERS": "0"} if cfg.worker_process else env
            with serve(serve_env, home, cfg.ready_timeout_s) as (url, server), worker_process(env, home, cfg):
                say(f"sending {n:,} signed webhooks at {cfg.rate:g}/s for {cfg.duration_s:g} s to {url}")
                cpu_before = {"server": _cpu_seconds(server.pid), "standin": _cpu_seconds(desk.pid)}
                client_cpu = time.process_time()
                load = drive(url, bodies, delivery_ids, cfg, tick)
                client_cpu = time.process_time() - client_cpu
                cpu_send = {"server": _cpu_seconds(server.pid), "standin": _cpu_seconds(desk.pid)}
                counts = StoreCounts(home / "deskpilot.db")
                try:
                    at_end_of_send = counts()
                    accepted = sum(s == 202 for s in load.statuses)
                    say(f"{accepted:,} accepted; waiting for the worker to process them")
                    final, _, complete = wait_until_processed(counts, accepted, cfg.drain_timeout_s, tick)
                    finished = time.perf_counter()
                finally:
                    counts.close()
                cpu_end = {"server": _cpu_seconds(server.pid), "standin": _cpu_seconds(desk.pid)}
                desk_stats = _stats(helpdesk_url)
            server_log = _log_counts(home / "serve.log")

    figures = _figures(cfg, load, accepted, at_end_of_send, final, complete, finished, desk_stats)
    # cores busy on average: while sending (first due time to last answer), then while draining
    send_window = max(load.last_answer - load.first_due, 1e-9)
    drain_window = max(finished - load.last_answer, 1e-9)
    cpu = {}
    for name in ("server", "standin"):
        b, s, e = cpu_before[name], cpu_send[name], cpu_end[name]
        if b is not None and s is not None and e is not None:
            cpu[f"{name}_send_cores"] = round((s - b) / send_window, 3)
            cpu[f"{name}_drain_cores"] = round((e - s) / drain_window, 3)
    cpu["client_send_cores"] = round(client_cpu / send_window, 3)
    results: dict[str, Any] = {
        "bench": BENCH,
        "date": started.isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        **figures,
        "requirements": checks(figures, cfg.rate),
        "model": model_info,
        "store": final,
        "store_at_end_of_send": at_end_of_send,
        "helpdesk": desk_stats,
        "cpu": cpu,
        "server_log": server_log,
        "error_samples": load.error_samples,
        "settings": {
            **asdict(cfg),
            "requests": n,
            "db": "sqlite",
            "queue_backend": "embedded",
            "tenant": TENANT,
            "path": f"/webhooks/{TENANT}/generic/{SOURCE}",
        },
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": report.machine_info(),
    }
    if out_dir is not None:
        report.write_json(Path(out_dir) / f"{BENCH}.json", results)
    if markdown is not None:
        from deskpilot.evaluation.report import update_section

        update_section(Path(markdown), BENCH, render_ingress(results))
    return results


def _figures(
    cfg: IngressConfig,
    load: LoadResult,
    accepted: int,
    at_end_of_send: dict[str, int],
    final: dict[str, int],
    complete: bool,
    finished: float,
    desk: dict[str, int],
) -> dict[str, Any]:
    sent = len(load.statuses)
    latencies = [v for v in load.latencies_ms if not math.isnan(v)]
    window = load.last_sent - load.first_due + 1 / cfg.rate  # n intervals of 1/rate each
    return {
        "sent": sent,
        "accepted": accepted,
        "errors": sent - accepted,
        "error_kinds": dict(load.error_kinds),
        "rps": round(sent / window, 1),
        "ack_p50_ms": round(_percentile(latencies, 50), 2),
        "ack_p95_ms": round(_percentile(latencies, 95), 2),
        "ack_p99_ms": round(_percentile(latencies, 99), 2),
        "ack_max_ms": round(max(latencies, default=math.nan), 2),
        "ack_mean_ms": round(sum(latencies) / max(1, len(latencies)), 2),
        "send_lag_p99_ms": round(_percentile(load.lags_ms, 99), 2),
        "processed": final["processed"],
        "processed_at_end_of_send": at_end_of_send["processed"],
        "all_processed": complete and final["processed"] == sent,
        "drain_seconds": round(finished - load.last_sent, 2),
        "processing_rate": round(final["processed"] / max(finished - load.first_due, 1e-9), 1),
        "actions_delivered": int(desk.get("applied", 0)),
        "action_replays": int(desk.get("replays", 0)),
        "duplicates": final["duplicates"],
        "duplicate_answers": load.replayed,
    }


KEYS = (
    "sent",
    "accepted",
    "errors",
    "rps",
    "ack_p50_ms",
    "ack_p95_ms",
    "ack_p99_ms",
    "ack_max_ms",
    "processed",
    "drain_seconds",
    "processing_rate",
    "actions_delivered",
    "duplicates",
)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and requirement checks (for ``--json``)."""
    settings = results["settings"]
    return {
        "bench": BENCH,
        "date": results["date"],
        **{k: results[k] for k in KEYS},
        "requirements": {k: v["met"] for k, v in results["requirements"].items()},
        "settings": {
            k: settings[k]
            for k in ("rate", "duration_s", "workers", "worker_process", "model", "connections", "db")
            if k in settings
        },
        "machine": {k: results["machine"].get(k) for k in ("cpu", "usable_cores")},
    }


# --- Markdown -----------------------------------------------------------------------------


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render_ingress(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    req = results.get("requirements", {})
    model = results.get("model", {})
    cpu = results.get("cpu", {})
    store = results.get("store", {})

    def mark(name: str) -> str:
        met = req.get(name, {}).get("met")
        return "–" if met is None else ("met" if met else "**not met**")

    if model.get("kind") == "trained":
        tasks = model.get("tasks", {})
        what = "the demo policy (`examples/policy.yaml`) with its " + " and ".join(
            f"`{t}` classifier ({info.get('version')}, linear probe on the packaged encoder)"
            for t, info in tasks.items()
        )
    else:
        what = "a rules-only policy (overrides decide every task; no model runs)"
    lines = [
        "## Ingress",
        "",
        f"Measured {results.get('date', '?')} on {machine.get('cpu', '?')} "
        f"({machine.get('usable_cores', machine.get('cores', '?'))} cores, shared by the load "
        f"generator, the gateway and its workers, and the stand-in helpdesk); command: "
        f"`{results.get('command', '')}`. `deskpilot serve` with {settings.get('workers')} embedded "
        f"worker threads on SQLite; {what}.",
        "",
        _row(["measure", "value", "target", ""]),
        _row(["---", "---:", "---", "---"]),
        _row(
            [
                f"signed webhooks sent (open loop, {settings.get('rate'):g}/s for "
                f"{settings.get('duration_s'):g} s)",
                f"{results['sent']:,} at {results['rps']:.1f}/s",
                f">= {TARGETS['rps_vs_rate']:g} x rate",
                mark("rps_vs_rate"),
            ]
        ),
        _row(["accepted (202)", f"{results['accepted']:,}", "", ""]),
        _row(["errors (non-202 or transport)", results["errors"], "0", mark("errors")]),
        _row(
            [
                "ack latency p50 / p95 / p99 / max",
                f"{results['ack_p50_ms']:.1f} / {results['ack_p95_ms']:.1f} / "
                f"{results['ack_p99_ms']:.1f} / {results['ack_max_ms']:.1f} ms",
                f"p99 <= {TARGETS['ack_p99_ms']:g} ms",
                mark("ack_p99_ms"),
            ]
        ),
        _row(
            [
                "tickets processed (decided, every outbox action done)",
                f"{results['processed']:,} of {results['sent']:,}",
                "all",
                mark("unprocessed"),
            ]
        ),
        _row(
            [
                "processed when the last webhook was sent; drain after it",
                f"{results['processed_at_end_of_send']:,}; {results['drain_seconds']:.1f} s"
                + ("" if results.get("all_processed", True) else " (gave up waiting)"),
                "",
                "",
            ]
        ),
        _row(
            [
                "processing rate (first send to last ticket done)",
                f"{results['processing_rate']:.1f}/s",
                "",
                "",
            ]
        ),
        _row(
            [
                "actions delivered to the helpdesk (distinct idempotency keys); replays",
                f"{results['actions_delivered']:,}; {results['action_replays']:,}",
                "",
                "",
            ]
        ),
        _row(["duplicate tickets", results["duplicates"], "0", mark("duplicates")]),
        _row(
            [
                "tickets decided (routed or triage), whatever their actions",
                f"{store.get('tickets_routed', 0) + store.get('tickets_triage', 0):,}",
                "",
                "",
            ]
        ),
        _row(
            [
                "tickets routed / triage / failed; actions dead",
                f"{store.get('tickets_routed', 0):,} / {store.get('tickets_triage', 0):,} / "
                f"{store.get('tickets_failed', 0):,}; {store.get('actions_dead', 0):,}",
                "",
                "",
            ]
        ),
    ]
    if cpu:
        lines.append(
            _row(
                [
                    "CPU while sending: gateway+workers / load generator / helpdesk (cores)",
                    f"{cpu.get('server_send_cores', '–')} / {cpu.get('client_send_cores', '–')} / "
                    f"{cpu.get('standin_send_cores', '–')}",
                    "",
                    "",
                ]
            )
        )
    lines += [
        "",
        "How: on loopback, a temporary `DESKPILOT_HOME` (SQLite), a stand-in helpdesk in its own "
        "process counting each `Idempotency-Key` once, and `deskpilot serve` with its embedded "
        "worker pool. A lean HTTP/1.1 client on asyncio streams (a pool of "
        f"{settings.get('connections')} keep-alive connections) sends webhook *i* at t0 + i/rate "
        "whatever the earlier ones are doing (open loop), each HMAC-signed with its own delivery id "
        "and a demo ticket text; ack latency runs from that due time to the 202, so queueing in "
        "the server or in the client's connection pool counts (no coordinated omission). Then the "
        "bench waits until every accepted ticket is decided (routed or triage) with all its "
        "outbox actions done, reading the SQLite file read-only; the drain is the time from the "
        "last send until then. Anything but a 202 is an error.",
        "",
    ]
    return "\n".join(lines)
