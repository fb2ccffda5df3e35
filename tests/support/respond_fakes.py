"""Fakes of the responder's model protocols: a bag-of-words embedder and a canned generator."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from deskpilot.types import Generation

STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "the a an i my is it to for and of me you please this in on at are be was have has not yet do how",
    )
)


class HashEmbedder:
    """Deterministic set of words (stop words left out): texts sharing words are similar."""

    name = "hash-bow-512"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        out = np.zeros((len(texts), 512), np.float32)
        for i, text in enumerate(texts):
            for word in set(re.findall(r"\w+", text.lower())) - STOP_WORDS:
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 512] = 1.0
        return np.asarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9), np.float32)


class FakeGenerator:
    """A TextGenerator that says a fixed thing, word by word, and remembers what it was asked."""

    adapter_version = "gen-v7"

    def __init__(self, text: str, mean_logprob: float | None = -0.2, new_tokens: int = 12) -> None:
        self.text = text
        self.mean_logprob = mean_logprob
        self.new_tokens = new_tokens
        self.calls: list[tuple[list[dict[str, str]], int]] = []

    def generate(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_new_tokens: int = 80,
        on_token: Callable[[str], None] | None = None,
        seed: int | None = None,
    ) -> Generation:
        self.calls.append(([dict(m) for m in messages], max_new_tokens))
        if on_token is not None:
            for piece in re.findall(r"\S+\s*", self.text):
                on_token(piece)
        return Generation(self.text, self.new_tokens, 300, 0.01, self.mean_logprob)
