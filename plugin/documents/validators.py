"""Validators and normalisers for key-field values: IBAN, VAT id, dates, amounts, currencies.

Why a module of its own: a rule that finds "something after *IBAN*" is only as good as the check
that the something is an IBAN. Each function here either returns the normalised value (ISO date,
``"1234.50"``, ``"DE89370400440532013000"``) or ``None``, so the field rules can score a
candidate by whether it validated. Pure standard library.

Date rule (day-first or month-first). A numeric date ``a/b/yyyy`` is read as follows:

1. ``yyyy-mm-dd`` (year first) is always year-month-day.
2. A dot separator (``14.03.2026``) is always day-first: nobody writes month-first with dots.
3. If one part is above 12 that part is the day: the unambiguous reading wins.
4. Otherwise the document decides (:func:`infer_day_first`): the majority of its *other*, unambiguous
   numeric dates; failing those, textual dates (``March 14, 2026`` is a US habit, ``14 March 2026``
   is not); failing those, the issuer's country in the letterhead (a US address such as "USA" or
   "Chicago, IL 60606": month-first; another country named: day-first); failing that, the
   currency (US dollars: month-first, any other: day-first); failing all, day-first, the reading
   of most of the world. The writer's country beats the currency: a US buyer ordering in euros
   still writes 02/01/2026 for February 1st.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# --------------------------------------------------------------------------------------------------
# IBAN (ISO 13616): country, two check digits, BBAN; valid when the rearranged number mod 97 == 1
# --------------------------------------------------------------------------------------------------

# lengths of the whole IBAN per country (SWIFT IBAN registry), for the countries users meet most
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban_remainder(iban: str) -> int:
    """The mod-97 of the IBAN with its first four characters moved to the end, letters as 10..35."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits that make ``country + digits + bban`` a valid IBAN."""
    return f"{98 - _iban_remainder(country.upper() + '00' + bban.upper()):02d}"


def normalise_iban(raw: str) -> str | None:
    """``raw`` without spaces, upper case, if it is a valid IBAN (length for its country, mod 97)."""
    iban = re.sub(r"[\s\u00a0-]", "", raw).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", iban):
        return None
    if IBAN_LENGTHS.get(iban[:2], len(iban)) != len(iban):
        return None
    return iban if _iban_remainder(iban) == 1 else None


def is_valid_iban(raw: str) -> bool:
    """Whether ``raw`` (spaces allowed) is an IBAN of the right length whose check digits agree."""
    return normalise_iban(raw) is not None


def find_ibans(text: str) -> list[tuple[str, int, int]]:
    """Valid IBANs in ``text`` as (normalised, start, end); groups of 4 with spaces are fine.

    Why not one regex: a grouped IBAN followed by "BIC ..." would run on into the next word, so
    characters are taken one by one until the country's length is reached and then checked.
    """
    found: list[tuple[str, int, int]] = []
    for m in re.finditer(r"\b[A-Z]{2}\d{2}", text):
        country = m.group()[:2]
        length = IBAN_LENGTHS.get(country)
        if length is None:
            continue
        chars, pos = [*m.group()], m.end()
        while len(chars) < length and pos < len(text):
            ch = text[pos]
            if ch.isalnum() and ch.isascii():
                chars.append(ch.upper())
            elif ch not in " \u00a0":
                break
            pos += 1
        if len(chars) == length and (pos >= len(text) or not text[pos].isalnum()):
            iban = normalise_iban("".join(chars))
            if iban is not None:
                found.append((iban, m.start(), pos))
    return found


# --------------------------------------------------------------------------------------------------
# VAT identification numbers: the format per EU country prefix (plus GB, XI and CH, met often)
# --------------------------------------------------------------------------------------------------

