"""The Jira system's ``options`` in a tenant's routing policy, validated once.

    systems:
      jira:
        connector: jira
        url: https://acme.atlassian.net
        credentials: jira-acme            # DESKPILOT_CONNECTOR_SECRETS {"jira-acme": "email:api_token"}
        options:
          bot_account_id: 5b10ac8d82e05b22cc7d4ef5   # deskpilot's account: its edits are not corrections
          custom_field: customfield_10050           # the policy's `queue` is this field
          custom_field_kind: select                 # select ({"value": ..}) | option_id ({"id": ..}) | text
          comment_visibility: internal              # internal | public | role:NAME | group:NAME | group-id:ID
          feedback_fields: customfield_10060        # more field ids whose changes count as corrections

A typo in a key is an error naming the allowed keys: a misspelt ``bot_account_id`` would
otherwise turn deskpilot's own edits into "corrections".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deskpilot.errors import ConfigError

KNOWN = ("bot_account_id", "custom_field", "custom_field_kind", "comment_visibility", "feedback_fields")
FIELD_ID = re.compile(r"(?:customfield_[0-9]{1,12}|[a-z][a-zA-Z0-9_]{0,63})")
CUSTOM_FIELD = re.compile(r"customfield_[0-9]{1,12}")
KINDS = ("select", "option_id", "text")


@dataclass(frozen=True, slots=True)
class Visibility:
    """Where the internal comment is visible; ``internal`` is JSM's "Internal note"."""

    internal: bool = True
    restriction: dict[str, str] | None = None  # REST ``visibility`` object (role or group)

    def apply(self, comment: dict[str, Any]) -> dict[str, Any]:
        if self.restriction is not None:
            comment["visibility"] = dict(self.restriction)
        if self.internal:
            comment["properties"] = [{"key": "sd.public.comment", "value": {"internal": True}}]
        return comment


@dataclass(frozen=True, slots=True)
class JiraOptions:
    bot_account_id: str | None = None
    custom_field: str | None = None
    custom_field_kind: str = "select"
    visibility: Visibility = Visibility()
    feedback_fields: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, options: Mapping[str, str] | None) -> JiraOptions:
        opts = {k: str(v).strip() for k, v in (options or {}).items()}
        unknown = sorted(set(opts) - set(KNOWN))
        if unknown:
            raise ConfigError(
                f"unknown Jira option(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(KNOWN)}"
            )
        custom = opts.get("custom_field") or None
        if custom is not None and not CUSTOM_FIELD.fullmatch(custom):
            raise ConfigError(
                f"Jira option custom_field {custom!r} is not a custom field id",
                hint="use the id shown in Jira settings > Issues > Custom fields, e.g. customfield_10050",
            )
        kind = opts.get("custom_field_kind") or "select"
        if kind not in KINDS:
            raise ConfigError(f"Jira option custom_field_kind {kind!r} is not one of {', '.join(KINDS)}")
        extra = tuple(f.strip() for f in opts.get("feedback_fields", "").split(",") if f.strip())
        bad = [f for f in extra if not FIELD_ID.fullmatch(f)]
        if bad:
            raise ConfigError(f"Jira option feedback_fields: {', '.join(map(repr, bad))} are not field ids")
        return cls(
            bot_account_id=opts.get("bot_account_id") or None,
            custom_field=custom,
            custom_field_kind=kind,
            visibility=_visibility(opts.get("comment_visibility", "")),
            feedback_fields=extra,
        )


def _visibility(value: str) -> Visibility:
    if value in ("", "internal"):
        return Visibility(internal=True)
    if value == "public":
        return Visibility(internal=False)
    kind, sep, name = value.partition(":")
    name = name.strip()
    if sep and name and kind in ("role", "group"):
        return Visibility(internal=False, restriction={"type": kind, "value": name})
    if sep and name and kind == "group-id":
        return Visibility(internal=False, restriction={"type": "group", "identifier": name})
    raise ConfigError(
        f"Jira option comment_visibility {value!r} is not understood",
        hint="use internal, public, role:<project role>, group:<group name> or group-id:<group id>",
    )
