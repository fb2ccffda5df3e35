"""Reference classifiers that a deskpilot adapter has to beat to be worth its training time.

Each baseline is ``fit(texts, labels) -> self`` then ``predict(texts) -> list[str]``;
those with natural probabilities also have ``predict_proba(texts)`` (columns in
``classes_`` order). ``train_seconds`` is wall time of the last ``fit``; the one-time
loading of an encoder is not counted (deskpilot's own figure includes it, ~1 s).

- :class:`TfidfSvc`: the strongest cheap baseline for short intents (word 1-2 + char_wb
  2-5 n-grams, LinearSVC); the data README measures 91.17 % on Banking77.
- :class:`FrozenLogReg`: the packaged encoder, frozen, + logistic regression: what LoRA
  fine-tuning adds over plain feature extraction.
- :class:`SetFitBaseline`: SetFit's recipe (contrastive pair fine-tuning of the same
  body, then logistic regression) in a small loop over sentence-transformers, because the
  ``setfit`` package is not a dependency (it pickles its heads and pins old libraries).

scikit-learn (the ``eval`` extra) and torch are imported inside the classes, so importing
this module stays cheap.
"""

from __future__ import annotations

import hashlib
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]
"""Texts -> (n, dim) float32 embeddings, one row per text, L2-normalised."""


def _check_fit_input(texts: Sequence[str], labels: Sequence[str]) -> None:
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError("a classifier needs at least two labels")


class Baseline:
    """Common surface: ``fit``, ``predict``, ``train_seconds``, ``classes_``."""

    name: ClassVar[str] = "baseline"
    train_seconds: float = 0.0
    classes_: list[str]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Baseline:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[str]:
        raise NotImplementedError

    @property
    def has_proba(self) -> bool:
        return callable(getattr(self, "predict_proba", None))


# --- TF-IDF + LinearSVC -------------------------------------------------------------------


class TfidfSvc(Baseline):
    """TF-IDF word 1-2 grams + char_wb 2-5 grams (sublinear tf) -> LinearSVC(C=1)."""

    name = "tfidf_svc"

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.pipeline: Any = None
        self.converged = True

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TfidfSvc:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion, make_pipeline
        from sklearn.svm import LinearSVC

        _check_fit_input(texts, labels)
        started = time.perf_counter()
        features = FeatureUnion(
            [
                ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
            ]
        )
        self.pipeline = make_pipeline(features, LinearSVC(C=self.c, random_state=self.seed))
        self.converged = _fit_recording_convergence(self.pipeline, list(texts), labels)
        self.classes_ = [str(c) for c in self.pipeline.classes_]
        self.train_seconds = time.perf_counter() - started
        return self

    def predict(self, texts: Sequence[str]) -> list[str]:
        if self.pipeline is None:
            raise RuntimeError("fit the baseline first")
        return [str(p) for p in self.pipeline.predict(list(texts))]


def _convergence_warning() -> type[Warning]:
    from sklearn.exceptions import ConvergenceWarning

    return ConvergenceWarning


def _fit_logreg(x: np.ndarray, labels: Sequence[str], c: float, max_iter: int) -> tuple[Any, bool]:
    """Multinomial logistic regression; returns (model, converged) instead of warning."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=max_iter)
    return model, _fit_recording_convergence(model, x, labels)


def _fit_recording_convergence(model: Any, x: Any, labels: Sequence[str]) -> bool:
    """Fit; a solver that stops at max_iter still gives a usable baseline, so report
    ``converged=False`` in the figures instead of failing on the warning."""
    convergence = _convergence_warning()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", convergence)
        # few-shot data (1-2 rows per intent) is a classification problem, not a regression
        warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%", UserWarning)
        model.fit(x, list(labels))
    for w in caught:  # anything else is not ours to swallow
        if not issubclass(w.category, convergence):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return not any(issubclass(w.category, convergence) for w in caught)


# --- frozen embeddings + logistic regression ---------------------------------------------


def packaged_encode(
    base: str | None = None, *, max_length: int = 128, batch_size: int = 64
) -> tuple[EncodeFn, str]:
    """An :data:`EncodeFn` over deskpilot's own encoder code (same pooling as the adapters)."""
    from deskpilot.adapters.catalog import resolve
    from deskpilot.adapters.encoding import embed, load_encoder, load_tokenizer, tokenize

    model = resolve(base)
    tokenizer = load_tokenizer(model)
    encoder = load_encoder(model)

    def encode(texts: list[str]) -> np.ndarray:
        features = tokenize(tokenizer, texts, max_length)
        return embed(encoder, tokenizer, features, batch_size=batch_size).numpy().astype(np.float32)

    return encode, model.name


