"""Post-processing of a generated reply: what a small model gets wrong, fixed cheaply.

Small generators echo the prompt, keep going into an invented next turn, stop mid-sentence
at the token limit, repeat themselves, and make up order numbers and links. None of that
should reach a person as a draft. Invented identifiers are the dangerous part: a made-up
order number reads as a fact, so each is replaced by a placeholder the agent must fill in,
and counted (the evaluation reports them as "hallucinated identifiers").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .knowledge_index import Hit
from .respond_prompt import tidy

MAX_DRAFT_CHARS = 700

# where a reply ends: end-of-turn tokens of common chat templates, or a new turn of the dialogue
_STOP_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "</s>",
    "<|im_start|>",
    "<end_of_turn>",
)
_NEW_TURN = re.compile(
    r"\n\s*(?:#+\s*)?(?:ticket|customer|user|human|category|new ticket|system)\s*:"
    r"|(?<=[.!?])[ \t]+(?:ticket|customer|user|human|new ticket)\s*:",
    re.IGNORECASE,
)
_ROLE_PREFIX = re.compile(
    r"^\s*(?:<\|im_start\|>\s*)?"
    r"(?:(?:assistant|agent|support agent|answer|reply|response|draft)\s*(?::|-|\n))+\s*",
    re.IGNORECASE,
)
_ECHO_PREFIX = re.compile(r"^\s*(?:ticket|customer|category)\s*:\s*", re.IGNORECASE)
_SEGMENTS = re.compile(r"((?<=[.!?…])[ \t]+|\n+)")
_COMPLETE = re.compile(r"[.!?…:)\]\"'»}]\s*$")
_LIST_MARK = re.compile(r"\s*(?:\d+|[a-z])[.)]\s*")  # "5." opens a list item, it ends nothing

# identifiers, most specific first (a URL's digits are not also an order number)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]{}\"']+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_DATE = re.compile(r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})\b")
_TICKET_ID = re.compile(r"\b[A-Z]{2,6}-?\d{3,}\b")
_NUMBER = re.compile(r"(?<![\w{$€£#])#?\d[\d-]*\d\b")
_MIN_DIGITS = 5
_NUMBER_CONTEXT = re.compile(
    r"\b(order|purchase|invoice|tracking|account|reference|ref|case|ticket|phone|refund|card)\b",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?)'\"»"


@dataclass(frozen=True, slots=True)
class Identifier:
    kind: str  # "URL", "email", "date", "ticket id", "number"
    text: str
    start: int
    end: int

    def key(self) -> str:
        """The form two mentions are compared in: digits only for numbers, lower case otherwise."""
        if self.kind in ("number", "date"):
            return re.sub(r"\D", "", self.text)
        if self.kind == "ticket id":
            return re.sub(r"[^0-9A-Z]", "", self.text.upper())
        return self.text.lower().rstrip("/")


def find_identifiers(text: str) -> list[Identifier]:
    """URLs, emails, dates, ticket ids (``SEC-1234``, ``INC0012345``) and runs of 5+ digits."""
    found: list[Identifier] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    kinds = (
        ("URL", _URL),
        ("email", _EMAIL),
        ("date", _DATE),
        ("ticket id", _TICKET_ID),
        ("number", _NUMBER),
    )
    for kind, pattern in kinds:
        for match in pattern.finditer(text):
            start, value = match.start(), match.group(0)
            if kind == "URL":
                value = value.rstrip(_TRAILING)
            if kind == "number" and len(re.sub(r"\D", "", value)) < _MIN_DIGITS:
                continue
            end = start + len(value)
            if free(start, end):
                found.append(Identifier(kind, value, start, end))
                taken.append((start, end))
    return sorted(found, key=lambda ident: ident.start)


def _allowed_keys(allowed_texts: Iterable[str]) -> set[str]:
    return {ident.key() for text in allowed_texts for ident in find_identifiers(text)}


def invented_identifiers(text: str, allowed_texts: Iterable[str]) -> list[str]:
    """Identifiers in ``text`` that none of ``allowed_texts`` (ticket, examples) contains.

    Each appears once, in order of first appearance, as written in ``text``.
    """
    allowed = _allowed_keys(allowed_texts)
    out: list[str] = []
    seen: set[str] = set()
    for ident in find_identifiers(text):
        key = ident.key()
        if key not in allowed and key not in seen:
            seen.add(key)
            out.append(ident.text)
    return out


def _placeholder(ident: Identifier, before: str) -> str:
    if ident.kind == "number":
        words = _NUMBER_CONTEXT.findall(before[-40:])
        return f"{{{{{words[-1].lower()} number}}}}" if words else "{{number}}"
    return {"URL": "{{URL}}", "email": "{{email}}", "date": "{{date}}"}.get(ident.kind, "{{ticket id}}")


def _replace(text: str, invented: Callable[[Identifier], bool]) -> tuple[str, list[str]]:
    pieces: list[str] = []
    replaced: list[str] = []
    at = 0
    for ident in find_identifiers(text):
        if not invented(ident):
            continue
        pieces.append(text[at : ident.start])
        pieces.append(_placeholder(ident, text[: ident.start]))
        at = ident.end
        if ident.text not in replaced:
            replaced.append(ident.text)
    pieces.append(text[at:])
    return "".join(pieces), replaced


def replace_identifiers(text: str, allowed_texts: Iterable[str]) -> tuple[str, list[str]]:
    """``text`` with every invented identifier replaced by a placeholder, and those identifiers."""
    allowed = _allowed_keys(allowed_texts)
    return _replace(text, lambda ident: ident.key() not in allowed)


def scrub_reused(answer: str, past_question: str, ticket_text: str) -> tuple[str, list[str]]:
    """A past answer made safe to offer again: identifiers of ITS customer (named in its own
    question) that the new ticket does not name become placeholders. Generic ones (a help-page
    URL that only the answer has) stay."""
    theirs = _allowed_keys([past_question]) - _allowed_keys([ticket_text])
    return _replace(answer, lambda ident: ident.key() in theirs)


@dataclass(frozen=True, slots=True)
class CleanedDraft:
    text: str
    invented: tuple[str, ...]  # identifiers replaced by placeholders
    shortened: bool  # cut to fit max_chars or to drop an unfinished sentence


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def _strip_echo(text: str, ticket_text: str) -> str:
    """Leading role markers and any leading copy of the ticket (whole or by lines)."""
    ticket = _norm(ticket_text)
    while True:
        before = text
        text = _ROLE_PREFIX.sub("", text, count=1)
        lines = text.split("\n")
        while lines:
            head = lines[0]
            body = _norm(_ECHO_PREFIX.sub("", head))
            echoed = bool(_ECHO_PREFIX.match(head)) or (len(body) >= 15 and body in ticket)
            if not echoed and head.strip():
                break
            lines.pop(0)
        text = "\n".join(lines)
        if text == before:
            break
    stripped = ticket_text.strip()
    if len(stripped) >= 30:
        text = text.replace(stripped, "")
    return text.strip()


def _segments(text: str) -> list[tuple[str, str]]:
    """(sentence or line, the whitespace after it)."""
    parts = _SEGMENTS.split(text)
    return [(parts[i], parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]


def _complete(sentence: str) -> bool:
    return bool(_COMPLETE.search(sentence)) and not _LIST_MARK.fullmatch(sentence)


def _dedupe(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for sentence, gap in segments:
        key = _norm(sentence)
        if len(key) >= 12 and key in seen:
            continue
        seen.add(key)
        out.append((sentence, gap))
    return out


def _join(segments: Sequence[tuple[str, str]]) -> str:
    return "".join(s + g for s, g in segments).strip()


def clean_draft(
    text: str,
    ticket_text: str,
    hits: Sequence[Hit],
    max_chars: int = MAX_DRAFT_CHARS,
    *,
    cut_off: bool = False,
) -> CleanedDraft:
    """A raw generation made fit to show: echo and next turns removed, repeats collapsed,
    invented identifiers replaced, at most ``max_chars`` ending at a sentence boundary.

    ``cut_off``: the generator stopped at its token limit, so an unfinished last sentence is
    dropped (when something complete is left).
    """
    raw = text.replace("\r\n", "\n")
    for token in _STOP_TOKENS:
        raw = raw.split(token, 1)[0]
    raw = _strip_echo(raw, ticket_text)
    turn = _NEW_TURN.search("\n" + raw)
    if turn is not None:
        raw = raw[: max(0, turn.start() - 1)]
    allowed = [ticket_text, *(h.question for h in hits), *(h.answer for h in hits)]
    replaced, invented = replace_identifiers(tidy(raw), allowed)
    segments = _dedupe(_segments(replaced))
    shortened = False
    while cut_off and len(segments) > 1 and not _complete(segments[-1][0]):
        segments, shortened = segments[:-1], True
    if len(_join(segments)) > max_chars:
        shortened = True
        kept: list[tuple[str, str]] = []
        for segment in segments:
            if len(_join([*kept, segment])) > max_chars:
                break
            kept.append(segment)
        while len(kept) > 1 and not _complete(kept[-1][0]):
            kept.pop()
        if kept:
            segments = kept
        else:  # one sentence longer than the limit: cut at a word
            first = _join(segments)[: max_chars - 1]
            segments = [((first.rsplit(None, 1)[0] if " " in first else first) + "…", "")]
    return CleanedDraft(tidy(_join(segments)), tuple(invented), shortened)
