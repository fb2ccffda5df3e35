"""Tenancy through every route: tenant B's credentials never reach tenant A's objects.

Two tenants, acme (A) and globex (B), each with tickets, decisions, jobs (one dead), documents,
predictions, feedback, knowledge entries, adapters, API keys, audit entries and webhook secrets.
Every route of the app (read from ``app.routes``, so a new route without a case here fails
:func:`test_every_route_has_a_tenancy_case`) is attacked with B's credentials:

* routes naming an object answer 404 or 403 for A's objects, and A's objects stay as they were;
* listing routes answer 200 with none of A's objects in them;
* creating routes store under B whatever the body claims, and never replay A's answers;
* webhooks signed with B's secret on A's path answer 401 and store nothing for A (the same
  request signed with A's secret is accepted, so the refusal is the secret's doing).

Never a 2xx for A's objects, never a 5xx. Tenant-free routes are listed in :data:`TENANT_FREE`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from gateway_support import FakePredictor, assert_error, auth
from pydantic import SecretStr
from safetensors.numpy import save
from sqlalchemy import func, select

from deskpilot.adapters.registry import Registry
from deskpilot.adapters.signing import SIGNATURE_HEADER, sign_adapter
from deskpilot.config import Settings
from deskpilot.connectors.generic.verify import sign as sign_generic
from deskpilot.connectors.jira.verify import sign as sign_jira
from deskpilot.connectors.slack.verify import sign as sign_slack
from deskpilot.gateway import create_app
from deskpilot.store import ApiKey, Database, authenticate_key, create_api_key, list_api_keys
from deskpilot.store.knowledge import add_entries, get_entry
from deskpilot.store.models import DocumentRecord, FeedbackRecord, JobRecord, TicketRecord
from deskpilot.store.workflow import get_ticket, record_decisions
from deskpilot.types import KnowledgeItem, Prediction, RouteDecision

# Routes with no tenant data, and why. Anything else needs a case in CASES.
TENANT_FREE: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe: no data",
    ("GET", "/readyz"): "readiness probe: database and model state, no tenant data",
    (
        "GET",
        "/metrics",
    ): "Prometheus counters aggregated over tenants (no ids, no texts); see the metrics tests",
    ("GET", "/openapi.json"): "the API's schema",
    ("GET", "/docs"): "Swagger UI page",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI helper page",
}
# The review console signs people in with sessions, not API keys; its own tests (tests/console)
# cover its tenancy. Listed by prefix so console pages need no edit here.
TENANT_FREE_PREFIXES: dict[str, str] = {"/console": "review console: session auth, tested in tests/console"}

SECRETS = {"acme": "acme-webhook-secret-0123456789", "globex": "globex-webhook-secret-9876543210"}
SIGNING = {"acme": "acme-adapter-signing-key-01234", "globex": "globex-adapter-signing-key-98765"}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, including mounts and the routers' routes."""
    found: set[tuple[str, str]] = set()
    for context in iter_route_contexts(app.routes):
        path = context.path
        if path is None:
            continue
        methods = context.methods or {"*"}
        found |= {(m, path) for m in methods if m != "HEAD"}
    return found


def tenant_free(route: tuple[str, str]) -> bool:
    return route in TENANT_FREE or any(
        route[1] == p or route[1].startswith(p + "/") for p in TENANT_FREE_PREFIXES
    )


# --- the two tenants' data ------------------------------------------------------------------------


@dataclass
class Tenant:
    slug: str
    admin: str
    marker: str  # a string in every text this tenant stores, to look for in other tenants' answers
    ticket_id: int = 0
    replay_ticket_id: int = 0
    job_id: int = 0
    dead_job_id: int = 0
    decision_id: int = 0
    prediction_id: int = 0
    prediction_text: str = ""
    document_id: int = 0
    key_id: int = 0
    key_prefix: str = ""
    job_ids: set[int] = field(default_factory=set)
    ticket_ids: set[int] = field(default_factory=set)


