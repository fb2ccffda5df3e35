"""``deskpilot bench responder``: drafted replies against the replies people actually sent.

On each dataset present (``bitext``: Bitext customer support, 300 rows held out by a fixed
seed; ``tickets_en``: the English rows of the multilingual tickets, body -> answer, held out by
the loader's fixed 80/20 split), side by side on the same held-out rows:

- (a) ``retrieval_only``: the answer of the nearest resolved training ticket;
- (b) ``base_retrieval``: the packaged base generator, prompted with the 2 nearest examples;
- (c) ``lora_retrieval``: the responder as shipped: LoRA-trained on up to ``train_pairs``
  training pairs (leave-one-out retrieval prompts), with the reuse-or-generate choice it tuned
  on its own validation split.

The knowledge base is every training pair; nothing held out is seen before scoring. Scores:
ROUGE-L and MiniLM cosine with the reference reply, mean length, the share of drafts with an
identifier (order number, URL, e-mail, ...) found neither in the ticket nor its examples, and
paired bootstrap 95 % intervals for (c) - (a). Latency per draft and tokens/s are (c)'s.
Figures go to ``evaluation/results/responder.json`` and the ``responder`` section of
``evaluation/RESULTS.md``.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskpilot.config import Settings
from deskpilot.errors import InputDataError
from deskpilot.evaluation.report import machine_info
from deskpilot.jobs.responder_training import Pairs, fit_responder
from deskpilot.tasks.knowledge_index import MEMORY_TENANT, KnowledgeIndex
from deskpilot.tasks.respond import Responder, ResponderPolicy, invented_identifiers
from deskpilot.tasks.respond_metrics import cosines, paired_bootstrap, rouge_l, split_pairs
from deskpilot.types import Generation

from . import datasets, report

BENCH = "responder"
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
DATASETS = ("bitext", "tickets_en")
BITEXT_HELD_OUT = 300
SEED = 0
METHODS = ("retrieval_only", "base_retrieval", "lora_retrieval")
Log = Callable[[str], None]


@dataclass(frozen=True)
class ResponderBenchConfig:
    datasets: tuple[str, ...] = DATASETS
    train_pairs: int = 1000
    held_out: int | None = None  # score only the first N held-out rows (a quick look; not the report)
    max_minutes: float = 20.0
    max_new_tokens: int = 80

    def __post_init__(self) -> None:
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown or not self.datasets:
            raise InputDataError(
                f"unknown dataset(s) {', '.join(unknown) or 'none'}", hint="use bitext, tickets_en"
            )


class Recording:
    """A generator that keeps each :class:`Generation`, for tokens/s and latency."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.generations: list[Generation] = []

    def generate(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> Generation:
        out: Generation = self.generator.generate(messages, **kwargs)
        self.generations.append(out)
        return out


def load_dataset(name: str, root: Path | None) -> tuple[Pairs, Pairs]:
    """(train, held out) resolved tickets of one dataset."""
    if name == "bitext":
        questions, answers, _ = datasets.bitext_pairs(root)
        train_rows, test_rows = split_pairs(len(questions), BITEXT_HELD_OUT, SEED)
        whole = Pairs(list(questions), list(answers))
        return whole.take(train_rows), whole.take(test_rows)
    tickets = datasets.multilingual_tickets(root, language="en")
    return (
        Pairs(list(tickets.train.texts), list(tickets.train.columns["answer"])),
        Pairs(list(tickets.test.texts), list(tickets.test.columns["answer"])),
    )


def _scores(
    embedder: Any, drafts: Sequence[str], test: Pairs, allowed: Sequence[Sequence[str]]
) -> dict[str, Any]:
    refs = test.answers
    rouge = [rouge_l(d, r) for d, r in zip(drafts, refs, strict=True)]
    cos = cosines(embedder, drafts, refs)
    written = [i for i, d in enumerate(drafts) if d]
    invented = [bool(invented_identifiers(drafts[i], allowed[i])) for i in written]
    return {
        "rouge_l": round(statistics.fmean(rouge), 4),
        "cosine": round(statistics.fmean(cos), 4),
        "mean_chars": round(statistics.fmean(len(d) for d in drafts), 1),
        "no_draft_rate": round(1 - len(written) / len(drafts), 4),
        "hallucinated_identifier_rate": round(sum(invented) / len(invented), 4) if invented else 0.0,
        "_rouge": rouge,
        "_cosine": cos,
    }


def _draft_all(
    responder: Responder, test: Pairs, log: Log, label: str
) -> tuple[list[str], list[float], list[str]]:
    drafts, seconds, modes = [], [], []
    for i, question in enumerate(test.questions):
        started = time.perf_counter()
        draft = responder.respond(MEMORY_TENANT, question)
        seconds.append(time.perf_counter() - started)
        drafts.append(draft.text or "")
        modes.append(draft.mode)
        if (i + 1) % 25 == 0 or i + 1 == len(test):
            log(f"  {label}: {i + 1}/{len(test)} drafts ({statistics.fmean(seconds):.2f} s each)")
    return drafts, seconds, modes


def bench_dataset(name: str, cfg: ResponderBenchConfig, settings: Settings, log: Log) -> dict[str, Any]:
    from deskpilot.adapters.catalog import resolve_generator
    from deskpilot.adapters.embedder import SentenceEmbedder
    from deskpilot.adapters.generator import GeneratorModel

    train, test = load_dataset(name, datasets.data_dir(settings))
    if cfg.held_out is not None:
        test = test.take(range(min(cfg.held_out, len(test))))
    log(f"{name}: {len(train)} resolved tickets in the knowledge base, {len(test)} held out")
    embedder = SentenceEmbedder.from_base(None)
    index = KnowledgeIndex.from_pairs(train.questions, train.answers, None, embedder)
    hits = [index.search(MEMORY_TENANT, q, k=2) for q in test.questions]
    allowed = [
        [q] + [t for h in hs for t in (h.question, h.answer)]
        for q, hs in zip(test.questions, hits, strict=True)
    ]
    results: dict[str, Any] = {}

    nearest = [hs[0].answer if hs else "" for hs in hits]
    results["retrieval_only"] = _scores(embedder, nearest, test, allowed)

    base = resolve_generator(settings.generator_model, settings.cache_dir)
    always = ResponderPolicy(
        floor=-1.0,
        reuse_similarity=1.01,
        min_confidence=0.0,
        reuse_fallback=False,
        max_new_tokens=cfg.max_new_tokens,
    )
    log(f"{name}: (b) base model + 2 retrieved examples")
    plain = Responder(index, GeneratorModel.load(base, bf16=settings.bf16), always)
    drafts, _, _ = _draft_all(plain, test, log, "base")
    results["base_retrieval"] = _scores(embedder, drafts, test, allowed)

    subset = train.take(range(min(cfg.train_pairs, len(train))))
    log(f"{name}: (c) training the LoRA responder on {len(subset)} pairs (budget {cfg.max_minutes:g} min)")
    started = time.perf_counter()
    fitted = fit_responder(
        subset,
        task=f"bench-{name}",
        tenant="bench",
        cache_dir=settings.cache_dir,
        base=settings.generator_model,
        recipe={"max_minutes": cfg.max_minutes},
        log=log,
    )
    fit_seconds = time.perf_counter() - started
    recording = Recording(GeneratorModel.load(base, fitted.folder, bf16=settings.bf16))
    shipped = Responder(index, recording, replace_max_tokens(fitted.policy, cfg.max_new_tokens))
    drafts, seconds, modes = _draft_all(shipped, test, log, "responder")
    results["lora_retrieval"] = _scores(embedder, drafts, test, allowed)

    delta = {}
    for metric, key in (("rouge_l", "_rouge"), ("cosine", "_cosine")):
        mean, low, high = paired_bootstrap(results["lora_retrieval"][key], results["retrieval_only"][key])
        delta[metric] = {"mean": round(mean, 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}
    for method in METHODS:
        results[method] = {k: v for k, v in results[method].items() if not k.startswith("_")}
    return {
        **results,
        "lora_minus_retrieval": delta,
        "held_out": len(test),
        "knowledge_base": len(train),
        "train_pairs": len(subset),
        "train_seconds": fitted.card.train_seconds,  # the LoRA training itself
        "fit_seconds": round(fit_seconds, 1),  # with prompts, validation drafts and tuning
        "training": {k: v for k, v in fitted.card.metrics.items() if k not in ("history", "validation")},
        "policy": fitted.card.extra.get("responder_policy"),
        "validation": fitted.validation,
        "modes": {m: modes.count(m) for m in ("generated", "reused", "none")},
        "_seconds": seconds,
        "_generations": list(recording.generations),
    }


def replace_max_tokens(policy: ResponderPolicy, max_new_tokens: int) -> ResponderPolicy:
    from dataclasses import replace

    return replace(policy, max_new_tokens=max_new_tokens)


def run(
    cfg: ResponderBenchConfig,
    settings: Settings,
    *,
    log: Log = print,
    out_dir: Path | None = None,
    markdown: Path | None = None,
) -> dict[str, Any]:
    root = datasets.data_dir(settings)
    if root is None:
        raise InputDataError(
            "bench responder needs the evaluation data (../shared/data or DESKPILOT_DATA_DIR)",
            hint="set DESKPILOT_DATA_DIR to the folder holding bitext_customer_support/",
        )
    per_dataset: dict[str, Any] = {}
    seconds: list[float] = []
    generations: list[Generation] = []
    train_seconds = 0.0
    for name in cfg.datasets:
        figures = bench_dataset(name, cfg, settings, log)
        seconds += figures.pop("_seconds")
        generations += figures.pop("_generations")
        train_seconds += figures["train_seconds"]
        per_dataset[name] = figures
    generated = [g.seconds for g in generations]
    ordered = sorted(generated or seconds)
    tokens = sum(g.new_tokens for g in generations)
    figures_all: dict[str, Any] = {
        "bench": BENCH,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "datasets": per_dataset,
        # per generated draft (reused answers take milliseconds and would flatter the figure)
        "latency_p50_s": round(ordered[len(ordered) // 2], 3) if ordered else None,
        "latency_p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3)
        if ordered
        else None,
        "draft_latency_p50_s": round(sorted(seconds)[len(seconds) // 2], 3) if seconds else None,
        "tokens_per_s": round(tokens / sum(generated), 1) if generated and sum(generated) else None,
        "train_seconds": round(train_seconds, 1),
        "settings": {**asdict(cfg), "generator": settings.generator_model},
        "machine": machine_info(),
        "command": shlex.join(["deskpilot", *sys.argv[1:]]) if sys.argv else "",
    }
    figures_all["requirements"] = checks(figures_all)
    if out_dir is None:
        out_dir = RESULTS_DIR
    report.write_json(out_dir / f"{BENCH}.json", figures_all)
    report.update_section(markdown or RESULTS_MD, BENCH, render(figures_all))
    return figures_all


def checks(figures: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's requirements, each with its measured value."""
    out: dict[str, Any] = {}
    for name, data in figures["datasets"].items():
        a, b, c = (data[m] for m in METHODS)
        for metric in ("rouge_l", "cosine"):
            out[f"{name}.{metric}.lora_beats_base"] = c[metric] > b[metric]
            if name == "bitext":
                out[f"{name}.{metric}.lora_not_worse_than_retrieval"] = (
                    data["lora_minus_retrieval"][metric]["mean"] >= -0.005
                )
            else:
                out[f"{name}.{metric}.lora_beats_retrieval"] = c[metric] > a[metric]
    if figures.get("latency_p50_s") is not None:
        out["latency_p50_s<=3"] = figures["latency_p50_s"] <= 3.0
    return out


def _validation(report: Mapping[str, Any]) -> str:
    if "generated_rows" not in report:
        return ""
    best = (
        f"; the best generated {report['best_generated_rows']}, weaker gain {report['best_gain']:+.4f} "
        f"(standard error {report['standard_error']:.4f})"
        if "best_gain" in report
        else ""
    )
    return (
        f" on {report['rows']} validation tickets (generate {report['generated_rows']}: ROUGE-L "
        f"{report['rouge_l_gain']:+.4f}, cosine {report['cosine_gain']:+.4f} over reusing{best})"
    )


def render(figures: Mapping[str, Any]) -> str:
    lines = [
        f"Measured {figures['date']} on {figures['machine'].get('cpu')} "
        f"({figures['machine'].get('usable_cores')} cores): `{figures['command']}`",
        "",
        "| dataset | method | ROUGE-L | cosine | mean chars | no draft | invented ids |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, data in figures["datasets"].items():
        for method in METHODS:
            m = data[method]
            cells = [
                f"{name} ({data['held_out']} held out)",
                method,
                f"{m['rouge_l']:.3f}",
                f"{m['cosine']:.3f}",
                f"{m['mean_chars']:.0f}",
                f"{m['no_draft_rate']:.1%}",
                f"{m['hallucinated_identifier_rate']:.1%}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, data in figures["datasets"].items():
        d = data["lora_minus_retrieval"]
        diffs = ", ".join(
            f"{metric} {d[metric]['mean']:+.4f} [{d[metric]['ci_low']:+.4f}, {d[metric]['ci_high']:+.4f}]"
            for metric in ("rouge_l", "cosine")
        )
        lines.append(
            f"- {name}: (c) - (a) {diffs}; drafts {data['modes']}; LoRA on {data['train_pairs']} pairs "
            f"in {data['train_seconds']:.0f} s; tuned {data['policy']}{_validation(data['validation'])}"
        )
    lines.append(
        f"- per generated draft: p50 {figures['latency_p50_s']} s, p95 {figures['latency_p95_s']} s, "
        f"{figures['tokens_per_s']} tokens/s; every draft (reused ones too): "
        f"p50 {figures['draft_latency_p50_s']} s"
    )
    lines.append(
        "- requirements: "
        + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in figures["requirements"].items())
    )
    return "\n".join(lines) + "\n"
