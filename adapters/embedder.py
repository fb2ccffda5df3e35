"""Sentence embeddings for retrieval (a knowledge base of resolved tickets).

The packaged MiniLM with mean pooling and L2 normalisation, so a dot product is the
cosine similarity. It reuses :mod:`deskpilot.adapters.encoding`, the same computation the
classifier starts from, and returns numpy so callers (and stores) need no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from deskpilot.adapters.catalog import BaseModel, resolve
from deskpilot.adapters.encoding import embed, load_encoder, load_tokenizer, tokenize

MAX_LENGTH = 256
BATCH_SIZE = 32


class SentenceEmbedder:
    """Texts -> unit-length float32 vectors; one forward at a time (a lock: 2 cores)."""

    def __init__(
        self,
        base: BaseModel,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int = MAX_LENGTH,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.base = base
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.lock = threading.Lock()
        self._dim = int(getattr(model.config, "hidden_size", 0))

    @classmethod
    def from_base(cls, name: str | None = None, **kwargs: int) -> SentenceEmbedder:
        """Load an encoder by catalog name (None: the packaged all-MiniLM-L6-v2)."""
        base = resolve(name)
        return cls(base, load_encoder(base), load_tokenizer(base), **kwargs)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self.base.name

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embeddings in input order, shape (len(texts), dim), each row of length 1."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # the tokenizer inside the lock too: a fast tokenizer changing its truncation
        # settings from two threads at once fails with "Already borrowed"
        with self.lock, torch.inference_mode():
            features = tokenize(self.tokenizer, list(texts), self.max_length)
            vectors = embed(self.model, self.tokenizer, features, batch_size=self.batch_size)
        out: npt.NDArray[np.float32] = np.ascontiguousarray(vectors.float().numpy(), dtype=np.float32)
        return out

    def embed_one(self, text: str) -> npt.NDArray[np.float32]:
        """One text's vector, shape (dim,)."""
        row: npt.NDArray[np.float32] = self.embed([text])[0]
        return row
