"""Train a responder: retrieval prompts, a LoRA generator, then the choice of when to reuse.

``deskpilot train responder`` and ``deskpilot bench responder`` both come here:

1. a validation split is carved from the training pairs (never the evaluation data);
2. every training pair gets the prompt the responder will build at inference: its nearest
   *other* resolved tickets as examples (leave-one-out), so the LoRA model learns to adapt
   what retrieval finds rather than to recite;
3. the LoRA generator is trained on those prompts (loss on the answers only);
4. on the validation split both the trained model's drafts and the nearest past answers are
   scored against the real replies (ROUGE-L and embedding cosine); the similarity above which
   reusing the past answer beats generating, and the confidence below which a draft is not
   worth showing, are chosen there and stored on the adapter's card.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import logging
import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from deskpilot.errors import InputDataError
from deskpilot.tasks.knowledge_index import MEMORY_TENANT, KnowledgeIndex
from deskpilot.tasks.respond import Responder, ResponderPolicy, training_examples
from deskpilot.tasks.respond_metrics import cosines, rouge_l, split_pairs
from deskpilot.types import KnowledgeItem

from .responders import POLICY_KEY

logger = logging.getLogger("deskpilot.jobs")

MIN_PAIRS = 10
VALIDATION_MAX = 96  # each costs a generation (~2-3 s on 2 cores); 32 chose thresholds that did not hold
DEFAULT_FLOOR = 0.35  # MiniLM cosine: below this the nearest resolved ticket is about something else
Log = Callable[[str], None]


@dataclass
class Pairs:
    """Resolved tickets: the customer's text, the reply a person sent, and its class if known."""

    questions: list[str]
    answers: list[str]
    labels: list[str | None] | None = None

    def __post_init__(self) -> None:
        if len(self.questions) != len(self.answers) or (
            self.labels is not None and len(self.labels) != len(self.questions)
        ):
            raise InputDataError("every ticket needs its answer (and its label, when labels are given)")
        kept = [
            i
            for i, (q, a) in enumerate(zip(self.questions, self.answers, strict=True))
            if q.strip() and a.strip()
        ]
        self.questions = [self.questions[i] for i in kept]
        self.answers = [self.answers[i] for i in kept]
        self.labels = [self.labels[i] for i in kept] if self.labels is not None else None

    def __len__(self) -> int:
        return len(self.questions)

    def take(self, rows: Sequence[int]) -> Pairs:
        labels = [self.labels[i] for i in rows] if self.labels is not None else None
        return Pairs([self.questions[i] for i in rows], [self.answers[i] for i in rows], labels)

    def source_ids(self, task: str) -> list[str]:
        """Stable ids, so importing the same tickets again replaces instead of duplicating."""
        return [f"{task}:{hashlib.sha1(q.encode('utf-8')).hexdigest()[:16]}" for q in self.questions]


@dataclass
class FittedResponder:
    folder: Path  # the saved PEFT adapter, ready for Registry.register
    card: Any  # deskpilot.adapters.registry.AdapterCard
    policy: ResponderPolicy
    validation: dict[str, Any] = field(default_factory=dict)


def _models() -> tuple[Any, Any, Any, Any]:
    """The adapters modules, by name at run time (importing jobs never pulls in torch)."""
    return (
        importlib.import_module("deskpilot.adapters.catalog"),
        importlib.import_module("deskpilot.adapters.embedder"),
        importlib.import_module("deskpilot.adapters.generator"),
        importlib.import_module("deskpilot.adapters.generator_training"),
    )


def chat_examples(pairs: Pairs, embedder: Any, policy: ResponderPolicy, training: Any) -> list[Any]:
    prompts = training_examples(
        pairs.questions,
        pairs.answers,
        embedder,
        k=policy.k,
        labels=pairs.labels,
        max_example_chars=policy.max_example_chars,
        max_ticket_chars=policy.max_ticket_chars,
    )
    return [training.ChatExample(messages, answer) for messages, answer in prompts]


