"""Everything a handler needs, built once per worker process (models load once, lazily)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deskpilot.config import Settings
from deskpilot.connectors.base import ActionClient, action_client
from deskpilot.errors import ConfigError
from deskpilot.policy import PolicyStore
from deskpilot.store import Database
from deskpilot.tasks.classify import Predictor

from .base import JobNotifier

if TYPE_CHECKING:  # langchain loads at the first draft, not with the jobs package
    from .responders import ResponderService


def _default_predictor(settings: Settings) -> Predictor:
    # by name at run time: importing the jobs package never pulls in torch
    serving = importlib.import_module("deskpilot.adapters.serving")
    predictor: Predictor = serving.build_predictor(settings)
    return predictor


@dataclass
class WorkerContext:
    settings: Settings
    database: Database
    policies: PolicyStore
    predictor_factory: Callable[[Settings], Predictor] = _default_predictor
    notifier: JobNotifier | None = None
    _predictor: Predictor | None = field(default=None, init=False, repr=False)
    _clients: dict[tuple[str, str | None, str | None, tuple[tuple[str, str], ...]], ActionClient] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _responders: ResponderService | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        database: Database,
        *,
        predictor: Predictor | None = None,
        notifier: JobNotifier | None = None,
    ) -> WorkerContext:
        context = cls(settings, database, PolicyStore(settings.policies_dir), notifier=notifier)
        if predictor is not None:
            context._predictor = predictor
        return context

    def predictor(self) -> Predictor:
        with self._lock:
            if self._predictor is None:
                self._predictor = self.predictor_factory(self.settings)
            return self._predictor

    def set_predictor(self, predictor: Predictor) -> None:
        with self._lock:
            self._predictor = predictor

    def responders(self) -> ResponderService:
        """Draft replies (models load at the first draft, not here)."""
        from .responders import ResponderService

        with self._lock:
            if self._responders is None:
                self._responders = ResponderService(self.settings, self.database)
            return self._responders

    def set_responders(self, responders: ResponderService) -> None:
        with self._lock:
            self._responders = responders

    def client(
        self,
        connector: str,
        url: str | None,
        credentials: str | None,
        options: Mapping[str, str] | None = None,
    ) -> ActionClient:
        """One client per outside system, reused so connections are kept alive."""
        secret = self.settings.connector_secrets.get(credentials) if credentials else None
        token = secret.get_secret_value() if secret is not None else None
        if not url:
            raise ConfigError(
                f"the policy gives no url for its {connector} system",
                hint="add `url:` under the system in the tenant's policy",
            )
        opts = dict(options or {})
        key = (connector, url, credentials, tuple(sorted(opts.items())))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = action_client(
                    connector, url=url, token=token, timeout=self.settings.connector_timeout_s, options=opts
                )
                self._clients[key] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            close: Any = getattr(client, "close", None)
            if callable(close):
                close()
