"""Deterministic generator of realistic business documents (PDF and DOCX) with known key fields.

Why: the document pipeline (text extraction, classification, key-field extraction) needs a test set
whose answers are known, without shipping anybody's real invoices. Four classes (invoice, purchase
order, shipping order, inventory report) are drawn from many layouts so that neither the classifier
nor the field rules can lean on one template: letterhead left or right or under a logo, key/value
lines or tables or a header row, items tables with different columns, totals as a table or lines,
footers with bank details. Values vary the way real documents do: company names and addresses from
ten countries, date formats (``2026-03-14``, ``14/03/2026``, ``03/14/2026``, ``March 14, 2026``,
``14.03.2026``, ``14 Mar 2026``), number formats (``1,234.50``, ``1.234,50``, ``1 234,50``,
``1'234.50``), currency written as symbol or code before or after, label synonyms ("Invoice No.",
"Invoice #", "Bill No.", "Rechnungsnummer"), valid IBANs (mod-97 check digits computed here) and VAT
ids, and distractors: due, delivery and order dates, customer numbers, PO references, subtotals.

Everything is driven by ``random.Random`` seeded per document, and the files are written with fixed
timestamps, so the same seed gives byte-identical files and the same manifest.

Usage::

    python examples/generate_documents.py OUT [--n 200] [--seed 0] [--formats pdf,docx]

or, from Python, ``generate_documents(out_dir, n, seed)``. ``OUT/manifest.jsonl`` has one line per
file: ``{"path", "doctype", "format", "fields", "layout"}``; ``fields`` holds the normalised
expected values (ISO dates, amounts as ``"1234.50"``, IBAN and VAT id without spaces) of the key
fields that the document carries and that its doctype is scored on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from random import Random
from typing import Any
from xml.sax.saxutils import escape

DOCTYPES: tuple[str, ...] = ("invoice", "purchase_order", "shipping_order", "inventory_report")
# the fields scored per doctype (mirrors deskpilot.documents.model.DOCTYPE_FIELDS; kept standalone)
SCORED: dict[str, tuple[str, ...]] = {
    "invoice": (
        "number",
        "date",
        "due_date",
        "supplier",
        "customer",
        "total",
        "currency",
        "vat_id",
        "iban",
        "order_reference",
    ),
    "purchase_order": ("number", "date", "supplier", "customer", "total", "currency"),
    "shipping_order": ("number", "date", "customer"),
    "inventory_report": ("date",),
}
CENT = Decimal("0.01")


# --------------------------------------------------------------------------------------------------
# Countries: names, addresses, VAT ids, IBANs, habits for dates and numbers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    name: str
    currency: str
    vat_rate: Decimal
    roots: tuple[str, ...]
    trades: tuple[str, ...]
    suffixes: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # (postcode, city)
    streets: tuple[str, ...]
    address: str  # "{no} {street}" order and lines: see _address()
    date_styles: tuple[str, ...]
    number_styles: tuple[str, ...]
    iban_bban: str  # n = digit, a = letter, c = letter or digit; "" for none
    vat_format: str  # same codes; "" for none
    banks: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country(
        "DE",
        "Germany",
        "EUR",
        Decimal(19),
        (
            "Nordwind",
            "Bergmann",
            "Rheintal",
            "Hansa",
            "Elbtal",
            "Weserland",
            "Keller",
            "Brandt",
            "Falkenberg",
        ),
        ("Logistik", "Industrietechnik", "Handels", "Bürobedarf", "Maschinenbau", "Elektro", "Verpackung"),
        ("GmbH", "GmbH", "AG", "GmbH & Co. KG", "KG"),
        (
            ("20457", "Hamburg"),
            ("80331", "München"),
            ("50667", "Köln"),
            ("70173", "Stuttgart"),
            ("04109", "Leipzig"),
            ("28195", "Bremen"),
        ),
        ("Hafenstraße", "Industriestr.", "Bahnhofstraße", "Am Sandtorkai", "Lindenallee", "Gewerbering"),
        "street no",
        ("dmy_dot", "dmy_dot", "dmy_dot", "iso", "de_long"),
        ("de", "de", "plain_comma", "en"),
        "nnnnnnnnnnnnnnnnnn",
        "DEnnnnnnnnn",
        ("Deutsche Bank", "Commerzbank", "Hamburger Sparkasse"),
    ),
    Country(
        "AT",
        "Austria",
        "EUR",
        Decimal(20),
        ("Donau", "Tirol", "Wienerwald", "Steirer", "Alpenblick"),
        ("Logistik", "Handels", "Technik", "Bürobedarf"),
        ("GmbH", "AG"),
        (("1010", "Wien"), ("4020", "Linz"), ("8010", "Graz"), ("5020", "Salzburg")),
        ("Mariahilfer Straße", "Landstraße", "Industriezeile"),
        "street no",
        ("dmy_dot", "dmy_dot", "iso"),
        ("de", "plain_comma"),
        "nnnnnnnnnnnnnnnn",
        "ATUnnnnnnnn",
        ("Erste Bank", "Raiffeisenbank"),
    ),
    Country(
        "FR",
        "France",
        "EUR",
        Decimal(20),
        ("Lumière", "Bastide", "Garonne", "Provence", "Montblanc", "Vercors"),
        ("Distribution", "Industries", "Fournitures", "Logistique", "Services"),
        ("SARL", "SAS", "S.A."),
        (("69002", "Lyon"), ("75011", "Paris"), ("13001", "Marseille"), ("31000", "Toulouse")),
        ("rue de la République", "avenue Jean Jaurès", "boulevard Voltaire", "rue des Entrepreneurs"),
        "no street",
        ("dmy_slash", "dmy_slash", "dmy_dot", "fr_long", "iso"),
        ("fr", "fr", "de"),
        "nnnnnnnnnnnnnnnnnnnnnnn",
        "FRnnnnnnnnnnn",
        ("BNP Paribas", "Crédit Agricole", "Société Générale"),
    ),
    Country(
        "NL",
        "Netherlands",
        "EUR",
        Decimal(21),
        ("Van Dijk", "De Vries", "Zuiderzee", "Oranje", "Hollandia"),
        ("Techniek", "Logistics", "Handel", "Trading"),
        ("B.V.", "B.V.", "N.V."),
        (("1015 CJ", "Amsterdam"), ("3011 AD", "Rotterdam"), ("3511 LX", "Utrecht")),
        ("Keizersgracht", "Coolsingel", "Industrieweg"),
        "street no",
        ("dmy_dash", "dmy_dash", "iso", "short_dmy"),
        ("de", "plain_comma", "en"),
        "aaaannnnnnnnnn",
        "NLnnnnnnnnnB01",
        ("ING Bank", "ABN AMRO", "Rabobank"),
    ),
    Country(
        "BE",
        "Belgium",
        "EUR",
        Decimal(21),
        ("Schelde", "Ardennes", "Brabant", "Kempen"),
        ("Logistics", "Trading", "Industries"),
        ("NV", "BV", "SA"),
        (("1000", "Brussels"), ("2000", "Antwerp"), ("9000", "Ghent")),
        ("Rue de la Loi", "Meir", "Industrielaan"),
        "street no",
        ("dmy_slash", "dmy_dot", "iso"),
        ("de", "fr"),
        "nnnnnnnnnnnn",
        "BE0nnnnnnnnn",
        ("KBC", "Belfius", "BNP Paribas Fortis"),
    ),
    Country(
        "IT",
        "Italy",
        "EUR",
        Decimal(22),
        ("Rossi", "Adriatica", "Lombarda", "Vesuvio", "Dolomiti"),
        ("Forniture", "Meccanica", "Trasporti", "Componenti"),
        ("S.r.l.", "S.p.A."),
        (("20121", "Milano"), ("00184", "Roma"), ("10121", "Torino")),
        ("Via Roma", "Corso Buenos Aires", "Via dell'Industria"),
        "street no",
        ("dmy_slash", "dmy_slash", "dmy_dot", "iso"),
        ("de", "plain_comma"),
        "annnnnnnnnnnnnnnnnnnnnn",
        "ITnnnnnnnnnnn",
        ("Intesa Sanpaolo", "UniCredit"),
    ),
    Country(
        "ES",
        "Spain",
        "EUR",
        Decimal(21),
        ("Iberia", "Cantábrico", "Levante", "Castilla"),
        ("Suministros", "Logística", "Industrial"),
        ("S.L.", "S.A."),
        (("28013", "Madrid"), ("08002", "Barcelona"), ("46002", "Valencia")),
        ("Calle Mayor", "Avenida Diagonal", "Calle de Alcalá"),
        "street no",
        ("dmy_slash", "iso"),
        ("de", "plain_comma"),
        "nnnnnnnnnnnnnnnnnnnn",
        "ESannnnnnna",
        ("Banco Santander", "BBVA"),
    ),
    Country(
        "GB",
        "United Kingdom",
        "GBP",
        Decimal(20),
        ("Brightwater", "Thames", "Pennine", "Kingsbridge", "Harbour", "Oakfield", "Redwood", "Ashford"),
        ("Supplies", "Engineering", "Trading", "Components", "Packaging", "Logistics"),
        ("Ltd", "Ltd", "Ltd.", "Limited", "plc"),
        (("M17 1AB", "Manchester"), ("B1 1AA", "Birmingham"), ("LS1 4AP", "Leeds"), ("EC1A 1BB", "London")),
        ("Riverside Park", "High Street", "Station Road", "Canal Street"),
        "no street uk",
        ("dmy_slash", "dmy_slash", "long_dmy", "short_dmy", "dmy_dash_mon", "ordinal_dmy", "iso"),
        ("en", "en", "plain"),
        "aaaannnnnnnnnnnnnn",
        "GBnnnnnnnnn",
        ("Barclays", "HSBC UK", "Lloyds Bank"),
    ),
    Country(
        "IE",
        "Ireland",
        "EUR",
        Decimal(23),
        ("Shannon", "Liffey", "Emerald", "Connacht"),
        ("Supplies", "Trading", "Technologies"),
        ("Ltd", "Limited"),
        (("D02 X576", "Dublin 2"), ("T12 R5CP", "Cork")),
        ("Grand Canal Street", "Patrick Street"),
        "no street uk",
        ("dmy_slash", "long_dmy", "iso"),
        ("en", "plain"),
        "aaaannnnnnnnnnnnnn",
        "IEnnnnnnna",
        ("AIB", "Bank of Ireland"),
    ),
    Country(
        "CH",
        "Switzerland",
        "CHF",
        Decimal("8.1"),
        ("Matterhorn", "Helvetia", "Zürichsee", "Jura"),
        ("Logistik", "Handels", "Präzisionstechnik"),
        ("AG", "GmbH", "SA"),
        (("8001", "Zürich"), ("4051", "Basel"), ("3011", "Bern")),
        ("Bahnhofstrasse", "Industriestrasse", "Seestrasse"),
        "street no",
        ("dmy_dot", "dmy_dot", "iso"),
        ("ch", "ch", "en"),
        "nnnnnnnnnnnnnnnnn",
        "CHE-nnn.nnn.nnn MWST",
        ("UBS", "Zürcher Kantonalbank"),
    ),
    Country(
        "US",
        "USA",
        "USD",
        Decimal(0),
        ("Atlas", "Summit", "Pioneer", "Great Lakes", "Bluebonnet", "Cascade", "Liberty", "Redstone"),
        ("Components", "Industrial Supply", "Office Solutions", "Freight", "Manufacturing", "Technologies"),
        ("Inc.", "Inc.", "LLC", "Corp.", "Co."),
        (
            ("PA 19107", "Philadelphia"),
            ("IL 60606", "Chicago"),
            ("TX 78701", "Austin"),
            ("WA 98101", "Seattle"),
        ),
        ("Market Street", "Wacker Drive", "Congress Avenue", "Pine Street"),
        "no street us",
        ("mdy_slash", "mdy_slash", "long_mdy", "short_mdy", "ordinal_mdy", "iso"),
        ("en", "en", "plain"),
        "",
        "",
        ("Chase", "Wells Fargo"),
    ),
)
_PEOPLE = (
    "Maria Schulz",
    "Jonas Weber",
    "Claire Dubois",
    "Pieter de Boer",
    "Giulia Bianchi",
    "Laura García",
    "James Carter",
    "Siobhan Kelly",
    "Emily Johnson",
    "Tom Becker",
    "Sophie Martin",
    "Lukas Huber",
)
_PRODUCTS: tuple[tuple[str, int, int], ...] = (
    ("A4 copy paper 80 g/m², box of 5 reams", 18, 45),
    ("Toner cartridge TN-2420, black", 35, 95),
    ("USB-C docking station", 120, 290),
    ('27" monitor, IPS, 1440p', 180, 420),
    ("Wireless keyboard and mouse set", 25, 80),
    ("Hex bolts M8x40, stainless, box of 100", 8, 25),
    ("Ball bearing 6204-2RS", 3, 12),
    ('Hydraulic hose 1/2", 2 m', 22, 60),
    ("Pallet wrap film 500 mm x 300 m", 15, 35),
    ("Corrugated boxes 600x400x400, bundle of 20", 20, 48),
    ("Road freight, full pallet", 250, 900),
    ("Pallet space, per month", 12, 30),
    ("On-site maintenance, per hour", 65, 140),
    ("Software licence, annual, per user", 90, 480),
    ("Nitrile gloves size L, pack of 100", 9, 22),
    ("LED panel light 60x60 40W", 30, 75),
    ("Ethernet cable Cat6, 5 m", 3, 12),
    ("Thermal label rolls 100x150, box of 12", 25, 60),
    ("Shelving unit 2000x1000x500", 150, 420),
    ("Forklift battery service", 180, 650),
    ("Safety shoes S3, pair", 45, 110),
    ("Barcode scanner, cordless", 140, 330),
    ("Office chair, ergonomic", 160, 480),
    ("Stretch hood film, roll", 60, 140),
    ("Consulting services, per day", 650, 1400),
)
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTHS_DE = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)
_MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)
_CURRENCY_SYMBOL = {"EUR": "€", "USD": "$", "GBP": "£"}


@dataclass(frozen=True, slots=True)
class Company:
    name: str
    country: Country
    address: tuple[str, ...]  # lines after the name
    vat_id: str  # normalised, "" when none
    iban: str  # normalised, "" when none
    bic: str
    bank: str
    phone: str
    email: str


def _pattern(rng: Random, spec: str) -> str:
    out = []
    for ch in spec:
        if ch == "n":
            out.append(str(rng.randrange(10)))
        elif ch == "a":
            out.append(chr(65 + rng.randrange(26)))
        else:
            out.append(ch)
    return "".join(out)


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 13616: the digits that make (bban + country + digits) mod 97 == 1, letters as 10..35."""
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{98 - number % 97:02d}"