def fit_responder(
    pairs: Pairs,
    *,
    task: str,
    tenant: str,
    cache_dir: Path,
    base: str | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    log: Log = logger.info,
) -> FittedResponder:
    """Train and tune a responder on ``pairs``; nothing is registered yet."""
    if len(pairs) < MIN_PAIRS:
        raise InputDataError(
            f"a responder needs at least {MIN_PAIRS} resolved tickets with answers, got {len(pairs)}",
            hint="give the --answer-column of a file of resolved tickets",
        )
    catalog, embedding, generation, training = _models()
    held = min(VALIDATION_MAX, len(pairs) // 10)
    train_rows, val_rows = split_pairs(len(pairs), held, seed)
    train, val = pairs.take(train_rows), pairs.take(val_rows)
    embedder = embedding.SentenceEmbedder.from_base(None)
    policy = ResponderPolicy(floor=DEFAULT_FLOOR)
    log(f"building retrieval prompts for {len(train)} resolved tickets ({len(val)} kept for validation)")
    examples = chat_examples(train, embedder, policy, training)
    generator_base = catalog.resolve_generator(base, cache_dir)
    log(f"training the LoRA responder on {generator_base.name}")
    result = training.train_responder(
        examples, generator_base, training.ResponderRecipe(seed=seed, **(recipe or {})), progress
    )
    folder = Path(tempfile.mkdtemp(prefix=f"deskpilot-responder-{task}-"))
    training.save_responder(result, folder)
    card = training.responder_card(result, task=task, tenant=tenant)
    validation: dict[str, Any] = {"rows": len(val)}
    if len(val):
        log(f"choosing when to reuse a past answer on {len(val)} validation tickets")
        model = generation.GeneratorModel.load(generator_base, folder)
        index = KnowledgeIndex.from_pairs(train.questions, train.answers, None, embedder, labels=train.labels)
        policy, validation = tune_policy(index, model, val, embedder, policy)
    card.extra[POLICY_KEY] = {k: v for k, v in asdict(policy).items() if k in _TUNED}
    card.metrics["validation"] = validation
    return FittedResponder(folder, card, policy, validation)


_TUNED = ("k", "floor", "reuse_similarity", "min_confidence", "max_new_tokens")


@dataclass
class ValidationRows:
    """Per validation ticket: the nearest similarity, the draft's confidence, and what the
    draft gains over the nearest past answer against the real reply."""

    best: list[float]
    confidence: list[float]
    rouge_gain: list[float]
    cosine_gain: list[float]


def score_validation(
    index: KnowledgeIndex, generator: Any, val: Pairs, embedder: Any, policy: ResponderPolicy
) -> ValidationRows:
    always = replace(policy, floor=-1.0, reuse_similarity=1.01, min_confidence=0.0, reuse_fallback=False)
    responder = Responder(index, generator, always)
    drafts, nearest, best, confidence = [], [], [], []
    for i, question in enumerate(val.questions):
        label = val.labels[i] if val.labels is not None else None
        hits = index.search(MEMORY_TENANT, question, k=1)
        best.append(hits[0].score if hits else -1.0)
        nearest.append(hits[0].answer if hits else "")
        draft = responder.respond(MEMORY_TENANT, question, label)
        drafts.append(draft.text or "")
        confidence.append(draft.confidence)
    refs = val.answers
    rouge_gain = [rouge_l(d, r) - rouge_l(n, r) for d, n, r in zip(drafts, nearest, refs, strict=True)]
    drafted, reused = cosines(embedder, drafts, refs), cosines(embedder, nearest, refs)
    return ValidationRows(best, confidence, rouge_gain, [d - r for d, r in zip(drafted, reused, strict=True)])


class _Candidate(NamedTuple):
    """Generate below ``threshold`` when the draft's confidence is at least ``min_confidence``:
    its gains over always reusing, and the validation rows it generates."""

    threshold: float
    min_confidence: float
    rouge: float
    cosine: float
    rows: list[int]

    @property
    def weaker(self) -> float:
        return min(self.rouge, self.cosine)


def choose_policy(rows: ValidationRows, policy: ResponderPolicy) -> tuple[ResponderPolicy, dict[str, Any]]:
    """The reuse similarity and minimum confidence chosen on validation rows.

    A candidate (generate below similarity ``t`` when the draft's confidence is at least
    ``m``, reuse otherwise) is judged by its gain over always reusing on the *weaker* of
    ROUGE-L and cosine: drafts tend to win on meaning and lose on wording, and the mean of the
    two hid that (1,000-pair bench, English tickets: cosine +0.026, ROUGE-L -0.012).

    The best of some 500 candidates on 96 rows is an optimistic estimate (full bench, English
    tickets, twice: +0.036 and +0.033 ROUGE-L on validation, -0.001 and -0.000 held out), so
    the one-standard-error rule picks among the candidates within one standard error of the
    best the one that generates the fewest drafts: writing over a person's past answer needs
    a gain the noise cannot explain. No gain on both: reuse whenever a past answer is above
    the floor, and say so in the report.
    """
    n = len(rows.best)

    def candidate(threshold: float, min_conf: float) -> _Candidate:
        picked = [
            i
            for i, (b, c) in enumerate(zip(rows.best, rows.confidence, strict=True))
            if policy.floor <= b < threshold and c >= min_conf  # under the floor: no draft either way
        ]
        rouge = sum(rows.rouge_gain[i] for i in picked) / n
        cos = sum(rows.cosine_gain[i] for i in picked) / n
        return _Candidate(threshold, min_conf, rouge, cos, picked)

    above = sorted({b for b in rows.best if b > policy.floor})
    # between neighbouring validation similarities, so a threshold never sits on a row
    thresholds = [policy.floor] + [round((x + y) / 2, 4) for x, y in itertools.pairwise(above)] + [1.01]
    grid = [candidate(t, m) for t in thresholds for m in (0.0, 0.1, 0.2, 0.3, 0.4)]
    # ties: more gain, then reuse more
    best = max(grid, key=lambda c: (c.weaker, c.rouge + c.cosine, -c.threshold, c.min_confidence))
    weaker = rows.rouge_gain if best.rouge <= best.cosine else rows.cosine_gain
    generated_by_best = set(best.rows)
    error = _standard_error([weaker[i] if i in generated_by_best else 0.0 for i in range(n)])
    pick = _Candidate(policy.floor, 0.0, 0.0, 0.0, [])  # reuse whenever above the floor
    if best.weaker > 0:  # else no way of generating beats reusing on both metrics here
        close = [c for c in grid if c.weaker >= best.weaker - error]
        fewest = min(
            close,
            key=lambda c: (len(c.rows), -c.weaker, -(c.rouge + c.cosine), -c.threshold, -c.min_confidence),
        )
        if fewest.rows:  # else within noise of generating nothing
            pick = fewest
    tuned = replace(policy, reuse_similarity=min(1.01, pick.threshold), min_confidence=pick.min_confidence)
    report = {
        "rows": n,
        "generated_rows": len(pick.rows),
        "rouge_l_gain": round(pick.rouge, 4),  # over always reusing the nearest past answer
        "cosine_gain": round(pick.cosine, 4),
        "best_gain": round(best.weaker, 4),  # the weaker gain of the best candidate ...
        "best_generated_rows": len(best.rows),
        "standard_error": round(error, 4),  # ... and its standard error
        "draft_rouge_l_gain_all": round(sum(rows.rouge_gain) / n, 4),  # if every row were generated
        "draft_cosine_gain_all": round(sum(rows.cosine_gain) / n, 4),
        "reuse_similarity": tuned.reuse_similarity,
        "min_confidence": tuned.min_confidence,
    }
    return tuned, report


def _standard_error(values: Sequence[float]) -> float:
    """Of the mean of ``values`` (0 for fewer than two)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def tune_policy(
    index: KnowledgeIndex, generator: Any, val: Pairs, embedder: Any, policy: ResponderPolicy
) -> tuple[ResponderPolicy, dict[str, Any]]:
    """Drafts for the validation tickets, then :func:`choose_policy` on how they scored."""
    return choose_policy(score_validation(index, generator, val, embedder, policy), policy)


def import_knowledge(index: KnowledgeIndex, tenant: str, task: str, pairs: Pairs) -> int:
    """Put resolved tickets into the tenant's knowledge base (same ticket again: replaced)."""
    labels = pairs.labels or [None] * len(pairs)
    items = [
        KnowledgeItem(source_id=sid, question=q, answer=a, label=label, origin="import")
        for sid, q, a, label in zip(
            pairs.source_ids(task), pairs.questions, pairs.answers, labels, strict=True
        )
    ]
    index.add(tenant, items)
    return len(items)