VAT_PATTERNS: dict[str, str] = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[A-Z0-9]\d{7}[A-Z0-9]",
    "FI": r"\d{8}",
    "FR": r"[0-9A-HJ-NP-Z]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}",
    "IE": r"\d{7}[A-W][A-I]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"\d{2,10}",
    "SE": r"\d{10}01",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
    "GB": r"\d{9}|\d{12}|GD[0-4]\d{2}|HA[5-9]\d{2}",
    "XI": r"\d{9}|\d{12}",
    "CHE": r"\d{9}(?:MWST|TVA|IVA)?",
}
_VAT_RE = {prefix: re.compile(rf"{prefix}(?:{body})") for prefix, body in VAT_PATTERNS.items()}
# a VAT id as printed: the prefix, then digits/letters in groups with spaces, dots or dashes
VAT_CANDIDATE = re.compile(
    r"\b(?:CHE|" + "|".join(p for p in VAT_PATTERNS if len(p) == 2) + r")[ .\-]?[0-9A-Z][0-9A-Z .\-]{5,16}"
)


def normalise_vat_id(raw: str) -> str | None:
    """``raw`` without spaces, dots and dashes, upper case, if it has the format of its country."""
    vat = re.sub(r"[\s.\-\u00a0]", "", raw).upper()
    prefix = "CHE" if vat.startswith("CHE") else vat[:2]
    pattern = _VAT_RE.get(prefix)
    if pattern is None or not pattern.fullmatch(vat):
        return None
    return vat[:12] if prefix == "CHE" else vat  # the Swiss UID; "MWST" only says it is VAT-registered


def find_vat_id(text: str, start: int = 0) -> tuple[str, int, int] | None:
    """The first valid VAT id in ``text`` at or after ``start``, as (normalised, start, end).

    A printed id may be grouped (``DE 123 456 789``), so the candidate is cut back a group at a
    time until the format fits; that keeps "DE123456789 IBAN ..." from swallowing the next word.
    """
    for m in VAT_CANDIDATE.finditer(text, start):
        raw = m.group().rstrip(" .-")
        while raw:
            vat = normalise_vat_id(raw)
            if vat is not None:
                return vat, m.start(), m.start() + len(raw)
            cut = max(raw.rfind(" "), raw.rfind("."), raw.rfind("-"))
            if cut <= 2:
                break
            raw = raw[:cut].rstrip(" .-")
    return None


# --------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "january jan januar janv janvier enero",
        "february feb februar fév fev février fevrier",
        "march mar märz maerz mrz mars",
        "april apr avril avr",
        "may mai",
        "june jun juni juin",
        "july jul juli juillet juil",
        "august aug août aout",
        "september sep sept septembre",
        "october oct oktober okt octobre",
        "november nov novembre",
        "december dec dezember dez décembre decembre déc",
    ),
    start=1,
):
    for _name in _names.split():
        MONTHS[_name] = _number

_MONTH = r"(?P<mon>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th|er)?\.?"
_YEAR = r"(?P<year>(?:19|20)\d{2})"
DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # 2026-03-14, 2026/03/14, 2026.03.14
    re.compile(
        r"(?<![\d.])(?P<year>(?:19|20)\d{2})(?P<sep>[-/.])(?P<a>[01]?\d)(?P=sep)(?P<b>[0-3]?\d)(?![\d])"
    ),
    # 14/03/2026, 03/14/2026, 14.03.2026, 14-03-2026, 14/03/26
    re.compile(
        r"(?<![\d.,/])(?P<a>[0-3]?\d)(?P<sep>[-/.])(?P<b>[0-3]?\d)(?P=sep)(?P<year>(?:19|20)\d{2}|\d{2})(?![\d])"
    ),
    # 14 March 2026, 14. März 2026, 14-Mar-2026, 14th of March, 2026
    re.compile(rf"(?<![\w.]){_DAY}[ \-]?(?:of )?{_MONTH}[ \-,]*{_YEAR}(?!\d)", re.IGNORECASE),
    # March 14, 2026, Mar 14th 2026
    re.compile(rf"(?<![\w]){_MONTH} {_DAY},? {_YEAR}(?!\d)", re.IGNORECASE),
)


