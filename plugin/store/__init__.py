"""Persistence: tenants, API keys, adapter registry and prediction log (SQLite or PostgreSQL)."""

from __future__ import annotations

from .db import Database
from .models import (
    ADAPTER_STATUSES,
    API_KEY_SCOPES,
    AdapterRecord,
    ApiKey,
    Base,
    PredictionRecord,
    Tenant,
)
from .repositories import (
    Principal,
    authenticate_key,
    count_predictions,
    create_api_key,
    get_api_key,
    get_or_create_tenant,
    get_tenant,
    key_state,
    list_adapter_records,
    list_api_keys,
    record_predictions,
    revoke_api_key,
    rotate_api_key,
    set_champion,
    upsert_adapter,
    validate_slug,
)

__all__ = [
    "ADAPTER_STATUSES",
    "API_KEY_SCOPES",
    "AdapterRecord",
    "ApiKey",
    "Base",
    "Database",
    "PredictionRecord",
    "Principal",
    "Tenant",
    "authenticate_key",
    "count_predictions",
    "create_api_key",
    "get_api_key",
    "get_or_create_tenant",
    "get_tenant",
    "key_state",
    "list_adapter_records",
    "list_api_keys",
    "record_predictions",
    "revoke_api_key",
    "rotate_api_key",
    "set_champion",
    "upsert_adapter",
    "validate_slug",
]
