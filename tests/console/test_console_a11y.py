"""Accessible markup on every page: lang, skip link, one h1, a label for every field, contrast."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from console_support import Seeded, enter
from fastapi.testclient import TestClient

from deskpilot.gateway.console.templating import STATIC


class _Fields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.h1 = 0
        self.lang: str | None = None
        self.first_link: str | None = None
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "a" and self.first_link is None:
            self.first_link = a.get("href")
        elif tag == "label" and a.get("for"):
            self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.fields.append(a)


PAGES = ("/console", "/console/triage", "/console/models", "/console/usage", "/console/tickets/{ticket}")


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_labelled_and_navigable(client: TestClient, seeded: Seeded, url: str) -> None:
    enter(client, "lead")
    page = client.get(url.format(ticket=seeded.tickets["Cannot log in"]))
    assert page.status_code == 200
    check = _Fields()
    check.feed(page.text)
    assert check.lang == "en"
    assert check.first_link == "#main" and "main" in check.ids  # the skip link comes first
    assert check.h1 == 1
    assert len(check.ids) == len(set(check.ids)), "duplicate ids"
    unlabelled = [f for f in check.fields if f.get("id") not in check.label_for and not f.get("aria-label")]
    assert unlabelled == []


def test_sign_in_form_is_labelled(client: TestClient) -> None:
    check = _Fields()
    check.feed(client.get("/console/login").text)
    assert {f.get("id") for f in check.fields} == {"tenant", "email", "password"} <= check.label_for


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_text_colours_meet_wcag_aa() -> None:
    css = (STATIC / "console.css").read_text()
    colour = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css))
    pairs = [
        ("ink", "bg"),
        ("ink", "card"),
        ("muted", "bg"),
        ("muted", "card"),
        ("accent", "card"),
        ("accent-ink", "accent"),
        ("warn-ink", "warn-bg"),
        ("muted", "warn-bg"),
        ("good", "card"),
        ("bad", "card"),
    ]
    for fg, bg in pairs:
        assert contrast(colour[fg], colour[bg]) >= 4.5, (fg, bg)
    assert contrast("#ffffff", "#14213d") >= 4.5  # the top bar