def _iban(rng: Random, country: Country) -> str:
    if not country.iban_bban:
        return ""
    bban = _pattern(rng, country.iban_bban)
    return country.code + iban_check_digits(country.code, bban) + bban


def _vat(rng: Random, country: Country) -> str:
    if not country.vat_format:
        return ""
    vat = _pattern(rng, country.vat_format)
    if country.code == "IE":  # 7 digits and a check letter A-W
        return vat[:-1] + chr(65 + rng.randrange(23))
    if country.code == "CH":  # printed "CHE-123.456.789 MWST", normalised "CHE123456789"
        return "".join(ch for ch in vat[:15] if ch.isalnum())
    if country.code == "BE":  # BE ids: 0 + 7 digits + 2 check digits (97 - n mod 97)
        body = vat[3:10]
        vat = f"BE0{body}{97 - int('0' + body) % 97:02d}"
    return vat


def _address(rng: Random, country: Country) -> tuple[str, ...]:
    postcode, city = rng.choice(country.cities)
    street, number = rng.choice(country.streets), rng.randrange(1, 180)
    if country.address == "street no":
        return f"{street} {number}", f"{postcode} {city}", country.name
    if country.address == "no street":
        return f"{number} {street}", f"{postcode} {city}", country.name
    if country.address == "no street us":
        return f"{number * 10} {street}, Suite {rng.randrange(1, 9)}00", f"{city}, {postcode}", country.name
    unit = rng.choice(("Unit", "Suite", "Building"))
    return f"{unit} {rng.randrange(1, 30)}, {street}", f"{city} {postcode}", country.name


