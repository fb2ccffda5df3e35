"""``deskpilot bench fuzz`` and ``deskpilot bench load``: the gateway under hostile and heavy traffic.

Helpers of :mod:`deskpilot.cli` are imported inside the functions: that module registers this one.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last stdout line.")]
OutOpt = Annotated[Path | None, typer.Option(help="Folder for the JSON [default: evaluation/results]")]
MarkdownOpt = Annotated[Path | None, typer.Option(help="Markdown to update [default: evaluation/RESULTS.md]")]


def register(bench_app: typer.Typer) -> None:
    bench_app.command("fuzz")(bench_fuzz_cmd)
    bench_app.command("load")(bench_load_cmd)


def bench_fuzz_cmd(
    cases: Annotated[int, typer.Option(min=1, help="Generated requests, over every operation.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the generator (same seed, same requests).")] = 0,
    out: OutOpt = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Schemathesis against /openapi.json, in-process: no 5xx, nothing outside the schema."""
    from deskpilot.cli import print_figures, progress_bar, say, user_errors

    with user_errors():
        from deskpilot.evaluation.bench_fuzz import RESULTS_DIR, RESULTS_MD, FuzzConfig, run_fuzz, summary

        config = FuzzConfig(cases=cases, seed=seed)
        with progress_bar(enabled=sys.stderr.isatty() or not as_json) as progress:
            results = run_fuzz(
                config,
                out_dir=out or RESULTS_DIR,
                markdown=markdown or RESULTS_MD,
                command="deskpilot " + shlex.join(sys.argv[1:]),
                log=say,
                progress=progress,
            )
    print_figures("fuzz", summary(results), as_json=as_json)


def bench_load_cmd(
    seconds: Annotated[float, typer.Option(min=0.5, help="Seconds of load.")] = 60.0,
    concurrency: Annotated[
        int, typer.Option(min=1, max=512, help="Clients per endpoint (classify, webhook), closed loop.")
    ] = 8,
    workers: Annotated[
        int, typer.Option(min=0, max=64, help="Embedded workers processing the accepted tickets meanwhile.")
    ] = 0,
    out: OutOpt = None,
    markdown: MarkdownOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify and signed webhooks at once against `deskpilot serve` on loopback (not in CI)."""
    from deskpilot.cli import print_figures, say, user_errors

    with user_errors():
        from deskpilot.evaluation.bench_load import RESULTS_DIR, RESULTS_MD, LoadConfig, run_load, summary

        config = LoadConfig(seconds=seconds, concurrency=concurrency, workers=workers)
        results = run_load(
            config,
            out_dir=out or RESULTS_DIR,
            markdown=markdown or RESULTS_MD,
            command="deskpilot " + shlex.join(sys.argv[1:]),
            log=say,
        )
    print_figures("load", summary(results), as_json=as_json)