@dataclass
class World:
    client: TestClient
    database: Database
    settings: Settings
    predictor: FakePredictor
    a: Tenant
    b: Tenant

    def counts(self, tenant: Tenant) -> dict[str, int]:
        from deskpilot.store import get_tenant

        with self.database.session() as s:
            row = get_tenant(s, tenant.slug)
            assert row is not None
            return {
                model.__tablename__: int(
                    s.scalar(select(func.count()).select_from(model).where(model.tenant_id == row.id)) or 0
                )
                for model in (TicketRecord, JobRecord, DocumentRecord, FeedbackRecord)
            }

    def versions(self, tenant: Tenant) -> list[str]:
        registry = Registry(self.settings.adapters_dir)
        return [
            f"{t}:{c.version}" for t in registry.tasks(tenant.slug) for c in registry.versions(tenant.slug, t)
        ]


def adapter_files(task: str, marker: str) -> dict[str, bytes]:
    card = {"task": task, "kind": "classifier", "base_model": "tiny", "labels": [marker]}
    return {
        "adapter_config.json": json.dumps({"peft_type": "LORA", "r": 4}).encode(),
        "adapter_model.safetensors": save({"lora_A": np.zeros((4, 2), dtype=np.float32)}),
        "card.json": json.dumps(card).encode(),
    }


def multipart(files: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(name, (name, data, "application/octet-stream")) for name, data in files.items()]