def _companies(rng: Random) -> list[Company]:
    """A fixed pool of invented companies (each name once), weighted towards EU countries."""
    out: list[Company] = []
    seen: set[str] = set()
    for country in COUNTRIES:
        count = 8 if country.code in ("DE", "GB", "US", "FR") else 4
        while sum(c.country is country for c in out) < count:
            name = f"{rng.choice(country.roots)} {rng.choice(country.trades)} {rng.choice(country.suffixes)}"
            if name in seen:
                continue
            seen.add(name)
            domain = "".join(ch for ch in name.split()[0].lower() if ch.isascii() and ch.isalpha())
            bic = "".join(chr(65 + rng.randrange(26)) for _ in range(4)) + country.code + "2X"
            out.append(
                Company(
                    name=name,
                    country=country,
                    address=_address(rng, country),
                    vat_id=_vat(rng, country),
                    iban=_iban(rng, country),
                    bic=bic + ("XXX" if rng.random() < 0.5 else ""),
                    bank=rng.choice(country.banks),
                    phone=f"+{rng.randrange(1, 49)} {rng.randrange(10, 99)} {rng.randrange(10**6, 10**7)}",
                    email=f"{rng.choice(('accounts', 'billing', 'info', 'orders'))}@{domain}.example",
                )
            )
    return out


# --------------------------------------------------------------------------------------------------
# Formatting of values the way each locale prints them
# --------------------------------------------------------------------------------------------------


def format_date(date: dt.date, style: str) -> str:
    d, m, y = date.day, date.month, date.year
    return {
        "iso": f"{y:04d}-{m:02d}-{d:02d}",
        "dmy_slash": f"{d:02d}/{m:02d}/{y}",
        "mdy_slash": f"{m:02d}/{d:02d}/{y}",
        "dmy_dot": f"{d:02d}.{m:02d}.{y}",
        "dmy_dash": f"{d:02d}-{m:02d}-{y}",
        "long_mdy": f"{_MONTHS_EN[m - 1]} {d}, {y}",
        "short_mdy": f"{_MONTHS_EN[m - 1][:3]} {d}, {y}",
        "long_dmy": f"{d} {_MONTHS_EN[m - 1]} {y}",
        "short_dmy": f"{d} {_MONTHS_EN[m - 1][:3]} {y}",
        "dmy_dash_mon": f"{d:02d}-{_MONTHS_EN[m - 1][:3]}-{y}",
        "de_long": f"{d}. {_MONTHS_DE[m - 1]} {y}",
        "fr_long": f"{d} {_MONTHS_FR[m - 1]} {y}",
        "ordinal_dmy": f"{d}{_ordinal(d)} {_MONTHS_EN[m - 1]} {y}",
        "ordinal_mdy": f"{_MONTHS_EN[m - 1]} {d}{_ordinal(d)}, {y}",
    }[style]


def _ordinal(day: int) -> str:
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def format_number(value: Decimal, style: str) -> str:
    text = f"{value.quantize(CENT, rounding=ROUND_HALF_UP):,.2f}"  # 1,234.50
    if style == "en":
        return text
    whole, cents = text.split(".")
    if style == "de":
        return whole.replace(",", ".") + "," + cents
    if style == "fr":
        return whole.replace(",", "\u00a0") + "," + cents
    if style == "ch":
        return whole.replace(",", "'") + "." + cents
    if style == "plain_comma":
        return whole.replace(",", "") + "," + cents
    return whole.replace(",", "") + "." + cents  # plain


def format_money(value: Decimal, currency: str, number_style: str, money_style: str) -> str:
    number = format_number(value, number_style)
    symbol = _CURRENCY_SYMBOL.get(currency, currency)
    return {
        "symbol_before": f"{symbol}{number}" if symbol != currency else f"{currency} {number}",
        "symbol_after": f"{number} {symbol}",
        "code_before": f"{currency} {number}",
        "code_after": f"{number} {currency}",
        "bare": number,
    }[money_style]


def _group4(text: str) -> str:
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def _print_vat(rng: Random, vat: str) -> str:
    if vat.startswith("CHE"):
        return f"CHE-{vat[3:6]}.{vat[6:9]}.{vat[9:]}" + rng.choice((" MWST", " MWST", ""))
    if rng.random() < 0.6:
        return vat
    prefix = vat[:3] if vat.startswith("ATU") else vat[:2]
    body = vat[len(prefix) :]
    if vat.startswith("BE"):
        return f"{prefix} {body[:4]}.{body[4:7]}.{body[7:]}"
    if vat.startswith("GB"):
        return f"{prefix} {body[:3]} {body[3:7]} {body[7:]}"
    return f"{prefix} {body[:3]} {body[3:6]} {body[6:]}" if body.isdigit() else f"{prefix} {body}"


# --------------------------------------------------------------------------------------------------
# Layout blocks, rendered by both writers
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Block:
    kind: str  # title, lines, kv, cols, table, totals, spacer
    lines: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    style: str = ""  # kv: colon | table | row; totals: table | lines; lines: plain | small | logo
    align: str = "left"
    left: list[Block] = field(default_factory=list)
    right: list[Block] = field(default_factory=list)


def _title(text: str, align: str = "left") -> Block:
    return Block("title", lines=[text], align=align)


def _lines(lines: Sequence[str], style: str = "plain", align: str = "left") -> Block:
    return Block("lines", lines=list(lines), style=style, align=align)


@dataclass(slots=True)
class Draft:
    """One document being written: its blocks, footer, expected fields and layout notes."""

    doctype: str
    rng: Random
    blocks: list[Block] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    layout: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Content per doctype
# --------------------------------------------------------------------------------------------------

