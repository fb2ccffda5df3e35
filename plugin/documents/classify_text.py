"""The text a doctype classifier sees: the title lines first, then the start of the body.

A small encoder reads 64-256 tokens; what tells an invoice from a delivery note is nearly always
in its heading and first lines, so the layout cue (the short lines at the top of the first page)
leads, and the body follows up to ``max_words``.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_WORDS = 200


def classification_text(text: str, title_lines: Sequence[str] = (), *, max_words: int = MAX_WORDS) -> str:
    words = text.split()[:max_words]
    titles = [" ".join(line.split()) for line in title_lines[:3] if line.strip()]
    body = " ".join(words)
    if not titles:
        return body
    head = " | ".join(titles)
    # the first lines usually are the titles: do not say them twice
    return f"{head}\n{body[len(head) :].lstrip() if body.startswith(head) else body}"
