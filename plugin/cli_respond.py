"""``deskpilot train responder``, ``deskpilot evaluate responder`` and ``deskpilot bench responder``.

Helpers of :mod:`deskpilot.cli` are imported inside the functions: that module registers this one.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

TaskOpt = Annotated[str, typer.Option(help="Responder task name [default: DESKPILOT_RESPONDER_TASK]")]
TenantOpt = Annotated[str | None, typer.Option(help="Tenant the responder belongs to [default: settings]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
TextCol = Annotated[str, typer.Option(help="Column holding the ticket (subject+body are joined if absent).")]
AnswerCol = Annotated[str, typer.Option(help="Column holding the reply a person sent.")]
LabelCol = Annotated[
    str | None, typer.Option(help="Optional column with the ticket's class (examples of it are preferred).")
]


def register(train_app: typer.Typer, evaluate_app: typer.Typer, bench_app: typer.Typer) -> None:
    train_app.command("responder")(train_responder_cmd)
    evaluate_app.command("responder")(evaluate_responder_cmd)
    bench_app.command("responder")(bench_responder_cmd)


def read_pairs(path: Path, text_column: str, answer_column: str, label_column: str | None) -> Any:
    """Resolved tickets from a CSV/JSONL file: text, answer and (optionally) class."""
    from deskpilot.cli import _read
    from deskpilot.jobs.responder_training import Pairs

    rows = _read(path, text_column, answer_column, keep_columns=(label_column,) if label_column else ())
    labels = [value or None for value in rows.extra[label_column]] if label_column else None
    return Pairs(list(rows.texts), list(rows.labels or []), labels)


def train_responder_cmd(
    data: Annotated[Path, typer.Option(help="Resolved tickets: CSV with a header, or JSONL.")],
    task: TaskOpt = "",
    text_column: TextCol = "text",
    answer_column: AnswerCol = "answer",
    label_column: LabelCol = None,
    eval_file: Annotated[
        Path | None, typer.Option("--eval", help="Resolved tickets to report metrics on.")
    ] = None,
    base: Annotated[str | None, typer.Option(help="Generator base: alias, local folder or HF id.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="LoRA epochs.")] = 1,
    max_minutes: Annotated[float | None, typer.Option(min=0.05, help="Stop training at this budget.")] = None,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA responder on resolved tickets and add them to the tenant's knowledge base."""
    from deskpilot.cli import (
        _quiet_libraries,
        _record_adapter,
        emit_json,
        progress_bar,
        say,
        settings,
        user_errors,
    )

    s = settings()
    with user_errors():
        _quiet_libraries()
        from deskpilot.adapters.registry import Registry, check_name
        from deskpilot.jobs.responder_training import fit_responder, import_knowledge
        from deskpilot.jobs.responders import ResponderService
        from deskpilot.store import Database

        name = check_name("task", task or s.responder_task)
        owner = check_name("tenant", tenant or s.default_tenant)
        pairs = read_pairs(data, text_column, answer_column, label_column)
        recipe: dict[str, Any] = {"epochs": epochs, "max_minutes": max_minutes}
        with progress_bar(not as_json) as progress:
            fitted = fit_responder(
                pairs,
                task=name,
                tenant=owner,
                cache_dir=s.cache_dir,
                base=base or s.generator_model,
                recipe=recipe,
                progress=lambda done, total: progress("training", done, total),
                log=say,
            )
        card = Registry(s.adapters_dir).register(fitted.folder, fitted.card)
        champion = Registry(s.adapters_dir).champion_version(owner, name) == card.version
        _record_adapter(card, champion)
        database = Database(s.db_url)
        try:
            database.migrate()
            service = ResponderService(s, database)
            imported = import_knowledge(service.index, owner, name, pairs)
            metrics = None
            if eval_file is not None:
                metrics = evaluate_pairs(
                    service, owner, name, read_pairs(eval_file, text_column, answer_column, label_column)
                )
        finally:
            database.dispose()
    summary = {
        "task": name,
        "tenant": owner,
        "version": card.version,
        "champion": champion,
        "train_seconds": card.train_seconds,
        "n_train": card.n_train,
        "knowledge_entries": imported,
        "policy": fitted.card.extra.get("responder_policy"),
        "validation": fitted.validation,
        "training": {k: v for k, v in card.metrics.items() if k != "history"},
        "metrics": metrics,
    }
    if as_json:
        emit_json(summary)
    else:
        say(
            f"registered responder {owner}/{name} {card.version} in {card.train_seconds:.0f} s; "
            f"{imported} resolved tickets in the knowledge base"
        )


