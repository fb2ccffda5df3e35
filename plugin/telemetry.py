"""Counters of what the models decided, kept by the process that decided it.

The counters are created unregistered (``registry=None``): the gateway registers them in its
own :class:`~prometheus_client.CollectorRegistry` (``deskpilot.gateway.metrics``), and a
standalone worker in the one it serves on ``--metrics-port``. Job and training figures do
not live here: the gateway reads them from the database when scraped, so they are right
whichever process ran the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter

from deskpilot.types import Prediction, RouteDecision

MAX_LABEL_CHARS = 100

PREDICTIONS = Counter(
    "deskpilot_predictions",
    "Answers given, by where they were asked for (api: /v1/classify; tickets and documents: the "
    "workflow), task and label (the best guess, also when the answer abstained).",
    ["source", "task", "label"],
    registry=None,
)
ABSTENTIONS = Counter(
    "deskpilot_abstentions",
    "Answers that abstained (below the threshold: sent to triage), by source and task. Abstain "
    "rate: rate(deskpilot_abstentions_total) / sum without (label) (rate(deskpilot_predictions_total)).",
    ["source", "task"],
    registry=None,
)

COLLECTORS = (PREDICTIONS, ABSTENTIONS)


def serve_metrics(port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Serve this process's counters and process figures over HTTP (``deskpilot worker --metrics-port``).

    A daemon thread; the gateway's /metrics has the store-wide figures, so a worker only adds
    what it alone knows: the predictions it made. Returns a function that stops the server.
    """
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
        start_http_server,
    )

    from deskpilot.errors import ConfigError

    registry = CollectorRegistry()
    for collector in COLLECTORS:
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5.0)

    return stop


def _label(value: str | None) -> str:
    return (value or "none")[:MAX_LABEL_CHARS]


def count_predictions(source: str, task: str, predictions: Iterable[Prediction]) -> None:
    """Count answers returned to a caller (``/v1/classify``)."""
    for prediction in predictions:
        PREDICTIONS.labels(source, _label(task), _label(prediction.label)).inc()
        if prediction.abstained:
            ABSTENTIONS.labels(source, _label(task)).inc()


def count_decisions(
    source: str, decisions: Sequence[RouteDecision], predictions: Mapping[str, Prediction]
) -> None:
    """Count a stored workflow decision per task; call it once the decision is committed.

    The routed label counts, or the model's best guess when the decision abstained; a task
    a rule decided without asking the model is not a prediction and is not counted.
    """
    for decision in decisions:
        prediction = predictions.get(decision.task)
        if prediction is None:
            continue
        label = prediction.label if decision.abstained or decision.label is None else decision.label
        PREDICTIONS.labels(source, _label(decision.task), _label(label)).inc()
        if decision.abstained:
            ABSTENTIONS.labels(source, _label(decision.task)).inc()