@dataclass(frozen=True, slots=True)
class DateMatch:
    """A date found in text. ``order`` says how it was written; ``ambiguous`` when both
    day-first and month-first readings are real dates that differ."""

    start: int
    end: int
    raw: str
    day_first: str | None  # ISO reading day-first (None when it is not a date that way)
    month_first: str | None
    order: str  # "ymd", "dot", "numeric", "text-dmy", "text-mdy"

    @property
    def ambiguous(self) -> bool:
        return (
            self.day_first is not None and self.month_first is not None and self.day_first != self.month_first
        )

    def iso(self, day_first: bool = True) -> str | None:
        """The ISO date; ``day_first`` only matters when the date is ambiguous."""
        if self.ambiguous:
            return self.day_first if day_first else self.month_first
        return self.day_first or self.month_first


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _year(raw: str) -> int:
    year = int(raw)
    return year + (2000 if year < 70 else 1900) if year < 100 else year


def _match_to_date(m: re.Match[str], kind: int) -> DateMatch | None:
    groups = m.groupdict()
    year = _year(groups["year"])
    if kind == 0:
        iso = _iso(year, int(groups["a"]), int(groups["b"]))
        return DateMatch(m.start(), m.end(), m.group(), iso, None, "ymd") if iso else None
    if kind == 1:
        a, b = int(groups["a"]), int(groups["b"])
        if groups["sep"] == ".":
            iso = _iso(year, b, a)
            return DateMatch(m.start(), m.end(), m.group(), iso, None, "dot") if iso else None
        dmy, mdy = _iso(year, b, a), _iso(year, a, b)
        if dmy is None and mdy is None:
            return None
        return DateMatch(m.start(), m.end(), m.group(), dmy, mdy, "numeric")
    month = MONTHS[groups["mon"].lower()]
    iso = _iso(year, month, int(groups["day"]))
    if iso is None:
        return None
    return DateMatch(m.start(), m.end(), m.group(), iso, None, "text-dmy" if kind == 2 else "text-mdy")


def find_dates(text: str, start: int = 0, end: int | None = None) -> list[DateMatch]:
    """All dates in ``text[start:end]``, in order; overlapping matches keep the longest."""
    stop = len(text) if end is None else end
    found: list[DateMatch] = []
    for kind, pattern in enumerate(DATE_PATTERNS):
        for m in pattern.finditer(text, start, stop):
            date = _match_to_date(m, kind)
            if date is not None:
                found.append(date)
    found.sort(key=lambda d: (d.start, -(d.end - d.start)))
    kept: list[DateMatch] = []
    for date in found:
        if kept and date.start < kept[-1].end:
            continue
        kept.append(date)
    return kept


def infer_day_first(text: str, currency: str | None = None, *, head: str | None = None) -> bool:
    """Whether the document writes ambiguous numeric dates day-first (rule in the module doc)."""
    dates = find_dates(text)
    votes = Counter(  # only dates that can be read one way alone (09/09 is no evidence either way)
        "dmy" if d.day_first else "mdy"
        for d in dates
        if d.order == "numeric" and (d.day_first is None) != (d.month_first is None)
    )
    if votes["dmy"] != votes["mdy"]:
        return votes["dmy"] > votes["mdy"]
    text_votes = Counter(d.order for d in dates if d.order.startswith("text"))
    if text_votes["text-dmy"] != text_votes["text-mdy"]:
        return text_votes["text-dmy"] > text_votes["text-mdy"]
    if head is not None and _US_ADDRESS.search(head):
        return False
    if head is not None and _OTHER_COUNTRY.search(head):
        return True
    if currency is not None:
        return currency != "USD"
    return _US_ADDRESS.search(text) is None


_US_ADDRESS = re.compile(r"\b(?:USA|U\.S\.A\.|United States(?: of America)?)\b|, [A-Z]{2} \d{5}(?:-\d{4})?\b")
# countries (in English and their own language) that write the day first
_OTHER_COUNTRY = re.compile(
    r"\b(?:Germany|Deutschland|Austria|Österreich|France|Netherlands|Nederland|Belgi(?:um|que|ë)|Italy|Italia"
    r"|Spain|España|Portugal|Switzerland|Schweiz|Suisse|United Kingdom|UK|England|Scotland|Ireland|Denmark"
    r"|Sweden|Norway|Finland|Poland|Polska|Czech Republic|Luxembourg|Australia|New Zealand|India)\b"
)


