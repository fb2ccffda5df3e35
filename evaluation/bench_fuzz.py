"""``deskpilot bench fuzz``: schemathesis against the gateway's own OpenAPI schema.

Every operation in ``/openapi.json`` gets generated requests, valid (positive) and invalid
(negative) ones, sent in-process (ASGI) to an app with a real SQLite store in a temporary
``DESKPILOT_HOME``, a deterministic keyword predictor and the real responder service whose
models are swapped for a bag-of-words embedder and a canned LangChain chat model. Requests
carry keys of each scope (admin, write, read) or none; signed webhooks are signed with the
tenant's secret for most of their cases, so the body checks behind the signature are reached;
path ids point at rows that exist for part of the cases, so lookups do not all end in 404.

Each response is checked by schemathesis: no 5xx (``not_a_server_error``), the status code is
declared for the operation (``status_code_conformance``), the body matches the declared schema
(``response_schema_conformance``) and the content type is declared
(``content_type_conformance``). Figures go to ``evaluation/results/fuzz.json`` and the
``fuzz`` section of ``evaluation/RESULTS.md``.

Routes outside the schema (``include_in_schema=False``, e.g. the console's HTML pages, which
the browser tests cover) are not fuzzed: there is no contract to check them against.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shlex
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deskpilot.errors import AdapterNotFoundError, InputDataError
from deskpilot.evaluation import report
from deskpilot.types import AdapterSummary, Alternative, Prediction

BENCH = "fuzz"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
TENANT = "fuzz"
OTHER_TENANT = "other"
WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789abcdef"
SIGNED_PATHS = ("/webhooks/{tenant}/generic/{source}", "/webhooks/{tenant}/email")
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SERVER_ERRORS = ("ServerError", "ContentTypeServerError")
MAX_SAMPLES = 20
LABELS = {"queue": ("billing", "network", "access", "other"), "priority": ("low", "high")}
KEYWORDS = {"invoice": "billing", "vpn": "network", "password": "access", "urgent": "high"}
REPLY = "Thanks for reaching out: we refunded the duplicate charge, it shows within 5 days."

Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


@dataclass
class FuzzConfig:
    """How the fuzzer runs (recorded in the results)."""

    cases: int = 2000
    seed: int = 0
    negative_share: float = 0.4  # share of branches that generate invalid requests
    existing_id_share: float = 0.3  # share of id-taking branches pinned to rows that exist

    def __post_init__(self) -> None:
        if self.cases < 1:
            raise InputDataError("--cases must be at least 1")
        if not 0.0 <= self.negative_share <= 1.0 or not 0.0 <= self.existing_id_share <= 1.0:
            raise InputDataError("shares must be in [0, 1]")


@dataclass
class FuzzOutcome:
    """What one fuzz run found."""

    cases: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation_status: dict[str, Counter[int]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: int = 0
    operations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "server_errors": self.server_errors,
            "schema_violations": self.schema_violations,
            "transport_errors": self.transport_errors,
            "operations": len(self.operations),
            "cases_by_operation": dict(sorted(self.by_operation.items())),
            "responses_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "statuses_by_operation": {
                op: {str(k): v for k, v in sorted(c.items())}
                for op, c in sorted(self.by_operation_status.items())
            },
            "failures_by_kind": dict(self.failures.most_common()),
            "failure_samples": self.samples,
        }


# --- the stand-ins for the models ---------------------------------------------------------


class KeywordPredictor:
    """A deterministic Predictor: keyword labels, 404 for tasks the tenant has no adapter for."""

    def predict(
        self,
        tenant: str,
        task: str,
        texts: Sequence[str],
        *,
        version: str | None = None,
        abstain: bool = True,
    ) -> list[Prediction]:
        labels = LABELS.get(task, LABELS["queue"]) if tenant == TENANT else None  # any task of ours
        if labels is None or version not in (None, "v1"):
            raise AdapterNotFoundError(f"no adapter for task {task!r} of tenant {tenant!r}")
        out = []
        for text in texts:
            hit = next((label for word, label in KEYWORDS.items() if word in text.lower()), None)
            label = hit if hit in labels else labels[-1]
            score = 0.9 if hit in labels else 0.4
            rest = [lab for lab in labels if lab != label]
            out.append(
                Prediction(
                    label=label,
                    score=score,
                    abstained=abstain and score < 0.5,
                    alternatives=tuple(Alternative(lab, round((1 - score) / len(labels), 4)) for lab in rest),
                    task=task,
                    adapter_version="v1",
                    threshold=0.5,
                )
            )
        return out

    def adapters(self, tenant: str) -> list[AdapterSummary]:
        if tenant != TENANT:
            return []
        return [
            AdapterSummary(
                tenant=TENANT,
                task=task,
                version="v1",
                champion=True,
                base_model="all-MiniLM-L6-v2",
                labels=labels,
                metrics={"accuracy": 0.9, "macro_f1": None},
                created_at="2026-01-01T00:00:00Z",
            )
            for task, labels in LABELS.items()
        ]

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        return None


class HashEmbedder:
    """Bag of hashed words: texts that share words are near (the knowledge index's embedder)."""

    name = "hash-bow-256"

    def embed(self, texts: Sequence[str]) -> Any:
        out = np.zeros((len(texts), 256), np.float32)
        for i, text in enumerate(texts):
            for word in set(re.findall(r"\w+", text.lower())):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] = 1.0
        return np.asarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9), np.float32)


