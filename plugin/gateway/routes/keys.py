"""The tenant's API keys for its admins: list (prefixes only), rotate with a grace period, revoke.

No route ever answers a key's hash; the plaintext of a new key is answered once, by rotate.
Another tenant's key id is a 404, exactly like an id that does not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from deskpilot.errors import NotFoundError
from deskpilot.gateway.deps import AdminPrincipal, DatabaseDep, db_session, require_json_body
from deskpilot.gateway.errors import error_responses
from deskpilot.gateway.routes.tickets import actor_of
from deskpilot.gateway.workflow_schemas import MAX_ID
from deskpilot.store import (
    ApiKey,
    Database,
    Principal,
    get_api_key,
    key_state,
    list_api_keys,
    revoke_api_key,
    rotate_api_key,
)
from deskpilot.store.repositories import MAX_GRACE
from deskpilot.store.workflow import audit

router = APIRouter(prefix="/v1", tags=["keys"])

KeyId = Annotated[int, Path(ge=1, le=MAX_ID, description="The key's id (GET /v1/keys lists them)")]
GraceMinutes = Annotated[
    int,
    Query(
        ge=0,
        le=int(MAX_GRACE.total_seconds() // 60),
        description="How long the old key stays valid after the rotation, in minutes",
    ),
]


class KeyOut(BaseModel):
    """What may be shown about a key: never its hash or plaintext."""

    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str]
    state: Literal["active", "expiring", "revoked"] = Field(
        description="expiring: rotated, still valid until expires_at"
    )
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None = Field(description="When it stops (stopped) being valid; null: never")

    @classmethod
    def build(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scopes=sorted(key.scope_set),
            state=key_state(key),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.revoked_at,
        )


class KeysOut(BaseModel):
    keys: list[KeyOut]


class RotatedKeyOut(BaseModel):
    key: str = Field(description="The new key's plaintext: shown this once, store it safely")
    new: KeyOut
    old: KeyOut


def _no_key(key_id: int) -> NotFoundError:
    return NotFoundError(f"no API key {key_id}", hint="GET /v1/keys lists the keys of this API key's tenant")


def _list(database: Database, principal: Principal) -> KeysOut:
    with db_session(database) as session:
        return KeysOut(keys=[KeyOut.build(k) for k in list_api_keys(session, principal.tenant)])


@router.get(
    "/keys",
    summary="The tenant's API keys: prefixes, scopes and state, never the keys (admin keys only)",
    response_model=KeysOut,
    responses=error_responses(401, 403, 429, 500, 503),
)
async def list_keys(principal: AdminPrincipal, database: DatabaseDep) -> KeysOut:
    return await run_in_threadpool(_list, database, principal)


def _rotate(database: Database, principal: Principal, key_id: int, grace: timedelta) -> RotatedKeyOut:
    with db_session(database) as session:
        rotated = rotate_api_key(session, key_id, principal.tenant, grace)
        if rotated is None:
            raise _no_key(key_id)
        new, plaintext, old = rotated
        audit(
            session,
            principal.tenant_id,
            "key.rotated",
            actor_of(principal),
            {"old_key_id": old.id, "new_key_id": new.id, "grace_minutes": grace.total_seconds() / 60},
        )
        return RotatedKeyOut(key=plaintext, new=KeyOut.build(new), old=KeyOut.build(old))


@router.post(
    "/keys/{key_id}/rotate",
    summary="Issue a new key with the same name and scopes; the old one stays valid for a grace period",
    status_code=201,
    response_model=RotatedKeyOut,
    responses=error_responses(401, 403, 404, 415, 422, 429, 500, 503),
    dependencies=[Depends(require_json_body)],
)
async def rotate_key(
    key_id: KeyId, principal: AdminPrincipal, database: DatabaseDep, grace_minutes: GraceMinutes = 60
) -> RotatedKeyOut:
    grace = timedelta(minutes=grace_minutes)
    return await run_in_threadpool(_rotate, database, principal, key_id, grace)


def _revoke(database: Database, principal: Principal, key_id: int) -> KeyOut:
    with db_session(database) as session:
        if not revoke_api_key(session, key_id, principal.tenant):
            raise _no_key(key_id)
        audit(session, principal.tenant_id, "key.revoked", actor_of(principal), {"key_id": key_id})
        key = get_api_key(session, key_id, principal.tenant)
        if key is None:  # pragma: no cover - revoke_api_key just found it
            raise _no_key(key_id)
        return KeyOut.build(key)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke a key now (a rotated key's grace period ends too)",
    response_model=KeyOut,
    responses=error_responses(401, 403, 404, 415, 422, 429, 500, 503),
    dependencies=[Depends(require_json_body)],  # no body needed; any other body is a 415
)
async def revoke_key(key_id: KeyId, principal: AdminPrincipal, database: DatabaseDep) -> KeyOut:
    return await run_in_threadpool(_revoke, database, principal, key_id)
