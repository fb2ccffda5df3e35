"""The ``deskpilot`` command line (Typer + Rich).

Contracts (DESIGN.md): ``--json`` prints one JSON object as the last stdout line;
progress and messages go to stderr; a person's mistake is one line on stderr and exit
code 2, never a traceback. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deskpilot.cli_bench_gateway import register as register_gateway_benches
from deskpilot.cli_connectors import register as register_connectors_commands
from deskpilot.cli_documents import register as register_documents_commands
from deskpilot.cli_jobs import register as register_jobs_commands
from deskpilot.cli_onnx import register as register_onnx_commands
from deskpilot.cli_respond import register as register_respond_commands
from deskpilot.cli_retrain import record_champion_change
from deskpilot.cli_retrain import register as register_retrain
from deskpilot.cli_security import register as register_security_commands
from deskpilot.cli_users import register as register_users_commands
from deskpilot.config import Settings, get_settings
from deskpilot.errors import DeskpilotError

if TYPE_CHECKING:
    from deskpilot.adapters.registry import AdapterCard

app = typer.Typer(
    name="deskpilot",
    help="Fine-tuned classifiers and responders for helpdesk and ERP queues.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(help="Train adapters.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate adapters on labelled data.", no_args_is_help=True)
adapters_app = typer.Typer(help="List, promote and roll back adapter versions.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for the gateway.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(adapters_app, name="adapters")
app.add_typer(keys_app, name="keys")
bench_app = typer.Typer(
    help="Benchmarks: JSON to evaluation/results/<bench>.json, Markdown to evaluation/RESULTS.md.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")
policy_app = typer.Typer(help="Per-tenant routing policies (YAML).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
register_retrain(app)  # deskpilot retrain (plugin/cli_retrain.py)
register_security_commands(keys_app, adapters_app)  # keys list/rotate/revoke, adapters sign
register_onnx_commands(adapters_app)  # adapters export-onnx (cli_onnx.py)

err = Console(stderr=True)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Preset(StrEnum):
    auto = "auto"
    fast = "fast"
    best = "best"


TenantOpt = Annotated[str | None, typer.Option(help="Tenant the adapter belongs to [default: settings]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
TextCol = Annotated[str, typer.Option(help="Column holding the text (subject+body are joined if absent).")]
LabelCol = Annotated[str, typer.Option(help="Column holding the label.")]
FromAdapterOpt = Annotated[
    str | None,
    typer.Option(
        "--from-adapter",
        help="Warm start from a registered adapter (a domain adapter from `deskpilot adapt`, or a "
        "classifier of a similar task): TASK[:VERSION] of this tenant, or TENANT/TASK[:VERSION].",
    ),
]


def say(message: str, *, prefix: str = "") -> None:
    """One line on stderr, secrets masked; user text is escaped so brackets in it are not Rich markup."""
    from deskpilot.redaction import mask_secrets

    err.print(prefix + escape(mask_secrets(message)), highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    say(message, prefix="[yellow]warning:[/] ")


def fail(message: str) -> NoReturn:
    say(message, prefix="[bold red]error:[/] ")
    raise typer.Exit(code=2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn DeskpilotError into one line and exit code 2."""
    try:
        yield
    except DeskpilotError as exc:
        fail(str(exc))


def settings() -> Settings:
    with user_errors():
        return get_settings()


def _tenant(value: str | None) -> str:
    return value or settings().default_tenant


