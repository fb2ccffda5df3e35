"""Feedback -> retrain -> safe promotion: a challenger replaces the champion only if not worse.

Data (all deterministic, so a retrain can be repeated and explained):

- *original rows*: what the champion was trained on (``train.jsonl`` in its version folder;
  ``deskpilot train classifier`` and every retrain keep it);
- *holdout*: a task-level ``holdout.jsonl`` made once, from the rows of the first champion
  retrained: rows whose sha256(text) falls in the lowest 15 % (at most 2,000; at least one
  per class with two or more rows; never a class's last row). No challenger ever trains on
  it, and every challenger and champion is judged on it;
- *feedback*: corrections (``POST /v1/feedback``), the latest per text. A correction goes to
  the evaluation part when sha256 of its id falls in the lowest 20 % (or when its text is a
  holdout row: it then corrects that row's label), otherwise to training, where it replaces
  the label of an identical original text or joins as a new row. New labels are allowed.

The challenger is trained with the champion's recipe and base on (original - holdout -
evaluation feedback texts) + training feedback, registered as a non-champion version, and
both are run on holdout + evaluation feedback. The gate (:func:`gate`) promotes when
``challenger macro-F1 >= champion macro-F1 - promotion_margin_f1`` and ``challenger accuracy on
covered >= champion's - promotion_margin_covered_accuracy`` (each model with its own
thresholds; abstentions are excluded there and count as nothing in macro-F1, which is
top-1). Promotion is the registry's atomic pointer swap plus the database champion and an
``adapter.promoted`` audit entry, in the transaction that also finishes the job; a rejected
challenger stays a ``candidate`` with a ``retrain.rejected`` audit entry saying why.

Caveat: the first champion was trained before the holdout existed, so it has seen those
rows; its holdout scores are optimistic until a retrained champion (which never saw them)
replaces it. The outcome reports how many holdout rows the champion trained on.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from deskpilot.adapters.catalog import resolve
from deskpilot.adapters.classifier import ClassifierRecipe, data_hash, train_classifier
from deskpilot.adapters.registry import VERSION_RE, AdapterCard, Registry
from deskpilot.adapters.serving import Engine
from deskpilot.config import Settings
from deskpilot.errors import DeskpilotError, InputDataError
from deskpilot.store import (
    Database,
    get_or_create_tenant,
    get_tenant,
    queue,
    set_champion,
    upsert_adapter,
    workflow,
)

from .base import JobRun, PermanentJobError
from .context import WorkerContext

logger = logging.getLogger("deskpilot.jobs")

ACTOR = "deskpilot-retrain"
HOLDOUT_FRACTION = 0.15
HOLDOUT_MAX_ROWS = 2_000
FEEDBACK_EVAL_FRACTION = 0.2
EVAL_FEEDBACK_MAX_ROWS = 2_000  # the most recent evaluation corrections
DEFAULT_MAX_MINUTES = 60.0  # a budget for recipes that had none (preset best)
_EPS = 1e-12

ProgressCallback = Callable[[dict[str, Any]], None]
LabelTransform = Callable[[list[str], list[str]], Sequence[str]]
FinishHook = Callable[[Session, dict[str, Any]], None]

# share of the whole run per phase, and of the training phase per stage of train_classifier
_PHASES = {
    "preparing": (0.0, 5.0),
    "training": (5.0, 85.0),
    "evaluating": (85.0, 98.0),
    "deciding": (98.0, 99.0),
}
_TRAIN_STAGES = {
    "embedding": (0.0, 0.2),
    "linear probe": (0.2, 0.25),
    "caching frozen layers": (0.25, 0.3),
    "fine-tuning": (0.3, 1.0),
}


class RetrainError(InputDataError):
    """Retraining cannot start or cannot judge (no champion, no training rows, no data)."""


# --- data ---------------------------------------------------------------------------------


def _unit(key: str) -> float:
    """A stable number in [0, 1) for a key (the first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def select_holdout(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    fraction: float = HOLDOUT_FRACTION,
    max_rows: int = HOLDOUT_MAX_ROWS,
) -> tuple[list[str], list[str]]:
    """The holdout rows: a function of the texts alone, not of their order.

    A distinct text is chosen when sha256(text) falls below ``fraction``. A class with two
    or more texts gets at least one (its lowest hash) and keeps at least one for training;
    beyond ``max_rows`` the lowest hashes stay, one per class first. Ordered by hash.
    """
    first_label: dict[str, str] = {}
    for text, label in zip(texts, labels, strict=True):
        first_label.setdefault(text, label)
    by_class: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for text, label in first_label.items():
        by_class[label].append((_unit(text), text))
    chosen: list[tuple[float, str, str]] = []
    guaranteed: set[str] = set()
    for label in sorted(by_class):
        items = sorted(by_class[label])
        picked = [item for item in items if item[0] < fraction]
        if not picked and len(items) >= 2:
            picked = items[:1]
        picked = picked[: max(0, len(items) - 1)]
        if picked:
            guaranteed.add(picked[0][1])
        chosen.extend((h, t, label) for h, t in picked)
    chosen.sort()
    if len(chosen) > max_rows:
        first = [c for c in chosen if c[1] in guaranteed][:max_rows]
        rest = [c for c in chosen if c[1] not in guaranteed][: max_rows - len(first)]
        chosen = sorted(first + rest)
    return [t for _, t, _ in chosen], [y for _, _, y in chosen]


def feedback_part(feedback_id: int, tenant: str, task: str) -> str:
    """``"eval"`` for about 20 % of corrections (by a hash of the id), else ``"train"``."""
    return "eval" if _unit(f"feedback:{tenant}/{task}/{feedback_id}") < FEEDBACK_EVAL_FRACTION else "train"


@dataclass(frozen=True, slots=True)
class Correction:
    id: int
    text: str
    label: str


@dataclass
class RetrainData:
    train_texts: list[str]
    train_labels: list[str]
    eval_texts: list[str]
    eval_labels: list[str]
    counts: dict[str, int]


def assemble(
    original: tuple[Sequence[str], Sequence[str]],
    holdout: tuple[Sequence[str], Sequence[str]],
    feedback: Sequence[Correction],
    *,
    tenant: str,
    task: str,
) -> RetrainData:
    """Training and evaluation rows for a challenger (see the module docstring)."""
    latest: dict[str, Correction] = {}
    for correction in sorted(feedback, key=lambda c: c.id):
        latest[correction.text] = correction  # the latest correction of a text wins
    holdout_texts = set(holdout[0])
    eval_fb = {
        t: c for t, c in latest.items() if t in holdout_texts or feedback_part(c.id, tenant, task) == "eval"
    }
    train_fb = {t: c for t, c in latest.items() if t not in eval_fb}

    eval_texts = list(holdout[0])
    eval_labels = [eval_fb[t].label if t in eval_fb else y for t, y in zip(*holdout, strict=True)]
    fresh = sorted((c for c in eval_fb.values() if c.text not in holdout_texts), key=lambda c: c.id)
    fresh = fresh[-EVAL_FEEDBACK_MAX_ROWS:]
    eval_texts += [c.text for c in fresh]
    eval_labels += [c.label for c in fresh]

    train_texts: list[str] = []
    train_labels: list[str] = []
    seen: set[str] = set()
    overridden = 0
    for text, label in zip(*original, strict=True):
        if text in holdout_texts or text in eval_fb:
            continue
        if text in train_fb:
            overridden += train_fb[text].label != label
            label = train_fb[text].label
        train_texts.append(text)
        train_labels.append(label)
        seen.add(text)
    added = [c for c in sorted(train_fb.values(), key=lambda c: c.id) if c.text not in seen]
    train_texts += [c.text for c in added]
    train_labels += [c.label for c in added]
    counts = {
        "original_rows": len(original[0]),
        "holdout_rows": len(holdout[0]),
        "feedback_rows": len(feedback),
        "feedback_texts": len(latest),
        "feedback_train": len(train_fb),
        "feedback_eval": len(eval_fb),
        "feedback_new_rows": len(added),
        "labels_corrected": overridden,
        "holdout_corrected": sum(1 for t in holdout[0] if t in eval_fb),
        "train_rows": len(train_texts),
        "eval_rows": len(eval_texts),
    }
    return RetrainData(train_texts, train_labels, eval_texts, eval_labels, counts)


# --- the gate -----------------------------------------------------------------------------


def scores(y_true: Sequence[str], y_pred: Sequence[str], abstained: Sequence[bool]) -> dict[str, Any]:
    """macro-F1 and accuracy of top-1 predictions; coverage and accuracy on covered ones.

    macro-F1 averages over the classes present in ``y_true`` (a label a model never
    predicts, e.g. one it does not know, scores 0). ``accuracy_on_covered`` is None when
    every row abstained.
    """
    n = len(y_true)
    if n == 0 or len(y_pred) != n or len(abstained) != n:
        raise ValueError("scores need as many predictions and abstentions as true labels, and at least one")
    support: dict[str, int] = defaultdict(int)
    predicted: dict[str, int] = defaultdict(int)
    hits: dict[str, int] = defaultdict(int)
    for t, p in zip(y_true, y_pred, strict=True):
        support[t] += 1
        predicted[p] += 1
        hits[t] += t == p
    f1 = sum(2.0 * hits[c] / (support[c] + predicted[c]) for c in support) / len(support)
    covered = [t == p for t, p, a in zip(y_true, y_pred, abstained, strict=True) if not a]
    return {
        "n": n,
        "macro_f1": f1,
        "accuracy": sum(hits.values()) / n,
        "coverage": len(covered) / n,
        "accuracy_on_covered": sum(covered) / len(covered) if covered else None,
    }


def gate(
    champion: dict[str, Any],
    challenger: dict[str, Any],
    *,
    margin_f1: float,
    margin_covered_accuracy: float,
    rival: str = "champion",
) -> tuple[bool, str]:
    """(promote, why): promote only if the challenger is not worse than the margins allow."""
    problems: list[str] = []
    f1_c, f1_p = float(challenger["macro_f1"]), float(champion["macro_f1"])
    if f1_c < f1_p - margin_f1 - _EPS:
        problems.append(f"macro-F1 {f1_c:.4f} < {rival} {f1_p:.4f} - margin {margin_f1:.4f}")
    cov_c, cov_p = challenger["accuracy_on_covered"], champion["accuracy_on_covered"]
    # a challenger that abstains on every row answers nothing right: its covered accuracy counts as 0
    if cov_p is not None and (0.0 if cov_c is None else cov_c) < cov_p - margin_covered_accuracy - _EPS:
        shown = "n/a (it abstained on every row)" if cov_c is None else f"{cov_c:.4f}"
        problems.append(
            f"accuracy on covered {shown} < {rival} {cov_p:.4f} - margin {margin_covered_accuracy:.4f}"
        )
    if problems:
        return False, "challenger is worse: " + "; ".join(problems)

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return True, (
        f"not worse: macro-F1 {f1_c:.4f} vs {rival} {f1_p:.4f} (margin {margin_f1:.4f}), accuracy on "
        f"covered {fmt(cov_c)} vs {fmt(cov_p)} (margin {margin_covered_accuracy:.4f})"
    )


# --- the run ------------------------------------------------------------------------------

REFERENCES = ".references"  # under the adapters folder; not a tenant name, so never served


def _reference(
    settings: Settings,
    registry: Registry,
    champion: AdapterCard,
    rows: tuple[list[str], list[str]],
    holdout: tuple[list[str], list[str]],
    recipe: ClassifierRecipe,
    report: _Progress,
) -> tuple[Registry, str]:
    """The champion's recipe trained on its rows minus the holdout, once per champion.

    A champion that trained on holdout rows scores too well on them; a challenger (which
    never sees them) would be judged against a flattered rival. This model is what the
    champion would score had it not seen them: the gate compares the challenger with it.
    """
    references = Registry(settings.adapters_dir / REFERENCES)
    tenant, task = champion.tenant, champion.task
    for card in references.versions(tenant, task):
        if card.extra.get("reference_of") == champion.version and card.data_hash == champion.data_hash:
            return references, card.version
    held = set(holdout[0])
    kept = [(t, y) for t, y in zip(*rows, strict=True) if t not in held]
    report("training", 0.0, model="reference")
    result = train_classifier(
        [t for t, _ in kept],
        [y for _, y in kept],
        base=resolve(champion.base_model),
        task=task,
        tenant=tenant,
        recipe=recipe,
        progress=report.training,
        threads=settings.threads,
    )
    result.card.extra = {**result.card.extra, "reference_of": champion.version}
    result.card.data_hash = champion.data_hash
    card = references.register(result.directory, result.card, promote=False)
    return references, card.version


@dataclass
class RetrainOutcome:
    tenant: str
    task: str
    promoted: bool
    champion: str  # the version serving after this run
    previous_champion: str
    challenger: str
    reason: str
    metrics: dict[str, Any]  # champion, challenger, margins
    data: dict[str, int]
    feedback_upto: int
    train_seconds: float
    champion_trained_on_holdout: int
    job_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _json_safe(asdict(self))
        return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class _Progress:
    """Turns phases and train_classifier's (stage, done, total) into one rising percentage."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.percent = 0.0

    def __call__(self, phase: str, fraction: float, **info: Any) -> None:
        if self.callback is None:
            return
        lo, hi = _PHASES[phase]
        self.percent = max(self.percent, lo + (hi - lo) * min(1.0, max(0.0, fraction)))
        self.callback({"phase": phase, "percent": round(self.percent, 1), **info})

    def training(self, stage: str, done: int, total: int) -> None:
        lo, hi = _TRAIN_STAGES.get(stage, (0.3, 1.0))
        share = done / total if total else 1.0
        self("training", lo + (hi - lo) * share, stage=stage, step=done, steps=total)


def check_retrainable(registry: Registry, tenant: str, task: str) -> tuple[AdapterCard, list[str], list[str]]:
    """The champion's card and training rows, or a :class:`RetrainError` saying what is missing."""
    version = registry.champion_version(tenant, task)
    if version is None:
        raise RetrainError(
            f"task '{task}' has no champion to retrain (tenant '{tenant}'); train one first: "
            f"`deskpilot train classifier --task {task} --data FILE`"
        )
    card = registry.card(tenant, task, version)
    if card.kind != "classifier":
        raise RetrainError(f"{task} {version} is a {card.kind} adapter; only classifiers are retrained")
    rows = registry.rows(tenant, task, version)
    if rows is None:
        raise RetrainError(
            f"{task} {version} did not keep its training rows (train.jsonl), so it cannot be retrained; "
            f"train it again with `deskpilot train classifier --task {task} --data FILE` "
            "(new versions keep train.jsonl)"
        )
    texts, labels = rows
    if card.data_hash and data_hash(texts, labels) != card.data_hash:
        raise RetrainError(
            f"train.jsonl of {task} {version} does not match the data hash in its card.json",
            hint="the file was edited or replaced; train the task again from its data file",
        )
    return card, texts, labels


def challenger_recipe(card: AdapterCard, registry: Registry, max_minutes: float | None) -> ClassifierRecipe:
    """The champion's recipe as it was asked for (the preset re-plans epochs and layers)."""
    given = card.recipe
    planned = {"extra", "init_adapter", "epochs", "train_layers", "fine_tune", "max_minutes"}
    known = {f.name for f in fields(ClassifierRecipe)}
    args: dict[str, Any] = {k: v for k, v in given.items() if k in known and k not in planned}
    if (given.get("extra") or {}).get("epochs_given") and given.get("epochs") is not None:
        args["epochs"] = given["epochs"]
    if given.get("preset") != "auto" and given.get("train_layers"):
        args["train_layers"] = given["train_layers"]
    preset = str(given.get("preset", "auto"))
    budget = max_minutes or given.get("max_minutes") or (None if preset == "fast" else DEFAULT_MAX_MINUTES)
    args["max_minutes"] = budget
    ref = given.get("init_adapter")
    if isinstance(ref, str) and ref.count("/") == 2:
        owner, donor_task, version = ref.split("/")
        if VERSION_RE.fullmatch(version):
            try:
                registry.card(owner, donor_task, version)
                args["init_adapter"] = str(registry.path(owner, donor_task, version))
            except DeskpilotError:
                logger.warning("warm-start donor %s is gone; the challenger starts cold", ref)
    args["extra"] = {"retrain_of": f"{card.tenant}/{card.task}/{card.version}"}
    return ClassifierRecipe(**args)


def _predict(
    engine: Engine,
    tenant: str,
    task: str,
    version: str,
    texts: list[str],
    report: Callable[[int], None],
    chunk: int = 256,
) -> tuple[list[str], list[bool]]:
    labels: list[str] = []
    abstained: list[bool] = []
    for start in range(0, len(texts), chunk):
        for p in engine.predict(tenant, task, texts[start : start + chunk], version=version, abstain=True):
            labels.append(p.label)
            abstained.append(p.abstained)
        report(len(labels))
    return labels, abstained


def retrain(
    settings: Settings,
    database: Database,
    tenant: str,
    task: str,
    *,
    progress: ProgressCallback | None = None,
    label_transform: LabelTransform | None = None,
    max_minutes: float | None = None,
    actor: str = ACTOR,
    job_id: int | None = None,
    finish: FinishHook | None = None,
) -> RetrainOutcome:
    """Train a challenger on the champion's rows plus feedback; promote it only if not worse.

    ``progress`` gets dicts ``{"phase", "percent", ...}`` (phases preparing, training,
    evaluating, deciding). ``label_transform(texts, labels) -> labels`` rewrites the
    challenger's training labels (tests use it to train a deliberately bad challenger).
    ``finish(session, result)`` runs inside the transaction that records the decision (the
    job's completion). Raises :class:`RetrainError` when there is nothing to retrain.
    """
    report = _Progress(progress)
    report("preparing", 0.0)
    registry = Registry(settings.adapters_dir)
    champion, texts, labels = check_retrainable(registry, tenant, task)
    holdout = registry.holdout(tenant, task)
    holdout_created = holdout is None
    if holdout is None:
        holdout = registry.create_holdout(tenant, task, *select_holdout(texts, labels))
    with database.session() as session:
        owner = get_tenant(session, tenant)
        records = workflow.feedback_rows(session, owner.id, task) if owner is not None else []
        feedback = [Correction(r.id, r.text, r.label) for r in records]
    feedback_upto = max((c.id for c in feedback), default=0)
    data = assemble((texts, labels), holdout, feedback, tenant=tenant, task=task)
    if label_transform is not None:
        data.train_labels = list(label_transform(list(data.train_texts), list(data.train_labels)))
        if len(data.train_labels) != len(data.train_texts):
            raise ValueError("label_transform must return one label per training text")
    if len(set(data.train_labels)) < 2:
        raise RetrainError(f"retraining {task} leaves fewer than two labels to train on")
    if not data.eval_texts:
        raise RetrainError(
            f"nothing to judge a challenger of {task} on: the holdout is empty and no correction "
            "fell in the evaluation part; give the task more rows (two per class) or more corrections"
        )
    trained_on_holdout = len(set(texts) & set(holdout[0]))
    report("preparing", 1.0, rows=len(data.train_texts), eval_rows=len(data.eval_texts))

    recipe = challenger_recipe(champion, registry, max_minutes)
    result = train_classifier(
        data.train_texts,
        data.train_labels,
        base=resolve(champion.base_model),
        task=task,
        tenant=tenant,
        recipe=recipe,
        progress=report.training,
        threads=settings.threads,
    )
    card = result.card
    lineage = {"champion": champion.version, "feedback_upto": feedback_upto, "job_id": job_id}
    card.extra = {**card.extra, "retrain": {**lineage, **data.counts}}
    rows = (data.train_texts, data.train_labels)
    card = registry.register(result.directory, card, promote=False, rows=rows)

    # the champion's stand-in at the gate: itself, or, when it trained on holdout rows (a
    # champion from `train classifier`), its recipe trained again without them
    reference: tuple[Registry, str] | None = None
    if trained_on_holdout:
        reference = _reference(settings, registry, champion, (texts, labels), holdout, recipe, report)

    # fp32, its own engine: exact scores, and nothing of the serving engine's state changes
    models = [("champion", registry, champion.version), ("challenger", registry, card.version)]
    if reference is not None:
        models.append(("reference", *reference))
    measured: dict[str, dict[str, Any]] = {}
    total = len(models) * len(data.eval_texts)
    for i, (role, source, version) in enumerate(models):
        offset = i * len(data.eval_texts)

        def tick(done: int, offset: int = offset, role: str = role) -> None:
            report("evaluating", (offset + done) / total, model=role, done=offset + done, total=total)

        engine = Engine(
            source,
            max_resident=2,
            batch_size=settings.engine_batch_texts,
            threads=settings.threads,
            keep_freed_memory=settings.malloc_tuning,
        )
        predicted, abstained = _predict(engine, tenant, task, version, data.eval_texts, tick)
        del engine
        measured[role] = {"version": version, **scores(data.eval_labels, predicted, abstained)}
    judged = "reference" if reference is not None else "champion"

    margins = {
        "f1": settings.promotion_margin_f1,
        "covered_accuracy": settings.promotion_margin_covered_accuracy,
    }
    promote, reason = gate(
        measured[judged],
        measured["challenger"],
        margin_f1=margins["f1"],
        margin_covered_accuracy=margins["covered_accuracy"],
        rival="champion" if judged == "champion" else "reference (the champion's recipe without the holdout)",
    )
    current = registry.champion_version(tenant, task)
    if promote and current != champion.version:
        promote = False
        reason = f"the champion changed from {champion.version} to {current} while the challenger trained"
    report("deciding", 1.0, promoted=promote)
    metrics = {**measured, "margins": margins, "judged_against": judged}
    outcome = RetrainOutcome(
        tenant=tenant,
        task=task,
        promoted=promote,
        champion=card.version if promote else (current or champion.version),
        previous_champion=champion.version,
        challenger=card.version,
        reason=reason,
        metrics=metrics,
        data=data.counts,
        feedback_upto=feedback_upto,
        train_seconds=card.train_seconds,
        champion_trained_on_holdout=trained_on_holdout,
        job_id=job_id,
        extra={"holdout_created": holdout_created, "labels": card.labels},
    )
    card.metrics["gate"] = _json_safe({"promoted": promote, "reason": reason, **metrics})
    registry.update_card(card)
    _commit(database, registry, outcome, card, actor=actor, finish=finish)
    return outcome


def _commit(
    database: Database,
    registry: Registry,
    outcome: RetrainOutcome,
    card: AdapterCard,
    *,
    actor: str,
    finish: FinishHook | None,
) -> None:
    """The decision in one transaction: adapter rows, audit, job result, then the pointer swap.

    The champion pointer is swapped last, inside the transaction; if the commit then
    fails, the pointer is rolled back, so files and database never disagree for long.
    """
    tenant, task = outcome.tenant, outcome.task
    result = outcome.to_dict()
    audit_data = {
        "task": task,
        "version": card.version,
        "previous": outcome.previous_champion,
        "reason": outcome.reason,
        "metrics": result["metrics"],
        "feedback_upto": outcome.feedback_upto,
        "job_id": outcome.job_id,
    }
    swapped = False
    try:
        with database.session() as session:
            if finish is not None:
                finish(session, result)  # first: a lost lease stops everything here
            owner = get_or_create_tenant(session, tenant)
            upsert_adapter(
                session,
                tenant,
                task,
                card.version,
                kind=card.kind,
                base_model=card.base_model,
                metrics=_json_safe(
                    {"validation": card.metrics.get("validation", {}), "gate": card.metrics["gate"]}
                ),
                status="candidate",
            )
            if outcome.promoted:
                set_champion(session, tenant, task, card.version)
                workflow.audit(session, owner.id, "adapter.promoted", actor, audit_data)
            else:
                workflow.audit(session, owner.id, "retrain.rejected", actor, audit_data)
            session.flush()
            if outcome.promoted:
                registry.promote(tenant, task, card.version)
                swapped = True
    except BaseException:
        if swapped:
            try:
                registry.rollback(tenant, task)
            except DeskpilotError:
                logger.exception("could not restore the champion of %s/%s", tenant, task)
        raise


# --- the job ------------------------------------------------------------------------------


class JobProgress:
    """Writes progress to the job row (``GET /v1/jobs/{id}``), at most about once a second.

    Each write also extends the job's lease. Best effort: a failed write is logged, and
    the run goes on.
    """

    def __init__(self, database: Database, run: JobRun, lease_s: float, interval_s: float = 1.0) -> None:
        self.database = database
        self.run = run
        self.lease_s = lease_s
        self.interval_s = interval_s
        self.last: dict[str, Any] = {}
        self._written_at = 0.0
        self._key: tuple[Any, ...] = ()

    def __call__(self, info: dict[str, Any]) -> None:
        self.last = info
        key = (info.get("phase"), info.get("stage"), info.get("model"))
        now = time.monotonic()
        if key == self._key and now - self._written_at < self.interval_s:
            return
        self._key, self._written_at = key, now
        try:
            with self.database.session() as session:
                queue.set_progress(session, self.run.id, self.run.owner, info)
                queue.extend(session, [self.run.id], self.run.owner, self.lease_s)
        except (DeskpilotError, OperationalError):
            logger.warning("could not record the progress of job %d", self.run.id, exc_info=True)


def run_retrain_job(context: WorkerContext, run: JobRun) -> None:
    """The ``retrain`` job: payload ``{"task", "reason"?, "requested_by"?, "max_minutes"?}``.

    The result is :meth:`RetrainOutcome.to_dict` (``promoted``, ``champion``,
    ``challenger``, ``reason``, ``metrics``, ``feedback_upto``, ...), stored with the
    champion change and the audit entries in one transaction.
    """
    task = run.payload.get("task")
    if not isinstance(task, str) or not task:
        raise PermanentJobError("a retrain job needs a 'task' in its payload")
    minutes = run.payload.get("max_minutes")
    with context.database.session() as session:
        tenant = workflow.tenant_slug(session, run.tenant_id)
    writer = JobProgress(context.database, run, context.settings.job_lease_s)

    def finish(session: Session, result: dict[str, Any]) -> None:
        done = {"phase": "done", "percent": 100.0, "promoted": result["promoted"]}
        done["challenger"] = result["challenger"]
        queue.set_progress(session, run.id, run.owner, done)
        run.finish(session, result)

    retrain(
        context.settings,
        context.database,
        tenant,
        task,
        progress=writer,
        max_minutes=float(minutes) if isinstance(minutes, int | float) and minutes > 0 else None,
        actor=str(run.payload.get("requested_by") or ACTOR),
        job_id=run.id,
        finish=finish,
    )
