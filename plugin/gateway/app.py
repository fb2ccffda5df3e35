"""The one place that wires real objects into the HTTP app.

``create_app()`` is cheap: the database is opened and migrated in the lifespan, and the
model engine is built in a background thread so /healthz answers at once while /readyz
says 503 until the models are loaded.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from deskpilot import __version__
from deskpilot.config import Settings, get_settings
from deskpilot.errors import DeskpilotError
from deskpilot.gateway.console import install_console
from deskpilot.gateway.errors import ServiceUnavailableError, install_error_handlers
from deskpilot.gateway.metrics import GatewayMetrics
from deskpilot.gateway.middleware import AccessMiddleware, BodySizeLimitMiddleware, RequestIdMiddleware
from deskpilot.gateway.openapi import declare_error_responses
from deskpilot.gateway.ratelimit import RateLimiter
from deskpilot.gateway.routes import routers
from deskpilot.gateway.routes.respond import get_responders_of
from deskpilot.jobs.runner import HANDLERS
from deskpilot.policy import PolicyStore
from deskpilot.redaction import register_settings
from deskpilot.store import Database
from deskpilot.tasks.classify import Predictor

logger = logging.getLogger("deskpilot.gateway")

DESCRIPTION = (
    "Classify helpdesk tickets with your tenant's LoRA adapters.\n\n"
    "Authenticate with `Authorization: Bearer <key>`; create a key with "
    "`deskpilot keys create --tenant NAME`. Every error is "
    '`{"error": {"code": ..., "message": ..., "hint": ...}}`.'
)


def create_app(
    settings: Settings | None = None,
    *,
    predictor: Predictor | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Build the gateway. Objects passed in are used as they are and not closed by the app."""
    settings = settings if settings is not None else get_settings()
    settings.check_secrets()
    register_settings(settings)  # its secret values are masked in every log line from now on
    app = FastAPI(
        title="deskpilot",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.database = database
    app.state.predictor = predictor
    app.state.predictor_error = None
    app.state.job_notifier = None
    app.state.policies = PolicyStore(settings.policies_dir)
    app.state.worker_pool = None
    app.state.metrics = GatewayMetrics(
        lambda: app.state.database, lambda: _models_ready(app), job_kinds=tuple(sorted(HANDLERS))
    )
    app.state.rate_limiter = RateLimiter(settings)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    install_console(app)  # review pages, static files, HTML errors under /console
    declare_error_responses(app)  # /openapi.json lists the errors each operation can answer
    documents_max = settings.doc_max_bytes * settings.doc_max_files + 64 * 1024  # + multipart framing
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger={
            r"/v1/documents": documents_max,
            r"/webhooks/[^/]+/email": settings.doc_max_bytes + 64 * 1024,
            r"/v1/adapters/[^/]+": settings.adapter_upload_max_bytes * 4 + 64 * 1024,  # 4 files at most
        },
    )
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)  # sees 413s too
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so even a 413 has an id
    return app


def _models_ready(app: FastAPI) -> bool:
    predictor: Predictor | None = app.state.predictor
    try:
        return predictor is not None and bool(predictor.ready())
    except Exception:  # a gauge reports, it does not crash a scrape
        return False


def _open_database(settings: Settings) -> Database:
    database = Database(settings.db_url)
    try:
        database.migrate()
    except BaseException:
        database.dispose()
        raise
    return database


def _build_engine(settings: Settings) -> Predictor:
    # Imported by name at run time: importing or type-checking the gateway never pulls in torch.
    serving = importlib.import_module("deskpilot.adapters.serving")
    predictor: Predictor = serving.build_predictor(settings)
    return predictor


def _close(obj: object) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()


def _start_workers(app: FastAPI, settings: Settings, database: Database) -> Any:
    """The embedded worker pool, sharing this process's models; None when workers run elsewhere."""
    if settings.queue_backend != "embedded" or settings.workers < 1:
        return None
    jobs = importlib.import_module("deskpilot.jobs.embedded")
    context_module = importlib.import_module("deskpilot.jobs.context")
    context = context_module.WorkerContext.build(settings, database)
    context.set_responders(get_responders_of(app))  # one knowledge index and generator per process
    if app.state.predictor is not None:
        context.set_predictor(app.state.predictor)
    else:
        context.predictor_factory = lambda _settings: _wait_for_predictor(app)
    pool = jobs.EmbeddedWorkerPool(context, threads=settings.workers, name="serve")
    context.notifier = pool
    app.state.job_notifier = pool
    app.state.worker_pool = pool  # /readyz checks its threads
    pool.start()
    return pool


def _wait_for_predictor(app: FastAPI, timeout_s: float = 600.0) -> Predictor:
    """Workers use the gateway's engine (one copy of the models) once it has loaded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        predictor: Predictor | None = app.state.predictor
        if predictor is not None:
            return predictor
        if app.state.predictor_error:
            raise ServiceUnavailableError(f"the models failed to load: {app.state.predictor_error}")
        time.sleep(0.1)
    raise ServiceUnavailableError("the models did not load in time")


def _load_engine(app: FastAPI, settings: Settings, stopping: threading.Event, lock: threading.Lock) -> None:
    try:
        engine = _build_engine(settings)
    except Exception as exc:
        logger.exception("the model engine failed to load")
        message = exc.message if isinstance(exc, DeskpilotError) else "unexpected error (see the server log)"
        app.state.predictor_error = message
        return
    with lock:
        if not stopping.is_set():
            app.state.predictor = engine
            logger.info("model engine loaded")
            return
    _close(engine)  # the app shut down while we were loading


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    owned_database: Database | None = None
    if app.state.database is None:
        owned_database = await run_in_threadpool(_open_database, settings)
        app.state.database = owned_database
    stopping, lock = threading.Event(), threading.Lock()
    owns_predictor = app.state.predictor is None
    if owns_predictor:
        app.state.predictor_error = None
        loader = threading.Thread(
            target=_load_engine, args=(app, settings, stopping, lock), name="deskpilot-engine", daemon=True
        )
        loader.start()
    pool = await run_in_threadpool(_start_workers, app, settings, app.state.database)
    broker_bell = None
    if settings.queue_backend == "celery":
        notify = importlib.import_module("deskpilot.jobs.notify")
        broker_bell = await run_in_threadpool(notify.notifier_for, settings)
        app.state.job_notifier = broker_bell
    try:
        yield
    finally:
        app.state.worker_pool = None
        if pool is not None:
            await run_in_threadpool(pool.stop)
            pool.context.close()
        if broker_bell is not None:
            importlib.import_module("deskpilot.jobs.notify").close_notifier(broker_bell)
        app.state.job_notifier = None
        app.state.responders = None  # its knowledge index reads a database closed below
        with lock:
            stopping.set()
            engine = app.state.predictor if owns_predictor else None
            if owns_predictor:
                app.state.predictor = None
        if engine is not None:
            _close(engine)
        if owned_database is not None:
            app.state.database = None
            owned_database.dispose()
        await app.state.rate_limiter.aclose()
