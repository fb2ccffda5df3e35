"""The ``options`` of an Odoo system in a tenant's policy, validated once.

Every value in a policy's ``options`` is a string. Unknown keys are refused (a typo such as
``api_user`` would otherwise silently turn corrections off), with the closest known key.

=================  ====================  ===========================================================
option             default               meaning
=================  ====================  ===========================================================
``model``          ``helpdesk.ticket``   the model the webhook posts and deskpilot writes back to
                                         (Helpdesk is Enterprise-only: ``project.task`` works too)
``api``            ``json2``             ``json2`` (Odoo 19+) or ``jsonrpc`` (Odoo 17 and 18)
``database``       none                  the database name: ``X-Odoo-Database`` for JSON-2 (needed
                                         when one server hosts several), required for JSON-RPC
``api_user_id``    none                  id of the Odoo user that owns the API key: its own changes
                                         are not corrections (without it, no correction is read)
``uid``            ``api_user_id``       JSON-RPC only: the user id for ``execute_kw``
``login``          none                  JSON-RPC only, when no uid is known: the login used with
                                         ``common.authenticate`` to find it
``team_field``     ``team_id``           field set by the policy's ``queue``
``assignee_field`` ``user_id``           field set by ``assignee``
``priority_field`` ``priority``          field set by ``priority`` (a destination ``fields`` key)
``tag_field``      ``tag_ids``           many2many field that ``tags`` adds to
``group_field``    none                  field set by ``group`` (Odoo tickets have no group)
``subject_field``  ``name``              inbound: the ticket's subject
``body_field``     ``description``       inbound: the ticket's body (HTML, turned into text)
``requester_field`` ``partner_email``    inbound: the requester's address
=================  ====================  ===========================================================
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from deskpilot.errors import ConfigError

MODEL_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
FIELD_RE = re.compile(r"[a-z_][a-z0-9_]*")
_ID_RE = re.compile(r"[1-9][0-9]{0,17}")
_DATABASE_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")

_FIELDS = (
    "team_field",
    "assignee_field",
    "priority_field",
    "tag_field",
    "group_field",
    "subject_field",
    "body_field",
    "requester_field",
)
KNOWN = ("model", "api", "database", "api_user_id", "uid", "login", *_FIELDS)
DEFAULT_MODEL = "helpdesk.ticket"
DEFAULT_FIELDS: dict[str, str | None] = {
    "team_field": "team_id",
    "assignee_field": "user_id",
    "priority_field": "priority",
    "tag_field": "tag_ids",
    "group_field": None,
    "subject_field": "name",
    "body_field": "description",
    "requester_field": "partner_email",
}


def _problem(key: str, message: str) -> ConfigError:
    return ConfigError(
        f"options.{key} of the odoo system in the tenant's policy: {message}",
        hint="see docs/connectors/odoo.md (Policy)",
    )


def _user_id(options: Mapping[str, str], key: str) -> int | None:
    value = options.get(key)
    if value is None or value == "":
        return None
    if not _ID_RE.fullmatch(str(value).strip()):
        raise _problem(key, f"{value!r} is not an Odoo user id (a whole number above 0)")
    return int(str(value).strip())


def _field(options: Mapping[str, str], key: str, default: str | None) -> str | None:
    value = options.get(key, default)
    if value is None or value == "":
        return None
    if not FIELD_RE.fullmatch(value):
        raise _problem(key, f"{value!r} is not an Odoo field name (lowercase letters, digits, '_')")
    return value


@dataclass(frozen=True, slots=True)
class OdooOptions:
    model: str = "helpdesk.ticket"
    api: Literal["json2", "jsonrpc"] = "json2"
    database: str | None = None
    api_user_id: int | None = None
    uid: int | None = None
    login: str | None = None
    team_field: str | None = "team_id"
    assignee_field: str | None = "user_id"
    priority_field: str | None = "priority"
    tag_field: str | None = "tag_ids"
    group_field: str | None = None
    subject_field: str = "name"
    body_field: str = "description"
    requester_field: str | None = "partner_email"

    @classmethod
    def from_mapping(cls, options: Mapping[str, str] | None) -> OdooOptions:
        """Validate a policy's ``options``; ConfigError naming the first wrong key."""
        options = dict(options or {})
        for key in options:
            if key not in KNOWN:
                close = difflib.get_close_matches(key, KNOWN, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise _problem(key, f"unknown option ({hint}known: {', '.join(KNOWN)})")
        model = options.get("model", DEFAULT_MODEL)
        if not MODEL_RE.fullmatch(model):
            raise _problem("model", f"{model!r} is not an Odoo model name such as helpdesk.ticket")
        api = options.get("api", "json2")
        if api not in ("json2", "jsonrpc"):
            raise _problem("api", f"{api!r}: use json2 (Odoo 19 and later) or jsonrpc (Odoo 17, 18)")
        database = options.get("database") or None
        if database is not None and not _DATABASE_RE.fullmatch(database):
            raise _problem("database", f"{database!r} is not a database name")
        fields = {key: _field(options, key, DEFAULT_FIELDS[key]) for key in _FIELDS}
        for key in ("subject_field", "body_field"):
            if fields[key] is None:
                raise _problem(key, "must name a field")
        api_user_id = _user_id(options, "api_user_id")
        return cls(
            model=model,
            api="jsonrpc" if api == "jsonrpc" else "json2",
            database=database,
            api_user_id=api_user_id,
            uid=_user_id(options, "uid") or api_user_id,
            login=options.get("login") or None,
            team_field=fields["team_field"],
            assignee_field=fields["assignee_field"],
            priority_field=fields["priority_field"],
            tag_field=fields["tag_field"],
            group_field=fields["group_field"],
            subject_field=fields["subject_field"] or "name",
            body_field=fields["body_field"] or "description",
            requester_field=fields["requester_field"],
        )

    def routed_fields(self) -> dict[str, str]:
        """Policy key -> Odoo field, for the keys a person's change is read back from."""
        pairs = {
            "queue": self.team_field,
            "assignee": self.assignee_field,
            "priority": self.priority_field,
            "group": self.group_field,
        }
        return {key: field for key, field in pairs.items() if field is not None}
