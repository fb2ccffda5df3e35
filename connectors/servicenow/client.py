"""Outbound ServiceNow client: route a record through the Table API, idempotently.

Credential (``DESKPILOT_CONNECTOR_SECRETS[<policy credentials name>]``): ``user:password``
of the integration user (HTTP Basic; the password may contain ``:``) or ``bearer:<token>``
(an OAuth access token). The policy system's ``url`` is the instance, e.g.
``https://acme.service-now.com``.

Mapping of a ``route`` action's fields (keys as in the policy) onto the record
(``PATCH /api/now/table/{options.table}/{sys_id}``, ``table`` defaults to ``incident``):

==============  ==================================================================
policy key      ServiceNow
==============  ==================================================================
``group``       ``assignment_group`` (a ``sys_user_group`` sys_id)
``queue``       ``assignment_group`` too, unless ``group`` is set (no queues there)
``assignee``    ``assigned_to`` (a ``sys_user`` sys_id)
``priority``    ``impact`` + ``urgency`` from the priority map (ServiceNow derives the
                priority from them; see ``options.py``)
anything else   the field of that name (``category``, ``u_team``, ``impact``...)
context note    ``work_notes``, ending with the marker ``[deskpilot:<idempotency key>]``
==============  ==================================================================

Idempotency: ServiceNow has no idempotency keys. Setting fields is idempotent by nature; the
work note is posted only if no journal entry of the record carries the action's marker
(``GET /api/now/table/sys_journal_field?sysparm_query=element_id=<sys_id>^element=work_notes
^valueLIKE<marker>``, or with ``note_lookup: record`` the record's work notes read with
``sysparm_display_value=true``), so a retry after a crash between the PATCH and deskpilot
recording it sets the fields again and does not repeat the note.

One attempt per ``act``: the job queue retries what is marked transient (timeouts, connection
errors, 408/425/429, 5xx, and a 2xx that is not JSON: a hibernating instance or a login page),
honouring ``Retry-After``; other 4xx are permanent and carry ServiceNow's
``error.message``/``error.detail``. Credentials never appear in messages or logs.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.generic.client import retry_after_seconds
from deskpilot.connectors.servicenow import convert
from deskpilot.connectors.servicenow.options import ServiceNowOptions
from deskpilot.errors import ConfigError, InputDataError
from deskpilot.types import Action

logger = logging.getLogger("deskpilot.connectors.servicenow")

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 300
_CREDENTIAL_HINT = (
    "set DESKPILOT_CONNECTOR_SECRETS['<credentials name>'] to 'user:password' or 'bearer:<oauth token>'"
)


def _user_agent() -> str:
    try:
        return f"deskpilot/{version('deskpilot')}"
    except PackageNotFoundError:
        return "deskpilot/unknown"


def authorization(token: str | None) -> str:
    """The Authorization header for a credential; ConfigError (never echoing it) when unusable."""
    if token is None or not token.strip():
        raise ConfigError("no ServiceNow credential is configured", hint=_CREDENTIAL_HINT)
    scheme, sep, rest = token.partition(":")
    if sep and scheme.strip().lower() == "bearer":
        if not rest.strip():
            raise ConfigError("the ServiceNow bearer credential has no token after 'bearer:'")
        return f"Bearer {rest.strip()}"
    if not sep or not scheme:
        raise ConfigError(
            "the ServiceNow credential is not 'user:password' or 'bearer:<token>'", hint=_CREDENTIAL_HINT
        )
    return "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")


def error_text(response: httpx.Response) -> str:
    """ServiceNow's ``{"error": {"message", "detail"}, "status": "failure"}`` as one line."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        parts = [str(error[k]) for k in ("message", "detail") if error.get(k)]
        if parts:
            text = ": ".join(parts)
    text = " ".join(text.split()) or response.reason_phrase
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


class ServiceNowClient:
    """Sync Table API client for one instance. Close it (or use it as a context manager)."""

    name = "servicenow"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        *,
        options: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"ServiceNow URL {base_url!r} is not an http(s) URL")
        if "/api/" in url.path + "/":
            raise ConfigError(
                f"ServiceNow URL {base_url!r} points into the API",
                hint="give the instance itself, e.g. https://acme.service-now.com",
            )
        self.options = ServiceNowOptions.from_mapping(options)
        self.base_url = base_url.rstrip("/")
        headers = {
            "User-Agent": _user_agent(),
            "Accept": "application/json",
            "Authorization": authorization(token),
        }
        self._http = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def act(self, action: Action) -> dict[str, Any]:
        """Route the record; returns what ServiceNow answered (see the module docstring)."""
        try:
            lookup = convert.plan_note_lookup(action, self.options)
            found = lookup is not None and convert.note_found(
                lookup, self._call(lookup)[1], action.idempotency_key
            )
            update = convert.plan_update(action, self.options, with_note=lookup is not None and not found)
        except InputDataError as exc:
            raise ActionFailedError(f"cannot route in ServiceNow: {exc}", transient=False) from None
        status, answer = self._call(update)
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            result = {}
        sent = {k: v for k, v in (update.json or {}).items() if k != "work_notes"}
        # the Table API ignores fields the table does not have, silently: say so
        ignored = sorted(k for k in sent if k not in result)
        if ignored:
            logger.warning(
                "ServiceNow ignored field(s) %s of %s %s (no such field, or not readable)",
                ", ".join(ignored),
                self.options.table,
                result.get("number") or result.get("sys_id"),
            )
        note = "none" if lookup is None else ("already there" if found else "added")
        return {
            "status": status,
            "table": self.options.table,
            "sys_id": result.get("sys_id"),
            "number": result.get("number"),
            "set": sent,
            "priority": result.get("priority"),
            "work_note": note,
            "ignored_fields": ignored,
        }

    def _call(self, planned: convert.PlannedCall) -> tuple[int, Any]:
        """One request; (status, parsed JSON) on 2xx, ActionFailedError otherwise."""
        url = self.base_url + planned.path
        what = f"{planned.method} {planned.path}"
        try:
            response = self._http.request(planned.method, url, params=list(planned.params), json=planned.json)
        except httpx.TimeoutException as exc:
            raise ActionFailedError(f"{what} timed out ({type(exc).__name__})", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"{what}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(f"{what} failed: {type(exc).__name__}: {exc}", transient=True) from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return status, response.json()
            except ValueError:
                raise ActionFailedError(
                    f"{what} answered {status} without JSON (a hibernating instance or a login page?)",
                    transient=True,
                    upstream_status=status,
                ) from None
        transient = status >= 500 or status in TRANSIENT_STATUSES
        hint = None
        if status == 401:
            hint = "check the ServiceNow credential (user:password or bearer:<token>)"
        elif status == 403:
            hint = "the integration user lacks a role or an ACL for this table (e.g. itil)"
        raise ActionFailedError(
            f"ServiceNow {what} answered {status}: {error_text(response)}",
            transient=transient,
            hint=hint,
            upstream_status=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceNowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
