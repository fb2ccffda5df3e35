"""Garbage in never yields a 5xx: every malformed request gets a 4xx in the JSON error shape."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth

JSON = "application/json"

GARBAGE: list[tuple[str, bytes, str | None]] = [
    ("empty body", b"", JSON),
    ("truncated", b'{"task": "intent", "texts": ["a"', JSON),
    ("trailing comma", b'{"task": "intent", "text": "a",}', JSON),
    ("single quotes", b"{'task': 'intent', 'text': 'a'}", JSON),
    ("null", b"null", JSON),
    ("array", b'["intent", "a"]', JSON),
    ("string", b'"classify this"', JSON),
    ("number", b"42", JSON),
    ("infinity", b'{"task": "intent", "text": "a", "abstain": Infinity}', JSON),
    ("huge exponent", b'{"task": "intent", "text": "a", "version": 1e999999}', JSON),
    ("deep nesting", b"[" * 10_000 + b"]" * 10_000, JSON),
    ("invalid utf-8", b'{"task": "intent", "text": "\xff\xfe\xfa"}', JSON),
    ("nul byte raw", b'{"task": "intent", "text": "a\x00"}', JSON),
    ("texts as object", b'{"task": "intent", "texts": {"0": "a"}}', JSON),
    ("texts of null", b'{"task": "intent", "texts": [null]}', JSON),
    ("nested texts", b'{"task": "intent", "texts": [["a"]]}', JSON),
    ("task as list", b'{"task": ["intent"], "text": "a"}', JSON),
    ("empty task", b'{"task": "", "text": "a"}', JSON),
    ("long task", json.dumps({"task": "t" * 500, "text": "a"}).encode(), JSON),
    ("path task", b'{"task": "../../etc/passwd", "text": "a"}', JSON),
    ("too many texts", json.dumps({"task": "intent", "texts": ["a"] * 2000}).encode(), JSON),
    ("xml", b"<classify><task>intent</task></classify>", "application/xml"),
    ("form", b"task=intent&text=a", "application/x-www-form-urlencoded"),
    ("garbage content type", b'{"task": "intent", "text": "a"}', "\x01;;==/"),
    ("no content type", b'{"task": "intent", "text": "a"}', None),
]


@pytest.mark.parametrize(("name", "content", "content_type"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_no_5xx_for_garbage(
    client: TestClient, keys: Keys, name: str, content: bytes, content_type: str | None
) -> None:
    headers = auth(keys.acme)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post("/v1/classify", content=content, headers=headers)
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
    assert_error(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/v1/classify/../../etc", 404),
        ("GET", "/v1/classify", 405),
        ("DELETE", "/v1/adapters", 405),
        ("PUT", "/healthz", 405),
    ],
)
def test_routing_errors_use_the_shape(client: TestClient, method: str, path: str, status: int) -> None:
    error = assert_error(client.request(method, path), status)
    if status == 405:
        assert error["code"] == "method_not_allowed"
        assert "allowed methods" in str(error["hint"])


def test_body_over_limit_by_content_length(client: TestClient, keys: Keys) -> None:
    content = json.dumps({"task": "intent", "text": "x" * 20_000}).encode()
    response = client.post("/v1/classify", content=content, headers={**auth(keys.acme), "Content-Type": JSON})
    error = assert_error(response, 413, "payload_too_large")
    assert "16,384" in str(error["message"])


def test_body_over_limit_chunked(client: TestClient, keys: Keys) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": "intent", "text": "'
        for _ in range(40):
            yield b"y" * 1000
        yield b'"}'

    headers = {**auth(keys.acme), "Content-Type": JSON}
    response = client.post("/v1/classify", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")


def test_chunked_body_under_limit_works(client: TestClient, keys: Keys) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": "intent", '
        yield b'"text": "vpn"}'

    headers = {**auth(keys.acme), "Content-Type": JSON}
    response = client.post("/v1/classify", content=chunks(), headers=headers)
    assert response.status_code == 200, response.text


def test_oversize_rejected_even_without_auth(client: TestClient) -> None:
    response = client.post("/v1/classify", content=b"x" * 20_000, headers={"Content-Type": JSON})
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("incoming", "echoed"),
    [("abc-123", True), ("trace:1.2_3", True), ("has space", False), ("x" * 200, False), ("", False)],
)
def test_request_id(client: TestClient, incoming: str, echoed: bool) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    rid = response.headers["x-request-id"]
    assert (rid == incoming) is echoed
    assert rid and len(rid) <= 128


def test_request_ids_are_unique(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
