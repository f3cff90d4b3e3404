"""Parse one fetched message into what routing and the case folder need, within limits.

Parsing is where hostile bytes meet the gateway, so it errs toward rejection: anything
beyond the configured size, depth or part count, or structurally broken MIME (no
boundary, no close delimiter, no parts), raises ``SecurityError`` with a machine-readable
reason and the caller quarantines the original bytes. Nothing here writes or sends; it
is a function of the bytes.

The structure is cut with ``mime.cut`` (byte-exact, bytes.find over bodies) rather
than the ``email`` package's line-by-line feed parser, which costs several times more on
the large base64 attachments that official mail carries; ``email`` still reads each
part's small header block, where its RFC 2231 parameter handling is what we want.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import Message

from gateway.config import LimitsConfig
from gateway.errors import SecurityError
from gateway.mime.cut import Entity, MimeError, children, decode_body, parse_entity
from gateway.mime.headers import codec_for_charset, decode_header_text


@dataclass(frozen=True)
class Part:
    """A leaf of the message worth a file of its own."""

    kind: str  # "text", "html" or "attachment"
    content_type: str
    data: bytes
    filename: str | None = None
    source: Entity | None = field(default=None, repr=False, compare=False)  # set while not yet decoded


@dataclass
class ParsedMessage:
    """The facts about a message that the gateway routes, stores and records."""

    subject: str
    from_addrs: list[str]
    message_id: str | None
    date: str | None
    parts: list[Part] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def addresses(values: list[str]) -> list[str]:
    """Every address in the given From header values (display names dropped, domain lower-cased).

    As lenient as a mail program's display: ``eve@example.org <boss@example.org>`` lists both,
    so the record shows what a reader would see. Whether the From is one clear address is
    :mod:`gateway.unwrap.identity`'s question, not this list's.
    """
    out: list[str] = []
    for _name, addr in email.utils.getaddresses(values):
        addr = decode_header_text(addr, encoded_words=False).strip()
        if not addr:
            continue
        local, at, domain = addr.rpartition("@")
        out.append(f"{local}@{domain.lower()}" if at else addr)
    return out


def from_addresses(msg: Message) -> list[str]:
    return addresses([str(v) for k, v in msg.raw_items() if k.lower() == "from"])


def _first(msg: Message, name: str) -> str | None:
    for k, v in msg.raw_items():
        if k.lower() == name.lower():
            return str(v)
    return None


def _field(value: str | None) -> str | None:
    """A structured field's value (Message-ID, Date) on one clean line, or None when empty.

    These reach the ledger, the manifest and the audit trail as written, so they go through
    the one header decoder; they are not RFC 2047 text, so encoded words stay literal.
    """
    return decode_header_text(value, encoded_words=False).strip() or None


def headers_only(raw: bytes) -> ParsedMessage:
    """Best-effort identification of a message that failed parsing, for the record.

    Reads only the header block, leniently; whatever it finds is labelled as coming from
    a message that was quarantined, never used for routing decisions of stored mail.
    """
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[: 256 * 1024])
        return ParsedMessage(
            subject=decode_header_text(_first(msg, "Subject")),
            from_addrs=from_addresses(msg),
            message_id=_field(_first(msg, "Message-ID")),
            date=_field(_first(msg, "Date")),
        )
    except Exception:  # noqa: BLE001 - identification is a courtesy, never a failure
        return ParsedMessage(subject="", from_addrs=[], message_id=None, date=None)


def parse_message(raw: bytes, limits: LimitsConfig, *, decode: bool = True) -> ParsedMessage:
    """Parse and extract; raises SecurityError(reason) for anything to be quarantined.

    ``decode=False`` checks everything and classifies the parts but leaves their bodies
    encoded (``decode_parts`` finishes them): the outer layer of an encrypted message is
    one large base64 body that nobody reads once it has been decrypted.
    """
    if len(raw) > limits.max_message_bytes:
        raise SecurityError("oversize", f"{len(raw)} bytes > limit {limits.max_message_bytes}")
    if not raw.strip():
        raise SecurityError("not-a-message", "empty message")
    top = parse_entity(raw)  # MimeError is the SecurityError "malformed-mime"
    if not top.headers:
        raise SecurityError("not-a-message", "no header fields")
    parsed = ParsedMessage(
        subject=decode_header_text(top.header("Subject")),
        from_addrs=addresses(top.header_all("From")),
        message_id=_field(top.header("Message-ID")),
        date=_field(top.header("Date")),
    )
    counter = [0]
    _collect(top, parsed, limits, depth=1, counter=counter, decode=decode)
    return parsed


def decode_parts(parsed: ParsedMessage) -> None:
    """Decode the bodies of parts that ``parse_message(decode=False)`` left encoded."""
    parsed.parts[:] = [_decoded(p, parsed) if p.source is not None else p for p in parsed.parts]


def _decoded(part: Part, out: ParsedMessage) -> Part:
    assert part.source is not None
    try:
        data = decode_body(part.source)
    except MimeError as exc:
        out.warnings.append(f"kept-undecoded:{exc.detail}")
        data = part.source.body
    if part.kind in ("text", "html"):
        data = _as_utf8(part.source.params.get("charset"), data)
    return Part(part.kind, part.content_type, data, part.filename)


def _collect(
    entity: Entity, out: ParsedMessage, limits: LimitsConfig, *, depth: int, counter: list[int], decode: bool
) -> None:
    counter[0] += 1
    if counter[0] > limits.max_mime_parts:
        raise SecurityError("too-many-parts", f"more than {limits.max_mime_parts} MIME parts")
    if depth > limits.max_mime_depth:
        raise SecurityError("mime-too-deep", f"deeper than {limits.max_mime_depth} levels")
    ctype = entity.content_type
    if entity.is_multipart:
        for kid in children(entity):  # MimeError is the SecurityError "malformed-mime"
            _collect(kid, out, limits, depth=depth + 1, counter=counter, decode=decode)
        return
    head = _part_headers(entity)
    filename = _filename(head)
    disposition = (head.get_content_disposition() or "").lower()
    if ctype == "message/rfc822":
        part = Part("attachment", ctype, b"", filename or "forwarded.eml", source=entity)
    elif ctype == "text/plain" and disposition != "attachment" and not filename and not _has(out, "text"):
        part = Part("text", ctype, b"", source=entity)
    elif ctype == "text/html" and disposition != "attachment" and not filename and not _has(out, "html"):
        part = Part("html", ctype, b"", source=entity)
    else:
        part = Part("attachment", ctype, b"", filename, source=entity)
    out.parts.append(_decoded(part, out) if decode else part)


def _part_headers(entity: Entity) -> Message:
    """The part's own header block, parsed by ``email`` for its parameter decoding."""
    block = entity.raw[: len(entity.raw) - len(entity.body)]
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)


def _has(out: ParsedMessage, kind: str) -> bool:
    return any(p.kind == kind for p in out.parts)


def _filename(head: Message) -> str | None:
    name: object
    try:
        name = head.get_filename()
        if name is None:
            name = head.get_param("name", header="content-type")
            if isinstance(name, tuple):
                name = email.utils.collapse_rfc2231_value(name)
    except Exception:  # noqa: BLE001 - a broken parameter means "no usable name", not a crash
        return None
    # A file name drops what it cannot show instead of marking it (docs/case-folders.md).
    return decode_header_text(name, replacement="") if isinstance(name, str) and name else None


def _as_utf8(charset: str | None, data: bytes) -> bytes:
    """Re-encode a text part as UTF-8, reading its declared charset only when it is a real one.

    The label is the sender's: it may name no codec, a codec that is not a charset
    (``unicode_escape`` would rewrite the text) or hold a NUL byte. Such a label is treated as
    absent, like a label that does not decode the data.
    """
    usable = charset if charset and codec_for_charset(charset) is not None else None
    try:
        if charset and usable is None:
            raise LookupError(charset)
        text = data.decode(usable or "us-ascii")
    except (LookupError, ValueError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text.encode("utf-8")
