"""Prompts for the reply generator, the same at training and at inference.

A LoRA generator learns the exact prompt shape it is trained on, so :func:`training_examples`
builds its prompts with :func:`build_messages`, from neighbours found the way the responder
finds them (leave-one-out). Prompts are short on purpose: on a CPU, prefill time grows with
the prompt, and two trimmed examples carry most of what a small model can use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from deskpilot.errors import InputDataError

from .knowledge_index import Embedder, Hit, normalise

Message = dict[str, str]

SYSTEM_PROMPT = (
    "You are a helpdesk agent drafting a reply for a colleague to check. "
    "Use only facts from the ticket and the example replies. "
    "Keep placeholders such as {{Order Number}} exactly as the examples write them; "
    "never invent numbers, links, names or dates. Be concise."
)
MAX_EXAMPLE_CHARS = 450
"""Per example, question and answer together (the question gets at most a third)."""
MAX_TICKET_CHARS = 500
_BLOCK = 512
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|\n")
_LIST_MARK = re.compile(r"(?:^|\n)\s*(?:\d+|[a-z])[.)]$")  # "5." opens a list item, it ends nothing


def tidy(text: str) -> str:
    """Runs of spaces to one, at most one blank line in a row; line structure is kept."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a sentence end when one is in the second half."""
    text = tidy(text)
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    ends = [
        m.end()
        for m in _SENTENCE_END.finditer(window)
        if m.end() <= limit and not _LIST_MARK.search(window[: m.end()])
    ]
    if ends and ends[-1] >= limit // 2:
        return window[: ends[-1]].rstrip()
    cut = window[:limit].rsplit(None, 1)[0] if " " in window[:limit] else window[: limit - 1]
    return cut.rstrip(" ,;:-") + "…"


def _ticket_turn(text: str, label: str | None) -> str:
    return (f"Category: {label}\n" if label else "") + f"Ticket: {text}"


def build_messages(
    ticket_text: str,
    hits: Sequence[Hit],
    decision_label: str | None = None,
    max_example_chars: int = MAX_EXAMPLE_CHARS,
    max_ticket_chars: int = MAX_TICKET_CHARS,
) -> list[Message]:
    """System message, then each example as a ticket/reply turn pair, then the new ticket.

    ``hits`` come best first; they are written best last, next to the new ticket, where a
    small model attends most. About 300-450 tokens with two examples at the default limits.
    """
    if not ticket_text.strip():
        raise InputDataError("the ticket text is empty")
    messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for hit in reversed(hits):
        question = shorten(hit.question, max(40, max_example_chars // 3))
        answer = shorten(hit.answer, max(40, max_example_chars - len(question)))
        messages.append({"role": "user", "content": _ticket_turn(question, None)})
        messages.append({"role": "assistant", "content": answer})
    messages.append(
        {"role": "user", "content": _ticket_turn(shorten(ticket_text, max_ticket_chars), decision_label)}
    )
    return messages


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def select_examples(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The first ``k`` hits with distinct answers: two copies of one answer teach nothing more."""
    seen: set[str] = set()
    chosen: list[Hit] = []
    for hit in hits:
        key = _key(hit.answer)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(hit)
        if len(chosen) == k:
            break
    return chosen


def training_examples(
    questions: Sequence[str],
    answers: Sequence[str],
    embedder: Embedder,
    k: int = 2,
    *,
    labels: Sequence[str | None] | None = None,
    ids: Sequence[str] | None = None,
    floor: float | None = None,
    max_example_chars: int = MAX_EXAMPLE_CHARS,
    max_ticket_chars: int = MAX_TICKET_CHARS,
) -> list[tuple[list[Message], str]]:
    """(prompt, target answer) per training pair, with its ``k`` nearest OTHER pairs as examples.

    Leave-one-out: a pair never sees itself, nor a pair with the same question (a duplicate
    would teach copying an answer the model is never shown at inference). With ``labels``,
    neighbours of the same class come first and the class is named in the prompt, as the
    responder does with a routing decision. With ``floor``, neighbours below it are left out
    and pairs left without any are skipped (the responder writes no draft for those).
    """
    n = len(questions)
    if len(answers) != n or (labels is not None and len(labels) != n) or (ids is not None and len(ids) != n):
        raise InputDataError("questions, answers, labels and ids must have the same length")
    if n == 0:
        return []
    vectors = normalise(embedder.embed(list(questions)))
    keys = [_key(q) for q in questions]
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    label_arr = np.array(list(labels) if labels is not None else [None] * n, dtype=object)
    # enough candidates to survive dropping duplicate answers
    width = min(n, 4 * k + 4)
    out: list[tuple[list[Message], str]] = []
    for start in range(0, n, _BLOCK):
        rows = range(start, min(n, start + _BLOCK))
        scores = vectors[start : rows.stop] @ vectors.T
        for r, i in enumerate(rows):
            row = scores[r].astype(np.float64)
            row[by_key[keys[i]]] = -np.inf  # itself and exact duplicates
            rank = row.copy()
            if floor is not None:
                rank[row < floor] = -np.inf
            if labels is not None and label_arr[i] is not None:
                rank[(label_arr == label_arr[i]) & np.isfinite(rank)] += 4.0  # same class first
            near = np.argpartition(-rank, width - 1)[:width] if width < n else np.arange(n)
            top = sorted((j for j in near.tolist() if np.isfinite(rank[j])), key=lambda j: (-rank[j], j))
            hits = [
                Hit(
                    source_id=ids[j] if ids is not None else f"kb:{j}",
                    question=questions[j],
                    answer=answers[j],
                    label=label_arr[j],
                    score=float(row[j]),
                )
                for j in top
            ]
            chosen = select_examples(hits, k)
            if not chosen:
                continue
            label = label_arr[i] if labels is not None else None
            messages = build_messages(questions[i], chosen, label, max_example_chars, max_ticket_chars)
            out.append((messages, answers[i]))
    return out
