"""The responder: a draft reply for a person to check, grounded in similar resolved tickets.

It writes only when it has something to stand on. No similar resolved ticket: no draft, and
the reason says how close the nearest one was. A nearly identical one: its answer as it was
(a generator that cannot beat the best past answer should offer it, not paraphrase it worse).
In between: a generated draft from the nearest examples, post-processed, with a confidence;
a draft too unsure to show is replaced by the nearest answer. Accepted and edited drafts are
remembered, so the knowledge base grows with use.

The pieces live in ``knowledge_index`` (retrieval), ``respond_prompt`` (prompts, training
prompts), ``respond_clean`` (post-processing), ``respond_langchain`` (the generator as a
LangChain chat model, the index as a retriever) and ``respond_chain`` (policy, confidence and
the chain); this module wires them and re-exports the public names.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig

from deskpilot.errors import InputDataError
from deskpilot.types import Draft, KnowledgeItem

from .knowledge_index import (
    MEMORY_TENANT,
    Embedder,
    Hit,
    KnowledgeIndex,
    KnowledgeStore,
)
from .respond_chain import (
    ResponderPolicy,
    RespondRequest,
    as_chat_model,
    build_respond_chain,
    draft_confidence,
)
from .respond_clean import CleanedDraft, clean_draft, invented_identifiers, replace_identifiers
from .respond_langchain import DeskpilotChatModel, KnowledgeRetriever, TextGenerator, TokenCallback
from .respond_prompt import SYSTEM_PROMPT, build_messages, select_examples, training_examples

__all__ = [
    "MEMORY_TENANT",
    "SYSTEM_PROMPT",
    "CleanedDraft",
    "DeskpilotChatModel",
    "Embedder",
    "Hit",
    "KnowledgeIndex",
    "KnowledgeItem",
    "KnowledgeRetriever",
    "KnowledgeStore",
    "RespondRequest",
    "Responder",
    "ResponderPolicy",
    "TextGenerator",
    "build_messages",
    "build_respond_chain",
    "clean_draft",
    "draft_confidence",
    "invented_identifiers",
    "replace_identifiers",
    "select_examples",
    "training_examples",
]


class Responder:
    """Drafts replies for one or many tenants from a shared :class:`KnowledgeIndex`.

    ``generator`` is deskpilot's :class:`TextGenerator` (wrapped as :class:`DeskpilotChatModel`),
    any LangChain chat model (a hosted one, say), or None (reuse only). Every answer goes
    through :attr:`chain`, whichever it is.
    """

    def __init__(
        self,
        index: KnowledgeIndex,
        generator: TextGenerator | BaseChatModel | None = None,
        policy: ResponderPolicy | None = None,
    ) -> None:
        self.index = index
        self.policy = policy or ResponderPolicy()
        self.chat_model = as_chat_model(generator, self.policy)
        self.chain: Runnable[RespondRequest, Draft] = build_respond_chain(index, self.chat_model, self.policy)

    def respond(
        self,
        tenant: str,
        ticket_text: str,
        decision_label: str | None = None,
        on_token: TokenCallback | None = None,
        *,
        config: RunnableConfig | None = None,
    ) -> Draft:
        """A draft for one ticket. ``decision_label`` (the routed class) prefers examples of
        that class; ``on_token`` sees the raw generation as it streams (the returned draft is
        the post-processed text); ``config`` passes LangChain callbacks or tags through."""
        if not ticket_text or not ticket_text.strip():
            raise InputDataError("the ticket text is empty: there is nothing to answer")
        request = RespondRequest(tenant, ticket_text, decision_label, on_token)
        return self.chain.invoke(request, config)
