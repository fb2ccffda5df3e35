"""``deskpilot bench load``: classify requests and signed webhooks at once, against ``deskpilot serve``.

One run, on loopback, in a temporary ``DESKPILOT_HOME`` (SQLite), with the pieces of
:mod:`deskpilot.evaluation.bench_ingress`:

1. the demo ``queue`` classifier is trained first on demo tickets (``--preset fast``: a linear
   probe on the packaged encoder), and an API key is created for the tenant;
2. ``deskpilot serve`` starts as a child process (its embedded workers off unless ``workers``
   is set, so the figures are about the front door: classifying, and accepting deliveries;
   with workers, they route each ticket by bench ingress's rules policy to its stand-in
   helpdesk);
   the rate limits are lifted, since one client sending as fast as it can is what they stop;
3. for ``seconds``, ``concurrency`` httpx async clients loop on ``POST /v1/classify`` (one demo
   ticket text each) and as many on ``POST /webhooks/{tenant}/generic/{source}`` (each delivery
   signed, with its own id): closed loop, each sends its next request when the last is answered;
4. then the server is stopped and its database read: every delivery answered 202 must have its
   ticket row (``lost`` counts those missing).

Latency runs from sending a request to its answer; anything but a 2xx, or a transport error, is
an error. Figures go to ``evaluation/results/load.json`` and the ``load`` section of
``evaluation/RESULTS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.errors import InputDataError
from deskpilot.evaluation import bench_ingress, report
from deskpilot.evaluation.bench_ingress import (
    SOURCE,
    TENANT,
    WEBHOOK_SECRET,
    IngressConfig,
    bench_env,
    delivery_bodies,
    demo_tickets,
    policy_text,
    serve,
    standin_helpdesk,
    train_models,
)

BENCH = "load"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
TASK = "queue"
UNLIMITED = "1000000/minute"
KEYS = (
    "classify_requests",
    "classify_rps",
    "classify_p50_ms",
    "classify_p99_ms",
    "ingress_requests",
    "ingress_rps",
    "ingress_p50_ms",
    "ingress_p99_ms",
    "errors",
    "lost",
)

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


@dataclass
class LoadConfig:
    """How the load runs (recorded in the results)."""

    seconds: float = 60.0
    concurrency: int = 8  # clients per endpoint
    workers: int = 0  # the gateway's embedded workers (0: accept only, process nothing)
    train_rows: int = 600
    seed: int = 0
    request_timeout_s: float = 30.0
    ready_timeout_s: float = 300.0
    unique_tickets: int = 2000
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise InputDataError("--seconds must be positive")
        if not 1 <= self.concurrency <= 512:
            raise InputDataError("--concurrency must be 1 to 512")
        if self.workers < 0 or self.train_rows < 20:
            raise InputDataError("--workers must be >= 0 and the training set at least 20 rows")


@dataclass
class Endpoint:
    """What one endpoint's clients saw."""

    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 5:
            self.samples.append(f"{kind}: {detail[:300]}")


@dataclass
class LoadResult:
    classify: Endpoint
    ingress: Endpoint
    accepted_ticket_ids: list[int]
    window_s: float


def _ingress_config(cfg: LoadConfig) -> IngressConfig:
    """The ingress bench's settings for the pieces reused from it (environment, training)."""
    return IngressConfig(
        workers=max(cfg.workers, 1),
        train_rows=cfg.train_rows,
        seed=cfg.seed,
        extra_env={
            "DESKPILOT_WORKERS": str(cfg.workers),
            "DESKPILOT_RATE_LIMIT_PER_KEY": UNLIMITED,
            "DESKPILOT_RATE_LIMIT_WEBHOOK": UNLIMITED,
            "DESKPILOT_RATE_LIMIT_AUTH_FAILURES": UNLIMITED,
            **cfg.extra_env,
        },
    )


def create_key(home: Path) -> str:
    """A read key of the bench tenant, written straight into the home's database."""
    from deskpilot.store import Database, create_api_key

    database = Database(f"sqlite:///{home / 'deskpilot.db'}")
    try:
        database.migrate()
        with database.session() as session:
            _, key = create_api_key(session, TENANT, "bench-load", scopes=("read",))
    finally:
        database.dispose()
    return key


