"""LangChain adapters: deskpilot's generator as a chat model, its knowledge index as a retriever.

:class:`DeskpilotChatModel` is what lets the responder's chain take either deskpilot's own
generator or any other LangChain chat model at the same step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from deskpilot.types import Generation

from .knowledge_index import MEMORY_TENANT, Hit, KnowledgeIndex

TokenCallback = Callable[[str], None]


@runtime_checkable
class TextGenerator(Protocol):
    """A chat-prompted text generator (``deskpilot.adapters.generator.GeneratorModel``).

    ``messages`` are ``{"role": "system" | "user" | "assistant", "content": ...}``; ``on_token``
    receives each decoded piece as it is produced.
    """

    def generate(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_new_tokens: int = 80,
        on_token: TokenCallback | None = None,
        seed: int | None = None,
    ) -> Generation: ...


# --- deskpilot's generator as a LangChain chat model -----------------------------------------
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_role_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for message in messages:
        role = getattr(message, "role", None) if message.type == "chat" else _ROLES.get(message.type)
        out.append({"role": str(role or "user"), "content": str(message.text)})
    return out


def to_messages(messages: Sequence[Mapping[str, str]]) -> list[BaseMessage]:
    kinds: dict[str, type[BaseMessage]] = {
        "system": SystemMessage,
        "user": HumanMessage,
        "assistant": AIMessage,
    }
    return [kinds[m["role"]](content=m["content"]) for m in messages]


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    for marker in stop or ():
        text = text.split(marker, 1)[0]
    return text


class DeskpilotChatModel(BaseChatModel):
    """A :class:`TextGenerator` as a LangChain chat model.

    ``response_metadata`` carries what the responder needs from a generation: ``mean_logprob``,
    ``new_tokens``, ``prompt_tokens``, ``seconds``, ``finish_reason`` ("length" when the token
    limit was reached) and ``adapter_version`` (the generator's, if it has one).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: TextGenerator
    max_new_tokens: int = 80
    seed: int | None = None

    @property
    def _llm_type(self) -> str:
        return "deskpilot-generator"

    def _metadata(self, generation: Generation, limit: int) -> dict[str, Any]:
        version = getattr(self.generator, "adapter_version", None)
        return {
            "model_name": "deskpilot",
            "mean_logprob": generation.mean_logprob,
            "new_tokens": generation.new_tokens,
            "prompt_tokens": generation.prompt_tokens,
            "seconds": generation.seconds,
            "finish_reason": "length" if generation.new_tokens >= limit else "stop",
            "adapter_version": version if isinstance(version, str) else None,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        limit = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        on_token: TokenCallback | None = None
        if run_manager is not None:
            manager = run_manager

            def on_token(piece: str) -> None:
                manager.on_llm_new_token(piece)

        generation = self.generator.generate(
            to_role_dicts(messages), max_new_tokens=limit, on_token=on_token, seed=self.seed
        )
        message = AIMessage(
            content=_cut_at_stop(generation.text, stop), response_metadata=self._metadata(generation, limit)
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """One chunk per piece the generator hands ``on_token`` (it runs in a helper thread)."""
        limit = int(kwargs.get("max_new_tokens", self.max_new_tokens))
        pieces: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

        def work() -> None:
            try:
                result = self.generator.generate(
                    to_role_dicts(messages),
                    max_new_tokens=limit,
                    on_token=lambda piece: pieces.put(("piece", piece)),
                    seed=self.seed,
                )
                pieces.put(("done", result))
            except BaseException as exc:  # handed to the consuming thread, raised there
                pieces.put(("error", exc))

        threading.Thread(target=work, name="deskpilot-generate", daemon=True).start()
        while True:
            kind, value = pieces.get()
            if kind == "piece":
                yield ChatGenerationChunk(message=AIMessageChunk(content=str(value)))
            elif kind == "done":
                meta = self._metadata(value, limit)
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", response_metadata=meta, chunk_position="last")
                )
                return
            else:
                raise value


# --- retrieval as a LangChain retriever -------------------------------------------------------
def hit_document(hit: Hit) -> Document:
    return Document(
        page_content=hit.question,
        metadata={"source_id": hit.source_id, "score": hit.score, "answer": hit.answer, "label": hit.label},
    )


def document_hit(doc: Document) -> Hit:
    meta = doc.metadata
    label = meta.get("label")
    return Hit(
        source_id=str(meta["source_id"]),
        question=doc.page_content,
        answer=str(meta["answer"]),
        label=str(label) if label is not None else None,
        score=float(meta["score"]),
    )


class KnowledgeRetriever(BaseRetriever):
    """Resolved tickets like the query, as Documents (question; ``source_id``, ``score``,
    ``answer``, ``label`` in metadata). ``tenant``, ``label`` and ``k`` may be given per call:
    ``retriever.invoke(text, tenant="acme", label="billing")``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    tenant: str = MEMORY_TENANT
    k: int = 3
    floor: float | None = None
    label: str | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        tenant: str | None = None,
        label: str | None = None,
        k: int | None = None,
    ) -> list[Document]:
        hits = self.index.search(
            tenant or self.tenant, query, k=k or self.k, floor=self.floor, label=label or self.label
        )
        return [hit_document(hit) for hit in hits]