def emit_json(obj: dict[str, Any] | list[Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawn as Rich bars on stderr."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # third-party deprecation noise that a person cannot act on (peft reading a transformers property)
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def _read(
    path: Path,
    text_column: str,
    label_column: str | None,
    *,
    require_labels: bool = True,
    keep_columns: tuple[str, ...] = (),
) -> Any:
    from deskpilot.dataio import read_rows

    s = settings()
    return read_rows(
        path,
        text_column=text_column,
        label_column=label_column,
        require_labels=require_labels,
        keep_columns=keep_columns,
        max_line_bytes=s.max_line_bytes,
        max_text_chars=s.max_text_chars,
    )


def _engine() -> Any:
    from deskpilot.adapters.registry import Registry
    from deskpilot.adapters.serving import Engine

    s = settings()
    return Engine(
        Registry(s.adapters_dir),
        max_resident=s.max_adapters_resident,
        threads=s.threads,
        keep_freed_memory=s.malloc_tuning,
    )


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def _evaluate(
    engine: Any, card: AdapterCard, texts: list[str], labels: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reports with the adapter's thresholds and without (top-1), from one prediction pass."""
    from deskpilot.evaluation.metrics import classification_report

    preds = engine.predict(card.tenant, card.task, texts, version=card.version, abstain=True)
    predicted = [p.label for p in preds]
    with_abstain = classification_report(
        labels, predicted, [p.abstained for p in preds], known_labels=card.labels
    )
    top1 = classification_report(labels, predicted, [False] * len(preds), known_labels=card.labels)
    return with_abstain, top1


def _record_adapter(card: AdapterCard, champion: bool) -> None:
    """Mirror a registered version into the database (best effort: files are the truth)."""
    from deskpilot.store import Database, set_champion, upsert_adapter

    s = settings()
    db = Database(s.db_url)
    try:
        db.migrate()
        with db.session() as session:
            upsert_adapter(
                session,
                card.tenant,
                card.task,
                card.version,
                kind=card.kind,
                base_model=card.base_model,
                metrics=card.metrics,
                status="candidate",
            )
            if champion:
                set_champion(session, card.tenant, card.task, card.version)
    except DeskpilotError as exc:
        warn(f"adapter registered on disk but not in the database: {exc}")
    finally:
        db.dispose()


# --- train ---------------------------------------------------------------------------
@train_app.command("classifier")
def train_classifier_cmd(
    task: Annotated[str, typer.Option(help="Task name, e.g. queue or priority.")],
    data: Annotated[Path, typer.Option(help="Training data: CSV with a header, or JSONL.")],
    eval_file: Annotated[
        Path | None, typer.Option("--eval", help="Labelled data to report metrics on.")
    ] = None,
    text_column: TextCol = "text",
    label_column: LabelCol = "label",
    base: Annotated[str | None, typer.Option(help="Base encoder: alias, local folder or HF id.")] = None,
    epochs: Annotated[int | None, typer.Option(min=0, help="Fine-tuning epochs [default: preset]")] = None,
    preset: Annotated[
        Preset, typer.Option(help="auto: by data size; fast: frozen encoder + linear head; best")
    ] = Preset.auto,
    max_minutes: Annotated[float | None, typer.Option(help="Stop at this budget, keep the best.")] = None,
    max_length: Annotated[int | None, typer.Option(min=8, help="Max tokens per text.")] = None,
    target_precision: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Abstain below the confidence reaching this.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    tenant: TenantOpt = None,
    promote: Annotated[
        bool | None, typer.Option("--promote/--no-promote", help="Serve the new version [default: if first]")
    ] = None,
    from_adapter: FromAdapterOpt = None,
    oos_data: Annotated[
        Path | None,
        typer.Option(help="Texts the classifier must NOT answer (same --text-column): tunes abstaining."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA classifier adapter and register it as a new version."""
    from deskpilot.dataio import check_trainable

    s = settings()
    tenant = _tenant(tenant)
    with user_errors():
        from deskpilot.adapters.registry import check_name

        check_name("task", task)
        check_name("tenant", tenant)
        donor = _adapter_folder(from_adapter, tenant) if from_adapter else None
        rows = _read(data, text_column, label_column)
        for warning in check_trainable(rows):
            warn(warning)
        eval_rows = _read(eval_file, text_column, label_column) if eval_file else None
        oos_rows = _read(oos_data, text_column, None, require_labels=False) if oos_data else None

        _quiet_libraries()
        from deskpilot.adapters.catalog import resolve
        from deskpilot.adapters.classifier import ClassifierRecipe, train_classifier
        from deskpilot.adapters.registry import Registry

        recipe_args: dict[str, Any] = {
            "preset": preset.value,
            "seed": seed,
            "max_minutes": max_minutes,
            "target_precision": s.target_precision if target_precision is None else target_precision,
            "bf16": s.bf16,
        }
        if epochs is not None:
            recipe_args["epochs"] = epochs
        if max_length is not None:
            recipe_args["max_length"] = max_length
        if donor is not None:
            recipe_args["init_adapter"] = str(donor)
        base_model = resolve(base or s.base_model)
        say(f"training {task} on {len(rows):,} rows, {len(set(rows.labels))} labels, base {base_model.name}")
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as progress:
            result = train_classifier(
                rows.texts,
                rows.labels,
                base=base_model,
                task=task,
                tenant=tenant,
                recipe=ClassifierRecipe(**recipe_args),
                progress=progress,
                threads=s.threads,
                oos_texts=oos_rows.texts if oos_rows is not None else None,
            )
        registry = Registry(s.adapters_dir)
        # the rows stay with the version (train.jsonl): `deskpilot retrain` starts from them
        card = registry.register(
            result.directory, result.card, promote=promote, rows=(rows.texts, rows.labels)
        )
        metrics: dict[str, Any] = {}
        if eval_rows is not None:
            report, top1 = _evaluate(_engine(), card, eval_rows.texts, eval_rows.labels)
            # accuracy and macro-F1 are top-1 (what the classifier knows); the abstain view
            # (thresholds applied, abstentions counted as errors) sits beside them
            metrics = {
                "n": top1["n"],
                "accuracy": top1["accuracy"],
                "macro_f1": top1["macro_f1"],
                "coverage": report["coverage"],
                "accuracy_on_covered": report["accuracy_on_covered"],
                "accuracy_with_abstain": report["accuracy"],
                "oos_recall": report["oos_recall"],
            }
            card.metrics["eval"] = metrics
            registry.update_card(card)
        champion = registry.champion_version(tenant, task) == card.version
        _record_adapter(card, champion)

    summary = {
        "task": task,
        "tenant": tenant,
        "version": card.version,
        "champion": champion,
        "train_seconds": card.train_seconds,
        "n_train": card.n_train,
        "labels": len(card.labels),
        "validation": card.metrics.get("validation", {}),
        "metrics": metrics,
        "path": str(registry.path(tenant, task, card.version)),
    }
    if as_json:
        emit_json(summary)
    else:
        say(
            f"registered {task} {card.version}{' (champion)' if champion else ''} in "
            f"{card.train_seconds:.0f}s; validation accuracy {_fmt(summary['validation'].get('accuracy'))}"
        )
        if metrics:
            say(
                f"eval: accuracy {_fmt(metrics['accuracy'])}, macro-F1 {_fmt(metrics['macro_f1'])}, "
                f"coverage {_fmt(metrics['coverage'])}"
            )


# --- adapt ---------------------------------------------------------------------------
def _adapter_folder(spec: str, tenant: str) -> Path:
    """``TASK[:VERSION]`` (this tenant) or ``TENANT/TASK[:VERSION]`` -> a registered version's folder.

    Without a version: the champion, else the newest version (domain adapters are never
    promoted: they are not served).
    """
    from deskpilot.adapters.registry import Registry
    from deskpilot.errors import AdapterNotFoundError

    owner, _, rest = spec.strip().rpartition("/")
    owner = owner or tenant
    task, _, version = rest.partition(":")
    registry = Registry(settings().adapters_dir)
    if not version:
        versions = registry.versions(owner, task)
        if not versions:
            raise AdapterNotFoundError(
                f"no adapter '{task}' of tenant '{owner}' to start from",
                hint="see deskpilot adapters list; make a domain adapter with deskpilot adapt --data FILE",
            )
        version = registry.champion_version(owner, task) or versions[-1].version
    registry.card(owner, task, version)  # raises when that version does not exist
    return registry.path(owner, task, version)


@app.command("adapt")
def adapt_cmd(
    data: Annotated[Path, typer.Option(help="Unlabelled texts: CSV with a header, or JSONL.")],
    text_column: TextCol = "text",
    name: Annotated[str, typer.Option(help="Task name the domain adapter is registered under.")] = "domain",
    base: Annotated[str | None, typer.Option(help="Base encoder: alias, local folder or HF id.")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the texts.")] = 1,
    max_minutes: Annotated[float | None, typer.Option(help="Stop cleanly at this budget.")] = None,
    max_length: Annotated[int, typer.Option(min=8, help="Max tokens per text.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Domain adaptation: continue pre-training the encoder (masked-LM LoRA) on unlabelled texts.

    The adapter is registered (not served); start a classifier from it with
    `deskpilot train classifier --from-adapter NAME ...`.
    """
    s = settings()
    tenant = _tenant(tenant)
    with user_errors():
        from deskpilot.adapters.registry import check_name

        check_name("task", name)
        check_name("tenant", tenant)
        rows = _read(data, text_column, None, require_labels=False)

        _quiet_libraries()
        from deskpilot.adapters.catalog import resolve
        from deskpilot.adapters.domain import DomainRecipe, adapt_encoder
        from deskpilot.adapters.registry import Registry

        recipe = DomainRecipe(
            epochs=epochs, max_minutes=max_minutes, max_length=max_length, seed=seed, bf16=s.bf16
        )
        base_model = resolve(base or s.base_model)
        say(f"adapting {base_model.name} to {len(rows):,} texts from {data.name}")
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as progress:
            result = adapt_encoder(
                rows.texts,
                base=base_model,
                task=name,
                tenant=tenant,
                recipe=recipe,
                progress=progress,
                threads=s.threads,
            )
        registry = Registry(s.adapters_dir)
        card = registry.register(result.directory, result.card, promote=False)
        _record_adapter(card, champion=False)

    m = card.metrics
    summary = {
        "task": name,
        "tenant": tenant,
        "kind": card.kind,
        "version": card.version,
        "train_seconds": card.train_seconds,
        "n_texts": len(rows),
        "n_train": card.n_train,
        "heldout_texts": m.get("heldout_texts"),
        "mlm_loss_before": m.get("mlm_loss_before"),
        "mlm_loss_after": m.get("mlm_loss_after"),
        "mlm_loss_after_without_lora": m.get("mlm_loss_after_without_lora"),
        "train_steps": m.get("train_steps"),
        "path": str(registry.path(tenant, name, card.version)),
    }
    if as_json:
        emit_json(summary)
    else:
        say(
            f"registered {name} {card.version} (domain) in {card.train_seconds:.0f}s; held-out MLM loss "
            f"{_fmt(summary['mlm_loss_before'])} -> {_fmt(summary['mlm_loss_after'])}"
        )
        say(f"start a classifier from it: deskpilot train classifier --from-adapter {name} ...")


# --- evaluate ------------------------------------------------------------------------
@evaluate_app.command("classifier")
def evaluate_classifier_cmd(
    task: Annotated[str, typer.Option(help="Task name.")],
    data: Annotated[Path, typer.Option(help="Labelled CSV or JSONL.")],
    text_column: TextCol = "text",
    label_column: LabelCol = "label",
    version: Annotated[str | None, typer.Option(help="Version to evaluate [default: champion]")] = None,
    no_abstain: Annotated[bool, typer.Option("--no-abstain", help="Ignore thresholds.")] = False,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score an adapter on labelled data (abstentions count as errors)."""
    tenant = _tenant(tenant)
    with user_errors():
        rows = _read(data, text_column, label_column)
        _quiet_libraries()
        engine = _engine()
        card = engine.registry.card(tenant, task, version)
        started = time.monotonic()
        with_abstain, top1 = _evaluate(engine, card, rows.texts, rows.labels)
        report = top1 if no_abstain else with_abstain
        report.update(
            task=task,
            tenant=tenant,
            version=card.version,
            seconds=round(time.monotonic() - started, 3),
            abstain=not no_abstain,
        )
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"{task} {card.version} on {data.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("n", "accuracy", "macro_f1", "coverage", "accuracy_on_covered", "oos_recall"):
        table.add_row(key, _cell(report.get(key)))
    console = Console()
    console.print(table)
    console.print(_per_class_table(report.get("per_class", {})))


def _cell(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def _per_class_table(per_class: dict[str, dict[str, Any]], limit: int = 20) -> Table:
    """Precision and coverage per class; with many classes, the least precise first."""

    def precision(item: tuple[str, dict[str, Any]]) -> tuple[bool, float]:
        value = item[1].get("precision")
        return (value is not None, value or 0.0)  # never predicted first

    rows = sorted(per_class.items(), key=precision)
    shown = rows if len(rows) <= limit else rows[:limit]
    title = "per class" if len(shown) == len(rows) else f"per class: the {limit} least precise of {len(rows)}"
    table = Table(title=title)
    for column in ("class", "precision", "coverage", "recall", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label, m in shown:
        table.add_row(label, *(_cell(m.get(k)) for k in ("precision", "coverage", "recall", "support")))
    return table


# --- predict -------------------------------------------------------------------------
@app.command("predict")
def predict_cmd(
    texts: Annotated[list[str], typer.Argument(help="One or more texts to classify.")],
    task: Annotated[str, typer.Option(help="Task name.")],
    version: Annotated[str | None, typer.Option(help="Version [default: champion]")] = None,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify texts with the serving adapter: label, score, abstained."""
    tenant = _tenant(tenant)
    with user_errors():
        from deskpilot.tasks.classify import classify

        s = settings()
        _quiet_libraries()
        preds = classify(
            _engine(),
            tenant,
            task,
            texts,
            max_texts=max(s.max_batch_texts, len(texts)),
            max_chars=s.max_text_chars,
            version=version,
        )
    rows = [
        {
            "text": t,
            "label": p.label,
            "score": p.score,
            "abstained": p.abstained,
            "alternatives": [{"label": a.label, "score": a.score} for a in p.alternatives],
            "adapter_version": p.adapter_version,
        }
        for t, p in zip(texts, preds, strict=True)
    ]
    if as_json:
        emit_json({"task": task, "results": rows})
        return
    for row in rows:
        typer.echo(f"{row['label']}\t{row['score']:.4f}\t{'abstained' if row['abstained'] else 'ok'}")


# --- adapters ------------------------------------------------------------------------
def _registry() -> Any:
    from deskpilot.adapters.registry import Registry

    return Registry(settings().adapters_dir)


@adapters_app.command("list")
def adapters_list_cmd(tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Registered adapter versions, champion marked."""
    tenant = _tenant(tenant)
    with user_errors():
        registry = _registry()
        items = []
        for task in registry.tasks(tenant):
            champion = registry.champion_version(tenant, task)
            for card in registry.versions(tenant, task):
                ev = card.metrics.get("eval") or {}
                items.append(
                    {
                        "task": task,
                        "version": card.version,
                        "champion": card.version == champion,
                        "kind": card.kind,
                        "base_model": card.base_model,
                        "labels": len(card.labels),
                        "accuracy": ev.get("accuracy", card.metrics.get("validation", {}).get("accuracy")),
                        "created_at": card.created_at,
                    }
                )
    if as_json:
        emit_json({"tenant": tenant, "adapters": items})
        return
    if not items:
        say(f"no adapters for tenant '{tenant}'; train one with: deskpilot train classifier ...")
        return
    table = Table(title=f"adapters of tenant '{tenant}'")
    for col in ("task", "version", "champion", "kind", "labels", "accuracy", "created_at"):
        table.add_column(col)
    for it in items:
        acc = it["accuracy"]
        table.add_row(
            it["task"],
            it["version"],
            "*" if it["champion"] else "",
            it["kind"],
            str(it["labels"]),
            "" if acc is None else f"{acc:.4f}",
            it["created_at"],
        )
    Console().print(table)


@adapters_app.command("promote")
def adapters_promote_cmd(
    task: Annotated[str, typer.Option(help="Task name.")],
    version: Annotated[str, typer.Option(help="Version to serve, e.g. v2.")],
    tenant: TenantOpt = None,
) -> None:
    """Serve a version (atomic switch; running servers pick it up on the next request)."""
    tenant = _tenant(tenant)
    with user_errors():
        registry = _registry()
        previous = registry.champion_version(tenant, task)
        registry.promote(tenant, task, version)
        record_champion_change(
            registry.card(tenant, task, version), kind="adapter.promoted", previous=previous
        )
    say(f"{task}: now serving {version}")


@adapters_app.command("rollback")
def adapters_rollback_cmd(
    task: Annotated[str, typer.Option(help="Task name.")], tenant: TenantOpt = None
) -> None:
    """Serve the previous champion again."""
    tenant = _tenant(tenant)
    with user_errors():
        registry = _registry()
        previous = registry.champion_version(tenant, task)
        version = registry.rollback(tenant, task)
        record_champion_change(
            registry.card(tenant, task, version), kind="adapter.rolled_back", previous=previous
        )
    say(f"{task}: rolled back, now serving {version}")


# --- keys ----------------------------------------------------------------------------
@keys_app.command("create")
def keys_create_cmd(
    tenant: TenantOpt = None,
    name: Annotated[str, typer.Option(help="A label for the key, e.g. who uses it.")] = "default",
    scope: Annotated[list[str] | None, typer.Option(help="read, write or admin; repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from deskpilot.store import Database, create_api_key

    tenant = _tenant(tenant)
    with user_errors():
        db = Database(settings().db_url)
        try:
            db.migrate()
            with db.session() as session:
                row, plaintext = create_api_key(session, tenant, name, tuple(scope or ("read", "write")))
                info = {
                    "tenant": tenant,
                    "name": name,
                    "key_id": row.id,
                    "scopes": row.scopes,
                    "key": plaintext,
                }
        finally:
            db.dispose()
    if as_json:
        emit_json(info)
    else:
        say(f"API key for tenant '{tenant}' (shown once, store it safely):")
        typer.echo(plaintext)


# --- bench ---------------------------------------------------------------------------
def print_figures(title: str, figures: dict[str, Any], *, as_json: bool) -> None:
    """A bench's headline figures: one JSON line, or a table with its requirements."""
    if as_json:
        emit_json(figures)
        return
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if not isinstance(value, dict):
            table.add_row(key, _fmt(value))
    for key, met in figures["requirements"].items():
        table.add_row(f"requirement {key}", "met" if met else "NOT MET")
    Console().print(table)


def _csv_list(items: list[str] | None) -> list[str]:
    return [x.strip() for item in items or [] for x in item.split(",") if x.strip()]


@bench_app.command("quality")
def bench_quality_cmd(
    datasets: Annotated[
        list[str] | None,
        typer.Option(
            help="banking77, banking77-10shot, clinc150, clinc150-oos-train, tickets-en, company-documents "
            "(repeat or comma-separate) [default: all present]"
        ),
    ] = None,
    sample: Annotated[
        int | None, typer.Option(min=1, help="About N stratified rows per split (smoke run).")
    ] = None,
    methods: Annotated[
        list[str] | None, typer.Option(help="tfidf_svc, frozen_logreg, setfit, deskpilot [default: all]")
    ] = None,
    preset: Annotated[Preset, typer.Option(help="deskpilot training preset")] = Preset.auto,
    epochs: Annotated[int | None, typer.Option(min=0, help="deskpilot epochs [default: preset]")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Per-dataset budget for deskpilot training.")
    ] = None,
    setfit_pairs: Annotated[
        int | None, typer.Option(min=1, help="Cap on SetFit pairs [default: 10000]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for quality.json [default: evaluation/results]")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Markdown to update [default: evaluation/RESULTS.md]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """deskpilot vs TF-IDF+SVC, frozen embeddings+LogReg and SetFit on the evaluation data."""
    import shlex

    s = settings()
    with user_errors():
        _quiet_libraries()
        from deskpilot.evaluation.bench_quality import (
            RESULTS_DIR,
            RESULTS_MD,
            DeskpilotTrainer,
            run_quality,
            summary,
        )

        md = markdown or RESULTS_MD
        trainer = DeskpilotTrainer(
            preset=preset.value,
            epochs=epochs,
            max_minutes=max_minutes,
            base=s.base_model,
            seed=seed,
            threads=s.threads,
            target_precision=s.target_precision,
            bf16=s.bf16,
        )
        results = run_quality(
            _csv_list(datasets) or None,
            sample=sample,
            seed=seed,
            include=set(_csv_list(methods)) or None,
            deskpilot_trainer=trainer,
            out_dir=out or RESULTS_DIR,
            data_root=s.evaluation_data_dir(),
            setfit_max_pairs=setfit_pairs,
            markdown=md,
            plots_dir=md.parent / "reports",
            command="deskpilot " + shlex.join(sys.argv[1:]),
            log=say,
        )
    figures = summary(results)
    if as_json:
        emit_json(
            {"bench": "quality", "date": results["date"], "machine": results["machine"], "results": figures}
        )
        return
    table = Table(title="quality")
    for col in ("dataset", "method", "accuracy", "macro_f1", "coverage", "oos_recall", "train s"):
        table.add_column(col)
    for name, per in figures.items():
        for method, f in per.items():
            table.add_row(
                name,
                method,
                *(
                    _fmt(f.get(k))
                    for k in ("accuracy", "macro_f1", "coverage", "oos_recall", "train_seconds")
                ),
            )
    Console().print(table)


@bench_app.command("serve")
def bench_serve_cmd(
    task: Annotated[
        str, typer.Option(help="Adapter to benchmark; trained on --train-data first if it has none.")
    ] = "banking77",
    tenant: TenantOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Labelled texts to classify [default: Banking77 test]")
    ] = None,
    train_data: Annotated[
        Path | None,
        typer.Option(help="Training data when the task has no adapter [default: Banking77 train]"),
    ] = None,
    text_column: TextCol = "text",
    label_column: LabelCol = "label",
    train_minutes: Annotated[float, typer.Option(min=0.1, help="Time budget for that training.")] = 10.0,
    adapters: Annotated[
        int, typer.Option(min=1, help="Adapters resident for the memory and mixed-stream figures.")
    ] = 50,
    latency_texts: Annotated[int, typer.Option(min=1, help="One-text requests timed for latency.")] = 500,
    repeats: Annotated[int, typer.Option(min=1, help="Each throughput is the best of this many runs.")] = 2,
    sample: Annotated[
        int | None, typer.Option(min=1, help="Use N texts spread over the data (smoke run).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for serve.json [default: evaluation/results]")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Markdown to update [default: evaluation/RESULTS.md]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The serving engine vs transformers.pipeline: throughput, latency, memory, 50 adapters."""
    import shlex

    s = settings()
    tenant = _tenant(tenant)
    with user_errors():
        from deskpilot.adapters.registry import Registry, check_name

        check_name("task", task)
        check_name("tenant", tenant)
        _quiet_libraries()
        from deskpilot.evaluation import datasets as ds
        from deskpilot.evaluation.bench_serve import (
            RESULTS_DIR,
            RESULTS_MD,
            ServeConfig,
            ensure_adapter,
            lora_is_zero,
            run_serve,
            spread,
            summary,
        )

        def banking77() -> Any:
            return ds.banking77(s.evaluation_data_dir())

        test = ds.load_file(data, text_column, label_column) if data else banking77().test
        registry = Registry(s.adapters_dir)
        if registry.champion_version(tenant, task) is None:
            train = ds.load_file(train_data, text_column, label_column) if train_data else banking77().train
            ensure_adapter(
                s.adapters_dir,
                tenant,
                task,
                train.texts,
                train.labels,
                base=s.base_model,
                minutes=train_minutes,
                threads=s.threads,
                log=say,
            )
        card = registry.card(tenant, task)
        if lora_is_zero(registry.path(tenant, task, card.version)):
            warn(
                f"{task} {card.version} has all-zero LoRA weights (probe only): merging changes nothing, "
                "and the adapter copies of the memory and mixed-stream figures get seeded random LoRA weights"
            )
        texts, labels = test.texts, test.labels
        if sample is not None:
            texts, labels = spread(texts, sample), spread(labels, sample)
        results = run_serve(
            s.adapters_dir,
            tenant,
            task,
            texts,
            labels,
            config=ServeConfig(
                adapters=adapters,
                latency_texts=latency_texts,
                repeats=repeats,
                threads=s.threads,
                bf16=s.bf16,
                engine_batch_size=s.engine_batch_texts,
            ),
            dataset=str(data) if data else "banking77 test",
            out_dir=out or RESULTS_DIR,
            markdown=markdown or RESULTS_MD,
            command="deskpilot " + shlex.join(sys.argv[1:]),
            log=say,
        )
    print_figures("serve", summary(results), as_json=as_json)


class IngressModel(StrEnum):
    trained = "trained"
    rules = "rules"


@bench_app.command("ingress")
def bench_ingress_cmd(
    rate: Annotated[
        float, typer.Option(min=0.1, help="Signed webhooks sent per second (open loop).")
    ] = 200.0,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of sending.")] = 60.0,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker threads of the gateway's embedded pool.")
    ] = 2,
    model: Annotated[
        IngressModel,
        typer.Option(
            help="trained: the demo policy, its queue and priority classifiers trained first (linear "
            "probes); rules: overrides decide every ticket, no model runs"
        ),
    ] = IngressModel.trained,
    connections: Annotated[int, typer.Option(min=1, max=1024, help="Keep-alive connections.")] = 64,
    worker_process: Annotated[
        bool,
        typer.Option(
            "--worker-process/--embedded-workers",
            help="Run the workers as a separate `deskpilot worker` process instead of threads in serve",
        ),
    ] = False,
    drain_timeout: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait after the last send for every ticket.")
    ] = 600.0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for ingress.json [default: evaluation/results]")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Markdown to update [default: evaluation/RESULTS.md]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Webhook ingress on loopback: ack latency, errors, every ticket processed (not in CI)."""
    import shlex

    with user_errors():
        from deskpilot.evaluation.bench_ingress import (
            RESULTS_DIR,
            RESULTS_MD,
            IngressConfig,
            run_ingress,
            summary,
        )

        config = IngressConfig(
            rate=rate,
            duration_s=duration,
            workers=workers,
            model=model.value,
            connections=connections,
            drain_timeout_s=drain_timeout,
            worker_process=worker_process,
        )
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as progress:
            results = run_ingress(
                config,
                out_dir=out or RESULTS_DIR,
                markdown=markdown or RESULTS_MD,
                command="deskpilot " + shlex.join(sys.argv[1:]),
                log=say,
                progress=progress,
            )
    print_figures("ingress", summary(results), as_json=as_json)


# --- policy --------------------------------------------------------------------------
def _task_summary(spec: Any) -> str:
    parts = [f"{len(spec.destinations)} labels mapped"] if spec.destinations else []
    parts += ["default"] if spec.default else []
    parts += [f"sets field {spec.field}"] if spec.field else []
    return ", ".join(parts)


@policy_app.command("check")
def policy_check_cmd(file: Annotated[Path, typer.Argument(help="The policy YAML file.")]) -> None:
    """Validate a routing policy; every problem is listed as FILE:LINE: path: message."""
    from deskpilot.policy import PolicyValidationError, load_policy

    try:
        policy = load_policy(file)
    except PolicyValidationError as exc:
        count = len(exc.problems)
        plural = "s" if count != 1 else ""
        say(f"{file}: {count} problem{plural} in the routing policy", prefix="[bold red]error:[/] ")
        for line in exc.problems:
            err.print(escape(line), highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except DeskpilotError as exc:
        fail(str(exc))
    tasks = ", ".join(f"{name} ({_task_summary(spec)})" for name, spec in policy.tasks.items())
    typer.echo(f"{file}: ok")
    typer.echo(f"tasks: {tasks}")
    typer.echo("systems: " + ", ".join(f"{n} ({s.connector})" for n, s in policy.systems.items()))
    if policy.triage is not None:
        typer.echo(f"triage: {policy.triage.describe()}")
    if policy.documents is not None:
        docs = policy.documents
        typer.echo(
            f"documents: task {docs.task}, {len(docs.destinations)} destinations, "
            f"triage {docs.triage.system}:{docs.triage.create}"
        )
    typer.echo("overrides: " + (", ".join(r.name for r in policy.overrides) or "none"))


# --- serve ---------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Bind address [default: settings, 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: settings, 8000]")] = None,
    log_level: Annotated[
        LogLevel | None, typer.Option(help="Log level [default: settings log_level, info]")
    ] = None,
    log_json: Annotated[
        bool | None,
        typer.Option(
            "--log-json/--log-text",
            help="One JSON object per log line (recommended in production) or text for a terminal "
            "[default: settings log_format, text]",
        ),
    ] = None,
) -> None:
    """Start the gateway on the embedded default (SQLite under DESKPILOT_HOME)."""
    import uvicorn

    from deskpilot.gateway import create_app
    from deskpilot.logs import logging_configured

    s = settings()
    level = log_level.value if log_level is not None else s.log_level
    with logging_configured(s, json_format=log_json, level=level):
        with user_errors():
            _quiet_libraries()
            application = create_app(s)
        # log_config=None: keep the handler configured above; access_log=False: the gateway writes
        # its own access line per request (route template, duration, request id)
        uvicorn.run(
            application,
            host=host or s.host,
            port=port or s.port,
            log_level=level,
            log_config=None,
            access_log=False,
        )


@app.command("version")
def version_cmd() -> None:
    """Print the deskpilot version."""
    from deskpilot import __version__

    typer.echo(__version__)


register_jobs_commands(app)  # `deskpilot worker` and `deskpilot jobs ...` (cli_jobs.py)
register_connectors_commands(app)  # `deskpilot connectors list` (cli_connectors.py)
register_respond_commands(train_app, evaluate_app, bench_app)  # responders (cli_respond.py)
register_documents_commands(app, bench_app)  # classify-docs, bench documents (cli_documents.py)
register_gateway_benches(bench_app)  # bench fuzz, bench load (cli_bench_gateway.py)
register_users_commands(app)  # `deskpilot users ...`: console sign-ins (cli_users.py)


def main() -> None:
    try:
        app()
    except DeskpilotError as exc:  # raised outside a command's own handler
        say(str(exc), prefix="[bold red]error:[/] ")
        sys.exit(2)


if __name__ == "__main__":
    main()
