"""HTML to plain text: visible text only, block tags as line breaks, table cells as tabs.

A small linear scanner rather than ``html.parser``: on this project's Python (3.11.7) the
stdlib parser is super-linear on unterminated tags (``"<a" * 40_000`` takes ~25 s, see
CVE-2025-6069), and a mail body must not be able to stall a worker. Every search below
moves forward only, so the cost is linear in the input. Good enough for mail bodies and
saved web invoices; no layout engine, no network, no scripts.
"""

from __future__ import annotations

import html
import re

# their content is never shown to a reader (``title`` is, below, though it sits in ``head``)
_RAW_TEXT = frozenset({"script", "style", "template", "noscript", "textarea", "svg", "object", "iframe"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "thead", "tfoot", "tr", "ul", "title",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})
_TAG_NAME = re.compile(r"(/?)([A-Za-z][A-Za-z0-9:_-]{0,40})")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_MANY_BREAKS = re.compile(r"\n{3,}")


class _Scanner:
    """One pass over the markup; ``parts`` collects text and the breaks that tags imply."""

    def __init__(self, markup: str) -> None:
        self.src = markup
        self.lower = markup.lower()
        self.parts: list[str] = []
        self.pre = 0

    def text(self, chunk: str) -> None:
        if not chunk:
            return
        chunk = html.unescape(chunk)
        if self.pre:
            self.parts.append(chunk.replace("\r\n", "\n"))
        else:
            self.parts.append(_SPACES.sub(" ", chunk.replace("\r", " ").replace("\n", " ")))

    def run(self) -> str:
        src, lower, end = self.src, self.lower, len(self.src)
        pos, next_gt = 0, -1
        while pos < end:
            lt = src.find("<", pos)
            if lt < 0:
                self.text(src[pos:])
                break
            self.text(src[pos:lt])
            if src.startswith("<!--", lt):
                close = src.find("-->", lt + 4)
                if close < 0:
                    break  # an unterminated comment hides the rest, as in a browser
                pos = close + 3
                continue
            if next_gt < lt:
                next_gt = src.find(">", lt)
            if next_gt < 0:
                self.text(src[lt:])  # no tag can close any more: the rest is text
                break
            found = _TAG_NAME.match(src, lt + 1, next_gt)
            pos = next_gt + 1
            if found is None:
                if src[lt + 1 : lt + 2] not in ("!", "?"):  # not a declaration: a literal "<"
                    self.text(src[lt:pos])
                continue
            closing, name = found.group(1) == "/", found.group(2).lower()
            if not closing and name in _RAW_TEXT and src[next_gt - 1] != "/":
                stop = lower.find(f"</{name}", pos)
                if stop < 0:
                    break
                pos = stop  # skip the hidden content; its end tag is read next round
                continue
            if name == "pre":
                self.pre = max(0, self.pre + (-1 if closing else 1))
            if name in _BLOCK:
                self.parts.append("\n")
            elif name in _CELL and not closing:
                self.parts.append("\t")
        return "".join(self.parts)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document, one line per block, cells separated by tabs."""
    raw = _Scanner(markup).run()
    text = "\n".join(line.strip(" \t") for line in raw.split("\n"))
    return _MANY_BREAKS.sub("\n\n", text).strip()


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]{1,40})""", re.I)


def declared_charset(head: bytes) -> str | None:
    """The charset a ``<meta>`` tag in the first bytes declares, if any."""
    found = _META_CHARSET.search(head[:4096])
    return found.group(1).decode("ascii").lower() if found else None