def evaluate_pairs(service: Any, tenant: str, task: str, pairs: Any) -> dict[str, Any]:
    """Drafts for held-out tickets scored against the replies people sent."""
    from deskpilot.tasks.respond import invented_identifiers
    from deskpilot.tasks.respond_metrics import cosines, rouge_l

    drafts, seconds, modes = [], [], []
    for i, question in enumerate(pairs.questions):
        label = pairs.labels[i] if pairs.labels is not None else None
        started = time.perf_counter()
        draft = service.respond(tenant, question, task=task, label=label)
        seconds.append(time.perf_counter() - started)
        drafts.append(draft.text or "")
        modes.append(draft.mode)
    refs = pairs.answers
    cos = cosines(service.index.embedder, drafts, refs)
    invented = [bool(invented_identifiers(d, [q])) for d, q in zip(drafts, pairs.questions, strict=True) if d]
    ordered = sorted(seconds)
    return {
        "n": len(refs),
        "rouge_l": round(statistics.fmean(rouge_l(d, r) for d, r in zip(drafts, refs, strict=True)), 4),
        "cosine": round(statistics.fmean(cos), 4),
        "mean_chars": round(statistics.fmean(len(d) for d in drafts), 1),
        "hallucinated_identifier_rate": round(sum(invented) / len(invented), 4) if invented else 0.0,
        "modes": {m: modes.count(m) for m in ("generated", "reused", "none")},
        "latency_p50_s": round(ordered[len(ordered) // 2], 3),
        "latency_p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


def evaluate_responder_cmd(
    data: Annotated[Path, typer.Option(help="Held-out resolved tickets: CSV with a header, or JSONL.")],
    task: TaskOpt = "",
    text_column: TextCol = "text",
    answer_column: AnswerCol = "answer",
    label_column: LabelCol = None,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draft replies for held-out tickets and score them against the replies people sent."""
    from deskpilot.cli import _quiet_libraries, emit_json, say, settings, user_errors

    s = settings()
    with user_errors():
        _quiet_libraries()
        from deskpilot.jobs.responders import ResponderService
        from deskpilot.store import Database

        name = task or s.responder_task
        owner = tenant or s.default_tenant
        pairs = read_pairs(data, text_column, answer_column, label_column)
        database = Database(s.db_url)
        try:
            database.migrate()
            report = evaluate_pairs(ResponderService(s, database), owner, name, pairs)
        finally:
            database.dispose()
    if as_json:
        emit_json({"task": name, "tenant": owner, **report})
    else:
        say(
            f"{report['n']} tickets: ROUGE-L {report['rouge_l']:.3f}, cosine {report['cosine']:.3f}, "
            f"p50 {report['latency_p50_s']:.2f} s, drafts {report['modes']}"
        )


def bench_responder_cmd(
    datasets: Annotated[
        str, typer.Option(help="Comma-separated: bitext, tickets_en [default: both, where present]")
    ] = "bitext,tickets_en",
    train_pairs: Annotated[int, typer.Option(min=20, help="LoRA training pairs per dataset.")] = 1000,
    held_out: Annotated[
        int | None, typer.Option(min=1, help="Score only this many held-out rows [default: all]")
    ] = None,
    max_minutes: Annotated[float, typer.Option(min=0.1, help="Training budget per dataset.")] = 20.0,
    out: Annotated[Path | None, typer.Option(help="Folder for responder.json")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Markdown to update")] = None,
    as_json: JsonOpt = False,
) -> None:
    """(a) retrieval only, (b) base model + retrieval, (c) the responder as shipped, side by side."""
    from deskpilot.cli import _quiet_libraries, print_figures, say, settings, user_errors

    s = settings()
    with user_errors():
        _quiet_libraries()
        from deskpilot.evaluation import bench_responder

        cfg = bench_responder.ResponderBenchConfig(
            datasets=tuple(d.strip() for d in datasets.split(",") if d.strip()),
            train_pairs=train_pairs,
            held_out=held_out,
            max_minutes=max_minutes,
        )
        figures = bench_responder.run(cfg, s, log=say, out_dir=out, markdown=markdown)
    print_figures("responder", figures, as_json=as_json)
