"""Key fields of business documents (invoice no., dates, parties, total, VAT id, IBAN) by rules.

Why rules and not a model: the fields of an invoice sit next to a small set of labels ("Invoice
No.", "Due Date", "Grand Total") and have formats that can be checked (IBAN mod 97, a VAT id's
country format, a real calendar date, an amount). Rules with validators are exact, explainable
(every value comes with the span it was read from) and need no training data.

Method, per field:

1. Find labels. Each doctype has its own label table: "Order No." is the document's number on a
   purchase order but the order reference on an invoice. Labels that are *not* fields ("Subtotal",
   "Delivery Date", "Customer No.") are in the table too, so that where two labels overlap the
   longest wins and a distractor is never read as the field (``Sub-total`` is not ``Total``).
2. Read the value after the label with the field's reader (id, date, amount, party, VAT, IBAN):
   on the same line; else, when the label is alone on its line, on the next line; else, for a
   header row ("Invoice No. / Date / Due Date" then the values in the same order) by position.
   pypdf puts each table cell on a line of its own, the DOCX reader joins a row's cells with tabs
   and pypdf's layout mode with runs of spaces, so all of these occur; a label never spans cells.
3. Score each candidate: the label's weight (specific labels 1.0, generic "Date" or "Total" less)
   times the validator's verdict (an ambiguous date read by the document's convention counts a
   little less; a total that equals subtotal + tax a little more). The best candidate wins; ties
   go to the earliest, except totals, where the larger amount (the grand total) wins. A VAT id in
   the customer's address block is the customer's and is not returned as ``vat_id``.
4. Fallbacks score lower: the letterhead company is the issuer (the supplier of an invoice, the
   customer of a purchase order) and the first other company near the top the recipient (an
   address window without a "Bill To"); the first unlabelled date is the issue date; the most
   frequent currency is the currency; an unlabelled valid IBAN or VAT id is taken as the issuer's.

Dates that read both ways (03/04/2026) follow the document's convention, see
:mod:`deskpilot.documents.validators`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

from deskpilot.documents import validators as v
from deskpilot.documents.model import DOCTYPE_FIELDS, DOCTYPES, ExtractedField

INV, PO, SHIP, STOCK = DOCTYPES
_NO = r"(?:no\.?|nr\.?|number|num\.?|#|n[°º]\.?|ref\.?)"

# The label table. One label per row: doctypes (i = invoice, p = purchase order, s = shipping order,
# r = inventory report), field, value reader, weight, flags, then the pattern (regex, case-insensitive,
# no literal spaces: use \s). Indented lines continue the pattern above. Fields starting with
# "_" are distractors: labels we recognise so that their values are not taken for a field. Flags:
# "inline" = the value must be on the label's line (titles such as "INVOICE 2026-001"), "alone" = no
# word may precede the label in its cell ("Date" but not "Due Date"); "-" = none.
_LABEL_TABLE = r"""
# --- the document's own number
i     number           id       1.0  -      (?:tax\s+|commercial\s+)?invoice\s*{NO}|invoice\s+id
i     number           id       0.95 -      bill\s*{NO}|rechnungs?-?\s?(?:nummer|nr\.?)
                                            |(?:rechnung|facture)\s*{NO}
i     number           id       0.6  inline (?:tax\s+)?invoice|rechnung|facture
ips   number           id       0.55 -      document\s*{NO}
p     number           id       1.0  -      (?:purchase\s+order|p\.?\s?o\.?)\s*{NO}
                                            |bestell(?:ungs?)?-?\s?(?:nummer|nr\.?)
p     number           id       0.85 -      order\s*{NO}
p     number           id       0.6  inline purchase\s+order|bestellung
s     number           id       1.0  -      (?:shipment|shipping\s+order|shipping|delivery\s+note|delivery
                                            |dispatch(?:\s+note)?|packing\s+(?:slip|list)|consignment|s\.?o\.?
                                            |bill\s+of\s+lading|b/?l)\s*{NO}|lieferschein-?\s?(?:nummer|nr\.?)
s     number           id       0.6  inline delivery\s+note|packing\s+slip|shipping\s+order|lieferschein
r     number           id       1.0  -      (?:report|count|inventory|stock\s+count)\s*{NO}
# --- the order an invoice (or a delivery) refers to
is    order_reference  id       1.0  -      (?:your\s+|customer\s+|buyer'?s?\s+)?(?:purchase\s+order
                                            |p\.?\s?o\.?)(?:\s*{NO}|\s+ref(?:erence)?\.?)?