async def _drive(
    url: str, key: str, texts: Sequence[str], bodies: Sequence[bytes], cfg: LoadConfig
) -> LoadResult:
    import httpx

    from deskpilot.connectors.generic import sign

    classify, ingress = Endpoint(), Endpoint()
    accepted: list[int] = []
    limits = httpx.Limits(max_connections=2 * cfg.concurrency, max_keepalive_connections=2 * cfg.concurrency)
    path = f"/webhooks/{TENANT}/generic/{SOURCE}"
    counter = iter(range(10**12))

    async def timed(seen: Endpoint, request: Awaitable[httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError as exc:
            seen.fail(type(exc).__name__, str(exc))
            return None
        seen.latencies_ms.append((time.perf_counter() - started) * 1000)
        if not 200 <= response.status_code < 300:
            seen.fail(f"HTTP {response.status_code}", response.text)
            return None
        seen.ok += 1
        return response

    async def classify_loop(client: httpx.AsyncClient, deadline: float) -> None:
        auth = {"Authorization": f"Bearer {key}"}
        while time.perf_counter() < deadline:
            i = next(counter)
            body = {"task": TASK, "texts": [texts[i % len(texts)]]}
            await timed(classify, client.post("/v1/classify", json=body, headers=auth))

    async def ingress_loop(client: httpx.AsyncClient, deadline: float, run_id: str) -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            raw = bodies[i % len(bodies)]
            headers = sign(WEBHOOK_SECRET, raw, delivery_id=f"{run_id}-{i}")
            headers["Content-Type"] = "application/json"
            response = await timed(ingress, client.post(path, content=raw, headers=headers))
            if response is not None:
                try:
                    accepted.append(int(response.json()["ticket_id"]))
                except (ValueError, KeyError, TypeError):
                    ingress.fail("bad 202 body", response.text)

    run_id = f"load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    timeout = httpx.Timeout(cfg.request_timeout_s)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        deadline = started + cfg.seconds
        await asyncio.gather(
            *(classify_loop(client, deadline) for _ in range(cfg.concurrency)),
            *(ingress_loop(client, deadline, run_id) for _ in range(cfg.concurrency)),
        )
        window = time.perf_counter() - started
    return LoadResult(classify, ingress, accepted, window)


def missing_tickets(db_file: Path, ticket_ids: Sequence[int]) -> int:
    """How many of ``ticket_ids`` have no row in the (stopped) gateway's SQLite file."""
    import sqlalchemy
    from sqlalchemy import select

    from deskpilot.store.models import TicketRecord

    engine = sqlalchemy.create_engine(f"sqlite:///file:{db_file}?mode=ro&uri=true")
    try:
        found: set[int] = set()
        ids = sorted(set(ticket_ids))
        with engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update(
                    conn.execute(select(TicketRecord.id).where(TicketRecord.id.in_(chunk))).scalars()
                )
        return len(ids) - len(found) + (len(ticket_ids) - len(ids))  # a ticket id answered twice is lost too
    finally:
        engine.dispose()


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 2) if values else math.nan


def figures(load: LoadResult, lost: int) -> dict[str, Any]:
    c, w = load.classify, load.ingress
    window = max(load.window_s, 1e-9)
    return {
        "classify_requests": c.ok + sum(c.errors.values()),
        "classify_rps": round(c.ok / window, 1),
        "classify_p50_ms": _percentile(c.latencies_ms, 50),
        "classify_p99_ms": _percentile(c.latencies_ms, 99),
        "ingress_requests": w.ok + sum(w.errors.values()),
        "ingress_rps": round(w.ok / window, 1),
        "ingress_p50_ms": _percentile(w.latencies_ms, 50),
        "ingress_p99_ms": _percentile(w.latencies_ms, 99),
        "errors": sum(c.errors.values()) + sum(w.errors.values()),
        "lost": lost,
    }


def run_load(
    config: LoadConfig | None = None,
    *,
    out_dir: Path | None = RESULTS_DIR,
    markdown: Path | None = RESULTS_MD,
    command: str | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the load benchmark; writes ``out_dir/load.json`` (and the ``load`` section of
    ``markdown``) unless they are None, and returns the results."""
    cfg = config or LoadConfig()
    say = log or (lambda message: None)
    started = datetime.now(UTC)
    rows = demo_tickets(cfg.unique_tickets, cfg.seed)
    texts = [f"{row['subject']}\n\n{row['body']}" for row in rows]
    bodies = delivery_bodies(rows, f"load-{started.strftime('%Y%m%dT%H%M%S')}")
    icfg = _ingress_config(cfg)
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-load-") as tmp:
        home = Path(tmp)
        env = bench_env(home, icfg)
        t = time.perf_counter()
        trained = train_models(home, env, icfg, say, tasks=(TASK,))
        key = create_key(home)
        setup_s = time.perf_counter() - t
        say(f"starting deskpilot serve (SQLite, {cfg.workers} workers, the '{TASK}' adapter)")
        with contextlib.ExitStack() as stack:
            if cfg.workers:  # the workers route what comes in: a rules policy, a stand-in helpdesk
                helpdesk_url, _desk = stack.enter_context(standin_helpdesk(env, home))
                (home / "policies").mkdir(exist_ok=True)
                (home / "policies" / f"{TENANT}.yaml").write_text(
                    policy_text("rules", helpdesk_url), encoding="utf-8"
                )
            url, _server = stack.enter_context(serve(env, home, cfg.ready_timeout_s))
            say(
                f"{cfg.concurrency} clients on POST /v1/classify and {cfg.concurrency} on the signed "
                f"webhook for {cfg.seconds:g} s against {url}"
            )
            busy_before = _load_average()
            load = asyncio.run(_drive(url, key, texts, bodies, cfg))
            busy_after = _load_average()
        say(f"checking that the {len(load.accepted_ticket_ids):,} accepted deliveries are stored")
        lost = missing_tickets(home / "deskpilot.db", load.accepted_ticket_ids)
        server_log = bench_ingress._log_counts(home / "serve.log")

    measured = figures(load, lost)
    results: dict[str, Any] = {
        "bench": BENCH,
        "date": started.isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        **measured,
        "requirements": {
            "errors": {"value": measured["errors"], "target": "== 0", "met": measured["errors"] == 0},
            "lost": {"value": lost, "target": "== 0", "met": lost == 0},
        },
        "error_kinds": {
            "classify": dict(load.classify.errors),
            "ingress": dict(load.ingress.errors),
        },
        "error_samples": load.classify.samples + load.ingress.samples,
        "accepted_deliveries": len(load.accepted_ticket_ids),
        "window_seconds": round(load.window_s, 2),
        # 1-minute load average just before and after the run: work of other processes shows here
        "load_average": {"before": busy_before, "after": busy_after},
        "model": {"task": TASK, **trained.get(TASK, {}), "setup_seconds": round(setup_s, 1)},
        "server_log": server_log,
        "settings": {
            **asdict(cfg),
            "db": "sqlite",
            "tenant": TENANT,
            "client": "httpx.AsyncClient, closed loop",
            "webhook_path": f"/webhooks/{TENANT}/generic/{SOURCE}",
            "rate_limits": "lifted",
        },
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "machine": report.machine_info(),
    }
    if out_dir is not None:
        report.write_json(Path(out_dir) / f"{BENCH}.json", results)
    if markdown is not None:
        report.update_section(Path(markdown), BENCH, render_load(results))
    return results


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and requirement checks (for ``--json``)."""
    return {
        "bench": BENCH,
        "date": results["date"],
        **{k: results[k] for k in KEYS},
        "requirements": {k: v["met"] for k, v in results["requirements"].items()},
        "settings": {k: results["settings"][k] for k in ("seconds", "concurrency", "workers")},
        "machine": {k: results["machine"].get(k) for k in ("cpu", "usable_cores")},
    }


def _busy(results: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """A line on how busy the machine was: other processes' work skews every figure here."""
    busy = results.get("load_average") or {}
    before, after = busy.get("before"), busy.get("after")
    if before is None or after is None:
        return []
    return [
        f"1-minute load average before the run {before:.2f}, after it {after:.2f} on "
        f"{machine.get('usable_cores', '?')} cores (the bench's client and server make up about 2 of "
        "it; the rest is other processes sharing the cores).",
        "",
    ]


def render_load(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    model = results.get("model", {})
    c = settings.get("concurrency")
    lines = [
        "## Load",
        "",
        f"Measured {results.get('date', '?')} on {machine.get('cpu', '?')} "
        f"({machine.get('usable_cores', machine.get('cores', '?'))} cores, shared by the load "
        f"generator and the gateway); command: `{results.get('command', '')}`. `deskpilot serve` on "
        f"SQLite with {settings.get('workers')} embedded workers; `POST /v1/classify` with the demo "
        f"`{model.get('task')}` adapter ({model.get('version')}, linear probe on the packaged encoder).",
        "",
        "| endpoint | requests | per second | p50 | p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| `POST /v1/classify` (one text), {c} clients | {results['classify_requests']:,} "
        f"| {results['classify_rps']:.1f} | {results['classify_p50_ms']:.1f} ms "
        f"| {results['classify_p99_ms']:.1f} ms |",
        f"| `POST /webhooks/{{tenant}}/generic/{{source}}` (signed), {c} clients "
        f"| {results['ingress_requests']:,} | {results['ingress_rps']:.1f} "
        f"| {results['ingress_p50_ms']:.1f} ms | {results['ingress_p99_ms']:.1f} ms |",
        "",
        *_busy(results, machine),
        f"Errors (non-2xx or transport): {results['errors']}; accepted deliveries whose ticket is "
        f"missing from the database afterwards (`lost`): {results['lost']} of "
        f"{results.get('accepted_deliveries', 0):,}.",
        "",
        f"How: for {settings.get('seconds'):g} s, {c} httpx async clients loop on each endpoint at "
        "once (closed loop: the next request when the last is answered; latency from send to "
        "answer), on loopback; every delivery is HMAC-signed with its own id and a demo ticket "
        "text. The rate limits are lifted for the run (one client at full speed is what they "
        "stop). Then the server is stopped and its SQLite file read: every delivery answered 202 "
        "must have its ticket row.",
        "",
    ]
    return "\n".join(lines)
