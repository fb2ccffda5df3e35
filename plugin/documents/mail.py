"""RFC 822 / MIME: an email's body text, headers and attached files (nested mails as bytes).

Parsed with the ``compat32`` policy on purpose: the modern policy's structured header parser
is quadratic (a 16 KB ``Content-Type`` of quotes takes ~25 s), so headers stay raw strings,
capped in length while parsing, and only the few this module needs are decoded. It decides
which leaf is the body and which are files; extract follows nested mails, counting depth.
"""

from __future__ import annotations

import contextlib
import email
import email.header
import email.utils
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import Message
from email.policy import Compat32
from pathlib import PurePosixPath
from typing import Any

from deskpilot.documents.html_text import html_to_text
from deskpilot.documents.model import DocumentRejected

# a signature is not a document; listing it as a refused file would only be noise
_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_MAX_MIME_NESTING = 64  # multiparts inside one message (not attachments): deeper is a trap
_MAX_LEAVES = 1_000  # far past the attachment limit; stops a mail of 100 000 empty parts ...
_MAX_DASH_LINES = 20_000  # ... and this before parsing: the parser spends ~30 us on each part
_MAX_HEADER_CHARS = 8_192  # a To: with ~250 recipients
_MAX_PARAM_HEADER_CHARS = 2_048  # Content-Type/-Disposition: a type, a charset, a file name
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


class _BoundedPolicy(Compat32):
    """compat32 that cuts every header value short while parsing, so no later step is slow."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        cap = _MAX_PARAM_HEADER_CHARS if name.lower().startswith("content-") else _MAX_HEADER_CHARS
        return name, value[:cap]


_POLICY = _BoundedPolicy()


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    data: bytes
    content_type: str


@dataclass(slots=True)
class ParsedMail:
    body: str
    metadata: dict[str, Any]
    attachments: list[Attachment] = field(default_factory=list)


def _header(msg: Message, name: str) -> str:
    """A header as readable text (RFC 2047 words decoded), or "" when absent or unreadable."""
    raw = next((value for key, value in msg.raw_items() if key.lower() == name), None)
    if raw is None:
        return ""
    if not raw.isascii():  # 8-bit bytes sent as they are (common): UTF-8, else Windows-1252
        data = str(raw).encode("ascii", "surrogateescape")
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError:
            raw = data.decode("cp1252", "replace")
    try:
        text = str(email.header.make_header(email.header.decode_header(raw)))
    except Exception:  # a malformed encoded word must not cost the whole mail
        text = str(raw)
    return " ".join(text.split())


def _metadata(msg: Message) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "subject": _header(msg, "subject"),
        "from": _header(msg, "from"),
        "to": _header(msg, "to"),
        "cc": _header(msg, "cc"),
        "message_id": _header(msg, "message-id"),
    }
    raw_date = _header(msg, "date")
    try:
        meta["date"] = email.utils.parsedate_to_datetime(raw_date).isoformat() if raw_date else ""
    except (TypeError, ValueError, IndexError, OverflowError):
        meta["date"] = raw_date
    return {key: value for key, value in meta.items() if value}


def _text_of(part: Message) -> str:
    """A text part's content, decoded with its charset (or UTF-8 when that charset is unknown)."""
    raw = part.get_payload(decode=True)
    data = raw if isinstance(raw, bytes) else b""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def _safe_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        return ""
    with contextlib.suppress(Exception):  # RFC 2047 words in a name: decoded when they decode
        name = str(email.header.make_header(email.header.decode_header(name)))
    base = PurePosixPath(name.replace("\\", "/")).name
    return _UNSAFE_NAME.sub("_", base).strip()[:200]


@dataclass(slots=True)
class _Leaf:
    part: Message
    in_alternative: bool  # one of several renderings of the same body


def _leaves(part: Message, in_alternative: bool, depth: int, out: list[_Leaf], name: str) -> None:
    """Non-multipart parts in order (a nested message is one leaf: extract opens it)."""
    if depth > _MAX_MIME_NESTING:
        raise DocumentRejected(
            "too_deep",
            f"{name} nests its MIME parts more than {_MAX_MIME_NESTING} levels deep",
            hint="forward the documents in a new email, attached directly",
        )
    payload = part.get_payload()
    if part.get_content_maintype() == "multipart" and isinstance(payload, list):
        inside = in_alternative or part.get_content_subtype() == "alternative"
        for sub in payload:
            if len(out) >= _MAX_LEAVES:
                return
            if isinstance(sub, Message):
                _leaves(sub, inside, depth + 1, out, name)
    else:
        out.append(_Leaf(part, in_alternative))


def _nested_mail_bytes(part: Message) -> bytes:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        try:
            return inner.as_bytes()
        except Exception:  # a message the generator cannot write back: listed as empty
            return b""
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) else b""


def _filename(part: Message) -> str:
    try:
        return _safe_name(part.get_filename())
    except Exception:  # a broken RFC 2231 parameter: the part still counts, unnamed
        return ""


def _is_inline_text(part: Message, filename: str) -> bool:
    return part.get_content_maintype() == "text" and not filename and _disposition(part) != "attachment"


def _disposition(part: Message) -> str:
    value = str(part.get("content-disposition", ""))
    return value.split(";", 1)[0].strip().lower()


def parse_mail(data: bytes, name: str = "the email") -> ParsedMail:
    """Body (plain preferred, else HTML as text), headers and attachments of one message."""
    if data.count(b"\n--") > _MAX_DASH_LINES:
        raise DocumentRejected(
            "too_many_attachments",
            f"{name} is split into more than {_MAX_DASH_LINES:,} MIME parts",
            hint="send the documents in a few separate emails",
        )
    msg = email.message_from_bytes(data, policy=_POLICY)
    leaves: list[_Leaf] = []
    _leaves(msg, False, 0, leaves, name)
    names = [_filename(leaf.part) for leaf in leaves]
    pairs = list(zip(leaves, names, strict=True))
    inline = [leaf.part for leaf, named in pairs if _is_inline_text(leaf.part, named)]
    inline_ids = {id(part) for part in inline}
    body = next((p for p in inline if p.get_content_subtype() == "plain"), None)
    body = body or next((p for p in inline if p.get_content_subtype() == "html"), None)
    texts: list[str] = []
    attachments: list[Attachment] = []
    for leaf, filename in pairs:
        part, ctype = leaf.part, leaf.part.get_content_type()
        if part is body:
            texts.append(_text_of(part))
        elif ctype in _SIGNATURES:
            continue
        elif part.get_content_maintype() == "message" and ctype != "message/delivery-status":
            inner = part.get_payload(0) if part.is_multipart() else None
            subject = _safe_name(_header(inner, "subject")) if isinstance(inner, Message) else ""
            label = filename or f"{subject or 'attached message'}.eml"
            attachments.append(Attachment(label, _nested_mail_bytes(part), ctype))
        elif id(part) in inline_ids:
            if not leaf.in_alternative:  # more inline text (a footer, a note), not the HTML twin
                texts.append(_text_of(part))
        else:
            raw = part.get_payload(decode=True)
            default = f"attachment-{len(attachments) + 1}{mimetypes.guess_extension(ctype) or ''}"
            attachments.append(Attachment(filename or default, raw if isinstance(raw, bytes) else b"", ctype))
    metadata = _metadata(msg)
    if len(leaves) >= _MAX_LEAVES:
        metadata["parts_not_read"] = f"more than {_MAX_LEAVES} MIME parts; the rest were skipped"
    body_text = "\n\n".join(text.strip() for text in texts if text.strip())
    return ParsedMail(body=body_text, metadata=metadata, attachments=attachments)
