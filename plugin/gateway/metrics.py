"""Prometheus metrics for one app, in a registry of its own (never the process-wide default).

Three kinds of figures:

- measured here: request latency by method, route template (never the raw path, so the
  label set stays bounded) and status class;
- counted where the models answer (``deskpilot.telemetry``): predictions and abstentions;
- read from the database at scrape time (:class:`StoreCollector`): jobs by state and kind,
  retrying jobs, the age of the oldest due job, outbox deliveries, training runs and adapter
  versions. The database is shared by every process, so these are right whichever process
  (an embedded worker, a Celery worker elsewhere) did the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from deskpilot import __version__, telemetry
from deskpilot.store import Database
from deskpilot.store.models import AdapterRecord, JobRecord, OutboxAction, utcnow
from deskpilot.store.workflow import RETRAIN

logger = logging.getLogger("deskpilot.gateway")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_STATES = ("queued", "running", "done", "dead")
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Mapping[str, Any]) -> str:
    """The path template the router matched (``/v1/tickets/{ticket_id}``), or ``<unmatched>``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return UNMATCHED_ROUTE
    if route is not None and type(route).__name__ == "Mount":  # a mounted app: one series for all of it
        return template.rstrip("/") + "/{path}"
    return template


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class StoreCollector(Collector):
    """Job, outbox and training figures read from the database on every scrape.

    A scrape never fails because the database did: ``deskpilot_store_up`` says 0 and the
    rest of the figures are left out.
    """

    def __init__(self, database: Callable[[], Database | None], kinds: tuple[str, ...] = ()) -> None:
        self.database = database
        self.kinds = kinds

    def describe(self) -> list[Metric]:
        return []  # figures depend on the data: never probed at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("deskpilot_store_up", "1 when the database answered this scrape's queries")
        database = self.database()
        if database is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            figures = self._read(database)
        except Exception as exc:  # a scrape reports, it does not crash
            logger.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _read(self, database: Database) -> list[Metric]:
        now = utcnow()
        with database.session() as session:
            jobs = session.execute(
                select(JobRecord.state, JobRecord.kind, func.count()).group_by(
                    JobRecord.state, JobRecord.kind
                )
            ).all()
            retrying = session.execute(
                select(JobRecord.kind, func.count())
                .where(JobRecord.state.in_(("queued", "running")), JobRecord.last_error.is_not(None))
                .group_by(JobRecord.kind)
            ).all()
            oldest_due = session.execute(
                select(func.min(JobRecord.run_after)).where(
                    JobRecord.state == "queued", JobRecord.run_after <= now
                )
            ).scalar_one_or_none()
            outbox = session.execute(
                select(OutboxAction.state, func.count()).group_by(OutboxAction.state)
            ).all()
            promoted = JobRecord.result["promoted"].as_boolean()
            training = session.execute(
                select(JobRecord.state, promoted, func.count())
                .where(JobRecord.kind == RETRAIN, JobRecord.state.in_(("done", "dead")))
                .group_by(JobRecord.state, promoted)
            ).all()
            adapters = session.execute(
                select(AdapterRecord.kind, AdapterRecord.status, func.count()).group_by(
                    AdapterRecord.kind, AdapterRecord.status
                )
            ).all()

        by_state: dict[tuple[str, str], int] = {(s, k): 0 for s in JOB_STATES for k in self.kinds}
        for state, kind, n in jobs:
            by_state[(str(state), str(kind))] = int(n)
        jobs_metric = GaugeMetricFamily(
            "deskpilot_jobs",
            "Jobs by state (queued: waiting or backing off; dead: the dead letters) and kind",
            labels=["state", "kind"],
        )
        for (state, kind), n in sorted(by_state.items()):
            jobs_metric.add_metric([state, kind], n)

        retrying_metric = GaugeMetricFamily(
            "deskpilot_jobs_retrying",
            "Jobs not finished whose last attempt failed (they will be retried), by kind",
            labels=["kind"],
        )
        counted = {str(kind): int(n) for kind, n in retrying}
        for kind in sorted(set(self.kinds) | set(counted)):
            retrying_metric.add_metric([kind], counted.get(kind, 0))

        age = GaugeMetricFamily(
            "deskpilot_queue_oldest_due_seconds",
            "How long the oldest due, unclaimed job has waited (0 when none waits): workers keep up?",
        )
        age.add_metric([], max(0.0, (now - oldest_due).total_seconds()) if oldest_due is not None else 0.0)

        outbox_metric = GaugeMetricFamily(
            "deskpilot_outbox_actions",
            "Actions for outside systems by state (pending, done, dead)",
            labels=["state"],
        )
        states = {"pending": 0, "done": 0, "dead": 0} | {str(s): int(n) for s, n in outbox}
        for state, n in sorted(states.items()):
            outbox_metric.add_metric([state], n)

        outcomes = {"promoted": 0, "kept_champion": 0, "failed": 0}
        for state, was_promoted, n in training:
            if state == "dead":
                outcomes["failed"] += int(n)
            elif was_promoted:
                outcomes["promoted"] += int(n)
            else:
                outcomes["kept_champion"] += int(n)
        training_metric = CounterMetricFamily(
            "deskpilot_training_runs",
            "Finished retrain jobs by outcome: promoted (the challenger became champion), "
            "kept_champion (the challenger was not better), failed (dead-lettered)",
            labels=["outcome"],
        )
        for outcome, n in outcomes.items():
            training_metric.add_metric([outcome], n)

        versions = GaugeMetricFamily(
            "deskpilot_adapter_versions",
            "Registered adapter versions by kind and status (champion, candidate, retired, ...)",
            labels=["kind", "status"],
        )
        for kind, status, n in adapters:
            versions.add_metric([str(kind), str(status)], int(n))
        return [jobs_metric, retrying_metric, age, outbox_metric, training_metric, versions]


class GatewayMetrics:
    """The app's registry and the instruments the middleware and routes feed."""

    def __init__(
        self,
        database: Callable[[], Database | None],
        models_ready: Callable[[], bool],
        job_kinds: tuple[str, ...] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "deskpilot_http_request_duration_seconds",
            "Time to answer HTTP requests, by method, route template and status class",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "deskpilot_build_info", "Always 1; the version as a label", ["version"], registry=self.registry
        )
        info.labels(__version__).set(1)
        ready = Gauge(
            "deskpilot_models_ready", "1 when the model engine is loaded and ready", registry=self.registry
        )
        ready.set_function(lambda: 1.0 if models_ready() else 0.0)
        for collector in telemetry.COLLECTORS:
            self.registry.register(collector)
        self.registry.register(StoreCollector(database, job_kinds))
        _register_process_collectors(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, status_class(status)).observe(seconds)


def _register_process_collectors(registry: CollectorRegistry) -> None:
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