def parse_date(raw: str, *, day_first: bool = True) -> str | None:
    """``raw`` (one date, as printed) as an ISO date; ``day_first`` settles ambiguous ones only."""
    dates = find_dates(raw.strip())
    if len(dates) != 1 or dates[0].raw != raw.strip():
        return None
    return dates[0].iso(day_first)


# --------------------------------------------------------------------------------------------------
# Amounts and currencies
# --------------------------------------------------------------------------------------------------

CURRENCY_CODES = frozenset(
    ("EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON",
     "BGN", "CNY", "INR", "SGD", "HKD", "ZAR", "MXN", "BRL", "TRY")
)  # fmt: skip
CURRENCY_SYMBOLS: dict[str, str] = {
    "US$": "USD", "C$": "CAD", "CA$": "CAD", "A$": "AUD", "AU$": "AUD", "NZ$": "NZD", "HK$": "HKD",
    "S$": "SGD", "R$": "BRL", "$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "zł": "PLN",
    "Kč": "CZK", "Fr.": "CHF", "SFr.": "CHF",
}  # fmt: skip
_SYMBOLS = sorted(CURRENCY_SYMBOLS, key=len, reverse=True)
# ISO codes as whole words; symbols anywhere, but those that start with a letter ("US$") only at a word start
CURRENCY_RE = re.compile(
    r"(?<![A-Za-z])(?:"
    + "|".join(sorted(CURRENCY_CODES))
    + r")(?![A-Za-z])|"
    + "|".join(rf"(?<![A-Za-z]){re.escape(s)}" if s[0].isalpha() else re.escape(s) for s in _SYMBOLS)
)

# one amount as printed: grouped thousands (, . space ' or NBSP) and an optional 1-2 digit decimal part
AMOUNT_RE = re.compile(
    r"(?<![\w.,])(?P<neg>[-−(])?\s?"
    r"(?P<num>\d{1,3}(?:(?P<g>[,.'\u00a0\u202f ])\d{3})(?:(?P=g)\d{3})*(?:[.,]\d{1,2})?"
    r"|\d+(?:[.,]\d{1,2})?)"
    r"(?![\d])(?!,\d)(?!\.\d)"
)


def detect_currency(text: str) -> str | None:
    """The ISO 4217 code of the first currency symbol or code in ``text``."""
    m = CURRENCY_RE.search(text)
    if m is None:
        return None
    token = m.group()
    return token if token in CURRENCY_CODES else CURRENCY_SYMBOLS.get(token)


def parse_amount(raw: str) -> Decimal | None:
    """``raw`` as a Decimal: "1,234.50", "1.234,50", "1 234,50", "1'234.50", "EUR 1234.5", "(12.00)".

    The last separator followed by one or two digits is the decimal point; every other separator
    groups thousands. A lone separator followed by exactly three digits ("1,234") groups thousands.
    """
    text = CURRENCY_RE.sub("", raw).strip()
    negative = text.startswith(("-", "−", "(")) or text.endswith(("-", ")"))
    text = text.strip("-−() ")
    if not re.fullmatch(r"\d[\d,.'\u00a0\u202f ]*", text):
        return None
    text = re.sub(r"[\s'\u00a0\u202f]", "", text)
    m = re.search(r"[.,](\d{1,2})$", text)
    if m is not None:
        whole, cents = text[: m.start()], m.group(1)
    else:
        whole, cents = text, "0"
    if re.search(r"[.,]", whole) and not re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", whole):
        return None
    try:
        value = Decimal(re.sub(r"[.,]", "", whole) + "." + cents)
    except InvalidOperation:
        return None
    return -value if negative else value


def format_amount(value: Decimal) -> str:
    """The normalised form: plain digits, a dot and two decimals ("1234.50")."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def normalise_amount(raw: str) -> str | None:
    value = parse_amount(raw)
    return None if value is None else format_amount(value)
