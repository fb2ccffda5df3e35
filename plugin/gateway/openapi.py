"""Every error an operation can answer is declared in ``/openapi.json``, in the one error shape.

Routes declare the errors of their own logic with :func:`error_responses`; the errors that come
from the layers around a route are added here to every operation they can reach, read from the
operation itself: 500 (the last-resort handler) everywhere; 422 wherever there is something to
validate, with our error body instead of FastAPI's ``HTTPValidationError`` (our handler never
sends that shape); 400, 413 and 415 where a body is sent; 401, 403, 429 and 503 where an API key
is needed (the key is looked up in the database, and rate-limited); 401, 404, 409 (the inbox
refuses a delivery id reused for other content), 429 and 503 on webhooks. An error a route
declares with a description alone gets the error body. Clients (and the schema fuzzer) can then
rely on the document: a status it does not list is a bug.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from deskpilot.gateway.errors import ErrorResponse

ERROR_REF = "#/components/schemas/ErrorResponse"
FASTAPI_422 = "#/components/schemas/HTTPValidationError"
DESCRIPTIONS = {
    400: "Malformed request (for example a body that is not valid JSON)",
    401: "Missing, wrong or revoked credentials",
    403: "The API key lacks the scope this endpoint needs",
    404: "No such resource",
    409: "The resource is not in a state that allows this",
    413: "Request body larger than the configured limit",
    415: "Request body of a media type this endpoint does not take",
    422: "The request is well-formed but its fields are invalid",
    429: "Too many requests for this API key or webhook source; retry after Retry-After seconds",
    500: "Unexpected server error; details are in the server log under the request id",
    503: "Models or database not ready yet; retry later",
}
BODY_METHODS = frozenset({"post", "put", "patch"})


def statuses_for(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses the layers around an operation can answer."""
    codes = {500}
    takes_body = method in BODY_METHODS or "requestBody" in operation
    if takes_body or operation.get("parameters"):
        codes.add(422)
    if takes_body:
        codes |= {400, 413, 415}
    if operation.get("security"):
        codes |= {401, 403, 429, 503}
    if path.startswith("/webhooks/"):
        codes |= {401, 404, 409, 429, 503}  # 409: a delivery id reused for other content
    return codes


def _error_body() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ERROR_REF}}}


def _schema_ref(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def declare(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the errors of :func:`statuses_for` to every operation of ``schema`` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorResponse" not in components:
        defs = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(defs.pop("$defs", {}))
        components["ErrorResponse"] = defs
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for code in statuses_for(path, method, operation):
                declared = responses.get(str(code))
                if declared is None or _schema_ref(declared) == FASTAPI_422:
                    responses[str(code)] = {"description": DESCRIPTIONS[code], "content": _error_body()}
            for code, declared in responses.items():
                if code[:1] in ("4", "5") and not declared.get("content"):  # a description alone
                    declared["content"] = _error_body()
            operation["responses"] = dict(sorted(responses.items()))
    if f'"{FASTAPI_422}"' not in json.dumps(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def declare_error_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` list, for every operation, the errors the app around it can answer."""
    generate = app.openapi
    done: list[dict[str, Any]] = []  # the schema completed last (FastAPI rebuilds it when routes change)

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not done or done[0] is not schema:
            done[:] = [declare(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
