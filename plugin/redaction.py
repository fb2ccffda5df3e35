"""Keep secrets and (optionally) personal data out of logs, errors and stored previews.

Two layers with different rules:

- secrets are always masked: every ``SecretStr`` value in :class:`Settings` (webhook and
  connector secrets, the secret key, the metrics token), our API keys (``dpk_...``), Bearer
  tokens, Slack tokens (``xoxb-...``) and the values of credential headers and query
  parameters (``Authorization``, ``X-...-Signature``, ``?token=``);
- personal data (emails, phone numbers, IBANs) is replaced by ``[email]``, ``[phone]`` and
  ``[iban]`` when ``redact_pii`` is on. Precision comes first: a phone number needs a ``+``,
  a trunk ``0``, brackets or the ``NNN-NNN-NNNN`` shape, and an IBAN must pass its mod-97
  check, so dates, versions, IP addresses and order numbers are left alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from deskpilot.config import Settings

MASK = "[redacted]"
MIN_SECRET_CHARS = 6
"""Shorter configured values are not masked by value: masking every ``abc`` would garble logs."""
PREVIEW_CHARS = 280

# --- secrets ------------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # credential headers, as "Name: value", "'name': 'value'" (a dict's repr) or "name=value"
    (
        re.compile(
            r"""(?ix)
            (?P<name>\b(?:proxy-)?authorization|\bx-[a-z0-9-]*(?:signature|token|api-key|secret)[a-z0-9-]*
               |\bapi-key|\bcookie|\bset-cookie)
            (?P<sep>['"]?\s*[:=]\s*['"]?)
            (?P<value>(?:bearer|basic|token)\s+(?![<{\[])[^\s'",;]+         # not a <placeholder>
               |(?!(?:bearer|basic|token)\b)(?![<{\[])[^\s'",;]+)
            """
        ),
        rf"\g<name>\g<sep>{MASK}",
    ),
    # credentials in query strings and key=value text
    (
        re.compile(
            r"(?i)(?P<name>\b(?:access_token|api_key|apikey|token|secret|password|passwd|client_secret|sig)"
            r")(?P<sep>=)(?P<value>(?![<{\[])[^\s&'\"]+)"
        ),
        rf"\g<name>\g<sep>{MASK}",
    ),
    (re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\g<scheme> {MASK}"),
    (re.compile(r"\bdpk_[A-Za-z0-9_\-]{6,}"), f"dpk_{MASK}"),
    (re.compile(r"\b(?P<kind>xox[abposre]|xapp|xoxe\.xox[bp])-[A-Za-z0-9\-]{6,}"), rf"\g<kind>-{MASK}"),
    # user:password@ in URLs (broker and database URLs)
    (
        re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<user>[^/\s:@]*):[^/\s@]+@"),
        rf"\g<scheme>\g<user>:{MASK}@",
    ),
)

# every pattern above needs one of these; text without any (most log lines) skips them all
_TRIGGERS = re.compile(
    r"(?i)authorization|bearer|basic|cookie|signature|token|secret|api-key|api_key|apikey|passw|sig="
    r"|dpk_|xox|xapp|://"
)


def _secret_values(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_values(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _secret_values(item)


def settings_secrets(settings: Settings) -> list[str]:
    """Every ``SecretStr`` value held by ``settings`` (nested in dicts and lists too)."""
    found: set[str] = set()
    for name in type(settings).model_fields:
        found.update(_secret_values(getattr(settings, name, None)))
    return sorted(found)


class SecretMasker:
    """Masks known secret values and credential-shaped text. Thread-safe; values can be added."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            self._values.update(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_CHARS)
            # longest first, so a secret that contains another is masked whole
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def mask(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if not _TRIGGERS.search(text):
            return text
        for regex, replacement in _SECRET_PATTERNS:
            text = regex.sub(replacement, text)
        return text


_default = SecretMasker()


def masker() -> SecretMasker:
    """The process-wide masker: patterns always, plus the values of every Settings it was given."""
    return _default


def register_settings(settings: Settings) -> None:
    """Teach the process-wide masker this configuration's secret values."""
    _default.add(settings_secrets(settings))


def mask_secrets(text: str) -> str:
    return _default.mask(text)


# --- personal data ------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"
)

_PHONE = re.compile(
    r"""(?x)
    (?<![\w+/.-])                      # not inside a longer token (versions, ids, IPs, dates)
    (?:
        \+\d{1,3}(?:[ .-]?\(0?\d{1,4}\))?(?:[ .-]?\d{1,5}){2,5}   # +49 30 1234567, +1 (202) 555-0143
      | \(\d{2,5}\)[ .-]?\d{3,4}(?:[ .-]?\d{2,5}){1,2}            # (555) 123-4567, (030) 1234 5678
      | 0\d{2,4}(?:[ /-]\d{2,8}){1,3}                             # 030 1234567, 0171-123 4567
      | [2-9]\d{2}[-. ]\d{3}[-. ]\d{4}                            # 555-123-4567
    )
    (?![\w/-]|\.\d)                    # nor followed by more of one
    """
)

_IBAN_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?(?![A-Za-z0-9])"
)
_IBAN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iban_is_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if not compact.isalnum() or not compact.isascii():
        return False
    digits = "".join(str(int(ch, 36)) for ch in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or _IBAN_DATE.fullmatch(text):
        return text
    return "[phone]"


def redact(text: str) -> str:
    """Replace emails, phone numbers and valid IBANs by ``[email]``, ``[phone]``, ``[iban]``.

    IBAN-shaped text is settled first: valid ones are redacted, and the digit groups of ones
    failing the checksum are not mistaken for phone numbers.
    """
    text = _EMAIL.sub("[email]", text)
    out: list[str] = []
    start = 0
    for match in _IBAN_CANDIDATE.finditer(text):
        out.append(_PHONE.sub(_phone, text[start : match.start()]))
        out.append("[iban]" if iban_is_valid(match.group(0)) else match.group(0))
        start = match.end()
    out.append(_PHONE.sub(_phone, text[start:]))
    return "".join(out)


def scrub(text: str, *, pii: bool) -> str:
    """Secrets always masked; personal data too when ``pii``."""
    text = mask_secrets(text)
    return redact(text) if pii else text


def preview(text: str, settings: Settings | None = None, *, limit: int = PREVIEW_CHARS) -> str:
    """A one-line excerpt to show or store: whitespace collapsed, secrets masked, PII redacted
    when ``settings.redact_pii`` is on, cut to ``limit`` characters (the cut never splits a
    placeholder, because redaction happens first)."""
    flat = " ".join(text.split())
    flat = scrub(flat, pii=bool(settings is not None and getattr(settings, "redact_pii", False)))
    if len(flat) <= limit:
        return flat
    return flat[: max(0, limit - 1)].rstrip() + "…"
