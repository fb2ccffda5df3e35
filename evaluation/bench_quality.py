"""``deskpilot bench quality``: deskpilot adapters against the baselines, on public data.

For every dataset it trains TF-IDF + LinearSVC, frozen embeddings + logistic regression,
SetFit and a deskpilot adapter on the same training split, scores them on the same test
split with the same code (:func:`score_predictions`), and writes the figures with the
machine, date and command line to ``evaluation/results/quality.json`` (DESIGN.md
benchmark contract). :mod:`deskpilot.evaluation.report` turns them into Markdown and plots.

Scoring follows ``deskpilot evaluate classifier``: a test row whose label is not among the
training labels is out of scope (OOS) and is answered correctly only by abstaining;
predicting CLINC150's ``oos`` class counts as abstaining, so a model trained with an
``oos`` class and one that abstains are scored alike. ``accuracy`` counts abstentions as
errors; ``top1_accuracy`` ignores abstention.

The deskpilot trainer is passed in as a callable so that this module never imports the
CLI; :class:`DeskpilotTrainer` is the default (train -> register in a temporary registry
-> serve through :class:`~deskpilot.adapters.serving.Engine`, as production does).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from deskpilot.errors import InputDataError
from deskpilot.evaluation import datasets as ds
from deskpilot.evaluation import report
from deskpilot.evaluation.baselines import (
    Baseline,
    EmbeddingCache,
    FrozenLogReg,
    SetFitBaseline,
    TfidfSvc,
)
from deskpilot.evaluation.datasets import OOS_LABEL, LabelledSplit
from deskpilot.evaluation.metrics import classification_report, coverage_curve, expected_calibration_error
from deskpilot.evaluation.report import machine_info

BENCH = "quality"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
"""Where ``<bench>.json`` files go (``evaluation/results`` in a checkout)."""
RESULTS_MD = HERE / "RESULTS.md"
PLOTS_DIR = HERE / "reports"

METHODS = ("tfidf_svc", "frozen_logreg", "setfit", "deskpilot")

DeskpilotFn = Callable[[list[str], list[str], list[str]], tuple[list[str], list[bool], list[float], float]]
"""(train texts, train labels, test texts) -> (labels, abstained, confidences, train seconds)."""

Splits = tuple[LabelledSplit, LabelledSplit]


# --- datasets -----------------------------------------------------------------------------


def _banking77(root: Path) -> Splits:
    d = ds.banking77(root)
    return d.train, d.test


def _banking77_10shot(root: Path) -> Splits:
    d = ds.banking77_fewshot(root, shots=10, seed=0)
    return d.train, d.test


def _clinc150(root: Path) -> Splits:
    """In-scope training only: the OOS test queries must be caught by abstention."""
    d = ds.clinc150(root)
    return d.train, ds.with_oos(d, "test")


def _clinc150_oos_train(root: Path) -> Splits:
    """Larson et al.'s "oos-train" protocol: the 100 OOS training queries become a class."""
    d = ds.clinc150(root)
    return ds.with_oos(d, "train"), ds.with_oos(d, "test")


def _tickets_en(root: Path) -> Splits:
    d = ds.multilingual_tickets(root, language="en")
    return d.train, d.test


def _company_documents(root: Path) -> Splits:
    d = ds.company_documents(root)
    return d.train, d.test


DATASETS: dict[str, Callable[[Path], Splits]] = {
    "banking77": _banking77,
    "banking77-10shot": _banking77_10shot,
    "clinc150": _clinc150,
    "clinc150-oos-train": _clinc150_oos_train,
    "tickets-en": _tickets_en,
    "company-documents": _company_documents,
}
DEFAULT_DATASETS = ("banking77", "banking77-10shot", "clinc150", "tickets-en", "company-documents")

REFERENCE: dict[str, list[str]] = {
    "banking77": [
        "fine-tuned BERT-base 93.66 % (Casanueva et al. 2020)",
        "TF-IDF + LinearSVC 91.17 % (data README, this kind of machine)",
        "all-MiniLM-L6-v2 frozen + LogReg 80.04 % (MTEB)",
    ],
    "banking77-10shot": ["RoBERTa+classifier 84.27, CPFT 87.20, ICDA 89.79 (Few-Shot-Intent-Detection)"],
    "clinc150": [
        "BERT in-scope 96.9 %, OOS recall 40.3 % (52.3 % with a threshold) (Larson et al. 2019)",
        "TF-IDF + LinearSVC in-scope 92.76 %, OOS recall 17.8 % (data README)",
    ],
}
REFERENCE["clinc150-oos-train"] = REFERENCE["clinc150"]


