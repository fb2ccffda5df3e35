"""The review console: server-rendered pages where people see what was routed and correct it.

:func:`install_console` is called by :func:`deskpilot.gateway.app.create_app` after the
API's error handlers: it adds the page routers, the static files and the HTML error pages.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deskpilot.gateway.console import inbox, models_page, signin, ticket, triage, usage
from deskpilot.gateway.console.errors import install_console_errors
from deskpilot.gateway.console.templating import STATIC

routers = (signin.router, inbox.router, ticket.router, triage.router, models_page.router, usage.router)


def install_console(app: FastAPI) -> None:
    for router in routers:
        app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    install_console_errors(app)


__all__ = ["install_console"]
