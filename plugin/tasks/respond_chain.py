"""The responder as a LangChain chain: retrieve -> build prompt -> chat model -> post-process.

The generator step is any LangChain ``BaseChatModel``: deskpilot's own generator wrapped in
:class:`DeskpilotChatModel`, or a hosted model a user configures instead. Both go through the
same chain, so swapping the model swaps nothing else (retrieval, the no-draft and reuse
decisions, post-processing and confidence stay deskpilot's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from deskpilot.errors import ConfigError
from deskpilot.types import Draft

from .knowledge_index import Hit, KnowledgeIndex
from .respond_clean import MAX_DRAFT_CHARS, clean_draft, scrub_reused
from .respond_langchain import (
    DeskpilotChatModel,
    KnowledgeRetriever,
    TextGenerator,
    TokenCallback,
    document_hit,
    to_messages,
)
from .respond_prompt import MAX_EXAMPLE_CHARS, MAX_TICKET_CHARS, build_messages, select_examples


@dataclass(frozen=True, slots=True)
class ResponderPolicy:
    """When the responder writes, reuses, or stays silent. Similarities are cosines in [-1, 1].

    - best similarity < ``floor``: no draft (nothing resolved is like this ticket);
    - best similarity >= ``reuse_similarity``: the nearest past answer as it is, no generation
      (a generator that cannot beat the best past answer should offer it, not paraphrase it);
    - otherwise a generated draft from the ``k`` nearest examples; if its confidence is below
      ``min_confidence`` (or nothing is left after post-processing), the nearest answer is
      offered instead when ``reuse_fallback``, else no draft.
    """

    k: int = 2
    floor: float = 0.55
    reuse_similarity: float = 0.9
    min_confidence: float = 0.25
    max_new_tokens: int = 80
    max_chars: int = MAX_DRAFT_CHARS
    candidates: int = 8
    reuse_fallback: bool = True
    max_example_chars: int = MAX_EXAMPLE_CHARS
    max_ticket_chars: int = MAX_TICKET_CHARS

    def __post_init__(self) -> None:
        if self.k < 1 or self.candidates < self.k:
            raise ConfigError(
                f"responder k={self.k} and candidates={self.candidates}: need 1 <= k <= candidates"
            )
        if not -1.0 <= self.floor <= self.reuse_similarity:
            raise ConfigError(
                f"responder floor {self.floor} and reuse_similarity {self.reuse_similarity}: "
                "need -1 <= floor <= reuse_similarity (above 1 turns reuse off)"
            )
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"responder min_confidence {self.min_confidence} is not in [0, 1]")
        if self.max_new_tokens < 1 or self.max_chars < 20:
            raise ConfigError("responder max_new_tokens must be >= 1 and max_chars >= 20")


def draft_confidence(similarity: float, mean_logprob: float | None) -> float:
    """``similarity x exp(mean_logprob)``, clipped to [0, 1].

    The closeness of the best resolved ticket times the geometric-mean probability of the
    generated tokens: monotone in both, 0 when either is hopeless. A model that reports no
    log-probabilities (many hosted ones) is judged on retrieval alone.
    """
    fluency = 1.0 if mean_logprob is None else math.exp(min(0.0, mean_logprob))
    return float(min(1.0, max(0.0, similarity * fluency)))


# --- the chain ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RespondRequest:
    """The chain's input. ``on_token`` streams the raw generation (before post-processing)."""

    tenant: str
    ticket_text: str
    decision_label: str | None = None
    on_token: TokenCallback | None = None


@dataclass(frozen=True, slots=True)
class _State:
    request: RespondRequest
    hits: tuple[Hit, ...] = ()
    best: float | None = None
    examples: tuple[Hit, ...] = ()
    messages: tuple[Mapping[str, str], ...] = ()
    draft: Draft | None = None  # decided without generating
    reply: BaseMessage | None = None


def _mean_logprob(meta: Mapping[str, Any]) -> float | None:
    """Ours, or OpenAI-style ``logprobs.content[*].logprob`` from a hosted model."""
    value = meta.get("mean_logprob")
    if isinstance(value, int | float):
        return float(value)
    logprobs = meta.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if isinstance(content, list):
        values = [float(t["logprob"]) for t in content if isinstance(t, Mapping) and "logprob" in t]
        if values:
            return sum(values) / len(values)
    return None


def _reuse(hit: Hit, ticket_text: str, confidence: float, reason: str) -> Draft:
    """The nearest answer as it is, but without its own customer's identifiers."""
    text, _ = scrub_reused(hit.answer, hit.question, ticket_text)
    confidence = float(min(1.0, max(0.0, confidence)))
    return Draft(text=text, confidence=confidence, sources=(hit.source_id,), reason=reason, mode="reused")


