"""Outbound Odoo client: one routing action -> ``write`` + an internal note, over JSON-2 or JSON-RPC.

Mapping (see ``convert.plan_route``): the destination's ``queue`` -> ``team_id``, ``assignee``
-> ``user_id``, ``priority`` -> ``priority``, ``tags`` -> ``tag_ids`` (``[[4, id]]`` links), any
other key -> the Odoo field of that name, all in one ``write`` on the ticket; then, when the
action carries a note, ``mail.message/search_read`` for its marker ``[deskpilot:<key>]`` and,
only if none is found, ``message_post`` as an internal note (``mail.mt_note``). Field names and
the model come from the policy's options (``options.py``).

Transport (``options.api``):

``json2`` (Odoo 19+, https://www.odoo.com/documentation/19.0/developer/reference/external_api.html)
    ``POST {url}/json/2/<model>/<method>`` with ``Authorization: bearer <API key>``,
    ``X-Odoo-Database`` when ``options.database`` is set, and a JSON object of ``ids`` plus the
    method's named parameters. Errors are HTTP 4xx/5xx with ``{"name", "message", ...}``.
``jsonrpc`` (Odoo 17, 18; https://www.odoo.com/documentation/17.0/developer/reference/external_api.html)
    ``POST {url}/jsonrpc`` calling ``object.execute_kw(db, uid, key, model, method, [[id]], kw)``;
    ``uid`` is ``options.uid`` / ``options.api_user_id``, else found once with
    ``common.authenticate(db, options.login, key, {})``. Errors come as HTTP 200 with
    ``{"error": {"code": 200, "message": "Odoo Server Error", "data": {"name", "message"}}}``.

Errors (:class:`~deskpilot.connectors.base.ActionFailedError`), one attempt per call (the job
queue retries): timeouts, connection errors, 408, 425, 429 (``retry_after`` from
``Retry-After``) and 5xx are transient, as are database serialization failures; other 4xx are
permanent, and so is an Odoo exception that would fail the same way again (``AccessDenied``,
``AccessError``, ``MissingError``, ``ValidationError``, ``UserError``, a ``ValueError`` for an
unknown field or selection value), whatever the HTTP status. One exception to the exception:
a ``MissingError`` for a record created less than two minutes ago is transient (retry after
5 s), because Odoo posts its webhook from inside the transaction that creates the record and a
fast worker can arrive before the commit. The message names the Odoo call, the status and
Odoo's own error; it never holds the API key.

Idempotency: ``write`` sets values (linking a tag twice is a no-op), so repeating it is
harmless; the note is posted only when no message on the record holds its marker, so an
action re-run after a crash posts it once.

A ``file_document`` action (an incoming document) creates a draft vendor bill or a project
task with the original attached, once per document hash: see ``documents.py``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from deskpilot.connectors.base import ActionFailedError
from deskpilot.connectors.generic.client import retry_after_seconds
from deskpilot.connectors.odoo import documents
from deskpilot.connectors.odoo.convert import (
    OdooCall,
    PlannedCall,
    authenticate_request,
    json2_request,
    jsonrpc_request,
    marked_message,
    plan_route,
)
from deskpilot.connectors.odoo.options import OdooOptions
from deskpilot.errors import ConfigError
from deskpilot.types import Action

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 300
# Odoo exceptions that fail the same way on every retry, whatever HTTP status carries them
PERMANENT_PREFIXES = ("odoo.exceptions.", "builtins.")
TRANSIENT_NAMES = frozenset({"odoo.exceptions.ConcurrencyError"})  # Odoo 18+: serialization retry
MISSING = "odoo.exceptions.MissingError"
NOT_COMMITTED_WINDOW_S = 120.0
NOT_COMMITTED_RETRY_S = 5.0
DOCUMENT_ACCESS_HINT = (
    "the API user needs create on account.move (Accounting: Billing) or project.task (Project: "
    "User), read on res.partner and res.currency, and create on ir.attachment"
)


class OdooCallError(ActionFailedError):
    """An error Odoo answered; ``odoo_name`` is its exception's name when it said one."""

    def __init__(self, message: str, *, odoo_name: str | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.odoo_name = odoo_name


def _user_agent() -> str:
    try:
        return f"deskpilot/{version('deskpilot')}"
    except PackageNotFoundError:
        return "deskpilot/unknown"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def transient_error(name: str | None, message: str = "", status: int | None = None) -> bool:
    """Whether a retry may succeed: by the Odoo exception's name first, then the HTTP status."""
    if name:
        if name in TRANSIENT_NAMES:
            return True
        if name.startswith(PERMANENT_PREFIXES):
            return False
        if name.startswith(("psycopg2.", "psycopg.")):
            return "does not exist" not in message  # a missing database stays missing
    if status is None:
        return True  # an unknown server-side failure: as a 500
    return status >= 500 or status in TRANSIENT_STATUSES


class OdooClient:
    """Sync client for one Odoo database. Thread-safe; close it (or use ``with``)."""

    name = "odoo"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float,
        options: Mapping[str, str] | OdooOptions | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"odoo connector URL {base_url!r} is not an http(s) URL")
        if not api_key:
            raise ConfigError(
                "the Odoo API key is empty", hint="Preferences > Account Security > New API Key"
            )
        self.options = options if isinstance(options, OdooOptions) else OdooOptions.from_mapping(options)
        if self.options.api == "jsonrpc":
            if self.options.database is None:
                raise ConfigError(
                    "options.database of the odoo system is required with api: jsonrpc",
                    hint="the database name, as on Odoo's login page or /web/database/selector",
                )
            if self.options.uid is None and self.options.login is None:
                raise ConfigError(
                    "with api: jsonrpc set options.api_user_id (the API user's id) or options.login",
                    hint="the user id shows in the URL of the user's form: /odoo/users/<id>",
                )
        self._key = api_key
        self._clock = clock
        self._uid = self.options.uid
        self._uid_lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._http = httpx.Client(
            base_url=str(url).rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": _user_agent(), "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    # --- the ActionClient protocol -----------------------------------------------------
    def act(self, action: Action) -> dict[str, Any]:
        """Write the destination fields, then post the note once; a summary of what was done."""
        if action.kind == "file_document":
            try:
                return self._file_document(action)
            except OdooCallError as exc:
                if exc.odoo_name == "odoo.exceptions.AccessError" or exc.upstream_status == 403:
                    exc.hint = DOCUMENT_ACCESS_HINT
                raise
        plan = plan_route(action, self.options)
        summary: dict[str, Any] = {
            "api": self.options.api,
            "model": plan.model,
            "id": plan.record_id,
            "written": plan.values,
            "note": "none",
        }
        try:
            if plan.write is not None:
                self.call(plan.write)
            if plan.find_note is not None and plan.post_note is not None and plan.marker is not None:
                existing = marked_message(self.call(plan.find_note), plan.marker)
                if existing is not None:
                    summary.update(note="already posted", message_id=existing)
                else:
                    posted = self.call(plan.post_note)
                    summary.update(note="posted", message_id=_message_id(posted))
        except OdooCallError as exc:
            raise self._not_committed_yet(exc, plan.created_at) from None
        return summary

    def _file_document(self, action: Action) -> dict[str, Any]:
        """Find or create the document's record, then attach the original once."""
        plan = documents.plan_document(action)
        doc = plan.incoming
        content = doc.read()
        record_id = documents.existing_record(self.call(plan.find), plan)
        summary: dict[str, Any] = {
            "api": self.options.api,
            "kind": doc.kind,
            "model": plan.model,
            "id": record_id,
            "created": False,
        }
        if record_id is None:
            values = dict(plan.values)
            if plan.model == documents.MOVE:
                values.update(self._bill_parts(plan))
                summary["partner_id"] = values.get("partner_id")
            record_id = documents.created_id(self.create(plan.model, values))
            if record_id is None:
                raise ActionFailedError(f"Odoo {plan.model}.create answered without an id", transient=False)
            summary.update(id=record_id, created=True)
        digest = hashlib.sha1(content, usedforsecurity=False).hexdigest()  # ir.attachment.checksum
        rows = self.call(documents.find_attachments(plan.model, record_id))
        attachment = documents.existing_attachment(rows, digest, doc.filename)
        summary["file_existed"] = attachment is not None
        if attachment is None:
            values = documents.attachment_values(plan.model, record_id, doc, content)
            attachment = documents.created_id(self.create(documents.ATTACHMENT, values))
        summary["file"] = attachment
        return summary

    def _bill_parts(self, plan: documents.DocumentPlan) -> dict[str, Any]:
        """Partner, currency and narration of a new vendor bill (they need lookups)."""
        doc, remarks = plan.incoming, []
        parts: dict[str, Any] = {}
        lookup = documents.find_partner(doc)
        partner = documents.pick_partner(self.call(lookup), doc) if lookup is not None else None
        if partner is None:
            named = " / ".join(doc.fields[k] for k in ("supplier", "vat_id") if doc.fields.get(k))
            partner = plan.default_partner
            if named:
                filed = f"filed under partner {partner}" if partner else "left without a vendor"
                remarks.append(f"Vendor on the document: {named!r}, not found in Odoo; {filed}: correct it.")
        if partner is not None:
            parts["partner_id"] = partner
        currency = documents.find_currency(doc)
        if currency is not None:
            currency_id = documents.first_id(self.call(currency))
            if currency_id is None:
                remarks.append(
                    f"Currency {doc.fields['currency']!r} is not active in Odoo: the company's is used."
                )
            else:
                parts["currency_id"] = currency_id
        parts["narration"] = documents.narration(doc, remarks)
        return parts

    def create(self, model: str, values: dict[str, Any]) -> Any:
        """``model.create([values])`` on the configured API: ``[id]``."""
        if self.options.api == "json2":
            return self.call(documents.create_call(model, values))
        planned = documents.jsonrpc_create_request(
            model,
            values,
            database=self.options.database or "",
            uid=self._user_id(),
            api_key=self._key,
            request_id=next(self._request_ids),
        )
        return self._jsonrpc(planned, f"{model}.create")

    def _not_committed_yet(self, error: OdooCallError, created_at: datetime | None) -> ActionFailedError:
        """A record created moments ago and missing: Odoo has not committed it yet, so retry.

        Odoo posts its webhook from inside the transaction that creates the record, so a fast
        worker can reach Odoo before that transaction commits. Any other MissingError (an old
        record, deleted since) stays permanent.
        """
        if error.odoo_name != MISSING or created_at is None:
            return error
        age = self._clock() - created_at.timestamp()
        if abs(age) > NOT_COMMITTED_WINDOW_S:
            return error
        return ActionFailedError(
            f"{error.message} (created {age:.0f} s ago: Odoo sends its webhook before it commits, "
            "so this is retried)",
            transient=True,
            upstream_status=error.upstream_status,
            retry_after=NOT_COMMITTED_RETRY_S,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OdooClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one ORM call ---------------------------------------------------------------------
    def call(self, call: OdooCall) -> Any:
        """Run one ORM method on the configured API; its JSON result, or ActionFailedError."""
        what = f"{call.model}.{call.method}"
        if self.options.api == "json2":
            headers = {"Authorization": f"bearer {self._key}"}
            if self.options.database:
                headers["X-Odoo-Database"] = self.options.database
            return self._json2(json2_request(call), what, headers)
        database = self.options.database or ""
        planned = jsonrpc_request(
            call,
            database=database,
            uid=self._user_id(),
            api_key=self._key,
            request_id=next(self._request_ids),
        )
        return self._jsonrpc(planned, what)

    def _user_id(self) -> int:
        with self._uid_lock:
            if self._uid is not None:
                return self._uid
            login = self.options.login or ""
            planned = authenticate_request(
                database=self.options.database or "",
                login=login,
                api_key=self._key,
                request_id=next(self._request_ids),
            )
            uid = self._jsonrpc(planned, "common.authenticate")
            if isinstance(uid, bool) or not isinstance(uid, int) or uid <= 0:
                raise ActionFailedError(
                    f"Odoo refused login {login!r} with the API key (common.authenticate returned {uid!r})",
                    transient=False,
                    hint="check options.login, options.database and the API key",
                )
            self._uid = uid
            return uid

    # --- HTTP -----------------------------------------------------------------------------
    def _post(self, planned: PlannedCall, what: str, headers: Mapping[str, str]) -> httpx.Response:
        try:
            return self._http.post(planned.path, json=planned.json, headers=dict(headers))
        except httpx.TimeoutException as exc:
            raise ActionFailedError(f"Odoo {what} timed out ({type(exc).__name__})", transient=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ActionFailedError(f"Odoo {what}: {exc}", transient=False) from None
        except httpx.TransportError as exc:
            raise ActionFailedError(
                f"Odoo {what} failed: {type(exc).__name__}: {self._scrub(str(exc))}", transient=True
            ) from None

    def _json2(self, planned: PlannedCall, what: str, headers: Mapping[str, str]) -> Any:
        response = self._post(planned, what, headers)
        if response.status_code == 200:
            return self._body(response, what)
        raise self._http_error(response, what)

    def _jsonrpc(self, planned: PlannedCall, what: str) -> Any:
        response = self._post(planned, what, {})
        if response.status_code != 200:
            raise self._http_error(response, what)
        answer = self._body(response, what)
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise ActionFailedError(f"Odoo {what}: the answer is not a JSON-RPC response", transient=False)
        if "error" not in answer:
            return answer["result"]
        error: dict[str, Any] = answer["error"] if isinstance(answer["error"], dict) else {}
        found = error.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        name = str(data.get("name") or "") or None
        message = str(data.get("message") or error.get("message") or "unknown error")
        raise OdooCallError(
            f"Odoo {what} failed: {self._scrub(_short(f'{name}: {message}' if name else message))}",
            odoo_name=name,
            transient=transient_error(name, message),
            hint=_hint(name, None, self.options.model),
        )

    def _body(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ActionFailedError(
                f"Odoo {what} answered {response.status_code} without JSON: "
                f"{self._scrub(_short(response.text))}",
                transient=False,
                upstream_status=response.status_code,
            ) from None

    def _http_error(self, response: httpx.Response, what: str) -> OdooCallError:
        status = response.status_code
        name: str | None = None
        try:
            data: Any = json.loads(response.text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            name = str(data.get("name") or "") or None
            message = str(data.get("message") or data.get("description") or response.text)
        elif isinstance(data, str):
            message = data
        else:
            message = response.text or response.reason_phrase
        shown = f"{name}: {message}" if name else message
        hint = _hint(name, status, self.options.model)
        if status == 404 and data is None and self.options.api == "json2":
            hint = "Odoo before 19 has no /json/2 API: set options.api: jsonrpc (and options.database)"
        return OdooCallError(
            f"Odoo {what} answered {status}: {self._scrub(_short(shown))}",
            odoo_name=name,
            transient=transient_error(name, message, status),
            hint=hint,
            upstream_status=status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _hint(name: str | None, status: int | None, model: str) -> str | None:
    if status == 401 or name == "odoo.exceptions.AccessDenied":
        return "check the Odoo API key in DESKPILOT_CONNECTOR_SECRETS (Odoo keys expire) and options.uid"
    if status == 403 or name == "odoo.exceptions.AccessError":
        return f"give the API user write access to {model} and its chatter"
    if name == "odoo.exceptions.MissingError":
        return "the record was deleted in Odoo"
    return None


def _message_id(result: Any) -> int | None:
    """``message_post``'s answer: an id (JSON-RPC), or a list of one id (JSON-2 returns ``.ids``)."""
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    return result if isinstance(result, int) and not isinstance(result, bool) else None