def stratified_sample(split: LabelledSplit, n: int, seed: int) -> LabelledSplit:
    """About ``n`` rows keeping class proportions, at least one per class (so maybe more)."""
    if n < 1:
        raise InputDataError("--sample must be at least 1")
    if len(split) <= n:
        return split
    _, held = ds.stratified_indices(split.labels, n / len(split), seed=seed, min_per_class=1)
    return split.take(held)


# --- the deskpilot side -------------------------------------------------------------------


@dataclass
class DeskpilotTrainer:
    """Default :data:`DeskpilotFn`: train_classifier -> temporary Registry -> Engine.predict.

    Predictions come from the serving engine with the thresholds stored on the card, so
    the figures are what ``deskpilot evaluate classifier`` would report. ``threads=None``
    keeps torch's current thread count (train_classifier would otherwise take every core).
    """

    preset: str = "auto"
    epochs: int | None = None
    max_minutes: float | None = None
    base: str | None = None
    seed: int = 0
    threads: int | None = None
    target_precision: float | None = None
    bf16: str | None = None
    last_info: dict[str, Any] = field(default_factory=dict)

    def __call__(
        self, train_texts: list[str], train_labels: list[str], test_texts: list[str]
    ) -> tuple[list[str], list[bool], list[float], float]:
        import torch

        from deskpilot.adapters.catalog import resolve
        from deskpilot.adapters.classifier import ClassifierRecipe, train_classifier
        from deskpilot.adapters.registry import Registry
        from deskpilot.adapters.serving import Engine

        threads = self.threads or torch.get_num_threads()
        options: dict[str, Any] = {"preset": self.preset, "max_minutes": self.max_minutes, "seed": self.seed}
        for key in ("epochs", "target_precision", "bf16"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        started = time.perf_counter()
        result = train_classifier(
            train_texts,
            train_labels,
            base=resolve(self.base),
            task="quality",
            tenant="bench",
            recipe=ClassifierRecipe(**options),
            threads=threads,
        )
        train_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory(prefix="deskpilot-bench-") as tmp:
            registry = Registry(Path(tmp))
            card = registry.register(result.directory, result.card, promote=True)
            engine = Engine(registry, threads=threads)
            preds = engine.predict(card.tenant, card.task, test_texts, abstain=True)
        self.last_info = {
            "fine_tuned": bool(card.recipe.get("fine_tune")),
            "epochs": card.recipe.get("epochs"),
            "threshold": card.thresholds.get("default"),
            "temperature": card.calibration.get("temperature"),
            "validation": card.metrics.get("validation", {}),
        }
        return (
            [p.label for p in preds],
            [p.abstained for p in preds],
            [float(p.score) for p in preds],
            train_seconds,
        )


# --- scoring ------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Non-empty equal-width bins (lo, hi]: count, mean confidence, accuracy (for the diagram)."""
    bins = np.clip(np.ceil(confidences * n_bins).astype(int) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            out.append(
                {
                    "lo": b / n_bins,
                    "hi": (b + 1) / n_bins,
                    "n": int(mask.sum()),
                    "confidence": _r(confidences[mask].mean(), 4),
                    "accuracy": _r(correct[mask].mean(), 4),
                }
            )
    return out


def _thin(points: list[tuple[float, float, float]], limit: int = 50) -> list[list[float]]:
    """At most ``limit`` (threshold, coverage, accuracy_on_covered) points, ends kept."""
    if len(points) > limit:
        keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
        points = [points[i] for i in keep]
    return [[round(t, 4), round(c, 4), round(a, 4)] for t, c, a in points]


def worst_confusion(
    y_true: Sequence[str], predicted: Sequence[str], known_labels: Sequence[str], k: int = 8
) -> dict[str, Any]:
    """Top-1 confusion of the ``k`` lowest-F1 classes (rows) against what they were taken for.

    Top-1, because with abstention the worst classes are simply the abstained ones, which
    says nothing about what the model confuses. Columns: the worst classes, then up to
    ``k`` labels they were most often mistaken for, then everything else pooled.
    """
    per_class = classification_report(y_true, predicted, [False] * len(y_true), known_labels)["per_class"]

    def f1(stats: Mapping[str, Any]) -> float:
        p, r = stats.get("precision") or 0.0, stats.get("recall") or 0.0
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    ranked = sorted((f1(s), c) for c, s in per_class.items() if s.get("support"))[:k]
    worst = [c for _, c in ranked]
    mistaken = Counter(p for t, p in zip(y_true, predicted, strict=True) if t in worst and p != t)
    extra = [label for label, _ in mistaken.most_common() if label not in worst][:k]
    columns = [*worst, *extra, "(other)"]
    col = {c: i for i, c in enumerate(columns[:-1])}
    row = {c: i for i, c in enumerate(worst)}
    matrix = [[0] * len(columns) for _ in worst]
    for t, p in zip(y_true, predicted, strict=True):
        if t in row:
            matrix[row[t]][col.get(p, len(columns) - 1)] += 1
    return {"labels": worst, "columns": columns, "matrix": matrix, "f1": [round(f, 4) for f, _ in ranked]}


def score_predictions(
    y_true: Sequence[str],
    predicted: Sequence[str],
    abstained: Sequence[bool],
    confidences: Sequence[float] | None,
    known_labels: Sequence[str],
) -> dict[str, Any]:
    """Every method's figures, computed the same way (see the module docstring)."""
    known = set(known_labels) - {OOS_LABEL}
    gave_up = [bool(a) or p == OOS_LABEL for p, a in zip(predicted, abstained, strict=True)]
    report = classification_report(y_true, predicted, gave_up, known)
    top1 = np.array([p == t for p, t in zip(predicted, y_true, strict=True)])
    out: dict[str, Any] = {
        key: report[key]
        for key in (
            "n",
            "accuracy",
            "macro_f1",
            "coverage",
            "accuracy_on_covered",
            "in_scope_accuracy",
            "oos_recall",
            "n_oos",
        )
    }
    out["top1_accuracy"] = _r(top1.mean())
    out["ece"] = None
    if confidences is not None:
        conf = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
        out["ece"] = _r(expected_calibration_error(conf, top1))
        out["reliability"] = reliability_bins(conf, top1)
        out["coverage_curve"] = _thin(coverage_curve(conf, top1))
    out["confusion"] = worst_confusion(y_true, predicted, sorted(known))
    return out


# --- running ------------------------------------------------------------------------------


def _describe(trainer: DeskpilotFn) -> dict[str, Any]:
    if isinstance(trainer, DeskpilotTrainer):
        keys = ("preset", "epochs", "max_minutes", "base", "threads", "target_precision", "bf16")
        return {k: getattr(trainer, k) for k in keys}
    return {"callable": getattr(trainer, "__qualname__", type(trainer).__qualname__)}


def _check_choice(kind: str, asked: Sequence[str], known: Sequence[str]) -> None:
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise InputDataError(f"unknown {kind}: {', '.join(unknown)}", hint=f"choose from {', '.join(known)}")


def _run_baseline(
    model: Baseline, train: LabelledSplit, test: LabelledSplit
) -> tuple[list[str], list[bool], list[float] | None, float, float]:
    model.fit(train.texts, train.labels)
    started = time.perf_counter()
    confidences: list[float] | None = None
    if model.has_proba:
        proba = np.asarray(model.predict_proba(test.texts))  # type: ignore[attr-defined]
        predicted = [model.classes_[i] for i in proba.argmax(axis=1)]
        confidences = proba.max(axis=1).tolist()
    else:
        predicted = model.predict(test.texts)
    return predicted, [False] * len(test), confidences, model.train_seconds, time.perf_counter() - started


def run_quality(
    datasets: list[str] | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    include: set[str] | None = None,
    deskpilot_trainer: DeskpilotFn | None = None,
    out_dir: Path = RESULTS_DIR,
    data_root: Path | None = None,
    baselines: Mapping[str, Callable[[], Baseline]] | None = None,
    setfit_max_pairs: int | None = None,
    markdown: Path | None = None,
    plots_dir: Path | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the quality benchmark; writes ``out_dir/quality.json`` and returns the same dict.

    ``datasets=None`` runs :data:`DEFAULT_DATASETS`, skipping (and recording) those whose
    files are missing; it fails only when none can be loaded. ``sample`` keeps about that
    many stratified rows of each train and test split (for smoke runs: figures are then
    not comparable with the references). ``baselines`` overrides how a baseline is built
    (e.g. a SetFit with a handful of pairs). With ``markdown``, the Markdown section and
    plots are written too (see :func:`deskpilot.evaluation.report.publish_quality`).
    """
    names = list(datasets) if datasets else list(DEFAULT_DATASETS)
    _check_choice("dataset", names, list(DATASETS))
    methods = [m for m in METHODS if include is None or m in include]
    _check_choice("method", sorted(include or ()), METHODS)
    if not methods:
        raise InputDataError("no method to run", hint=f"include some of {', '.join(METHODS)}")
    root = data_root or ds.data_dir()
    if root is None:
        raise InputDataError(
            "no evaluation data folder found", hint="set DESKPILOT_DATA_DIR to the datasets folder"
        )
    say = log or (lambda message: None)
    trainer = deskpilot_trainer or DeskpilotTrainer(seed=seed)
    cache = EmbeddingCache()
    factories: dict[str, Callable[[], Baseline]] = {
        "tfidf_svc": lambda: TfidfSvc(seed=seed),
        "frozen_logreg": lambda: FrozenLogReg(cache),
        "setfit": lambda: (
            SetFitBaseline(seed=seed)
            if setfit_max_pairs is None
            else SetFitBaseline(seed=seed, max_pairs=setfit_max_pairs)
        ),
        **(baselines or {}),
    }

    results: dict[str, Any] = {
        "bench": BENCH,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        "machine": {},
        "settings": {
            "datasets": names,
            "sample": sample,
            "seed": seed,
            "methods": methods,
            "setfit_max_pairs": setfit_max_pairs,
            "deskpilot": _describe(trainer),
        },
        "datasets": {},
        "skipped": {},
        "reference": {n: REFERENCE[n] for n in names if n in REFERENCE},
    }
    for name in names:
        try:
            train, test = DATASETS[name](root)
        except InputDataError as exc:
            if datasets:  # asked for by name: a missing file is the caller's error
                raise
            results["skipped"][name] = str(exc)
            say(f"{name}: skipped ({exc})")
            continue
        if sample:
            train, test = stratified_sample(train, sample, seed), stratified_sample(test, sample, seed)
        known = sorted(set(train.labels) - {OOS_LABEL})
        entry: dict[str, Any] = {
            "n_train": len(train),
            "n_test": len(test),
            "n_labels": len(known),
            "n_oos_test": sum(1 for y in test.labels if y not in known),
            "methods": {},
        }
        results["datasets"][name] = entry
        for method in methods:
            say(f"{name}: {method} on {len(train)} train / {len(test)} test rows")
            info: dict[str, Any] = {}
            if method == "deskpilot":
                started = time.perf_counter()
                predicted, abstained, conf, train_s = trainer(
                    list(train.texts), list(train.labels), test.texts
                )
                predict_s = max(0.0, time.perf_counter() - started - train_s)
                info = dict(getattr(trainer, "last_info", None) or {})
                confidences: list[float] | None = list(conf)
            else:
                model = factories[method]()
                predicted, abstained, confidences, train_s, predict_s = _run_baseline(model, train, test)
                info = {k: getattr(model, k) for k in ("converged", "n_pairs") if hasattr(model, k)}
                del model
            scored = score_predictions(test.labels, predicted, abstained, confidences, known)
            scored["train_seconds"] = round(train_s, 2)
            scored["predict_seconds"] = round(predict_s, 2)
            if info:
                scored["info"] = info
            entry["methods"][method] = scored
            say(
                f"{name}: {method} accuracy {scored['accuracy']:.4f}, macro-F1 "
                f"{scored['macro_f1'] or 0:.4f}, trained in {train_s:.1f} s"
            )
    if not results["datasets"]:
        raise InputDataError(
            "none of the benchmark datasets could be loaded: " + "; ".join(results["skipped"].values()),
            hint="set DESKPILOT_DATA_DIR to the datasets folder",
        )
    results["machine"] = machine_info()  # after the run: torch is imported by then
    report.write_json(Path(out_dir) / f"{BENCH}.json", results)
    if markdown is not None:
        from deskpilot.evaluation.report import publish_quality

        publish_quality(results, markdown, plots_dir or Path(markdown).parent / "reports")
    return results


def summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures only (for ``--json`` and logs): dataset -> method -> figures."""
    keys = ("accuracy", "macro_f1", "top1_accuracy", "coverage", "oos_recall", "ece", "train_seconds")
    return {
        name: {m: {k: v.get(k) for k in keys} for m, v in entry["methods"].items()}
        for name, entry in results.get("datasets", {}).items()
    }