_TITLES = {
    "invoice": ("Invoice", "INVOICE", "Invoice", "Tax Invoice", "TAX INVOICE", "Invoice"),
    "purchase_order": ("Purchase Order", "PURCHASE ORDER", "Purchase Order", "Purchase Order (PO)"),
    "shipping_order": (
        "Delivery Note",
        "DELIVERY NOTE",
        "Shipping Order",
        "Packing Slip",
        "Dispatch Note",
        "SHIPPING ORDER",
    ),
    "inventory_report": (
        "Inventory Report",
        "Stock Level Report",
        "INVENTORY REPORT",
        "Stock on Hand Report",
        "Inventory Valuation Report",
        "Warehouse Stock Report",
    ),
}
_LOCAL_TITLES = {
    ("invoice", "DE"): "Rechnung",
    ("invoice", "AT"): "Rechnung",
    ("invoice", "FR"): "Facture",
    ("purchase_order", "DE"): "Bestellung",
    ("shipping_order", "DE"): "Lieferschein",
}
_NUMBER_LABELS = {
    "invoice": (
        "Invoice No.",
        "Invoice #",
        "Invoice Number",
        "Invoice no:",
        "Bill No.",
        "Invoice No",
        "Invoice ID",
    ),
    "purchase_order": ("PO Number", "PO No.", "PO #", "Order No.", "Purchase Order No.", "Order Number"),
    "shipping_order": (
        "Delivery Note No.",
        "Shipment No.",
        "Shipping Order No.",
        "Packing Slip #",
        "Dispatch No.",
        "SO Number",
    ),
    "inventory_report": ("Report No.", "Report #", "Count No."),
}
_NUMBER_FORMATS = {
    "invoice": (
        "INV-{y}-{n:05d}",
        "{y}{n:05d}",
        "RE-{y}-{n:04d}",
        "F{y}/{n:04d}",
        "INV{n:06d}",
        "{n:07d}",
        "SI-{n:06d}",
        "{y}-{n:04d}",
    ),
    "purchase_order": ("PO-{y}-{n:04d}", "45{n:08d}", "PO{n:06d}", "B-{y}-{n:03d}", "PUR-{n:05d}"),
    "shipping_order": ("DN-{y}-{n:04d}", "SO-{n:05d}", "SHP{n:07d}", "LS-{y}-{n:04d}", "DEL-{n:06d}"),
    "inventory_report": ("SR-{y}-{n:03d}", "INVREP-{n:04d}", "CNT{n:05d}"),
}
_DATE_LABELS = {
    "invoice": (
        "Invoice Date",
        "Date",
        "Date of Issue",
        "Issue Date",
        "Invoice date:",
        "Date:",
        "Billing Date",
    ),
    "purchase_order": ("Order Date", "PO Date", "Date", "Date:"),
    "shipping_order": ("Ship Date", "Dispatch Date", "Date", "Shipping Date", "Date:"),
    "inventory_report": ("Report Date", "As of", "Stock as at", "Date", "Count Date"),
}
_DUE_LABELS = ("Due Date", "Payment Due", "Due", "Due date:", "Pay by")
_ORDER_REF_LABELS = (
    "PO Number",
    "Your PO No.",
    "Order No.",
    "Your Order No.",
    "Purchase Order",
    "PO Ref.",
    "Order Reference",
    "Customer PO",
)
_CUSTOMER_NO_LABELS = ("Customer No.", "Customer ID", "Account No.", "Client No.", "Customer #")
_TERMS = (
    "Net 30",
    "30 days net",
    "Due on receipt",
    "14 days, 2% discount",
    "Net 45",
    "Payable within 30 days",
)


def _money_styles(rng: Random, country: Country, currency: str) -> tuple[str, str]:
    number_style = rng.choice(country.number_styles)
    if currency == "USD" or currency == "GBP":
        money = rng.choice(("symbol_before", "symbol_before", "code_before", "bare"))
    elif number_style in ("de", "fr", "plain_comma"):
        money = rng.choice(("symbol_after", "code_after", "code_before", "bare"))
    else:
        money = rng.choice(("symbol_before", "code_before", "code_after", "bare"))
    return number_style, money


def _party_block(rng: Random, label: str | None, company: Company, extra: Sequence[str] = ()) -> Block:
    lines = [*([label] if label else []), company.name]
    if rng.random() < 0.25:
        lines.append(f"Attn: {rng.choice(_PEOPLE)}")
    lines.extend(company.address)
    lines.extend(extra)
    return _lines(lines, style="party")


def _issuer_blocks(draft: Draft, issuer: Company, title: str, meta: Block, beside: bool) -> list[Block]:
    """Letterhead and title in one of five arrangements; the meta block beside them or below."""
    rng = draft.rng
    head = [issuer.name, *issuer.address]
    if rng.random() < 0.4:
        head.append(f"Tel. {issuer.phone}" if rng.random() < 0.5 else issuer.email)
    style = rng.choice(("left", "title_top", "right", "logo", "banner"))
    vat_here = issuer.vat_id and draft.doctype in ("invoice", "purchase_order") and style != "banner"
    if vat_here and rng.random() < 0.3:
        head.append(f"{rng.choice(('VAT ID', 'VAT No.', 'VAT Reg. No.'))}: {_print_vat(rng, issuer.vat_id)}")
        draft.layout["vat_in_header"] = "yes"
    draft.layout["header"] = style
    side = [meta] if beside else []
    blocks: list[Block] = []
    if style == "left":
        blocks.append(Block("cols", left=[_lines(head)], right=[_title(title, "right"), *side]))
    elif style == "title_top":
        blocks.append(_title(title, rng.choice(("left", "center"))))
        blocks.append(Block("cols", left=[_lines(head)], right=side))
    elif style == "right":
        blocks.append(Block("cols", left=[_title(title), *side], right=[_lines(head, align="right")]))
    elif style == "logo":
        words = issuer.name.split()
        brand = words[0].upper() if rng.random() < 0.7 else "".join(w[0] for w in words[:2])
        tagline = rng.choice(("Quality since 1987", "Your partner in supply", "Reliable. Local. Fast.", ""))
        blocks.append(_lines([brand, *([tagline] if tagline else [])], style="logo"))
        blocks.append(_lines(head, style="small"))
        blocks.append(_title(title, "right"))
        blocks.extend(side)
    else:  # banner: the sender on one line, as above an address window
        blocks.append(_lines([f"{issuer.name} · {' · '.join(issuer.address[:2])}"], style="small"))
        blocks.append(_title(title, "left"))
        blocks.extend(side)
    if not beside:
        blocks.append(meta)
    return blocks


def _meta_block(rng: Random, pairs: list[tuple[str, str]]) -> Block:
    style = rng.choice(("colon", "colon", "table", "row"))
    if style == "row" and len(pairs) > 5:
        style = "table"
    return Block("kv", pairs=pairs, style=style)


def _footer(draft: Draft, issuer: Company, bank: bool, vat: bool) -> None:
    rng = draft.rng
    lines = [f"{issuer.name} · {' · '.join(issuer.address[:2])}"]
    if bank and issuer.iban:
        iban = _group4(issuer.iban) if rng.random() < 0.7 else issuer.iban
        lines.append(f"{issuer.bank} · IBAN{rng.choice((':', '', ':'))} {iban} · BIC: {issuer.bic}")
    elif bank:
        lines.append(
            f"{issuer.bank} · ABA {rng.randrange(10**8, 10**9)} · Account {rng.randrange(10**9, 10**10)}"
        )
    if vat and issuer.vat_id:
        label = rng.choice(("VAT ID", "VAT No.", "VAT Reg. No.", "VAT number"))
        if issuer.country.code in ("DE", "AT") and rng.random() < 0.4:
            label = "USt-IdNr."
        if issuer.country.code == "FR" and rng.random() < 0.4:
            label = "N° TVA"
        lines.append(f"{label}: {_print_vat(rng, issuer.vat_id)} · Registered in {issuer.address[1]}")
    elif issuer.country.code == "US" and rng.random() < 0.5:
        lines.append(f"Federal Tax ID (EIN) {rng.randrange(10, 99)}-{rng.randrange(1000000, 9999999)}")
    if rng.random() < 0.5:
        lines.append(
            rng.choice(("Thank you for your business!", "Questions? Contact " + issuer.email, "Page 1 of 1"))
        )
    draft.footer = lines


def _items(rng: Random, count: int) -> list[tuple[str, int, Decimal]]:
    if rng.random() < 0.08:  # now and then a long order that runs onto a second page
        count = rng.randrange(18, 26)
    picks = rng.sample(_PRODUCTS, count)
    return [
        (desc, rng.randrange(1, 40), Decimal(rng.randrange(lo * 100, hi * 100)) / 100)
        for desc, lo, hi in picks
    ]