def build_respond_chain(
    index: KnowledgeIndex, chat_model: BaseChatModel | None, policy: ResponderPolicy
) -> Runnable[RespondRequest, Draft]:
    """retrieve (KnowledgeRetriever) -> build prompt -> chat model -> post-process, as Runnables."""
    retriever = KnowledgeRetriever(index=index, k=policy.candidates, floor=policy.floor)

    def retrieve(request: RespondRequest, config: RunnableConfig) -> _State:
        docs = retriever.invoke(
            request.ticket_text, config, tenant=request.tenant, label=request.decision_label
        )
        hits = tuple(document_hit(doc) for doc in docs)
        best = max((h.score for h in hits), default=None)
        if best is None:  # nothing above the floor: how close was the nearest, for the reason
            best = index.best_similarity(request.tenant, request.ticket_text)
        return _State(request, hits, best)

    def prompt(state: _State) -> _State:
        request, hits, best = state.request, state.hits, state.best
        if best is None:
            reason = "no resolved tickets in the knowledge base yet"
            return replace(state, draft=Draft(None, 0.0, (), reason, "none"))
        if not hits:
            reason = f"no similar resolved ticket (best similarity {best:.2f} < {policy.floor:.2f})"
            return replace(state, draft=Draft(None, 0.0, (), reason, "none"))
        nearest = max(hits, key=lambda h: h.score)
        if best >= policy.reuse_similarity:
            reason = f"a resolved ticket is nearly the same (similarity {best:.2f}): its answer is offered"
            return replace(state, draft=_reuse(nearest, request.ticket_text, best, reason))
        if chat_model is None:
            reason = f"no generator configured: the nearest answer is offered (similarity {best:.2f})"
            return replace(state, draft=_reuse(nearest, request.ticket_text, best, reason))
        examples = tuple(select_examples(hits, policy.k))
        messages = build_messages(
            request.ticket_text,
            examples,
            request.decision_label,
            policy.max_example_chars,
            policy.max_ticket_chars,
        )
        return replace(state, examples=examples, messages=tuple(messages))

    def generate(state: _State, config: RunnableConfig) -> _State:
        if state.draft is not None or chat_model is None:
            return state
        messages = to_messages(state.messages)
        on_token = state.request.on_token
        if on_token is None:
            return replace(state, reply=chat_model.invoke(messages, config))
        reply: AIMessageChunk | None = None
        for chunk in chat_model.stream(messages, config):
            if chunk.text:
                on_token(str(chunk.text))
            reply = chunk if reply is None else reply + chunk
        return replace(state, reply=reply if reply is not None else AIMessage(content=""))

    def postprocess(state: _State) -> Draft:
        if state.draft is not None:
            return state.draft
        request, best = state.request, state.best or 0.0
        reply = state.reply if state.reply is not None else AIMessage(content="")
        meta = dict(reply.response_metadata)
        cut_off = (
            meta.get("finish_reason") in ("length", "max_tokens") or meta.get("stop_reason") == "max_tokens"
        )
        cleaned = clean_draft(
            str(reply.text), request.ticket_text, state.examples, policy.max_chars, cut_off=cut_off
        )
        confidence = draft_confidence(best, _mean_logprob(meta))
        version = meta.get("adapter_version") or meta.get("model_name")
        sources = tuple(h.source_id for h in state.examples)
        if not cleaned.text or confidence < policy.min_confidence:
            why = (
                "the generated draft was empty"
                if not cleaned.text
                else f"the generated draft's confidence {confidence:.2f} < {policy.min_confidence:.2f}"
            )
            if policy.reuse_fallback:
                nearest = max(state.hits, key=lambda h: h.score)
                return _reuse(nearest, request.ticket_text, best, f"{why}: the nearest answer is offered")
            return Draft(None, confidence, sources, why, "none")
        reason = f"written from {len(sources)} similar resolved ticket(s) (best similarity {best:.2f})"
        if cleaned.invented:
            reason += f"; {len(cleaned.invented)} invented identifier(s) replaced by placeholders"
        return Draft(
            cleaned.text, confidence, sources, reason, "generated", str(version) if version else None
        )

    chain: Runnable[RespondRequest, Draft] = (
        RunnableLambda(retrieve, name="retrieve")
        | RunnableLambda(prompt, name="build_prompt")
        | RunnableLambda(generate, name="generate")
        | RunnableLambda(postprocess, name="postprocess")
    )
    return chain.with_config(run_name="deskpilot_respond")


def as_chat_model(
    generator: TextGenerator | BaseChatModel | None, policy: ResponderPolicy
) -> BaseChatModel | None:
    """A user's chat model as it is; deskpilot's generator wrapped; None stays None."""
    if generator is None or isinstance(generator, BaseChatModel):
        return generator
    if not isinstance(generator, TextGenerator):
        raise ConfigError(f"{type(generator).__name__} is neither a TextGenerator nor a LangChain chat model")
    return DeskpilotChatModel(generator=generator, max_new_tokens=policy.max_new_tokens)