def chat_model() -> Any:
    """What ``DESKPILOT_RESPONDER_CHAT_MODEL`` names here: a canned LangChain chat model."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    return FakeListChatModel(responses=[REPLY])


# --- the app under test -------------------------------------------------------------------


@dataclass
class Target:
    """The app, the keys of each scope and the ids of rows that exist."""

    app: Any
    database: Any
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[Any]] = field(default_factory=dict)

    def issue_keys(self) -> None:
        """Fresh keys of each scope: the fuzzer revokes and rotates the ones it finds."""
        from deskpilot.store import create_api_key

        with self.database.session() as session:
            for scope in ("admin", "write", "read"):
                _, self.keys[scope] = create_api_key(session, TENANT, f"fuzz-{scope}", scopes=(scope,))
            _, self.keys["other"] = create_api_key(session, OTHER_TENANT, "fuzz-other", scopes=("admin",))


@contextlib.contextmanager
def fuzz_target(home: Path) -> Iterator[Target]:
    """The gateway on a fresh SQLite store in ``home``, with keys and a few rows to find."""
    from deskpilot.config import Settings
    from deskpilot.gateway import create_app
    from deskpilot.jobs.responders import ResponderService
    from deskpilot.store import Database
    from deskpilot.store.knowledge import KnowledgeRepository
    from deskpilot.tasks.respond import KnowledgeIndex

    settings = Settings(
        env="test",
        home=home,
        workers=0,
        max_text_chars=2000,
        max_body_bytes=64 * 1024,
        doc_max_bytes=256 * 1024,
        doc_max_files=4,
        webhook_secrets={TENANT: WEBHOOK_SECRET},  # type: ignore[dict-item]
        responder_chat_model=f"{__name__}:chat_model",
        # the fuzzer is one address sending bad keys on purpose: limits would answer 429 to all
        rate_limit_per_key="1000000/minute",
        rate_limit_webhook="1000000/minute",
        rate_limit_auth_failures="1000000/minute",
    )
    database = Database(settings.db_url)
    database.migrate()
    try:
        app = create_app(settings, predictor=KeywordPredictor(), database=database)
        service = ResponderService(settings, database)
        service._index = KnowledgeIndex(HashEmbedder(), KnowledgeRepository(database), refresh_interval_s=0)
        app.state.responders = service
        target = Target(app, database, ids=_seed_rows(database, settings))
        target.issue_keys()
        yield target
    finally:
        database.dispose()


def _seed_rows(database: Any, settings: Any) -> dict[str, list[Any]]:
    """A few tickets (with their jobs) and a document, so that path ids can point at them."""
    from deskpilot.jobs.document_intake import receive_file
    from deskpilot.store.workflow import accept_ticket
    from deskpilot.types import Ticket

    tickets, jobs = [], []
    with database.session() as session:
        for i, text in enumerate(("The VPN drops every hour", "Invoice 1142 was charged twice")):
            accepted = accept_ticket(
                session,
                TENANT,
                Ticket(subject=f"seed {i}", body=text, source="api"),
                delivery_id=f"seed-{i}",
                actor="bench:fuzz",
                max_attempts=settings.job_max_attempts,
            )
            tickets.append(accepted.ticket_id)
            if accepted.job_id is not None:
                jobs.append(accepted.job_id)
    intake = receive_file(
        database,
        settings,
        TENANT,
        "note.txt",
        b"Invoice 1142 from ACME Ltd, total 120.00 EUR",
        source="upload",
        actor="bench:fuzz",
        meta={},
    )
    documents = [f.document_id for f in intake.files if f.document_id is not None]
    systems = ["slack", "jira", "zendesk", "servicenow", "erpnext", "odoo"]  # past the 404, to the signature
    return {
        "ticket_id": tickets,
        "job_id": jobs,
        "document_id": documents,
        "tenant": [TENANT],
        "source": ["helpdesk"],
        "system": systems,
    }


# --- generating and checking --------------------------------------------------------------


def _failure_kind(failure: Exception) -> str:
    return type(failure).__name__


def _signable(body: Any) -> bytes | None:
    from schemathesis.core import NotSet

    if isinstance(body, NotSet):
        return b""  # no body: the signature covers the empty one
    try:
        return json.dumps(body).encode()
    except (TypeError, ValueError):
        return None


def _strategy(op: Any, cfg: FuzzConfig, ids: dict[str, list[Any]]) -> Any:
    """An operation's requests: positive and negative branches, some with ids of real rows.

    Ten equal shares: negative ones by ``negative_share``, positive ones for the rest, of which
    ``existing_id_share`` pin the path ids at rows that exist (when the path has ids).
    """
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    names = re.findall(r"{(\w+)(?::\w+)?}", op.path)
    pinned = {n: ids[n] for n in names if ids.get(n)}
    negative = round(10 * cfg.negative_share)
    existing = round(10 * cfg.existing_id_share) if pinned else 0
    branches = [op.as_strategy(generation_mode=GenerationMode.NEGATIVE)] * negative
    branches += [op.as_strategy(generation_mode=GenerationMode.POSITIVE)] * (10 - negative - existing)
    if existing:
        with_ids = st.one_of(
            op.as_strategy(
                generation_mode=GenerationMode.POSITIVE,
                path_parameters={n: values[k % len(values)] for n, values in pinned.items()},
            )
            for k in range(max(len(v) for v in pinned.values()))
        )
        branches += [with_ids] * existing
    return st.sampled_from(branches).flatmap(lambda strategy: strategy)


def _operations(schema: Any) -> list[Any]:
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())
    return sorted(ops, key=lambda op: op.label)


def fuzz(target: Target, cfg: FuzzConfig, *, progress: Progress | None = None) -> FuzzOutcome:
    """Send ``cfg.cases`` generated requests to ``target.app``; count what the checks find."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.python import asgi
    from schemathesis.specs.openapi import checks as openapi_checks

    from deskpilot.connectors.generic import sign

    tick = progress or (lambda stage, done, total: None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    operations = _operations(schema)
    outcome = FuzzOutcome(operations=[op.label for op in operations])
    checks = [
        schemathesis.checks.not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.response_schema_conformance,
    ]
    who = st.sampled_from(("admin", "admin", "write", "read", "other", "none"))
    signed = st.sampled_from((True, True, True, False))

    with asgi.get_client(target.app) as client:

        def one(case: Any, caller: str, sign_it: bool) -> None:
            headers: dict[str, str] = {}
            if caller != "none" and case.operation.path.startswith("/v1/"):
                headers["Authorization"] = f"Bearer {target.keys[caller]}"
            if case.operation.path in SIGNED_PATHS and sign_it:
                raw = _signable(case.body)
                if raw is not None:
                    if raw:
                        case.body = raw
                    headers.update(sign(WEBHOOK_SECRET, raw))
            outcome.cases += 1
            outcome.by_operation[case.operation.label] += 1
            try:
                response = case.call(session=client, headers=headers)
            except Exception as exc:  # the app raised through the transport: a crash, i.e. a 5xx
                outcome.transport_errors += 1
                outcome.server_errors += 1
                _sample(outcome, case, "TransportError", None, f"{type(exc).__name__}: {exc}")
                return
            outcome.by_status[response.status_code] += 1
            outcome.by_operation_status.setdefault(case.operation.label, Counter())[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as group:
                _record(outcome, case, response, list(group.exceptions))
            except Failure as failure:
                _record(outcome, case, response, [failure])
            if case.operation.path.startswith("/v1/keys") and response.status_code < 300:
                target.issue_keys()
            tick("fuzzing", outcome.cases, cfg.cases)

        def run_operation(op: Any, share: int, seed: int) -> None:
            """Up to ``share`` requests for ``op`` (fewer when its space of requests runs dry)."""
            sent = 0

            @hypothesis_seed(seed)
            @settings(
                max_examples=share,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            @given(case=_strategy(op, cfg, target.ids), caller=who, sign_it=signed)
            def run(case: Any, caller: str, sign_it: bool) -> None:
                nonlocal sent
                if sent < share:
                    sent += 1
                    one(case, caller, sign_it)

            run()

        with warnings.catch_warnings(), _quiet("python_multipart", "multipart"):
            warnings.simplefilter("ignore")  # schemathesis/hypothesis chatter is not a finding
            # Round robin, an even share each; what an operation cannot use goes to the next ones.
            for attempt in range(5):
                before = outcome.cases
                for k, op in enumerate(operations):
                    left = cfg.cases - outcome.cases
                    if left <= 0:
                        break
                    run_operation(op, -(-left // (len(operations) - k)), cfg.seed * 1000 + attempt)
                if outcome.cases in (before, cfg.cases):
                    break
    with contextlib.suppress(Exception):
        asgi.shutdown_lifespans()
    return outcome


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the warnings libraries log about the garbage they are fed (that is the point)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _record(outcome: FuzzOutcome, case: Any, response: Any, failures: Sequence[Exception]) -> None:
    kinds = {_failure_kind(f) for f in failures}
    if kinds & set(SERVER_ERRORS):
        outcome.server_errors += 1
    if kinds - set(SERVER_ERRORS):
        outcome.schema_violations += 1
    for failure in failures:
        kind = _failure_kind(failure)
        outcome.failures[kind] += 1
        title = getattr(failure, "title", "") or kind
        message = getattr(failure, "message", "") or str(failure)
        _sample(outcome, case, kind, response, f"{title}: {message}")


def _sample(outcome: FuzzOutcome, case: Any, kind: str, response: Any, message: str) -> None:
    if len(outcome.samples) >= MAX_SAMPLES:
        return
    entry: dict[str, Any] = {"operation": case.operation.label, "kind": kind, "message": message[:600]}
    if response is not None:
        entry["status"] = response.status_code
        entry["body"] = response.text[:300]
    with contextlib.suppress(Exception):
        entry["curl"] = case.as_curl_command()[:600]
    outcome.samples.append(entry)


# --- the run ------------------------------------------------------------------------------


def run_fuzz(
    config: FuzzConfig | None = None,
    *,
    out_dir: Path | None = RESULTS_DIR,
    markdown: Path | None = RESULTS_MD,
    command: str | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fuzz a fresh gateway; writes ``out_dir/fuzz.json`` and the ``fuzz`` section of
    ``markdown`` unless they are None, and returns the results."""
    cfg = config or FuzzConfig()
    say = log or (lambda message: None)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-fuzz-") as tmp, fuzz_target(Path(tmp)) as target:
        say(f"fuzzing every operation of /openapi.json with {cfg.cases:,} generated requests")
        outcome = fuzz(target, cfg, progress=progress)
    seconds = time.perf_counter() - t0
    results: dict[str, Any] = {
        "bench": BENCH,
        "date": started.isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        **outcome.as_dict(),
        "operation_labels": outcome.operations,
        "requirements": {
            "server_errors": {
                "value": outcome.server_errors,
                "target": "== 0",
                "met": outcome.server_errors == 0,
            },
            "schema_violations": {
                "value": outcome.schema_violations,
                "target": "== 0",
                "met": outcome.schema_violations == 0,
            },
            "cases": {"value": outcome.cases, "target": f">= {cfg.cases}", "met": outcome.cases >= cfg.cases},
        },
        "checks": list(CHECK_NAMES),
        "settings": {
            **asdict(cfg),
            "transport": "asgi (in-process)",
            "db": "sqlite",
            "tenant": TENANT,
            "schemathesis": _version("schemathesis"),
            "hypothesis": _version("hypothesis"),
        },
        "seconds": round(seconds, 1),
        "machine": report.machine_info(),
    }
    if out_dir is not None:
        report.write_json(Path(out_dir) / f"{BENCH}.json", results)
    if markdown is not None:
        report.update_section(Path(markdown), BENCH, render_fuzz(results))
    return results


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _requirement(value: int, target: str, met: bool) -> dict[str, Any]:
    return {"value": value, "target": target, "met": met}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and requirement checks (for ``--json``)."""
    return {
        "bench": BENCH,
        "date": results["date"],
        **{k: results[k] for k in ("cases", "server_errors", "schema_violations", "operations", "seconds")},
        "requirements": {k: v["met"] for k, v in results["requirements"].items()},
        "settings": {k: results["settings"][k] for k in ("cases", "seed")},
        "machine": {k: results["machine"].get(k) for k in ("cpu", "usable_cores")},
    }


def render_fuzz(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    statuses = results.get("responses_by_status", {})
    status_text = ", ".join(f"{k}: {v:,}" for k, v in statuses.items())
    kinds = results.get("failures_by_kind", {})
    lines = [
        "## Fuzzing",
        "",
        f"Measured {results.get('date', '?')} on {machine.get('cpu', '?')} "
        f"({machine.get('usable_cores', machine.get('cores', '?'))} cores); command: "
        f"`{results.get('command', '')}` ({results.get('seconds', '?')} s).",
        "",
        "| measure | value | target |",
        "| --- | ---: | --- |",
        f"| generated requests (every operation of `/openapi.json`: {results.get('operations')}) "
        f"| {results['cases']:,} | >= {results['settings']['cases']:,} |",
        f"| server errors (5xx, or the app raising) | {results['server_errors']} | 0 |",
        "| schema violations (undeclared status, body or content type) "
        f"| {results['schema_violations']} | 0 |",
        "",
        f"Responses by status: {status_text}.",
    ]
    if kinds:
        lines += ["", "Failures by kind: " + ", ".join(f"{k} {v}" for k, v in kinds.items()) + "."]
    lines += [
        "",
        f"How: schemathesis {results['settings'].get('schemathesis') or ''} (Python API, seed "
        f"{results['settings']['seed']}) generates valid and invalid requests for every operation "
        "(about 60/40), sends them in-process to the gateway on a fresh SQLite store with keys of "
        "each scope (admin, write, read, another tenant's, none), signs most webhook deliveries "
        "with the tenant's secret and points part of the path ids at rows that exist; the "
        "classifier is a keyword stand-in and the responder's models are a hashed bag-of-words "
        "embedder and a canned chat model. Checks: `" + "`, `".join(CHECK_NAMES) + "`. "
        "`tests/gateway/test_gateway_fuzz.py` runs the same harness on a small sample in CI.",
        "",
    ]
    return "\n".join(lines)
