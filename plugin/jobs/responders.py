"""Responders wired to real objects: the packaged encoder, the knowledge base, the generator.

One :class:`ResponderService` per process (the gateway, a worker). The retrieval encoder and the
knowledge index are shared by every tenant; a generator is loaded per responder adapter
version (a LoRA merged into the base), a few at most. Models are imported by name at first
use, so importing the jobs package never pulls in torch.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from dataclasses import fields, replace
from typing import Any

from deskpilot.config import Settings
from deskpilot.errors import AdapterNotFoundError, ConfigError
from deskpilot.store import Database
from deskpilot.store.knowledge import KnowledgeRepository
from deskpilot.tasks.knowledge_index import Origin
from deskpilot.tasks.respond import KnowledgeIndex, Responder, ResponderPolicy
from deskpilot.tasks.respond_langchain import TokenCallback
from deskpilot.types import Draft

RESPONDER_KIND = "responder"
POLICY_KEY = "responder_policy"  # in a responder adapter's card.extra: thresholds tuned at training
MAX_GENERATORS = 2
_Key = tuple[str, str, str | None]  # tenant, task, adapter version (None: the bare base)


def policy_from_card(extra: dict[str, Any], max_new_tokens: int) -> ResponderPolicy:
    """The thresholds a responder was tuned with, or the defaults for an untuned one."""
    known = {f.name for f in fields(ResponderPolicy)}
    tuned = {k: v for k, v in (extra.get(POLICY_KEY) or {}).items() if k in known}
    return ResponderPolicy(**{"max_new_tokens": max_new_tokens, **tuned})


def load_chat_model(spec: str) -> Any:
    """``package.module:factory`` -> the LangChain chat model the factory returns."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"DESKPILOT_RESPONDER_CHAT_MODEL={spec!r} is not 'package.module:factory'",
            hint="name a callable that returns a LangChain BaseChatModel",
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the chat model factory {spec!r}: {exc}") from exc
    return factory()


class ResponderService:
    """Drafts for any tenant and responder task; what ``/v1/respond`` and the workflow call."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self._lock = threading.RLock()
        self._index: KnowledgeIndex | None = None
        self._responders: OrderedDict[tuple[str, str, str | None], tuple[Responder, str | None]] = (
            OrderedDict()
        )

    @property
    def index(self) -> KnowledgeIndex:
        with self._lock:
            if self._index is None:
                embedder = importlib.import_module("deskpilot.adapters.embedder").SentenceEmbedder.from_base(
                    None
                )
                self._index = KnowledgeIndex(embedder, KnowledgeRepository(self.database))
            return self._index

    def _champion(self, tenant: str, task: str) -> Any:
        registry = importlib.import_module("deskpilot.adapters.registry").Registry(self.settings.adapters_dir)
        try:
            card = registry.card(tenant, task)
        except AdapterNotFoundError:
            return None, None
        if card.kind != RESPONDER_KIND:
            raise ConfigError(
                f"the adapter for task {task!r} is a {card.kind}, not a responder",
                hint="train one with `deskpilot train responder --task NAME`, or name another task",
            )
        return card, registry.load_path(tenant, task, card.version)  # refuses pickle files

    def responder(self, tenant: str, task: str | None = None) -> tuple[Responder, str | None]:
        """The tenant's responder for ``task`` (its champion adapter) and that adapter's version.

        Without a trained responder the base generator drafts with default thresholds; with
        ``DESKPILOT_RESPONDER_CHAT_MODEL`` that chat model drafts instead of ours.
        """
        task = task or self.settings.responder_task
        card, path = self._champion(tenant, task)
        key = (tenant, task, card.version if card is not None else None)
        with self._lock:
            if key in self._responders:
                self._responders.move_to_end(key)
                return self._responders[key]
            policy = policy_from_card(card.extra if card else {}, self.settings.responder_max_new_tokens)
            generator: Any
            if self.settings.responder_chat_model:
                generator = load_chat_model(self.settings.responder_chat_model)
            else:
                generation = importlib.import_module("deskpilot.adapters.generator")
                catalog = importlib.import_module("deskpilot.adapters.catalog")
                base = catalog.resolve_generator(
                    card.base_model if card is not None else self.settings.generator_model,
                    self.settings.cache_dir,
                )
                generator = generation.GeneratorModel.load(base, path, bf16=self.settings.bf16)
            made = (Responder(self.index, generator, policy), key[2])
            self._responders[key] = made
            while len(self._responders) > MAX_GENERATORS:
                self._responders.popitem(last=False)
            return made

    def respond(
        self,
        tenant: str,
        text: str,
        *,
        task: str | None = None,
        label: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> Draft:
        responder, version = self.responder(tenant, task)
        draft = responder.respond(tenant, text, label, on_token)
        return replace(draft, adapter_version=version) if draft.mode == "generated" else draft

    def remember(
        self,
        tenant: str,
        question: str,
        answer: str,
        source_id: str,
        *,
        label: str | None = None,
        origin: Origin = "feedback",
        ticket_id: int | None = None,
    ) -> None:
        """An accepted or edited reply joins the knowledge base (same ``source_id``: replaced)."""
        self.index.remember(tenant, question, answer, source_id, label, origin, ticket_id)