class EmbeddingCache:
    """Frozen embeddings per (model, text), shared by the baselines of one benchmark run.

    Banking77 full and 10-shot share a test set and the 10-shot train set is a subset of
    the full one, so a per-text cache saves most of the encoding. Each text remembers what
    encoding it cost, and a hit is charged that cost, so ``train_seconds`` stays honest
    whichever baseline or dataset happened to encode a text first.
    """

    def __init__(
        self,
        base: str | None = None,
        *,
        max_length: int = 128,
        batch_size: int = 64,
        encode: EncodeFn | None = None,
        model_name: str | None = None,
    ) -> None:
        self.base = base
        self.max_length = max_length
        self.batch_size = batch_size
        self._encode = encode
        self.model_name = model_name or (base or "default")
        self._vectors: dict[str, np.ndarray] = {}
        self._cost: dict[str, float] = {}
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.model_name}\x1f{self.max_length}\x1f{text}".encode()).hexdigest()

    def _encoder(self) -> EncodeFn:
        if self._encode is None:
            self._encode, self.model_name = packaged_encode(
                self.base, max_length=self.max_length, batch_size=self.batch_size
            )
        return self._encode

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, float]:
        """(embeddings in input order, encoding seconds charged to these texts)."""
        encode = self._encoder()
        keys = [self._key(t) for t in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors and key not in missing:
                missing[key] = text
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            started = time.perf_counter()
            vectors = np.asarray(encode(list(missing.values())), dtype=np.float32)
            per_text = (time.perf_counter() - started) / len(missing)
            if vectors.shape[0] != len(missing):
                raise RuntimeError(f"encoder returned {vectors.shape[0]} rows for {len(missing)} texts")
            for key, row in zip(missing, vectors, strict=True):
                self._vectors[key] = row
                self._cost[key] = per_text
        if not keys:
            return np.zeros((0, 0), dtype=np.float32), 0.0
        return np.stack([self._vectors[k] for k in keys]), float(sum(self._cost[k] for k in keys))


class FrozenLogReg(Baseline):
    """Frozen packaged-encoder embeddings -> LogisticRegression(C=100, max_iter=2000)."""

    name = "frozen_logreg"

    def __init__(
        self, cache: EmbeddingCache | None = None, *, c: float = 100.0, max_iter: int = 2000
    ) -> None:
        self.cache = cache or EmbeddingCache()
        self.c = c
        self.max_iter = max_iter
        self.model: Any = None
        self.converged = True
        self.embed_seconds = 0.0

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FrozenLogReg:
        _check_fit_input(texts, labels)
        x, self.embed_seconds = self.cache.embed(texts)
        started = time.perf_counter()
        self.model, self.converged = _fit_logreg(x, labels, self.c, self.max_iter)
        self.classes_ = [str(c) for c in self.model.classes_]
        self.train_seconds = self.embed_seconds + time.perf_counter() - started
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the baseline first")
        x, _ = self.cache.embed(texts)
        return np.asarray(self.model.predict_proba(x))

    def predict(self, texts: Sequence[str]) -> list[str]:
        proba = self.predict_proba(texts)
        return [self.classes_[i] for i in proba.argmax(axis=1)]


# --- SetFit-style contrastive fine-tuning -------------------------------------------------


def contrastive_pairs(
    labels: Sequence[str], iterations: int, max_pairs: int | None, seed: int
) -> list[tuple[int, int, float]]:
    """SetFit's pair sampling: per iteration and row, one positive and one negative partner.

    Rows are visited in a fresh random order each iteration, so a ``max_pairs`` cut
    still spreads over all classes. Returns (i, j, 1.0 same label / 0.0 different).
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_label[y].append(i)
    names = sorted(by_label)
    limit = max_pairs if max_pairs is not None else 2 * iterations * len(labels)
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        order = list(range(len(labels)))
        rng.shuffle(order)
        for i in order:
            same = by_label[labels[i]]
            if len(same) > 1:
                j = rng.choice(same)
                while j == i:
                    j = rng.choice(same)
                pairs.append((i, j, 1.0))
            other = rng.choice(names)
            while other == labels[i]:
                other = rng.choice(names)
            pairs.append((i, rng.choice(by_label[other]), 0.0))
            if len(pairs) >= limit:
                return pairs[:limit]
    return pairs


class SetFitBaseline(Baseline):
    """Contrastive fine-tuning of the packaged sentence encoder, then logistic regression.

    SetFit defaults (CosineSimilarityLoss, lr 2e-5, batch 16, 20 iterations, 10 % warmup),
    except that ``max_pairs`` caps the pair count: on full Banking77 the SetFit default
    would be 400k pairs, hours on a CPU. Use a few dozen pairs for smoke tests.
    """

    name = "setfit"

    def __init__(
        self,
        base: str | None = None,
        *,
        iterations: int = 20,
        max_pairs: int | None = 10_000,
        batch_size: int = 16,
        learning_rate: float = 2e-5,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        head_c: float = 100.0,
        max_iter: int = 2000,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.iterations = iterations
        self.max_pairs = max_pairs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_ratio = warmup_ratio
        self.max_length = max_length
        self.head_c = head_c
        self.max_iter = max_iter
        self.seed = seed
        self.body: Any = None
        self.head: Any = None
        self.converged = True
        self.n_pairs = 0
        self.tune_seconds = 0.0

    def _load_body(self) -> Any:
        from sentence_transformers import SentenceTransformer

        from deskpilot.adapters.catalog import resolve

        body = SentenceTransformer(str(resolve(self.base).path), device="cpu", local_files_only=True)
        body.max_seq_length = self.max_length
        return body

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        self.body.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # less padding
        out = np.zeros((len(texts), 0), dtype=np.float32)
        rows: dict[int, np.ndarray] = {}
        with torch.inference_mode():
            for start in range(0, len(order), 64):
                idx = order[start : start + 64]
                features = self.body.preprocess([texts[i] for i in idx])
                vectors = F.normalize(self.body(features)["sentence_embedding"].float(), dim=-1)
                for row, i in enumerate(idx):
                    rows[i] = vectors[row].numpy()
        if rows:
            out = np.stack([rows[i] for i in range(len(texts))])
        return out

    def _tune(self, texts: Sequence[str], labels: Sequence[str]) -> None:
        import torch
        import torch.nn.functional as F

        pairs = contrastive_pairs(labels, self.iterations, self.max_pairs, self.seed)
        self.n_pairs = len(pairs)
        if not pairs:
            return
        torch.manual_seed(self.seed)
        body = self.body
        body.train()
        optimizer = torch.optim.AdamW(body.parameters(), lr=self.learning_rate)
        steps = -(-len(pairs) // self.batch_size)
        warmup = max(1, round(steps * self.warmup_ratio))

        def schedule(step: int) -> float:  # linear warmup, then linear decay (as SetFit)
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (steps - step) / max(1, steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        for start in range(0, len(pairs), self.batch_size):
            batch = pairs[start : start + self.batch_size]
            left = body(body.preprocess([texts[i] for i, _, _ in batch]))["sentence_embedding"]
            right = body(body.preprocess([texts[j] for _, j, _ in batch]))["sentence_embedding"]
            target = torch.tensor([s for _, _, s in batch], dtype=left.dtype)
            loss = F.mse_loss(F.cosine_similarity(left, right), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        body.eval()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> SetFitBaseline:
        _check_fit_input(texts, labels)
        self.body = self._load_body()
        started = time.perf_counter()
        self._tune(texts, labels)
        self.tune_seconds = time.perf_counter() - started
        self.head, self.converged = _fit_logreg(self._encode(texts), labels, self.head_c, self.max_iter)
        self.classes_ = [str(c) for c in self.head.classes_]
        self.train_seconds = time.perf_counter() - started
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.head is None:
            raise RuntimeError("fit the baseline first")
        return np.asarray(self.head.predict_proba(self._encode(texts)))

    def predict(self, texts: Sequence[str]) -> list[str]:
        proba = self.predict_proba(texts)
        return [self.classes_[i] for i in proba.argmax(axis=1)]


BASELINES: dict[str, type[Baseline]] = {
    TfidfSvc.name: TfidfSvc,
    FrozenLogReg.name: FrozenLogReg,
    SetFitBaseline.name: SetFitBaseline,
}
