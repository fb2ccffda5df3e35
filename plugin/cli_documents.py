"""``deskpilot classify-docs PATH...`` and ``deskpilot bench documents``.

Helpers of :mod:`deskpilot.cli` are imported inside the functions: that module registers this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
HIDDEN = (".", "~")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("classify-docs")(classify_docs_cmd)
    bench_app.command("documents")(bench_documents_cmd)


def walk(paths: list[Path]) -> Iterator[Path]:
    """The files named, and every file under the folders named (hidden ones skipped), sorted."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(HIDDEN) for part in p.parts)
            )
        elif path.is_file():
            yield path
        else:
            from deskpilot.errors import InputDataError

            raise InputDataError(f"{path}: no such file or folder")


def classify_docs_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (walked recursively).")],
    task: Annotated[str, typer.Option(help="The doctype classifier task.")] = "doctype",
    tenant: Annotated[
        str | None, typer.Option(help="Tenant the adapter belongs to [default: settings]")
    ] = None,
    classify: Annotated[
        bool, typer.Option(help="Classify (needs a trained task); else only extract.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Extract, classify and read the key fields of documents on disk (nothing is stored or sent)."""
    from deskpilot.cli import (
        _engine,
        _quiet_libraries,
        _tenant,
        emit_json,
        progress_bar,
        say,
        settings,
        user_errors,
    )
    from deskpilot.documents.classify_text import classification_text
    from deskpilot.documents.extract import extract
    from deskpilot.documents.fields import extract_fields
    from deskpilot.documents.model import DocumentRejected, ExtractedDocument
    from deskpilot.errors import AdapterNotFoundError
    from deskpilot.jobs.document_intake import limits_from

    s = settings()
    tenant = _tenant(tenant)
    rows: list[dict[str, Any]] = []
    with user_errors():
        files = list(walk(paths))
        limits = limits_from(s)
        engine = None
        if classify:
            _quiet_libraries()
            engine = _engine()
        with progress_bar(not as_json) as progress:
            for i, path in enumerate(files, 1):
                progress("documents", i - 1, len(files))
                try:
                    parts = extract(path.read_bytes(), path.name, limits)
                except DocumentRejected as exc:
                    rows.append(
                        {"file": str(path), "state": "rejected", "reason": exc.reason, "message": exc.message}
                    )
                    continue
                for part in parts:
                    if not isinstance(part, ExtractedDocument):
                        rows.append(
                            {
                                "file": f"{path}:{part.filename}",
                                "state": "rejected",
                                "reason": part.reason,
                                "message": part.message,
                            }
                        )
                        continue
                    row: dict[str, Any] = {
                        "file": str(path) if part.depth == 0 else f"{path}:{part.filename}",
                        "state": "ok",
                        "media_type": part.media_type,
                        "pages": part.pages,
                        "method": part.method,
                        "sha256": part.sha256,
                    }
                    label = None
                    if engine is not None:
                        try:
                            pred = engine.predict(
                                tenant, task, [classification_text(part.text, part.title_lines)]
                            )[0]
                        except AdapterNotFoundError as exc:
                            say(
                                f"{exc.message}; showing fields only "
                                f"(train one: deskpilot train classifier --task {task})"
                            )
                            engine = None
                        else:
                            label = None if pred.abstained else pred.label
                            row.update(
                                doctype=pred.label,
                                score=round(float(pred.score), 4),
                                abstained=pred.abstained,
                            )
                    row["fields"] = {n: f.as_dict() for n, f in extract_fields(part.text, label).items()}
                    rows.append(row)
            progress("documents", len(files), len(files))
    if as_json:
        emit_json({"task": task, "documents": rows})
        return
    _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="documents")
    for column in ("file", "type", "score", "fields / reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["state"] == "rejected":
            table.add_row(row["file"], "[red]rejected[/]", "", f"{row['reason']}: {row['message']}")
            continue
        kind = row.get("doctype") or "-"
        if row.get("abstained"):
            kind = f"[yellow]{kind}?[/] (abstained)"
        score = f"{row['score']:.2f}" if "score" in row else ""
        fields = ", ".join(f"{n}={f['value']}" for n, f in row["fields"].items())
        table.add_row(row["file"], kind, score, fields)
    Console().print(table)


def bench_documents_cmd(
    generated_train: Annotated[int, typer.Option(min=8, help="Generated training documents.")] = 200,
    generated_test: Annotated[int, typer.Option(min=8, help="Generated test documents.")] = 200,
    max_minutes: Annotated[float, typer.Option(min=0.1, help="Training budget per model.")] = 10.0,
    out: Annotated[Path | None, typer.Option(help="Folder for documents.json")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Markdown to update")] = None,
    as_json: JsonOpt = False,
) -> None:
    """company_documents accuracy; generated PDFs/DOCX: classification, per-field exact match, docs/s."""
    from deskpilot.cli import _quiet_libraries, print_figures, say, settings, user_errors

    s = settings()
    with user_errors():
        _quiet_libraries()
        from deskpilot.evaluation import bench_documents

        cfg = bench_documents.DocumentsBenchConfig(
            generated_train=generated_train, generated_test=generated_test, max_minutes=max_minutes
        )
        figures = bench_documents.run(cfg, s, log=say, out_dir=out, markdown=markdown)
    headline = {
        k: figures[k]
        for k in ("company_documents_accuracy", "generated_classification_accuracy", "docs_per_s")
    }
    headline.update({f"{k}_exact_match": v["exact_match"] for k, v in figures["field_exact_match"].items()})
    headline["requirements"] = figures["requirements"]
    print_figures("documents", figures if as_json else headline, as_json=as_json)
