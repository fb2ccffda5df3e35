"""Atlassian Document Format (ADF), both ways: flatten a document to plain text, build one.

ADF is the JSON rich-text tree REST v3 uses for descriptions and comments
(https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/): a ``doc``
node with block nodes (``paragraph``, ``heading``, ``bulletList``/``orderedList`` >
``listItem``, ``codeBlock``, ``blockquote``, ``panel``, ``table`` > ``tableRow`` >
``tableCell``, ``rule``, ``media*``) holding inline nodes (``text``, ``hardBreak``,
``mention``, ``emoji``, ``inlineCard``, ``date``, ``status``). Unknown nodes contribute
their children's text, so a new node type degrades to its words instead of failing.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # deeper trees are cut off, not recursed into (bounded stack, bounded time)
_INLINE = frozenset(
    {"text", "hardBreak", "mention", "emoji", "status", "inlineCard", "date", "placeholder", "mediaInline"}
)
_LISTS = frozenset({"bulletList", "orderedList"})


def _inline(node: dict[str, Any]) -> str:
    kind = node.get("type")
    found = node.get("attrs")
    attrs: dict[str, Any] = found if isinstance(found, dict) else {}
    if kind == "text":
        text = node.get("text")
        return text if isinstance(text, str) else ""
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status", "placeholder"):
        value = attrs.get("text") or attrs.get("shortName") or ""
        return value if isinstance(value, str) else ""
    if kind == "inlineCard":
        url = attrs.get("url")
        return url if isinstance(url, str) else ""
    if kind == "date":
        stamp = attrs.get("timestamp")
        return str(stamp) if isinstance(stamp, str | int) else ""
    return ""


def _walk(node: Any, depth: int, out: list[str], prefix: str = "") -> None:
    """Append ``node``'s lines to ``out``; the first line gets ``prefix``, later ones its indent."""
    if depth > MAX_DEPTH or not isinstance(node, dict):
        return
    kind = node.get("type")
    children = node.get("content")
    children = [c for c in children if isinstance(c, dict)] if isinstance(children, list) else []
    if kind in _LISTS:
        for number, item in enumerate(children, start=1):
            _walk(item, depth + 1, out, prefix + (f"{number}. " if kind == "orderedList" else "- "))
        return
    if kind in _INLINE:  # an inline node where a block was expected
        children = [node]
    line: list[str] = []

    def emit(text: str) -> None:
        nonlocal prefix
        if text.strip():
            out.append(prefix + text.strip())
            prefix = " " * len(prefix)

    for child in children:
        if child.get("type") in _INLINE:
            line.append(_inline(child))
            continue
        emit("".join(line))
        line.clear()
        before = len(out)
        _walk(child, depth + 1, out, prefix)
        if len(out) > before:
            prefix = " " * len(prefix)
    emit("".join(line))


def to_text(document: Any) -> str:
    """Plain text of an ADF node (blocks one per line, lists as ``- `` / ``1. ``); "" for non-ADF."""
    out: list[str] = []
    _walk(document, 0, out)
    return "\n".join(out)


def _text_nodes(text: str, marks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Inline nodes for ``text``: single newlines become hardBreaks; ADF forbids empty text."""
    nodes: list[dict[str, Any]] = []
    for i, line in enumerate(text.split("\n")):
        if i:
            nodes.append({"type": "hardBreak"})
        if line:
            node: dict[str, Any] = {"type": "text", "text": line}
            if marks:
                node["marks"] = marks
            nodes.append(node)
    return nodes


def paragraph(text: str, *, marks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "paragraph", "content": _text_nodes(text, marks)}


def paragraphs(text: str) -> list[dict[str, Any]]:
    """One paragraph per blank-line-separated block of ``text`` (none for blank text)."""
    blocks = [block.strip("\n") for block in text.replace("\r\n", "\n").split("\n\n")]
    return [paragraph(block) for block in blocks if block.strip()]


def document(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(blocks)}