is    order_reference  id       0.9  -      (?:your\s+|customer\s+)?order\s*(?:{NO}|ref(?:erence)?\.?)
                                            |ihre\s+bestellung|bestell-?nr\.?
i     order_reference  id       0.6  -      your\s+ref(?:erence)?\.?
ips   _id              id       1.0  -      (?:customer|client|account|vendor|supplier|kunden)\s*(?:{NO}|id)
                                            |kunden-?nr\.?
                                            |(?:tracking|awb|quote|quotation|contract|project)\s*{NO}
                                            |cost\s+cent(?:er|re)|phone|tel\.?|fax
                                            |(?:delivery\s+note|shipment|invoice)\s*{NO}
# --- dates
ipsr  date             date     0.75 alone  date|datum|dated
i     date             date     1.0  -      (?:invoice|billing|bill|issue|tax\s+point)\s+date
                                            |date\s+of\s+(?:issue|invoice)|invoice\s+dated|rechnungsdatum
                                            |date\s+de\s+facture|issued(?:\s+on)?
p     date             date     1.0  -      (?:order|p\.?\s?o\.?|purchase\s+order)\s+date|date\s+of\s+order
                                            |bestelldatum
s     date             date     1.0  -      (?:ship(?:ping|ment)?|dispatch(?:ed)?|delivery\s+note
                                            |issue)\s+date|date\s+(?:shipped|of\s+dispatch)|versanddatum
r     date             date     1.0  -      (?:report|count|stock|inventory|valuation|stocktake)\s+date
                                            |(?:stock\s+|inventory\s+)?as\s+(?:of|at)|stichtag
i     due_date         date     1.0  alone  (?:payment\s+)?due(?:\s+date|\s+by|\s+on)?|pay(?:able|ment)?\s+by
                                            |zahlbar\s+bis|fällig(?:keit)?(?:sdatum)?|date\s+d'échéance
                                            |échéance
i     due_date         date     1.0  -      payment\s+due(?:\s+date)?|due\s+date
ipsr  _date            date     1.0  -      (?:delivery|order|ship(?:ping|ment)?|dispatch|service|supply
                                            |performance|receipt|print(?:ed)?|generated|quote|quotation
                                            |contract|last\s+count(?:ed)?|valid|expected\s+delivery
                                            |requested\s+delivery|required\s+delivery
                                            |value)\s+date|(?:required|needed|deliver(?:y)?|valid
                                            |expected)\s+(?:by|until|on)|date\s+(?:required|of\s+delivery
                                            |of\s+supply
                                            |received)|delivery|lieferdatum|leistungsdatum|period
                                            |printed(?:\s+on)?|generated(?:\s+on)?|last\s+count(?:ed)?
                                            |expected\s+delivery|eta|delivered(?:\s+on)?
# --- amounts: the grand total, and what is not it
ipsr  total            amount   1.0  -      grand\s+total|total\s+(?:amount\s+)?(?:due|payable)
                                            |amount\s+(?:due|payable)|balance\s+due|invoice\s+total
                                            |total\s*\(?incl(?:uding|\.)?\s*(?:vat|tax|mwst)\.?\)?
                                            |total\s+gross|gross\s+total|gesamtbetrag|gesamtsumme
                                            |rechnungsbetrag|total\s+ttc|(?:order|p\.?\s?o\.?)\s+total
                                            |total\s+order\s+(?:value|amount)|total\s+amount|please\s+pay
ipsr  total            amount   0.8  -      total|summe|montant\s+total
ipsr  _amount          amount   1.0  -      sub-?\s?total|(?:net|vat|tax|mwst)\s+total
                                            |total\s+(?:net|excl(?:uding|\.)?|before|vat|tax|ht|(?:stock
                                            |inventory)\s+value|value|qty|quantity|items|units|weight|packages
                                            |pieces)|zwischensumme|nettobetrag|net\s+amount|amount\s+paid|paid
                                            |deposit|discount|shipping(?:\s+(?:&|and)\s+handling)?|freight
                                            |(?:plus\s+)?(?:vat|tax|mwst|ust|tva|sales\s+tax|iva
                                            |btw)\.?\s*\(?\d+(?:[.,]\d+)?\s*%\)?|(?:vat|tax
                                            |mwst)\s+amount|sales\s+tax|tax|mwst\.?
