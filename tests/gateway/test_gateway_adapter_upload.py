"""POST /v1/adapters/{task}: signed uploads register candidates; everything else is refused, unstored."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from gateway_support import Keys, assert_error, auth
from pydantic import SecretStr
from safetensors.numpy import save
from sqlalchemy import select
from typer.testing import CliRunner

from deskpilot.adapters.registry import Registry
from deskpilot.adapters.signing import SIGNATURE_HEADER, sign_adapter
from deskpilot.cli import app as cli_app
from deskpilot.config import Settings, get_settings
from deskpilot.store import AdapterRecord, Database, create_api_key

ACME_KEY = "acme-adapter-signing-key-0123456789"
GLOBEX_KEY = "globex-adapter-signing-key-9876543210"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    keys = {"acme": SecretStr(ACME_KEY), "globex": SecretStr(GLOBEX_KEY)}
    return settings.model_copy(update={"adapter_signing_keys": keys})


@pytest.fixture
def admin(database: Database) -> str:
    with database.session() as s:
        _, plaintext = create_api_key(s, "acme", "ops", scopes=("admin",))
    return plaintext


def adapter_files(task: str = "intent") -> dict[str, bytes]:
    card = {
        "task": task,
        "kind": "classifier",
        "base_model": "all-MiniLM-L6-v2",
        "labels": ["network", "billing"],
    }
    return {
        "adapter_config.json": json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16}).encode(),
        "adapter_model.safetensors": save({"lora_A": np.zeros((8, 4), dtype=np.float32)}),
        "card.json": json.dumps(card).encode(),
    }


def upload(
    client: TestClient,
    key: str,
    files: dict[str, bytes],
    *,
    task: str = "intent",
    signature: str | None = None,
) -> Any:
    headers = auth(key)
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    parts = [(name, (name, data, "application/octet-stream")) for name, data in files.items()]
    return client.post(f"/v1/adapters/{task}", headers=headers, files=parts)


def stored_versions(settings: Settings) -> list[str]:
    registry = Registry(settings.adapters_dir)
    return [
        f"{tenant}/{task}/{card.version}"
        for tenant in registry.tenants()
        for task in registry.tasks(tenant)
        for card in registry.versions(tenant, task)
    ]


def test_signed_upload_registers_a_candidate(
    client: TestClient, keys: Keys, settings: Settings, database: Database, admin: str
) -> None:
    files = adapter_files()
    r = upload(client, keys.acme_write, files, signature=sign_adapter(ACME_KEY, files))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["tenant"] == "acme" and body["task"] == "intent" and body["version"] == "v1"
    assert body["status"] == "candidate" and body["authorized_by"] == "signature"
    assert body["labels"] == ["network", "billing"]
    registry = Registry(settings.adapters_dir)
    assert registry.champion_version("acme", "intent") is None  # not served until promoted
    assert registry.load_path("acme", "intent", "v1").is_dir()
    with database.session() as s:
        rows = list(s.scalars(select(AdapterRecord)))
    assert [(r.task, r.version, r.status) for r in rows] == [("intent", "v1", "candidate")]
    audit = client.get("/v1/audit", headers=auth(admin)).json()["entries"]
    uploaded = [e for e in audit if e["kind"] == "adapter.uploaded"]
    assert uploaded and uploaded[0]["data"]["sha256"] == body["sha256"]
    # the next upload is the next version
    assert upload(client, keys.acme, files, signature=sign_adapter(ACME_KEY, files)).json()["version"] == "v2"


def test_unsigned_upload_is_403(client: TestClient, keys: Keys, settings: Settings) -> None:
    r = upload(client, keys.acme_write, adapter_files())
    error = assert_error(r, 403, "forbidden")
    assert SIGNATURE_HEADER in str(error["hint"]) and "adapters sign" in str(error["hint"])
    assert stored_versions(settings) == []


@pytest.mark.parametrize(
    "signature", ["", "v1=", "v1=" + "0" * 64, "garbage", "v1=" + "g" * 64, "v1=" + "a" * 300]
)
def test_malformed_signature_is_403(
    client: TestClient, keys: Keys, settings: Settings, signature: str
) -> None:
    files = adapter_files()
    headers = {**auth(keys.acme_write), SIGNATURE_HEADER: signature}
    parts = [(n, (n, d, "application/octet-stream")) for n, d in files.items()]
    r = client.post("/v1/adapters/intent", headers=headers, files=parts)
    assert_error(r, 403, "forbidden")
    assert stored_versions(settings) == []


def test_signature_by_another_tenants_key_is_403(client: TestClient, keys: Keys, settings: Settings) -> None:
    files = adapter_files()
    assert_error(upload(client, keys.acme_write, files, signature=sign_adapter(GLOBEX_KEY, files)), 403)
    # and acme's signature does not let globex upload it either
    assert_error(upload(client, keys.globex, files, signature=sign_adapter(ACME_KEY, files)), 403)
    assert stored_versions(settings) == []


@pytest.mark.parametrize("tampered", ["adapter_config.json", "adapter_model.safetensors", "card.json"])
def test_tampered_file_is_403(client: TestClient, keys: Keys, settings: Settings, tampered: str) -> None:
    files = adapter_files()
    signature = sign_adapter(ACME_KEY, files)
    changed = dict(files)
    if tampered == "card.json":
        changed[tampered] = files[tampered].replace(b"billing", b"refunds")
    elif tampered == "adapter_config.json":
        changed[tampered] = files[tampered].replace(b'"r": 8', b'"r": 9')
    else:
        changed[tampered] = save({"lora_A": np.ones((8, 4), dtype=np.float32)})
    assert_error(upload(client, keys.acme_write, changed, signature=signature), 403, "forbidden")
    assert stored_versions(settings) == []


def test_admin_imports_without_a_signature(client: TestClient, admin: str, settings: Settings) -> None:
    r = upload(client, admin, adapter_files())
    assert r.status_code == 201, r.text
    assert r.json()["authorized_by"] == "admin"
    assert stored_versions(settings) == ["acme/intent/v1"]
    kinds = [e["kind"] for e in client.get("/v1/audit", headers=auth(admin)).json()["entries"]]
    assert "adapter.imported" in kinds


def test_read_keys_cannot_upload(client: TestClient, keys: Keys, settings: Settings) -> None:
    files = adapter_files()
    assert_error(upload(client, keys.acme_read, files, signature=sign_adapter(ACME_KEY, files)), 403)
    assert_error(upload(client, keys.revoked, files, signature=sign_adapter(ACME_KEY, files)), 401)
    assert stored_versions(settings) == []


@pytest.mark.parametrize(
    "task",
    [
        "..%2Fx",
        "%2E%2E",
        "..",
        "Intent",
        "a%5Cb",
        "x%00",
        "%2Fetc%2Fpasswd",
        "%D1%96ntent",  # Cyrillic i
        "%EF%BD%89ntent",  # fullwidth i
        "intent%0A",
        "-x",
        "a" * 64,
    ],
)
def test_traversal_and_trick_names_are_4xx(
    client: TestClient, admin: str, settings: Settings, task: str
) -> None:
    files = adapter_files(task="intent")
    r = client.post(
        f"/v1/adapters/{task}",
        headers=auth(admin),
        files=[(n, (n, d, "application/octet-stream")) for n, d in files.items()],
    )
    assert 400 <= r.status_code < 500, (task, r.status_code, r.text)
    assert stored_versions(settings) == []
    assert not [p for p in settings.home.rglob("*") if p.name in ("x", "passwd", "etc", "b")]


@pytest.mark.parametrize(
    "name", ["adapter_model.bin", "pytorch_model.bin", "head.pt", "evil.pkl", "../card.json"]
)
def test_pickle_and_unknown_files_are_refused(
    client: TestClient, admin: str, settings: Settings, name: str
) -> None:
    files = {**adapter_files(), name: b"\x80\x04K\x01."}
    error = assert_error(upload(client, admin, files), 422, "invalid_input")
    assert "not an adapter file" in str(error["message"])
    assert stored_versions(settings) == []


def test_part_named_file_uses_its_filename(client: TestClient, admin: str) -> None:
    files = adapter_files()
    parts = [("file", (n, d, "application/octet-stream")) for n, d in files.items()]
    r = client.post("/v1/adapters/intent", headers=auth(admin), files=parts)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter_model.safetensors": b"\x80\x04K\x01." + b"\0" * 20}, "safetensors"),
        ({"adapter_config.json": b"not json"}, "adapter_config.json"),
        (
            {
                "card.json": json.dumps(
                    {"task": "other", "kind": "classifier", "base_model": "b", "labels": []}
                ).encode()
            },
            "task",
        ),
    ],
)
def test_signed_but_invalid_content_is_422(
    client: TestClient, keys: Keys, settings: Settings, change: dict[str, bytes], message: str
) -> None:
    files = {**adapter_files(), **change}
    r = upload(client, keys.acme_write, files, signature=sign_adapter(ACME_KEY, files))
    error = assert_error(r, 422, "invalid_input")
    assert message in str(error["message"])
    assert stored_versions(settings) == []


def test_missing_file_is_422_for_admins_and_403_for_signers(
    client: TestClient, keys: Keys, admin: str
) -> None:
    files = adapter_files()
    del files["card.json"]
    assert_error(upload(client, admin, files), 422, "invalid_input")
    assert_error(upload(client, keys.acme_write, files, signature="v1=" + "0" * 64), 403)


def test_duplicate_part_is_422(client: TestClient, admin: str) -> None:
    files = adapter_files()
    parts = [(n, (n, d, "application/octet-stream")) for n, d in files.items()]
    parts.append(("card.json", ("card.json", files["card.json"], "application/json")))
    assert_error(client.post("/v1/adapters/intent", headers=auth(admin), files=parts), 422)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b"{}"), ("text/plain", b"x"), ("application/octet-stream", b"\0"), (None, b"")],
)
def test_non_multipart_is_415(client: TestClient, admin: str, content_type: str | None, body: bytes) -> None:
    headers = auth(admin)
    if content_type:
        headers["Content-Type"] = content_type
    assert_error(
        client.post("/v1/adapters/intent", headers=headers, content=body), 415, "unsupported_media_type"
    )


def test_a_text_field_is_400_not_500(client: TestClient, admin: str) -> None:
    r = client.post("/v1/adapters/intent", headers=auth(admin), data={"card.json": "{}"})
    assert 400 <= r.status_code < 500, r.text


def test_upload_larger_than_the_limit_is_413(settings: Settings, database: Database, admin: str) -> None:
    from gateway_support import FakePredictor

    from deskpilot.gateway import create_app

    small = settings.model_copy(update={"adapter_upload_max_bytes": 2048})
    with TestClient(create_app(small, predictor=FakePredictor(), database=database)) as client:
        files = {
            **adapter_files(),
            "adapter_model.safetensors": save({"w": np.zeros(1024, dtype=np.float32)}),
        }
        assert_error(upload(client, admin, files), 413, "payload_too_large")
    assert stored_versions(settings) == []


# --- deskpilot adapters sign ---------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DESKPILOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DESKPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESKPILOT_ENV", "test")
    monkeypatch.setenv("DESKPILOT_ADAPTER_SIGNING_KEYS", json.dumps({"acme": ACME_KEY}))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_signature_is_accepted_by_the_gateway(
    cli_env: None, tmp_path: Path, client: TestClient, keys: Keys
) -> None:
    folder = tmp_path / "my-adapter"
    folder.mkdir()
    for name, data in adapter_files().items():
        (folder / name).write_bytes(data)
    result = CliRunner().invoke(cli_app, ["adapters", "sign", str(folder), "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    signature = result.stdout.strip().splitlines()[-1]
    assert signature.startswith("v1=")
    r = upload(client, keys.acme_write, adapter_files(), signature=signature)
    assert r.status_code == 201, r.text
    # a tenant without a signing key, or a folder that is not an adapter: one error line, exit 2
    result = CliRunner().invoke(cli_app, ["adapters", "sign", str(folder), "--tenant", "globex"])
    assert result.exit_code == 2 and "no adapter signing key" in result.stderr
    result = CliRunner().invoke(cli_app, ["adapters", "sign", str(tmp_path), "--tenant", "acme"])
    assert result.exit_code == 2 and "lacks" in result.stderr
