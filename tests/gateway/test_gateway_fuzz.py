"""The schema fuzzer (``deskpilot bench fuzz``) on a CI-sized sample, and the OpenAPI error contract.

The sample runs the bench's own harness: every operation of ``/openapi.json``, valid and invalid
requests, keys of each scope, signed webhooks; it must find no 5xx and no response outside the
schema. A planted broken route shows the harness does catch both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from deskpilot.evaluation.bench_fuzz import FuzzConfig, fuzz, fuzz_target, run_fuzz
from deskpilot.evaluation.report import markers

SAMPLE = 250


def test_a_sample_of_generated_requests_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    results = run_fuzz(
        FuzzConfig(cases=SAMPLE, seed=8),
        out_dir=tmp_path,
        markdown=tmp_path / "RESULTS.md",
        command="pytest",
    )
    samples = json.dumps(results["failure_samples"], indent=1)
    assert results["server_errors"] == 0, samples
    assert results["schema_violations"] == 0, samples
    assert results["cases"] == SAMPLE
    # every operation had its share, and not only refusals came back
    assert len(results["cases_by_operation"]) == results["operations"] >= 20
    assert min(results["cases_by_operation"].values()) >= SAMPLE // results["operations"] - 1
    statuses = {int(s) for s in results["responses_by_status"]}
    assert {200, 401, 404, 422} <= statuses, statuses
    saved = json.loads((tmp_path / "fuzz.json").read_text())
    assert {saved[k] for k in ("server_errors", "schema_violations")} == {0}
    assert saved["cases"] == SAMPLE and saved["machine"] and saved["command"] == "pytest"
    start, end = markers("fuzz")
    text = (tmp_path / "RESULTS.md").read_text()
    assert start in text and end in text and f"| {SAMPLE:,} |" in text


def _plant_broken_routes(app: FastAPI) -> None:
    async def crash(limit: int = 1) -> dict[str, str]:
        raise RuntimeError("planted bug")

    async def teapot(limit: int = 1) -> Any:
        return JSONResponse({"tea": True}, status_code=418)

    app.add_api_route("/v1/planted/crash", crash, methods=["GET"])
    app.add_api_route("/v1/planted/teapot", teapot, methods=["GET"])


def test_the_harness_counts_server_errors_and_undeclared_statuses(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        _plant_broken_routes(target.app)
        outcome = fuzz(target, FuzzConfig(cases=150, seed=3))
    crashed = outcome.by_operation["GET /v1/planted/crash"]
    teapots = outcome.by_operation_status.get("GET /v1/planted/teapot", {}).get(418, 0)
    assert crashed > 0 and teapots > 0
    assert outcome.server_errors >= 1
    assert outcome.schema_violations >= teapots
    kinds = {s["kind"] for s in outcome.samples}
    assert kinds & {"ServerError", "TransportError"} and "UndefinedStatusCode" in kinds


def test_every_operation_declares_the_errors_the_app_around_it_can_answer(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        schema = target.app.openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            if operation.get("security"):
                assert {"401", "403", "429", "503"} <= set(responses), (method, path)
            if method == "post":
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
            for code, response in responses.items():
                if code.startswith(("4", "5")) and path != "/readyz":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, code)


def test_the_cli_writes_the_figures_and_prints_them_as_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deskpilot.cli import app

    args = [
        "bench",
        "fuzz",
        "--cases",
        "40",
        "--seed",
        "2",
        "--out",
        tmp_path,
        "--markdown",
        tmp_path / "R.md",
    ]
    result = CliRunner().invoke(app, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["cases"] == 40 and printed["server_errors"] == 0 and printed["schema_violations"] == 0
    assert printed["requirements"] == {"server_errors": True, "schema_violations": True, "cases": True}
    assert json.loads((tmp_path / "fuzz.json").read_text())["command"].startswith("deskpilot ")


def test_a_route_added_after_the_first_schema_gets_its_errors_declared_too(tmp_path: Path) -> None:
    with fuzz_target(tmp_path) as target:
        first = target.app.openapi()
        assert target.app.openapi() is first

        async def late(limit: int = 1) -> dict[str, int]:
            return {"limit": limit}

        target.app.add_api_route("/v1/late", late, methods=["GET"])
        rebuilt = target.app.openapi()
    assert set(rebuilt["paths"]["/v1/late"]["get"]["responses"]) == {"200", "422", "500"}
    assert "HTTPValidationError" not in rebuilt["components"]["schemas"]