# --- parties
i     customer         party    1.0  -      bill(?:ed)?[\s-]+to|invoice(?:d)?\s+to|sold\s+to|recipient|buyer
                                            |customer(?!\s*(?:no|nr|number|id|\#|vat|ref|tax|po|order|acc))
                                            |client(?!\s*(?:no|nr|number|id|\#|vat|ref))|rechnungsempfänger
                                            |kunde
i     customer         party    0.5  alone  ship(?:ped)?\s+to|deliver(?:ed)?\s+to|delivery\s+address|to
i     supplier         party    1.0  -      supplier|vendor|seller|issued\s+by|payee|beneficiary
                                            |account\s+(?:holder|name)
                                            |(?:make\s+)?(?:cheques|checks|payments?)\s+payable\s+to
                                            |payable\s+to|remit(?:tance)?\s+to|lieferant|verkäufer
i     supplier         party    0.7  alone  from
p     supplier         party    1.0  -      vendor|supplier|seller|order(?:ed)?\s+from|lieferant
p     supplier         party    0.7  alone  to
p     customer         party    0.9  -      bill(?:ed)?[\s-]+to|invoice\s+to|purchaser|ordered\s+by|customer
                                            |buyer|issued\s+by|from
p     customer         party    0.6  -      ship(?:ped)?\s+to|deliver(?:y)?\s+to|delivery\s+address
s     customer         party    1.0  -      ship(?:ped)?\s+to|deliver(?:ed|y)?\s+to|consignee|customer
                                            |recipient|delivery\s+address|empfänger
s     customer         party    0.7  alone  sold\s+to|bill(?:ed)?[\s-]+to|to
s     supplier         party    1.0  -      shipper|sender|consignor|versender|ship\s+from
s     supplier         party    0.7  alone  from
r     _party           party    1.0  -      warehouse|location|site|prepared\s+by|counted\s+by
# --- tax and bank ids
ips   vat_id           vat      1.0  -      (?:our\s+)?vat(?:\s+reg(?:istration|\.)?)?(?:\s+(?:id|no\.?|number
                                            |\#))?|vat\s+id|ust-?\s?id(?:nr)?\.?(?:-?nr\.?)?|uid(?:-?nr\.?)?
                                            |n°\s*tva|tva(?:\s+intracom(?:munautaire)?)?|tax\s+id
                                            |partita\s+iva|p\.\s?iva|nif|cif|btw(?:-?nr\.?|-?nummer)?
                                            |mwst-?nr\.?
ips   _vat             vat      1.0  -      (?:customer|client|buyer|your|recipient)(?:'s)?\s+(?:vat|tax
                                            |ust)(?:\s+reg(?:istration|\.)?)?(?:\s+(?:id|no\.?|number))?
ips   iban             iban     1.0  -      iban
ipsr  currency         currency 1.0  -      currency|währung|devise|all\s+amounts\s+in|prices\s+in
# --- other labels: recognised so that header rows and runs of labels line up
ipsr  _items           none     1.0  alone  description|item(?:\s+(?:no\.?|code|\#))?|qty|quantity
                                            |unit\s+price|unit\s+cost|price|amount|sku|article|art\.?\s*nr\.?
                                            |line(?:\s+total)?|pos\.?|uom|unit|on\s+hand|reserved|available
                                            |reorder\s+(?:level|point)|bin|weight|hs\s+code|packages|ordered
                                            |shipped|backorder(?:ed)?|vat\s*%|tax\s*%|rate|bezeichnung|menge
                                            |preis|betrag
ipsr  _other           none     1.0  alone  (?:payment\s+)?terms|page|sales\s+rep(?:resentative)?|contact
                                            |carrier|incoterms?|shipping\s+method|ship\s+via|via|reference
                                            |ref\.?|notes?|remarks|bic|swift|bank|e-?mail|web(?:site)?|phone
                                            |tel\.?|fax|prepared\s+by|approved\s+by|requested\s+by
                                            |buyer\s+contact|department|cost\s+cent(?:er|re)|warehouse
                                            |location|attention|attn\.?
"""
_DOCTYPE_CODES = {"i": INV, "p": PO, "s": SHIP, "r": STOCK}


@dataclass(frozen=True, slots=True)
class _Label:
    field: str
    reader: str
    weight: float
    pattern: re.Pattern[str]
    inline: bool
    alone: bool


def _labels(doctype: str) -> tuple[_Label, ...]:
    """The label table's rows for one doctype, compiled."""
    rows: list[list[str]] = []
    for raw in _LABEL_TABLE.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw.startswith(" "):
            rows[-1][-1] += line
        else:
            rows.append(line.split(None, 5))
    out = []
    for codes, field, reader, weight, flags, body in rows:
        if doctype not in {_DOCTYPE_CODES[c] for c in codes}:
            continue
        # a label never spans two cells: its spaces are spaces, not the tab between cells
        body = body.replace("{NO}", _NO).replace(r"[\s-]", "[ \u00a0-]").replace(r"\s", "[ \u00a0]")
        pattern = re.compile(rf"(?<![\w])(?:{body})(?![\w]|-\w)", re.I)
        out.append(_Label(field, reader, float(weight), pattern, flags == "inline", flags == "alone"))
    return tuple(out)


_LABELS: dict[str, tuple[_Label, ...]] = {doctype: _labels(doctype) for doctype in DOCTYPES}
_SEP = re.compile(r"[\s:#.\-–—=|]*")  # between a label and its value
_CURRENCY_LEAD = re.compile(r"(?:[A-Z]{3}|[^\s\d(−-]{1,3})?\s?")  # "EUR ", "€", "US$" before an amount
_WORD_BEFORE = re.compile(r"[A-Za-zÀ-ÿ]\.?[ ]*$")  # a word just before a label that must stand alone
_LABEL_TAIL = re.compile(r"\s*(?:\((?:[A-Z]{3}|[€$£])\)|[A-Z]{3}(?![\w])|in\s+[A-Z]{3})?\s*[:#.]*\s*")

_CO_SUFFIX = (
    r"(?:GmbH(?:\s*&\s*Co\.?\s*KG)?|AG|KG|SE|UG|e\.K\.|Ltd\.?|Limited|plc|PLC|LLP|LLC|Inc\.?|Corp\.?|Corporation"
    r"|Co\.|S\.A\.S\.?|SAS|S\.A\.|SA|SARL|S\.à\s?r\.l\.|B\.V\.|BV|N\.V\.|NV|S\.r\.l\.|S\.p\.A\.|S\.L\.|Oy|AB"
    r"|A/S|ApS|AS|Sp\.\s?z\s?o\.o\.|s\.r\.o\.|Kft\.|Pty\.?\s+Ltd\.?)"
)
_CO_WORD = r"(?:[A-ZÀ-Ý0-9][\w'’.\-]*|&|and|und|et|of|de|van|der|den|von|du|la|y)"
COMPANY_RE = re.compile(
    rf"(?<![\w])[A-ZÀ-Ý][\w'’&.\-]*(?:[ \u00a0]+{_CO_WORD}){{0,5}}?[ \u00a0]+{_CO_SUFFIX}(?![\w])"
)
_ID_RE = re.compile(r"#?\s?([A-Z0-9][A-Za-z0-9\-/_.]*[A-Za-z0-9]|[0-9]{2,})(?![\w])")
DOCTYPE_TITLES: dict[str, re.Pattern[str]] = {
    INV: re.compile(
        r"\b(?:(?:tax\s+|commercial\s+|pro[\s-]?forma\s+)?invoice|rechnung|facture)\b(?!\s+to\b)", re.I
    ),
    PO: re.compile(r"\b(?:purchase\s+order|bestellung|bon\s+de\s+commande)\b", re.I),
    SHIP: re.compile(
        r"\b(?:shipping\s+order|delivery\s+note|packing\s+(?:slip|list)|dispatch\s+note|shipping\s+instructions"
        r"|bill\s+of\s+lading|lieferschein|bon\s+de\s+livraison)\b",
        re.I,
    ),
    STOCK: re.compile(
        r"\b(?:inventory|stock)\s+(?:report|level|count|valuation|on\s+hand|summary|list)", re.I
    ),
}


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True, slots=True)
class _Hit:
    """A label on a line; ``end`` is where its value may start."""

    label: _Label
    line: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Cand:
    value: str
    start: int
    end: int
    score: float
    method: str
    tiebreak: Decimal = Decimal(0)


# reads a value for a label and keeps it as a candidate
_AddFn = Callable[["_Hit", int, int, float], "_Cand | None"]


def _lines(text: str) -> list[_Line]:
    out, pos = [], 0
    for raw in text.split("\n"):
        stripped = raw.strip()
        if stripped:
            out.append(_Line(pos + raw.index(stripped[0]), stripped))
        pos += len(raw) + 1
    return out


def guess_doctype(text: str) -> str | None:
    """The doctype whose title word comes first (titles sit at the top), or None."""
    best: tuple[int, str] | None = None
    for doctype, pattern in DOCTYPE_TITLES.items():
        m = pattern.search(text)
        if m is not None and (best is None or m.start() < best[0]):
            best = (m.start(), doctype)
    return None if best is None else best[1]


def _hits(line: _Line, index: int, labels: tuple[_Label, ...]) -> list[_Hit]:
    """Labels on one line; where two overlap the longer wins (so "Sub-total" is not "Total")."""
    found: list[_Hit] = []
    for label in labels:
        for m in label.pattern.finditer(line.text):
            if label.alone and _WORD_BEFORE.search(_CELL_GAP.split(line.text[: m.start()])[-1]):
                continue
            tail = _LABEL_TAIL.match(line.text, m.end()) if label.reader == "amount" else None
            end = tail.end() if tail is not None else m.end()
            found.append(_Hit(label, index, m.start(), end))
    found.sort(key=lambda h: (h.start, -(h.end - h.start), -h.label.weight))
    kept: list[_Hit] = []
    for hit in found:
        if kept and hit.start < kept[-1].end:
            continue
        kept.append(hit)
    return kept


class _Reader:
    """Reads typed values at a position of the text; one per document (it knows the date order)."""

    def __init__(self, text: str, day_first: bool) -> None:
        self.text = text
        self.day_first = day_first

    def read(self, reader: str, pos: int, stop: int) -> tuple[str, int, int, float] | None:
        """(value, start, end, validator factor) for a value starting at ``pos`` (before ``stop``)."""
        text = self.text
        sep = _SEP.match(text, pos, stop)
        pos = sep.end() if sep is not None else pos
        if pos >= stop:
            return None
        if reader == "date":
            dates = v.find_dates(text, pos, stop)
            if not dates or dates[0].start > pos + 2:
                return None
            date = dates[0]
            iso = date.iso(self.day_first)
            return (iso, date.start, date.end, 0.85 if date.ambiguous else 1.0) if iso else None
        if reader == "amount":
            m = _CURRENCY_LEAD.match(text, pos, stop)
            lead = (
                m.end()
                if m is not None and (m.group().strip() == "" or v.detect_currency(m.group()))
                else pos
            )
            am = v.AMOUNT_RE.match(text, lead, stop)
            if am is None:
                return None
            value = v.parse_amount(am.group())
            if value is None:
                return None
            return v.format_amount(value), pos if lead > pos else am.start(), am.end(), 1.0
        if reader == "id":
            im = _ID_RE.match(text, pos, stop)
            if im is None:
                return None
            raw = im.group(1).rstrip(".")
            if (
                not re.search(r"\d", raw)
                or v.find_dates(raw)
                or re.fullmatch(r"\d{1,3}([.,]\d{3})*[.,]\d{2}", raw)
            ):
                return None
            return raw, im.start(1), im.start(1) + len(raw), 1.0
        if reader == "party":
            cm = COMPANY_RE.match(text, pos, stop)
            if cm is not None:
                return cm.group(), cm.start(), cm.end(), 1.0
            return None
        if reader == "vat":
            found = v.find_vat_id(text[:stop], pos)
            if found is None or found[1] > pos + 2:
                return None
            return found[0], found[1], found[2], 1.0
        if reader == "iban":
            ibans = [i for i in v.find_ibans(text[pos:stop]) if i[1] <= 2]
            if not ibans:
                return None
            iban, start, end = ibans[0]
            return iban, pos + start, pos + end, 1.0
        if reader == "currency":
            cur = v.CURRENCY_RE.match(text, pos, stop)
            if cur is None:
                return None
            code = v.detect_currency(cur.group())
            return (code, cur.start(), cur.end(), 1.0) if code else None
        return None


def _label_only(hits: list[_Hit], line: _Line) -> bool:
    """Whether the line is nothing but one label (and maybe a colon): its value is elsewhere."""
    return (
        len(hits) == 1
        and not hits[0].label.inline
        and hits[0].start == 0
        and not line.text[hits[0].end :].strip(" :#.-")
    )


# DOCX readers join a row's cells with tabs, layout-mode PDF text with wide runs of spaces
_CELL_GAP = re.compile(r"\t|[ \u00a0]{3,}")


def _cells(line: _Line) -> list[tuple[int, int]]:
    """Offsets (in the line) of its cells: text between tabs or wide runs of spaces."""
    out, pos = [], 0
    for gap in _CELL_GAP.finditer(line.text):
        out.append((pos, gap.start()))
        pos = gap.end()
    out.append((pos, len(line.text)))
    return out


def _header_row(hits: list[_Hit], line: _Line) -> bool:
    """Whether the line is several labels and nothing else ("Invoice No. Date Due Date").

    A tab-separated row (a DOCX table row) counts when at least two cells and half of them are
    labels: its values are then read cell by cell, so an unknown label costs only its own column.
    """
    if len(hits) < 2 or any(h.label.inline for h in hits):
        return False
    cells = _cells(line)
    if len(cells) > 1:
        labelled = sum(1 for a, b in cells if _cell_label(hits, line, a, b) is not None)
        return labelled >= 2 and 2 * labelled >= len(cells)
    if hits[0].start != 0:
        return False
    gaps = [line.text[a.end : b.start] for a, b in pairwise(hits)]
    return all(not g.strip(" :#.-|") for g in gaps) and not line.text[hits[-1].end :].strip(" :#.-")


def _cell_label(hits: list[_Hit], line: _Line, a: int, b: int) -> _Hit | None:
    """The label that is the whole cell ``line.text[a:b]``, if one is."""
    inside = [h for h in hits if a <= h.start < b]
    if len(inside) != 1:
        return None
    hit = inside[0]
    if line.text[a : hit.start].strip() or line.text[hit.end : b].strip(" :#.-"):
        return None
    return hit


def _candidates(text: str, doctype: str, day_first: bool) -> tuple[dict[str, list[_Cand]], list[_Hit]]:
    lines = _lines(text)
    labels = _LABELS[doctype]
    reader = _Reader(text, day_first)
    per_line = [_hits(line, i, labels) for i, line in enumerate(lines)]
    only = [_label_only(h, line) for h, line in zip(per_line, lines, strict=True)]
    cands: dict[str, list[_Cand]] = {}

    def add(hit: _Hit, pos: int, stop: int, factor: float = 1.0, before: int | None = None) -> _Cand | None:
        got = reader.read(hit.label.reader, pos, stop)
        if got is None or (before is not None and got[1] >= before):
            return None
        value, start, end, check = got
        method = "rule+validator" if hit.label.reader in ("date", "amount", "vat", "iban") else "rule"
        amount = Decimal(value) if hit.label.reader == "amount" else Decimal(0)
        cand = _Cand(value, start, end, hit.label.weight * check * factor, method, amount)
        cands.setdefault(hit.label.field, []).append(cand)
        return cand

    i = 0
    while i < len(lines):
        line, hits = lines[i], per_line[i]
        if only[i]:
            # a run of label-only lines, then as many value lines: a header row or a key/value column
            j = i
            while j < len(lines) and only[j]:
                j += 1
            run = [per_line[k][0] for k in range(i, j)]
            # an items table's header is no key/value run; but a specific label right after it (the
            # table went on to a new page: "Qty / Line total / Order Total") starts its own run
            last_item = max((k for k, h in enumerate(run) if h.label.field == "_items"), default=-1)
            tail = run[last_item + 1 :]
            if last_item >= 0 and tail and all(h.label.weight >= 0.9 for h in tail):
                run = tail
            items = any(h.label.field == "_items" for h in run)
            for offset, hit in enumerate(run):
                target = j + offset
                if items or hit.label.reader == "none":
                    continue
                if hit.label.reader == "party":
                    _add_party(add, hit, lines, per_line, i + offset + 1 if len(run) == 1 else target)
                elif target < len(lines) and not per_line[target]:
                    add(hit, lines[target].start, lines[target].end, 1.0 if len(run) == 1 else 0.95)
                elif target < len(lines):
                    add(hit, lines[target].start, lines[target].end, 0.9)
            i = j
            continue
        if _header_row(hits, line) and i + 1 < len(lines):
            nxt = lines[i + 1]
            cells = _cells(line)
            values = _cells(nxt)
            if len(cells) > 1:  # tab-separated table row: cell by cell
                if len(cells) == len(values):
                    for (a, b), (va, vb) in zip(cells, values, strict=True):
                        label = _cell_label(hits, line, a, b)
                        if label is not None and label.label.reader not in ("none", "party"):
                            add(label, nxt.start + va, nxt.start + vb, 0.95)
            else:  # cells joined by spaces: read the values in the labels' order
                pos = nxt.start
                for hit in hits:
                    if hit.label.reader in ("none", "party") or not add(hit, pos, nxt.end, 0.9):
                        break
                    pos = cands[hit.label.field][-1].end
            i += 1
            continue
        consumed = 0  # a value may contain what looks like a label ("PO-4411" after "Your PO No.")
        for k, hit in enumerate(hits):
            if line.start + hit.start < consumed or hit.label.reader == "none":
                continue
            before = hits[k + 1].start + line.start if k + 1 < len(hits) else line.end
            cand = add(hit, line.start + hit.end, line.end, 1.0, before)
            if cand is not None:
                consumed = cand.end
            elif hit.label.reader == "party" and not line.text[hit.end :].strip(" :"):
                _add_party(add, hit, lines, per_line, i + 1)
        i += 1
    return cands, [h for hits in per_line for h in hits]


def _add_party(add: _AddFn, hit: _Hit, lines: list[_Line], per_line: list[list[_Hit]], first: int) -> None:
    """A party block: the company is on one of the next few lines (name, then address)."""
    for k in range(first, min(first + 3, len(lines))):
        if per_line[k] and per_line[k][0].start == 0 and k > first:
            return
        if add(hit, lines[k].start, lines[k].end, 1.0 if k == first else 0.9):
            return


def _issuer(lines: list[_Line], hits: list[_Hit]) -> _Cand | None:
    """The letterhead company: the first company name before any party label, in the first lines."""
    party_lines = {h.line for h in hits if h.label.reader == "party"}
    first_party = min(party_lines, default=len(lines))
    for index, line in enumerate(lines[: min(first_party + 1, 20)]):
        for a, b in _cells(line):
            if any(a <= h.start < b for h in hits if h.line == index and h.label.reader == "party"):
                continue
            m = COMPANY_RE.search(line.text, a, b)
            if m is not None and m.start() <= a + 2:
                return _Cand(m.group(), line.start + m.start(), line.start + m.end(), 0.7, "rule")
    for line in reversed(lines[-8:]):  # a footer that names the company ("Nordwind GmbH · Hafenstr. 1")
        m = COMPANY_RE.match(line.text)
        if m is not None:
            return _Cand(m.group(), line.start + m.start(), line.start + m.end(), 0.55, "rule")
    return None


def _recipient(lines: list[_Line], issuer: _Cand) -> _Cand | None:
    """Without a "Bill To" label (an address window), the first other company near the top."""
    for line in lines[:25]:
        for a, b in _cells(line):
            m = COMPANY_RE.search(line.text, a, b)
            if m is not None and m.start() <= a + 2 and m.group() != issuer.value:
                return _Cand(m.group(), line.start + m.start(), line.start + m.end(), 0.5, "rule")
    return None


def _unlabelled(claimed: list[tuple[int, int]], finder: Iterator[tuple[str, int, int]]) -> _Cand | None:
    """The first value found outside the ``claimed`` ranges, as a weak candidate."""
    for value, start, end in finder:
        if not any(s <= start < e for s, e in claimed):
            return _Cand(value, start, end, 0.5, "rule+validator")
    return None


_BLOCK_ENDS = frozenset(
    ("customer", "supplier", "number", "date", "due_date", "total", "iban", "order_reference")
)


def _customer_blocks(lines: list[_Line], hits: list[_Hit], names: list[_Cand]) -> list[tuple[int, int]]:
    """Text ranges of the customer's address block (a VAT id there is the customer's): from its
    label, or from the customer's name where no label introduced it, to the next field label."""
    by_line: dict[int, list[_Hit]] = {}
    for hit in hits:
        by_line.setdefault(hit.line, []).append(hit)
    starts = [(h.line, lines[h.line].start + h.start) for h in hits if h.label.field in ("customer", "_vat")]
    for name in names:
        index = next((k for k, line in enumerate(lines) if line.start <= name.start <= line.end), None)
        if index is not None:
            starts.append((index, name.start))
    blocks = []
    for first, offset in starts:
        last = first
        for k in range(first + 1, min(first + 9, len(lines))):
            if any(h.label.field in _BLOCK_ENDS for h in by_line.get(k, [])):
                break
            last = k
        blocks.append((offset, lines[last].end))
    return blocks


def extract_fields(text: str, doctype: str | None = None) -> dict[str, ExtractedField]:
    """Key fields found in ``text``: normalised, scored, each with the span it was read from.

    Only the fields that ``doctype`` carries (``DOCTYPE_FIELDS``) and that were found; a doctype
    that is None or unknown is guessed from the title (invoice when there is none).
    """
    if doctype not in DOCTYPES:
        doctype = guess_doctype(text) or INV
    currency_guess = _document_currency(text)
    lines = _lines(text)
    head = "\n".join(line.text for line in lines[:8])  # the letterhead: whose habits the dates follow
    day_first = v.infer_day_first(text, currency_guess[0] if currency_guess else None, head=head)
    cands, hits = _candidates(text, doctype, day_first)

    issuer = _issuer(lines, hits)
    if issuer is not None and doctype in (INV, SHIP):
        cands.setdefault("supplier", []).append(issuer)
    elif issuer is not None and doctype == PO:
        cands.setdefault("customer", []).append(issuer)
    recipient = "supplier" if doctype == PO else "customer"
    if issuer is not None and doctype != STOCK:
        other = _recipient(lines, issuer)
        if other is not None:
            cands.setdefault(recipient, []).append(other)
    claimed = [(c.start, c.end) for name, cs in cands.items() for c in cs if name not in ("date", "number")]
    if not cands.get("date"):
        dates = ((d.iso(day_first) or "", d.start, d.end) for d in v.find_dates(text) if d.iso(day_first))
        fallback = _unlabelled(claimed, dates)
        if fallback is not None:
            cands["date"] = [_Cand(fallback.value, fallback.start, fallback.end, 0.35, "rule+validator")]
    if doctype != STOCK:
        blocks = _customer_blocks(lines, hits, cands.get("customer", []) if doctype == INV else [])
        cands["vat_id"] = [
            c
            if not any(s <= c.start < e for s, e in blocks)
            else _Cand(c.value, c.start, c.end, c.score * 0.3, c.method)
            for c in cands.get("vat_id", [])
        ]
        unl = _unlabelled(blocks, _all_vat_ids(text))
        if unl is not None:
            cands["vat_id"].append(unl)
        iban = _unlabelled([], iter(v.find_ibans(text)))
        if iban is not None:
            cands.setdefault("iban", []).append(_Cand(iban.value, iban.start, iban.end, 0.8, iban.method))

    out: dict[str, ExtractedField] = {}
    for name, found in cands.items():
        if name.startswith("_") or not found:
            continue
        if name == "vat_id" and max(c.score for c in found) < 0.45:
            continue  # only the customer's VAT id is printed: not the supplier's
        if name == "total":
            found = _check_totals(found, cands.get("_amount", []))
            best = max(found, key=lambda c: (round(c.score, 3), c.tiebreak, c.start))
        else:
            best = max(found, key=lambda c: (round(c.score, 3), -c.start))
        out[name] = ExtractedField(name, best.value, min(1.0, best.score), best.start, best.end, best.method)
    currency = _currency(text, out.get("total"), cands.get("currency", []), currency_guess)
    if currency is not None:
        out["currency"] = currency
    return {name: found for name, found in out.items() if name in DOCTYPE_FIELDS[doctype]}


def _all_vat_ids(text: str) -> Iterator[tuple[str, int, int]]:
    pos = 0
    while (found := v.find_vat_id(text, pos)) is not None:
        yield found
        pos = found[2]


def _check_totals(found: list[_Cand], others: list[_Cand]) -> list[_Cand]:
    """A total equal to another amount plus the tax (subtotal + VAT) is surely the grand total."""
    parts = {c.tiebreak for c in others}
    out = []
    for cand in found:
        consistent = any(cand.tiebreak - p in parts for p in parts if p and p < cand.tiebreak)
        out.append(
            _Cand(
                cand.value,
                cand.start,
                cand.end,
                cand.score + (0.1 if consistent else 0),
                cand.method,
                cand.tiebreak,
            )
        )
    return out


def _document_currency(text: str) -> tuple[str, int, int] | None:
    """The most frequent currency symbol or code in the text, with its first span."""
    counts: Counter[str] = Counter()
    first: dict[str, tuple[int, int]] = {}
    for m in v.CURRENCY_RE.finditer(text):
        code = v.detect_currency(m.group())
        if code is not None:
            counts[code] += 1
            first.setdefault(code, (m.start(), m.end()))
    if not counts:
        return None
    code = counts.most_common(1)[0][0]
    return code, *first[code]


def _currency(
    text: str, total: ExtractedField | None, labelled: list[_Cand], guess: tuple[str, int, int] | None
) -> ExtractedField | None:
    """The total's own currency (on its line), else a "Currency:" label, else the most frequent one."""
    if total is not None:
        line_start = text.rfind("\n", 0, total.start) + 1
        line_end = text.find("\n", total.end)
        window_end = len(text) if line_end < 0 else line_end
        for m in v.CURRENCY_RE.finditer(text, line_start, window_end):
            code = v.detect_currency(m.group())
            if code is not None:
                return ExtractedField("currency", code, 0.95, m.start(), m.end(), "rule+validator")
        # the label's line ("Total (EUR)") when the value stood on the next line
        prev_start = text.rfind("\n", 0, max(line_start - 1, 0)) + 1
        for m in v.CURRENCY_RE.finditer(text, prev_start, line_start):
            code = v.detect_currency(m.group())
            if code is not None:
                return ExtractedField("currency", code, 0.9, m.start(), m.end(), "rule+validator")
    if labelled:
        best = labelled[0]
        return ExtractedField("currency", best.value, 0.9, best.start, best.end, "rule+validator")
    if guess is not None:
        return ExtractedField("currency", guess[0], 0.6, guess[1], guess[2], "rule+validator")
    return None
