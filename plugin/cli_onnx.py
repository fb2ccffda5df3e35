"""``deskpilot adapters export-onnx``: one adapter merged into its base, for ONNX Runtime."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer


def register(adapters_app: typer.Typer) -> None:
    adapters_app.command("export-onnx")(export_onnx_cmd)


def export_onnx_cmd(
    task: Annotated[str, typer.Option(help="Task name.")],
    version: Annotated[str | None, typer.Option(help="Version [default: the champion].")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant the adapter belongs to [default: settings]")
    ] = None,
    int8: Annotated[bool, typer.Option(help="Also write a dynamic int8 model, checked against fp32.")] = True,
    check_data: Annotated[
        Path | None,
        typer.Option(help="Labelled texts to check int8 on [default: a sample of the training rows]."),
    ] = None,
    text_column: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_column: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")
    ] = False,
) -> None:
    """Export an adapter merged into its base as ONNX (fp32, and int8 if it keeps accuracy).

    The int8 model is kept only as a checked candidate: its accuracy loss against fp32 is
    measured and recorded in onnx/export.json, and it is refused at load time when the loss
    exceeds 0.5 points.
    """
    from deskpilot.cli import _quiet_libraries, _registry, _tenant, emit_json, say, user_errors
    from deskpilot.dataio import read_rows

    tenant = _tenant(tenant)
    with user_errors():
        _quiet_libraries()
        from deskpilot.adapters.onnx_export import MAX_INT8_LOSS_POINTS, export_onnx, training_sample

        registry = _registry()
        card = registry.card(tenant, task, version)
        folder = registry.path(tenant, task, card.version)
        texts: list[str] = []
        labels: list[str] | None = None
        if check_data is not None:
            rows = read_rows(check_data, text_column=text_column, label_column=label_column)
            texts, labels = rows.texts, rows.labels
        elif int8:
            texts = training_sample(folder)
        report = export_onnx(
            folder,
            card,
            int8=int8,
            check_texts=texts,
            check_labels=labels,
        )
    if as_json:
        emit_json(asdict(report))
        return
    say(f"{task} {card.version}: fp32 model at {report.fp32_file}")
    if report.int8_file is None:
        return
    if report.int8_ok is None:
        say(f"int8 model at {report.int8_file} is unchecked (no check texts): give --check-data")
    elif report.int8_ok:
        say(
            f"int8 model at {report.int8_file}: {report.int8_loss_points:+.2f} points vs fp32 "
            f"on {report.checked_texts} texts (limit {MAX_INT8_LOSS_POINTS}): usable"
        )
    else:
        say(
            f"int8 model at {report.int8_file} loses {report.int8_loss_points:.2f} points vs fp32 "
            f"on {report.checked_texts} texts (limit {MAX_INT8_LOSS_POINTS}): refused at load; use fp32"
        )