def _items_table(rng: Random, items: list[tuple[str, int, Decimal]], fmt: Any) -> Block:
    kind = rng.randrange(4)
    if kind == 0:
        header = ["Description", "Qty", "Unit Price", "Amount"]
        rows = [[d, str(q), fmt(p), fmt(p * q)] for d, q, p in items]
    elif kind == 1:
        header = ["Item", "Description", "Quantity", "Price", "Total"]
        rows = [[f"{rng.randrange(10000, 99999)}", d, str(q), fmt(p), fmt(p * q)] for d, q, p in items]
    elif kind == 2:
        header = ["Pos.", "Article", "Qty", "Unit", "Unit price", "Line total"]
        rows = [
            [str(i + 1), d, str(q), rng.choice(("pc", "box", "h", "ea")), fmt(p), fmt(p * q)]
            for i, (d, q, p) in enumerate(items)
        ]
    else:
        header = ["SKU", "Description", "Qty", "Rate", "Amount"]
        rows = [[f"SKU-{rng.randrange(1000, 9999)}", d, str(q), fmt(p), fmt(p * q)] for d, q, p in items]
    return Block("table", rows=[header, *rows])


def _amounts_block(
    draft: Draft, items: list[tuple[str, int, Decimal]], currency: str, country: Country, *, tax: bool
) -> tuple[list[Block], Decimal]:
    """Items table and totals (subtotal, shipping, tax, grand total); returns the grand total."""
    rng = draft.rng
    number_style, money_style = _money_styles(rng, country, currency)
    draft.layout["numbers"] = f"{number_style}/{money_style}"

    def fmt(value: Decimal) -> str:
        return format_number(value, number_style)

    def money(value: Decimal) -> str:
        return format_money(value, currency, number_style, money_style)

    subtotal = sum((p * q for _, q, p in items), Decimal(0)).quantize(CENT)
    rows: list[tuple[str, str]] = [
        (rng.choice(("Subtotal", "Sub-total", "Net amount", "Total net", "Total excl. VAT")), money(subtotal))
    ]
    shipping = Decimal(0)
    if rng.random() < 0.25:
        shipping = Decimal(rng.randrange(900, 9000)) / 100
        rows.append((rng.choice(("Shipping", "Freight", "Shipping & handling")), money(shipping)))
    rate = country.vat_rate if country.code != "US" else Decimal(rng.choice(("0", "6", "7.25", "8.875")))
    tax_amount = (
        ((subtotal + shipping) * rate / 100).quantize(CENT, rounding=ROUND_HALF_UP) if tax else Decimal(0)
    )
    if tax and rate:
        pct = f"{rate.normalize():f}%"
        if country.code == "US":
            label = rng.choice((f"Sales Tax ({pct})", f"Tax {pct}", "Sales Tax"))
        else:
            label = rng.choice((f"VAT {pct}", f"VAT ({pct})", f"plus VAT {pct}", f"Tax {pct}"))
            if country.code in ("DE", "AT") and rng.random() < 0.3:
                label = f"MwSt. {pct}"
        rows.append((label, money(tax_amount)))
    total = subtotal + shipping + tax_amount
    if draft.doctype == "purchase_order":
        total_label = rng.choice(("Total", "Order Total", "TOTAL", "Total Amount", "PO Total", "Grand Total"))
    else:
        total_label = rng.choice(
            (
                "Total",
                "TOTAL",
                "Grand Total",
                "Total Due",
                "Amount Due",
                "Balance Due",
                "Total incl. VAT",
                "Invoice Total",
                "Total amount due",
            )
        )
    cue = (
        rng.choice(("label", "line")) if money_style == "bare" else ""
    )  # bare amounts: the currency said once
    if cue == "label":
        total_label = f"{total_label} ({currency})" if rng.random() < 0.5 else f"{total_label} {currency}"
    rows.append((total_label, money(total)))
    draft.fields["total"] = f"{total.quantize(CENT)}"
    draft.fields["currency"] = currency
    table = _items_table(rng, items, fmt)
    style = rng.choice(("table", "table", "lines", "in_items"))
    draft.layout["totals"] = style
    blocks = [table]
    if cue == "line":
        line = rng.choice((f"All amounts in {currency}", f"Currency: {currency}", f"Prices in {currency}"))
        blocks.insert(0, _lines([line], style="small"))
    if style == "in_items":
        width = len(table.rows[0])
        table.rows.extend([[""] * (width - 2) + [label, value] for label, value in rows])
    elif style == "table":
        blocks.append(Block("totals", pairs=rows, style="table", align="right"))
    else:
        blocks.append(Block("totals", pairs=rows, style="lines", align="right"))
    return blocks, total


def _dates(rng: Random) -> dt.date:
    return dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(730))


def _number(rng: Random, doctype: str, date: dt.date) -> str:
    return rng.choice(_NUMBER_FORMATS[doctype]).format(y=date.year, n=rng.randrange(1, 99999))


def _invoice(draft: Draft, supplier: Company, customer: Company) -> None:
    rng = draft.rng
    country = supplier.country
    currency = country.currency if rng.random() < 0.9 else rng.choice(("EUR", "USD", "GBP"))
    date_style = rng.choice(country.date_styles)
    draft.layout["dates"] = date_style
    issued = _dates(rng)
    number = _number(rng, "invoice", issued)
    draft.fields.update(
        number=number, date=issued.isoformat(), supplier=supplier.name, customer=customer.name
    )
    title = _LOCAL_TITLES.get(("invoice", country.code), "") if rng.random() < 0.2 else ""
    title = title or rng.choice(_TITLES["invoice"])
    pairs: list[tuple[str, str]] = []
    if rng.random() < 0.15:
        title = f"{title} {rng.choice(('', '#', 'No. '))}{number}".replace("  ", " ")
    else:
        pairs.append((rng.choice(_NUMBER_LABELS["invoice"]), number))
    pairs.append((rng.choice(_DATE_LABELS["invoice"]), format_date(issued, date_style)))
    optional: list[tuple[str, str]] = []
    if rng.random() < 0.6:
        due = issued + dt.timedelta(days=rng.choice((14, 30, 30, 45, 60)))
        optional.append((rng.choice(_DUE_LABELS), format_date(due, date_style)))
        draft.fields["due_date"] = due.isoformat()
    if rng.random() < 0.4:
        optional.append(
            (
                rng.choice(_CUSTOMER_NO_LABELS),
                rng.choice(("C-{:05d}", "{:06d}", "KD{:06d}", "CUST-{:04d}")).format(rng.randrange(1, 99999)),
            )
        )
    if rng.random() < 0.5:
        ref = _number(rng, "purchase_order", issued - dt.timedelta(days=20))
        optional.append((rng.choice(_ORDER_REF_LABELS), ref))
        draft.fields["order_reference"] = ref
    if rng.random() < 0.3:
        delivered = issued - dt.timedelta(days=rng.randrange(0, 12))
        optional.append(
            (
                rng.choice(("Delivery Date", "Date of Supply", "Delivered", "Order Date")),
                format_date(delivered, date_style),
            )
        )
    if rng.random() < 0.35:
        optional.append(("Payment Terms" if rng.random() < 0.5 else "Terms", rng.choice(_TERMS)))
    rng.shuffle(optional)
    pairs.extend(optional)
    meta = _meta_block(rng, pairs)
    draft.layout["meta"] = meta.style
    vat_where = rng.random()
    blocks = _issuer_blocks(draft, supplier, title, meta, beside=rng.random() < 0.6)
    customer_extra: list[str] = []
    if customer.vat_id and rng.random() < 0.35:
        customer_extra.append(
            f"{rng.choice(('VAT ID', 'Customer VAT ID', 'Your VAT No.', 'VAT'))}: "
            f"{_print_vat(rng, customer.vat_id)}"
        )
    label: str | None = rng.choice(
        ("Bill To:", "BILL TO", "Billed to:", "Invoice to:", "Customer:", "Sold To:", "To:")
    )
    if draft.layout["header"] == "banner" and rng.random() < 0.5:
        label = None  # an address window: the sender on one small line, the recipient below, no label
        draft.layout["window"] = "yes"
    bill = _party_block(rng, label, customer, customer_extra)
    parties = [bill]
    if rng.random() < 0.3:
        parties.append(_party_block(rng, rng.choice(("Ship To:", "Deliver to:", "SHIP TO")), customer))
    blocks.append(Block("cols", left=parties[:1], right=parties[1:]) if len(parties) > 1 else parties[0])
    items = _items(rng, rng.randrange(1, 7))
    amount_blocks, total = _amounts_block(draft, items, currency, country, tax=True)
    blocks.extend(amount_blocks)
    if rng.random() < 0.25 and "due_date" in draft.fields:
        sym = format_money(total, currency, *_money_styles(rng, country, currency))
        due_text = format_date(dt.date.fromisoformat(draft.fields["due_date"]), date_style)
        blocks.append(_lines([f"Please pay {sym} by {due_text} quoting {number}."]))
    bank = bool(supplier.iban) and rng.random() < 0.85
    if bank and rng.random() < 0.3:  # payment block in the body rather than the footer
        iban = _group4(supplier.iban) if rng.random() < 0.6 else supplier.iban
        blocks.append(
            _lines(
                [
                    "Payment details",
                    f"Account holder: {supplier.name}",
                    f"Bank: {supplier.bank}",
                    f"IBAN: {iban}",
                    f"BIC: {supplier.bic}",
                ],
                style="small",
            )
        )
        _footer(draft, supplier, bank=False, vat=vat_where < 0.8)
    else:
        _footer(draft, supplier, bank=bank, vat=vat_where < 0.8)
    if bank:
        draft.fields["iban"] = supplier.iban
    if supplier.vat_id and (vat_where < 0.8 or draft.layout.get("vat_in_header")):
        draft.fields["vat_id"] = supplier.vat_id
    draft.blocks = blocks