def _seed(client: TestClient, database: Database, settings: Settings, tenant: Tenant) -> None:
    h = auth(tenant.admin)
    m = tenant.marker
    r = client.post(
        "/v1/tickets",
        json={"subject": f"VPN {m}", "body": f"the vpn drops {m}", "requester": f"{m}@example.com"},
        headers={**h, "Idempotency-Key": f"key-{tenant.slug}"},
    )
    assert r.status_code == 202, r.text
    tenant.ticket_id, tenant.job_id = r.json()["ticket_id"], r.json()["job_id"]
    tenant.replay_ticket_id = tenant.ticket_id
    r = client.post("/v1/tickets", json={"subject": f"second {m}", "body": f"invoice {m}"}, headers=h)
    tenant.dead_job_id = r.json()["job_id"]
    tenant.ticket_ids = {tenant.ticket_id, r.json()["ticket_id"]}
    tenant.prediction_text = f"my vpn is down {m}"
    r = client.post("/v1/classify", json={"task": "intent", "text": tenant.prediction_text}, headers=h)
    assert r.status_code == 200, r.text
    tenant.prediction_id = r.json()["results"][0]["prediction_id"]
    r = client.post(
        "/v1/documents", headers=h, files=[("file", ("note.txt", f"Invoice 77 {m}".encode(), "text/plain"))]
    )
    assert r.status_code == 202, r.text
    tenant.document_id = r.json()["files"][0]["document_id"]
    files = adapter_files("intent", m)
    r = client.post(
        "/v1/adapters/intent",
        headers={**h, SIGNATURE_HEADER: sign_adapter(SIGNING[tenant.slug], files)},
        files=multipart(files),
    )
    assert r.status_code == 201, r.text
    raw = json.dumps(
        {"type": "ticket", "ticket": {"subject": f"hook {m}", "body": f"from the shop {m}"}}
    ).encode()
    r = client.post(
        f"/webhooks/{tenant.slug}/generic/shop",
        content=raw,
        headers={"Content-Type": "application/json", **sign_generic(SECRETS[tenant.slug], raw)},
    )
    assert r.status_code == 202, r.text
    tenant.ticket_ids.add(r.json()["ticket_id"])
    with database.session() as s:
        ticket = get_ticket(s, _tenant_id(s, tenant.slug), tenant.ticket_id)
        assert ticket is not None
        prediction = Prediction(
            label="network", score=0.9, abstained=False, alternatives=(), task="intent", adapter_version="v1"
        )
        decision = RouteDecision(task="intent", label="network", destination="it", abstained=False)
        ids, _ = record_decisions(s, ticket, [decision], {"intent": prediction}, [], {}, actor="test")
        tenant.decision_id = ids[0]
        add_entries(
            s,
            tenant.slug,
            [
                KnowledgeItem(
                    source_id="kb-1",
                    question=f"vpn {m}",
                    answer=f"restart it {m}",
                    ticket_id=ticket.id,
                    embedding=np.ones(4, dtype=np.float32).tobytes(),
                    embedding_model="test",
                )
            ],
        )
        dead = s.get(JobRecord, tenant.dead_job_id)
        assert dead is not None
        dead.state = "dead"
        tenant.job_ids = set(s.scalars(select(JobRecord.id).where(JobRecord.tenant_id == ticket.tenant_id)))
    r = client.post(
        "/v1/feedback",
        json={
            "ticket_id": tenant.ticket_id,
            "task": "intent",
            "label": "billing",
            "author": f"{m}@example.com",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    with database.session() as s:
        keys = list_api_keys(s, tenant.slug)
        tenant.key_id, tenant.key_prefix = keys[0].id, keys[0].prefix


def _tenant_id(session: Any, slug: str) -> int:
    from deskpilot.store import get_tenant

    row = get_tenant(session, slug)
    assert row is not None
    return row.id


@pytest.fixture
def world(settings: Settings, database: Database) -> Iterator[World]:
    settings = settings.model_copy(
        update={
            "webhook_secrets": {k: SecretStr(v) for k, v in SECRETS.items()},
            "adapter_signing_keys": {k: SecretStr(v) for k, v in SIGNING.items()},
            "max_body_bytes": 64_000,
        }
    )
    predictor = FakePredictor()
    with database.session() as s:
        a_admin = create_api_key(s, "acme", "a-admin", scopes=("admin",))[1]
        b_admin = create_api_key(s, "globex", "b-admin", scopes=("admin",))[1]
    a = Tenant("acme", a_admin, f"acme{uuid.uuid4().hex[:10]}")
    b = Tenant("globex", b_admin, f"globex{uuid.uuid4().hex[:10]}")
    with TestClient(create_app(settings, predictor=predictor, database=database)) as client:
        _seed(client, database, settings, a)
        _seed(client, database, settings, b)
        predictor.calls.clear()
        yield World(client, database, settings, predictor, a, b)


# --- what the answers must be ---------------------------------------------------------------------


def denied(response: Any) -> None:
    """403 or 404 in the one error shape: never 2xx, never 5xx."""
    assert response.status_code in (403, 404), (response.status_code, response.text)
    assert_error(response, response.status_code)


def refused_webhook(response: Any) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    assert_error(response, 401)


def no_trace_of(world: World, victim: Tenant, response: Any) -> None:
    assert response.status_code == 200, response.text
    assert victim.marker not in response.text
    assert victim.key_prefix not in response.text


Case = Callable[[World], None]


def _ticket_read(w: World) -> None:
    before = w.counts(w.a)
    for tid in w.a.ticket_ids:
        denied(w.client.get(f"/v1/tickets/{tid}", headers=auth(w.b.admin)))
    assert w.counts(w.a) == before


def _ticket_audit(w: World) -> None:
    for tid in w.a.ticket_ids:
        denied(w.client.get(f"/v1/tickets/{tid}/audit", headers=auth(w.b.admin)))


def _audit(w: World) -> None:
    r = w.client.get("/v1/audit?limit=1000", headers=auth(w.b.admin))
    no_trace_of(w, w.a, r)
    assert not {e.get("ticket_id") for e in r.json()["entries"]} & w.a.ticket_ids


def _ticket_create(w: World) -> None:
    before = w.counts(w.a)
    # A's Idempotency-Key and A's very body: B gets a ticket of its own, never A's answer replayed
    m = w.a.marker
    r = w.client.post(
        "/v1/tickets",
        json={"subject": f"VPN {m}", "body": f"the vpn drops {m}", "requester": f"{m}@example.com"},
        headers={**auth(w.b.admin), "Idempotency-Key": "key-acme"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["duplicate"] is False and r.json()["ticket_id"] not in w.a.ticket_ids
    # a body claiming A's tenant is refused (unknown fields are not silently used)
    r = w.client.post(
        "/v1/tickets", json={"subject": "x", "body": "y", "tenant": "acme"}, headers=auth(w.b.admin)
    )
    assert r.status_code in (202, 422), r.text
    if r.status_code == 202:
        denied(w.client.get(f"/v1/tickets/{r.json()['ticket_id']}", headers=auth(w.a.admin)))
    assert w.counts(w.a) == before


def _classify(w: World) -> None:
    # globex's "priority" adapter is out of acme's reach; every engine call is for the caller's tenant
    denied(
        w.client.post("/v1/classify", json={"task": "priority", "text": "urgent"}, headers=auth(w.a.admin))
    )
    r = w.client.post("/v1/classify", json={"task": "intent", "text": "vpn"}, headers=auth(w.b.admin))
    assert r.status_code == 200
    assert r.json()["results"][0]["label"] in ("hr", "it")  # globex's labels, not acme's
    assert {call[0] for call in w.predictor.calls} == {"globex"}


def _adapters_list(w: World) -> None:
    r = w.client.get("/v1/adapters", headers=auth(w.b.admin))
    assert r.status_code == 200
    assert {a["tenant"] for a in r.json()["adapters"]} == {"globex"}
    assert w.predictor.adapter_calls == ["globex"]


def _adapter_upload(w: World) -> None:
    before = w.versions(w.a)
    write = _write_key(w, w.b)
    files = adapter_files("intent", "x")
    # A's signature does not authorize B, and B's uploads land in B's registry only
    denied(
        w.client.post(
            "/v1/adapters/intent",
            headers={**auth(write), SIGNATURE_HEADER: sign_adapter(SIGNING["acme"], files)},
            files=multipart(files),
        )
    )
    r = w.client.post("/v1/adapters/intent", headers=auth(w.b.admin), files=multipart(files))
    assert r.status_code == 201 and r.json()["tenant"] == "globex"
    assert w.versions(w.a) == before


def _write_key(w: World, tenant: Tenant) -> str:
    with w.database.session() as s:
        return create_api_key(s, tenant.slug, "writer", scopes=("write",))[1]


def _generic_webhook(w: World) -> None:
    before = w.counts(w.a)
    raw = json.dumps({"type": "ticket", "ticket": {"subject": "s", "body": "b"}}).encode()
    url = "/webhooks/acme/generic/shop"
    headers = {"Content-Type": "application/json", **sign_generic(SECRETS["globex"], raw)}
    refused_webhook(w.client.post(url, content=raw, headers=headers))
    assert w.counts(w.a) == before
    good = {"Content-Type": "application/json", **sign_generic(SECRETS["acme"], raw)}
    assert w.client.post(url, content=raw, headers=good).status_code == 202


def _document_upload(w: World) -> None:
    before = w.counts(w.a)
    r = w.client.post(
        "/v1/documents",
        headers=auth(w.b.admin),
        files=[("file", ("a.txt", b"Invoice 9 for acme", "text/plain"))],
        data={"metadata": json.dumps({"tenant": "acme", "tenant_id": 1})},
    )
    assert r.status_code == 202, r.text
    denied(w.client.get(f"/v1/documents/{r.json()['files'][0]['document_id']}", headers=auth(w.a.admin)))
    assert w.counts(w.a) == before


def _documents_list(w: World) -> None:
    r = w.client.get("/v1/documents?limit=200", headers=auth(w.b.admin))
    no_trace_of(w, w.a, r)
    assert w.a.document_id not in {d["id"] for d in r.json()["documents"]}


def _document_read(w: World) -> None:
    denied(w.client.get(f"/v1/documents/{w.a.document_id}", headers=auth(w.b.admin)))


def _document_original(w: World) -> None:
    denied(w.client.get(f"/v1/documents/{w.a.document_id}/original", headers=auth(w.b.admin)))


def _email_webhook(w: World) -> None:
    before = w.counts(w.a)
    raw = b"From: x@example.com\r\nTo: ap@acme.example\r\nSubject: Invoice\r\n\r\nInvoice 1 attached.\r\n"
    headers = {"Content-Type": "message/rfc822", **sign_generic(SECRETS["globex"], raw)}
    refused_webhook(w.client.post("/webhooks/acme/email", content=raw, headers=headers))
    assert w.counts(w.a) == before
    good = {"Content-Type": "message/rfc822", **sign_generic(SECRETS["acme"], raw)}
    assert w.client.post("/webhooks/acme/email", content=raw, headers=good).status_code == 202


def _connector_webhook(w: World) -> None:
    before = w.counts(w.a)
    raw = json.dumps({"webhookEvent": "jira:issue_created", "timestamp": int(time.time() * 1000)}).encode()
    refused_webhook(
        w.client.post("/webhooks/acme/jira", content=raw, headers=sign_jira(SECRETS["globex"], raw))
    )
    assert w.counts(w.a) == before
    control = w.client.post("/webhooks/acme/jira", content=raw, headers=sign_jira(SECRETS["acme"], raw))
    assert control.status_code != 401 and control.status_code < 500, control.text


def _connector_webhook_route(w: World) -> None:
    raw = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    headers = {"Content-Type": "application/json", **sign_slack(SECRETS["globex"], raw)}
    r = w.client.post("/webhooks/acme/slack/events", content=raw, headers=headers)
    refused_webhook(r)
    assert "c-123" not in r.text
    good = {"Content-Type": "application/json", **sign_slack(SECRETS["acme"], raw)}
    control = w.client.post("/webhooks/acme/slack/events", content=raw, headers=good)
    assert control.status_code == 200 and "c-123" in control.text


def _feedback(w: World) -> None:
    before = w.counts(w.a)
    h = auth(w.b.admin)
    base = {"task": "intent", "label": "stolen", "author": "mallory"}
    denied(w.client.post("/v1/feedback", json={**base, "ticket_id": w.a.ticket_id}, headers=h))
    denied(w.client.post("/v1/feedback", json={**base, "decision_id": w.a.decision_id}, headers=h))
    body = {**base, "prediction_id": w.a.prediction_id, "text": w.a.prediction_text}
    denied(w.client.post("/v1/feedback", json=body, headers=h))
    assert w.counts(w.a) == before


def _jobs_list(w: World) -> None:
    r = w.client.get("/v1/jobs?limit=500", headers=auth(w.b.admin))
    no_trace_of(w, w.a, r)
    assert not {j["id"] for j in r.json()["jobs"]} & w.a.job_ids
    dead = w.client.get("/v1/jobs?state=dead", headers=auth(w.b.admin)).json()["jobs"]
    assert w.a.dead_job_id not in {j["id"] for j in dead}


def _job_read(w: World) -> None:
    for job_id in (w.a.job_id, w.a.dead_job_id):
        denied(w.client.get(f"/v1/jobs/{job_id}", headers=auth(w.b.admin)))


def _job_retry(w: World) -> None:
    denied(w.client.post(f"/v1/jobs/{w.a.dead_job_id}/retry", headers=auth(w.b.admin)))
    with w.database.session() as s:
        job = s.get(JobRecord, w.a.dead_job_id)
        assert job is not None and job.state == "dead"


def _respond(w: World) -> None:
    denied(w.client.post("/v1/respond", json={"ticket_id": w.a.ticket_id}, headers=auth(w.b.admin)))


def _knowledge(w: World) -> None:
    body = {"ticket_id": w.a.ticket_id, "answer": "overwritten", "source_id": "kb-1"}
    denied(w.client.post("/v1/knowledge", json=body, headers=auth(w.b.admin)))
    with w.database.session() as s:
        entry = get_entry(s, "acme", "kb-1")
        assert entry is not None and w.a.marker in entry.answer


def _keys_list(w: World) -> None:
    r = w.client.get("/v1/keys", headers=auth(w.b.admin))
    no_trace_of(w, w.a, r)
    assert w.a.key_id not in {k["id"] for k in r.json()["keys"]}


def _key_rotate(w: World) -> None:
    denied(w.client.post(f"/v1/keys/{w.a.key_id}/rotate", headers=auth(w.b.admin)))
    with w.database.session() as s:
        assert len(list(s.scalars(select(ApiKey).where(ApiKey.name == "a-admin")))) == 1


def _key_revoke(w: World) -> None:
    denied(w.client.delete(f"/v1/keys/{w.a.key_id}", headers=auth(w.b.admin)))
    with w.database.session() as s:
        assert authenticate_key(s, w.a.admin) is not None


CASES: dict[tuple[str, str], Case] = {
    ("GET", "/v1/tickets/{ticket_id}"): _ticket_read,
    ("GET", "/v1/tickets/{ticket_id}/audit"): _ticket_audit,
    ("GET", "/v1/audit"): _audit,
    ("POST", "/v1/tickets"): _ticket_create,
    ("POST", "/v1/classify"): _classify,
    ("GET", "/v1/adapters"): _adapters_list,
    ("POST", "/v1/adapters/{task}"): _adapter_upload,
    ("POST", "/webhooks/{tenant}/generic/{source}"): _generic_webhook,
    ("POST", "/v1/documents"): _document_upload,
    ("GET", "/v1/documents"): _documents_list,
    ("GET", "/v1/documents/{document_id}"): _document_read,
    ("GET", "/v1/documents/{document_id}/original"): _document_original,
    ("POST", "/webhooks/{tenant}/email"): _email_webhook,
    ("POST", "/webhooks/{tenant}/{system}"): _connector_webhook,
    ("POST", "/webhooks/{tenant}/{system}/{route:path}"): _connector_webhook_route,
    ("POST", "/v1/feedback"): _feedback,
    ("GET", "/v1/jobs"): _jobs_list,
    ("GET", "/v1/jobs/{job_id}"): _job_read,
    ("POST", "/v1/jobs/{job_id}/retry"): _job_retry,
    ("POST", "/v1/respond"): _respond,
    ("POST", "/v1/knowledge"): _knowledge,
    ("GET", "/v1/keys"): _keys_list,
    ("POST", "/v1/keys/{key_id}/rotate"): _key_rotate,
    ("DELETE", "/v1/keys/{key_id}"): _key_revoke,
}


def test_every_route_has_a_tenancy_case(app: FastAPI) -> None:
    routes = app_routes(app)
    uncovered = uncovered_routes(app)
    assert not uncovered, (
        f"routes without a tenancy case (add one to CASES, or to TENANT_FREE with why): {uncovered}"
    )
    stale = sorted(r for r in CASES if r not in routes)
    assert not stale, f"cases for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_tenant_b_cannot_reach_tenant_a(world: World, route: tuple[str, str]) -> None:
    CASES[route](world)


def test_the_world_is_what_the_cases_assume(world: World) -> None:
    """The seeded objects exist and are readable by their own tenant (so a 404 above means isolation)."""
    h = auth(world.a.admin)
    assert world.client.get(f"/v1/tickets/{world.a.ticket_id}", headers=h).status_code == 200
    assert world.client.get(f"/v1/documents/{world.a.document_id}", headers=h).status_code == 200
    assert world.client.get(f"/v1/documents/{world.a.document_id}/original", headers=h).status_code == 200
    assert world.client.get(f"/v1/jobs/{world.a.dead_job_id}", headers=h).json()["state"] == "dead"
    assert world.a.marker in world.client.get("/v1/audit?limit=1000", headers=h).text
    assert world.client.post(f"/v1/jobs/{world.a.dead_job_id}/retry", headers=h).status_code == 202
    assert world.versions(world.a) == ["intent:v1"]
    body = {"task": "intent", "label": "billing", "author": "a", "decision_id": world.a.decision_id}
    assert world.client.post("/v1/feedback", json=body, headers=h).status_code == 201


def uncovered_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(r for r in app_routes(app) if r not in CASES and not tenant_free(r))


def test_a_new_route_without_a_case_is_caught(app: FastAPI) -> None:
    assert uncovered_routes(app) == []

    @app.get("/v1/new-thing/{thing_id}")
    def new_thing(thing_id: int) -> dict[str, int]:  # pragma: no cover - never called
        return {"id": thing_id}

    assert uncovered_routes(app) == [("GET", "/v1/new-thing/{thing_id}")]


def test_a_leaky_route_fails_its_case(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases can fail: a ticket lookup that forgets the tenant is caught."""
    from deskpilot.gateway.routes import tickets

    def leaky_get_ticket(session: Any, tenant_id: int, ticket_id: int) -> Any:
        return session.get(TicketRecord, ticket_id)

    monkeypatch.setattr(tickets, "get_ticket", leaky_get_ticket)
    with pytest.raises(AssertionError):
        _ticket_read(world)
