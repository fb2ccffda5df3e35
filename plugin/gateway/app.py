"""The one place that wires real objects into the HTTP app.

``create_app()`` is cheap: the database is opened and migrated in the lifespan, and the
model engine is built in a background thread so /healthz answers at once while /readyz
says 503 until the models are loaded.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from deskpilot import __version__
from deskpilot.config import Settings, get_settings
from deskpilot.errors import DeskpilotError
from deskpilot.gateway.errors import install_error_handlers
from deskpilot.gateway.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from deskpilot.gateway.routes import routers
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
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # added last: outermost, so even a 413 has an id
    return app


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
    try:
        yield
    finally:
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