def _purchase_order(draft: Draft, buyer: Company, supplier: Company) -> None:
    rng = draft.rng
    country = buyer.country
    currency = country.currency if rng.random() < 0.85 else supplier.country.currency
    date_style = rng.choice(country.date_styles)
    draft.layout["dates"] = date_style
    ordered = _dates(rng)
    number = _number(rng, "purchase_order", ordered)
    draft.fields.update(number=number, date=ordered.isoformat(), supplier=supplier.name, customer=buyer.name)
    title = _LOCAL_TITLES.get(("purchase_order", country.code), "") if rng.random() < 0.2 else ""
    title = title or rng.choice(_TITLES["purchase_order"])
    pairs = [
        (rng.choice(_NUMBER_LABELS["purchase_order"]), number),
        (rng.choice(_DATE_LABELS["purchase_order"]), format_date(ordered, date_style)),
    ]
    optional: list[tuple[str, str]] = []
    if rng.random() < 0.7:
        wanted = ordered + dt.timedelta(days=rng.randrange(5, 40))
        optional.append(
            (
                rng.choice(("Delivery Date", "Required by", "Deliver by", "Requested Delivery Date")),
                format_date(wanted, date_style),
            )
        )
    if rng.random() < 0.4:
        optional.append(
            (rng.choice(("Vendor No.", "Supplier No.", "Vendor ID")), f"V{rng.randrange(10000, 99999)}")
        )
    if rng.random() < 0.4:
        optional.append((rng.choice(("Buyer", "Contact", "Requested by")), rng.choice(_PEOPLE)))
    if rng.random() < 0.4:
        optional.append(("Payment Terms", rng.choice(_TERMS)))
    rng.shuffle(optional)
    pairs.extend(optional)
    meta = _meta_block(rng, pairs)
    draft.layout["meta"] = meta.style
    blocks = _issuer_blocks(draft, buyer, title, meta, beside=rng.random() < 0.6)
    vendor = _party_block(rng, rng.choice(("Vendor:", "Supplier:", "VENDOR", "To:", "Supplier")), supplier)
    if rng.random() < 0.6:
        ship = _party_block(rng, rng.choice(("Ship To:", "Deliver To:", "Delivery Address:")), buyer)
        blocks.append(Block("cols", left=[vendor], right=[ship]))
    else:
        blocks.append(vendor)
    items = _items(rng, rng.randrange(1, 7))
    amount_blocks, _ = _amounts_block(draft, items, currency, country, tax=rng.random() < 0.6)
    blocks.extend(amount_blocks)
    blocks.append(
        _lines(
            [
                rng.choice(
                    (
                        "Please confirm this order within 48 hours.",
                        "Please quote our PO number on all invoices and delivery notes.",
                        "Deliveries accepted Mon-Fri 7:00-15:00.",
                    )
                ),
                f"Authorised by: {rng.choice(_PEOPLE)}",
            ]
        )
    )
    _footer(draft, buyer, bank=False, vat=rng.random() < 0.5)
    draft.blocks = blocks


