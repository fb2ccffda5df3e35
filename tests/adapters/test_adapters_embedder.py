"""Sentence embeddings for retrieval: shape, unit length, input order, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deskpilot.adapters.catalog import PACKAGED_ENCODER, BaseModel
from deskpilot.adapters.embedder import SentenceEmbedder
from deskpilot.adapters.encoding import load_encoder, load_tokenizer

TEXTS = [
    "my vpn drops every morning",
    "printer jam",
    "please reset my password, the login page says my account is locked since today",
    "refund for the second charge on my invoice",
    "",
]


@pytest.fixture(scope="module")
def tiny_embedder(tiny_base: BaseModel) -> SentenceEmbedder:
    return SentenceEmbedder(tiny_base, load_encoder(tiny_base), load_tokenizer(tiny_base), batch_size=2)


def test_vectors_are_float32_unit_rows_in_input_order(tiny_embedder: SentenceEmbedder) -> None:
    vectors = tiny_embedder.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), tiny_embedder.dim) == (5, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # length-sorted batching must not reorder: each row equals the text embedded alone
    for text, row in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(tiny_embedder.embed_one(text), row, atol=1e-5)


def test_empty_input_and_a_bare_string(tiny_embedder: SentenceEmbedder) -> None:
    assert tiny_embedder.embed([]).shape == (0, tiny_embedder.dim)
    with pytest.raises(TypeError, match="sequence"):
        tiny_embedder.embed("one text")  # a str is a Sequence[str] of characters: refuse it


def test_long_texts_are_truncated_to_max_length(tiny_base: BaseModel) -> None:
    embedder = SentenceEmbedder(tiny_base, load_encoder(tiny_base), load_tokenizer(tiny_base), max_length=16)
    long = "printer " * 500  # past the tiny model's 128 positions: it would fail untruncated
    np.testing.assert_allclose(embedder.embed([long]), embedder.embed(["printer " * 40]), atol=1e-5)


def test_threads_share_one_embedder(tiny_embedder: SentenceEmbedder) -> None:
    expected = tiny_embedder.embed(TEXTS)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(tiny_embedder.embed(TEXTS))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 20
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.integration
def test_packaged_minilm_puts_similar_tickets_closer() -> None:
    embedder = SentenceEmbedder.from_base(None)
    assert embedder.name == PACKAGED_ENCODER
    assert embedder.dim == 384
    query, near, far = embedder.embed(
        [
            "VPN disconnects every morning",
            "my VPN connection keeps dropping",
            "refund the duplicate charge on my invoice",
        ]
    )
    assert float(query @ near) > float(query @ far) + 0.2
