"""The ``file_document`` actions the ERP connector tests send: an original on disk and its action.

Shared by the ERPNext and Odoo filing tests; each keeps its own sample PDF, read fields and note.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deskpilot.types import Action


def stored_original(tmp_path: Path, content: bytes, name: str) -> dict[str, Any]:
    """``content`` written where the worker keeps originals; the action's ``document`` context."""
    sha = hashlib.sha256(content).hexdigest()
    path = tmp_path / sha
    path.write_bytes(content)
    return {
        "sha256": sha,
        "filename": name,
        "media_type": "application/pdf",
        "size": len(content),
        "path": str(path),
    }


def file_document_action(
    system: str,
    connector: str,
    document: dict[str, Any],
    fields: dict[str, Any] | None,
    *,
    read: Mapping[str, str],
    doctype: str | None,
    triage: bool,
    note: str,
) -> Action:
    """The action the worker writes for document 12 (``fields`` None: a draft purchase invoice)."""
    return Action(
        tenant="acme",
        system=system,
        connector=connector,
        kind="file_document",
        ticket_id=12,
        external_id=None,
        fields={"create": "purchase_invoice"} if fields is None else fields,
        idempotency_key=f"acme:document:12:{system}",
        context={
            "document": document,
            "fields": dict(read),
            "doctype": doctype,
            "triage": triage,
            "note": note,
        },
    )