def _shipping_order(draft: Draft, shipper: Company, customer: Company) -> None:
    rng = draft.rng
    country = shipper.country
    date_style = rng.choice(country.date_styles)
    draft.layout["dates"] = date_style
    shipped = _dates(rng)
    number = _number(rng, "shipping_order", shipped)
    draft.fields.update(number=number, date=shipped.isoformat(), customer=customer.name)
    title = _LOCAL_TITLES.get(("shipping_order", country.code), "") if rng.random() < 0.2 else ""
    title = title or rng.choice(_TITLES["shipping_order"])
    pairs = [
        (rng.choice(_NUMBER_LABELS["shipping_order"]), number),
        (rng.choice(_DATE_LABELS["shipping_order"]), format_date(shipped, date_style)),
    ]
    optional: list[tuple[str, str]] = []
    if rng.random() < 0.6:
        optional.append(
            (
                rng.choice(("Your Order No.", "Order Ref.", "Customer PO", "Order No.")),
                _number(rng, "purchase_order", shipped),
            )
        )
    if rng.random() < 0.5:
        optional.append(
            (
                rng.choice(("Expected Delivery", "Delivery Date", "ETA")),
                format_date(shipped + dt.timedelta(days=rng.randrange(1, 8)), date_style),
            )
        )
    if rng.random() < 0.6:
        optional.append(
            ("Carrier", rng.choice(("DHL Freight", "DB Schenker", "UPS", "Kuehne+Nagel", "DSV Road")))
        )
    if rng.random() < 0.5:
        optional.append(("Tracking No.", f"1Z{rng.randrange(10**15, 10**16)}"))
    if rng.random() < 0.4:
        optional.append(("Total Weight", f"{rng.randrange(5, 900)} kg"))
    rng.shuffle(optional)
    pairs.extend(optional)
    meta = _meta_block(rng, pairs)
    draft.layout["meta"] = meta.style
    blocks = _issuer_blocks(draft, shipper, title, meta, beside=rng.random() < 0.6)
    label = rng.choice(("Ship To:", "Deliver To:", "Consignee:", "SHIP TO", "Delivery Address:", "Customer:"))
    ship = _party_block(rng, label, customer)
    if rng.random() < 0.3:
        blocks.append(Block("cols", left=[_party_block(rng, "Sold To:", customer)], right=[ship]))
    else:
        blocks.append(ship)
    items = _items(rng, rng.randrange(1, 8))
    header = rng.choice(
        (
            ["Item", "Description", "Qty", "Unit"],
            ["Pos.", "Article", "Ordered", "Shipped"],
            ["SKU", "Description", "Quantity", "Packages"],
        )
    )
    rows = [
        [f"{rng.randrange(10000, 99999)}", d, str(q), rng.choice(("pc", "box", str(max(1, q // 5))))]
        for d, q, _ in items
    ]
    blocks.append(Block("table", rows=[header, *rows]))
    blocks.append(
        _lines(
            [
                f"Packages: {rng.randrange(1, 12)}",
                "Received in good condition:",
                "Signature ____________________   Date ____________",
            ]
        )
    )
    _footer(draft, shipper, bank=False, vat=rng.random() < 0.3)
    draft.blocks = blocks


def _inventory_report(draft: Draft, owner: Company) -> None:
    rng = draft.rng
    country = owner.country
    date_style = rng.choice(country.date_styles)
    draft.layout["dates"] = date_style
    as_of = _dates(rng)
    draft.fields["date"] = as_of.isoformat()
    title = rng.choice(_TITLES["inventory_report"])
    warehouse = (
        f"{rng.choice(('Central Warehouse', 'DC', 'Warehouse', 'Logistics Centre'))} {owner.address[1]}"
    )
    pairs = [
        (rng.choice(_DATE_LABELS["inventory_report"]), format_date(as_of, date_style)),
        ("Warehouse", warehouse),
    ]
    if rng.random() < 0.4:
        pairs.append(
            (rng.choice(_NUMBER_LABELS["inventory_report"]), _number(rng, "inventory_report", as_of))
        )
    if rng.random() < 0.5:
        start = as_of.replace(day=1)
        pairs.append(("Period", f"{format_date(start, date_style)} - {format_date(as_of, date_style)}"))
    if rng.random() < 0.5:
        pairs.append(("Prepared by", rng.choice(_PEOPLE)))
    meta = _meta_block(rng, pairs)
    draft.layout["meta"] = meta.style
    blocks = _issuer_blocks(draft, owner, title, meta, beside=rng.random() < 0.5)
    number_style, money_style = _money_styles(rng, country, country.currency)
    header = ["SKU", "Description", "On Hand", "Reserved", "Available", "Reorder Level", "Unit Cost", "Value"]
    rows, value_total = [], Decimal(0)
    for desc, lo, hi in rng.sample(_PRODUCTS, rng.randrange(4, 12)):
        on_hand, reserved = rng.randrange(0, 800), rng.randrange(0, 60)
        cost = Decimal(rng.randrange(lo * 60, hi * 60)) / 100
        value_total += cost * on_hand
        rows.append(
            [
                f"{rng.randrange(100000, 999999)}",
                desc,
                str(on_hand),
                str(reserved),
                str(max(0, on_hand - reserved)),
                str(rng.randrange(10, 100)),
                format_number(cost, number_style),
                format_number(cost * on_hand, number_style),
            ]
        )
    if rng.random() < 0.4:
        header, rows = header[:6], [r[:6] for r in rows]
    blocks.append(Block("table", rows=[header, *rows]))
    generated = dt.datetime.combine(
        as_of + dt.timedelta(days=rng.randrange(0, 3)), dt.time(rng.randrange(6, 20), 15)
    )
    value = format_money(value_total, country.currency, number_style, money_style)
    blocks.append(
        _lines(
            [
                f"Total stock value: {value}",
                f"Items below reorder level: {rng.randrange(0, 6)}",
                f"Generated on {format_date(generated.date(), date_style)} {generated:%H:%M} by WMS",
            ]
        )
    )
    _footer(draft, owner, bank=False, vat=False)
    draft.blocks = blocks


# --------------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------------


def _write_pdf(draft: Draft, path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
    from reportlab.lib.pagesizes import A4, LETTER
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    rng = draft.rng
    font = rng.choice(("Helvetica", "Helvetica", "Times-Roman"))
    bold = {"Helvetica": "Helvetica-Bold", "Times-Roman": "Times-Bold"}[font]
    size = rng.choice((8.5, 9, 10))
    aligns = {"left": TA_LEFT, "right": TA_RIGHT, "center": TA_CENTER}
    pagesize = LETTER if draft.layout.get("letter") else A4
    width = pagesize[0] - 36 * mm

    def style(name: str, align: str = "left", fsize: float = size, fname: str = font) -> ParagraphStyle:
        return ParagraphStyle(
            name, fontName=fname, fontSize=fsize, leading=fsize * 1.25, alignment=aligns[align]
        )

    def para(text: str, st: ParagraphStyle) -> Paragraph:
        return Paragraph(escape(text), st)

    grid = rng.choice(("grid", "lines", "none"))

    def render(block: Block, avail: float) -> list[Flowable]:
        if block.kind == "title":
            return [
                para(block.lines[0], style("t", block.align, rng.choice((16, 18, 22)), bold)),
                Spacer(1, 4),
            ]
        if block.kind == "lines":
            if block.style == "logo":
                return [
                    para(block.lines[0], style("l", "left", 24, bold)),
                    *[para(x, style("s", "left", size - 1)) for x in block.lines[1:]],
                ]
            fsize = size - 1.5 if block.style == "small" else size
            if block.style == "party" and len(block.lines) > 1:
                text = f"<b>{escape(block.lines[0])}</b><br/>" + "<br/>".join(
                    escape(x) for x in block.lines[1:]
                )
                return [Paragraph(text, style("p", block.align, fsize)), Spacer(1, 6)]
            return [
                Paragraph("<br/>".join(escape(x) for x in block.lines), style("p", block.align, fsize)),
                Spacer(1, 6),
            ]
        if block.kind == "kv":
            if block.style == "colon":
                sep = rng.choice((": ", ":  ", " "))
                text = "<br/>".join(f"{escape(k.rstrip(':'))}{sep}{escape(v)}" for k, v in block.pairs)
                return [Paragraph(text, style("kv", "left")), Spacer(1, 6)]
            pairs = (
                [[k for k, _ in block.pairs], [v for _, v in block.pairs]]
                if block.style == "row"
                else [[k, v] for k, v in block.pairs]
            )
            table = Table(pairs, hAlign="LEFT")
            cmds: list[Any] = [
                ("FONT", (0, 0), (-1, -1), font, size),
                (
                    "FONT",
                    (0, 0),
                    (0 if block.style != "row" else -1, 0 if block.style == "row" else -1),
                    bold,
                    size,
                ),
            ]
            if block.style == "row":
                cmds.append(("GRID", (0, 0), (-1, -1), 0.5, colors.grey))
            table.setStyle(TableStyle(cmds))
            return [table, Spacer(1, 8)]
        if block.kind == "cols":
            half = avail / 2 - 4
            left = [f for b in block.left for f in render(b, half)]
            right = [f for b in block.right for f in render(b, half)]
            table = Table([[left, right]], colWidths=[avail / 2, avail / 2])
            table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
            return [table, Spacer(1, 8)]
        if block.kind == "table":
            header, *rows = block.rows
            ncols = len(header)
            desc = next((i for i, h in enumerate(header) if h in ("Description", "Article")), 1)
            cell = style("c", "left", size - 0.5)
            data: list[list[Any]] = [header] + [
                [Paragraph(escape(v), cell) if i == desc and v else v for i, v in enumerate(r)] for r in rows
            ]
            rest = (avail - avail * 0.42) / (ncols - 1)
            widths = [avail * 0.42 if i == desc else rest for i in range(ncols)]
            table = Table(data, colWidths=widths, repeatRows=1)
            cmds = [
                ("FONT", (0, 0), (-1, -1), font, size - 0.5),
                ("FONT", (0, 0), (-1, 0), bold, size - 0.5),
                ("ALIGN", (desc + 1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
            if grid == "grid":
                cmds.append(("GRID", (0, 0), (-1, -1), 0.4, colors.grey))
            elif grid == "lines":
                cmds.append(("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black))
            table.setStyle(TableStyle(cmds))
            return [table, Spacer(1, 8)]
        if block.kind == "totals":
            if block.style == "lines":
                *head, last = [f"{escape(k)}: {escape(v)}" for k, v in block.pairs]
                body = "<br/>".join([*head, f"<b>{last}</b>"])  # the grand total in bold
                return [Paragraph(body, style("tl", "right")), Spacer(1, 8)]
            table = Table([[k, v] for k, v in block.pairs], hAlign="RIGHT")
            table.setStyle(
                TableStyle(
                    [
                        ("FONT", (0, 0), (-1, -1), font, size),
                        ("FONT", (0, -1), (-1, -1), bold, size),
                        ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                        ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
                    ]
                )
            )
            return [table, Spacer(1, 8)]
        return []

    story = [f for b in draft.blocks for f in render(b, width)]
    footer_style = style("f", "center", size - 2)
    on_page = draft.layout.get("footer") == "page"

    def draw_footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, size - 2)
        for k, line in enumerate(reversed(draft.footer)):
            canvas.drawCentredString(pagesize[0] / 2, 12 * mm + k * (size - 1), line)
        canvas.restoreState()

    if not on_page:
        story.append(Spacer(1, 16))
        story.extend(para(line, footer_style) for line in draft.footer)
    doc = SimpleDocTemplate(
        str(path),
        pagesize=pagesize,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=15 * mm,
        bottomMargin=25 * mm,
        invariant=1,
        title="",
        author="",
        creator="deskpilot generate_documents",
    )
    if on_page:
        doc.build(story, onFirstPage=draw_footer, onLaterPages=draw_footer)
    else:
        doc.build(story)


def _write_docx(draft: Draft, path: Path) -> None:
    import docx
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    rng = draft.rng
    document = docx.Document()
    base = document.styles["Normal"]
    base.font.name = rng.choice(("Calibri", "Arial", "Times New Roman"))
    base.font.size = Pt(rng.choice((9, 10, 11)))
    aligns = {
        "left": WD_ALIGN_PARAGRAPH.LEFT,
        "right": WD_ALIGN_PARAGRAPH.RIGHT,
        "center": WD_ALIGN_PARAGRAPH.CENTER,
    }
    breaks = rng.random() < 0.4  # address blocks as one paragraph with line breaks

    def add_lines(
        target: Any,
        lines: Sequence[str],
        align: str = "left",
        bold_first: bool = False,
        size: float | None = None,
    ) -> None:
        if breaks and len(lines) > 1 and not bold_first:
            p = target.add_paragraph()
            p.alignment = aligns[align]
            for k, line in enumerate(lines):
                run = p.add_run(line)
                if size:
                    run.font.size = Pt(size)
                if k < len(lines) - 1:
                    run.add_break()
            return
        for k, line in enumerate(lines):
            p = target.add_paragraph()
            p.alignment = aligns[align]
            run = p.add_run(line)
            run.bold = bold_first and k == 0
            if size:
                run.font.size = Pt(size)

    def fill(target: Any, rows: list[list[str]], style: str | None) -> None:
        table = target.add_table(rows=len(rows), cols=len(rows[0]))
        table.style = style
        for row, values in zip(table.rows, rows, strict=True):  # row.cells: table.cell() is O(cells)
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value

    def render(block: Block, target: Any, in_cell: bool) -> None:
        if block.kind == "title":
            p = target.add_paragraph()
            p.alignment = aligns[block.align]
            run = p.add_run(block.lines[0])
            run.bold = True
            run.font.size = Pt(rng.choice((16, 18, 20)))
        elif block.kind == "lines":
            size = 22 if block.style == "logo" else (8 if block.style == "small" else None)
            add_lines(
                target, block.lines, block.align, bold_first=block.style in ("party", "logo"), size=size
            )
        elif block.kind == "kv":
            if block.style == "colon" or in_cell:
                sep = rng.choice((": ", ":\t", " "))
                add_lines(target, [f"{k.rstrip(':')}{sep}{v}" for k, v in block.pairs])
            elif block.style == "row":
                fill(target, [[k for k, _ in block.pairs], [v for _, v in block.pairs]], "Table Grid")
            else:
                fill(target, [[k, v] for k, v in block.pairs], None)
        elif block.kind == "cols":
            table = target.add_table(rows=1, cols=2)
            for cell, blocks in zip(table.rows[0].cells, (block.left, block.right), strict=True):
                cell.paragraphs[0].text = ""
                for b in blocks:
                    render(b, cell, in_cell=True)
        elif block.kind == "table":
            fill(target, block.rows, "Table Grid" if rng.random() < 0.7 else None)
        elif block.kind == "totals":
            if block.style == "lines" or in_cell:
                add_lines(target, [f"{k}: {v}" for k, v in block.pairs], "right")
            else:
                fill(target, [[k, v] for k, v in block.pairs], None)

    for block in draft.blocks:
        render(block, document, in_cell=False)
    document.add_paragraph()
    add_lines(document, draft.footer, "center", size=7)
    buf = io.BytesIO()
    document.save(buf)
    _write_stable_zip(buf.getvalue(), path)


def _write_stable_zip(data: bytes, path: Path) -> None:
    """Re-pack a DOCX with fixed member timestamps, so the same seed gives the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, src.read(info.filename))
    path.write_bytes(out.getvalue())


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneratedDocument:
    """One written file and what it is known to contain."""

    path: Path
    doctype: str
    format: str
    fields: dict[str, str]  # normalised expected values of the scored fields the document carries
    layout: dict[str, str] = field(default_factory=dict)

    def manifest_row(self, root: Path) -> dict[str, Any]:
        return {
            "path": self.path.relative_to(root).as_posix(),
            "doctype": self.doctype,
            "format": self.format,
            "fields": self.fields,
            "layout": self.layout,
        }


def _plan(n: int, formats: Sequence[str], rng: Random) -> list[tuple[str, str]]:
    """Balanced classes (counts differ by at most one), formats alternating within each class."""
    plan = [(DOCTYPES[i % len(DOCTYPES)], formats[(i // len(DOCTYPES)) % len(formats)]) for i in range(n)]
    rng.shuffle(plan)
    return plan


def _draft(doctype: str, rng: Random, companies: list[Company]) -> Draft:
    draft = Draft(doctype, rng)
    eu = [c for c in companies if c.country.code != "US"]
    us = [c for c in companies if c.country.code == "US"]
    issuer = rng.choice(us if rng.random() < 0.2 else eu)
    other = rng.choice([c for c in (us if issuer in us and rng.random() < 0.8 else eu) if c is not issuer])
    draft.layout["country"] = issuer.country.code
    draft.layout["footer"] = "page" if rng.random() < 0.3 else "body"
    if issuer.country.code == "US":
        draft.layout["letter"] = "yes"
    if doctype == "invoice":
        _invoice(draft, issuer, other)
    elif doctype == "purchase_order":
        _purchase_order(draft, issuer, other)
    elif doctype == "shipping_order":
        _shipping_order(draft, issuer, other)
    else:
        _inventory_report(draft, issuer)
    draft.fields = {k: draft.fields[k] for k in SCORED[doctype] if k in draft.fields}
    return draft


def generate_documents(
    out_dir: Path, n: int, seed: int = 0, formats: Sequence[str] = ("pdf", "docx")
) -> list[GeneratedDocument]:
    """Write ``n`` documents (balanced classes, formats alternating) and ``manifest.jsonl`` to ``out_dir``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    unknown = set(formats) - {"pdf", "docx"}
    if unknown or not formats:
        raise ValueError(f"formats must be pdf and/or docx, got {sorted(formats)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = Random(seed)
    companies = _companies(rng)
    docs: list[GeneratedDocument] = []
    for index, (doctype, fmt) in enumerate(_plan(n, list(formats), rng)):
        draft = _draft(doctype, Random(f"{seed}:{index}"), companies)
        path = out_dir / f"doc_{index:04d}.{fmt}"
        (_write_pdf if fmt == "pdf" else _write_docx)(draft, path)
        docs.append(GeneratedDocument(path, doctype, fmt, draft.fields, dict(sorted(draft.layout.items()))))
    with (out_dir / "manifest.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for doc in docs:
            fh.write(json.dumps(doc.manifest_row(out_dir), ensure_ascii=False, sort_keys=True) + "\n")
    return docs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path, help="folder to write the documents and manifest.jsonl to")
    parser.add_argument("--n", type=int, default=200, help="number of documents (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--formats", default="pdf,docx", help="comma-separated: pdf, docx (default both)")
    args = parser.parse_args(argv)
    docs = generate_documents(args.out, args.n, args.seed, tuple(f.strip() for f in args.formats.split(",")))
    print(f"wrote {len(docs)} documents and manifest.jsonl to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
