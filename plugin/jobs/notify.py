"""Pick the bell for the configured backend: the embedded pool, or Celery's broker."""

from __future__ import annotations

from deskpilot.config import Settings

from .base import JobNotifier


def notifier_for(settings: Settings, embedded_pool: JobNotifier | None = None) -> JobNotifier | None:
    """The notifier a process should ring after committing jobs.

    ``celery``: a :class:`~deskpilot.jobs.celery_backend.CeleryNotifier` on
    ``settings.broker_url`` (call its ``close()`` at shutdown). ``embedded``: the pool running
    in this process, if any; without one (``workers = 0``, or the CLI) the separate
    ``deskpilot worker`` processes find new jobs by polling, so None.
    """
    if settings.queue_backend == "celery":
        from .celery_backend import CeleryNotifier, make_celery  # only Celery deployments import celery

        return CeleryNotifier(make_celery(settings))
    return embedded_pool


def close_notifier(notifier: JobNotifier | None) -> None:
    """Release what a notifier holds (broker connections); a no-op for the embedded pool."""
    close = getattr(notifier, "close", None)
    if callable(close):
        close()
