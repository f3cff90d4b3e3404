"""Parse one fetched message into what routing and the case folder need, within limits.

Parsing is where hostile bytes meet the gateway, so it errs toward rejection: anything
beyond the configured size, depth or part count, or structurally broken MIME, raises
``SecurityError`` with a machine-readable reason and the caller quarantines the original
bytes. Nothing here writes or sends; it is a function of the bytes.
"""

from __future__ import annotations

import email
import email.errors
import email.parser
import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from gateway.config import LimitsConfig
from gateway.errors import SecurityError
from gateway.subject import decode_header_text

# Defects that mean the MIME structure cannot be trusted to say where parts begin and end.
STRUCTURAL_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
    email.errors.MisplacedEnvelopeHeaderDefect,
)


@dataclass(frozen=True)
class Part:
    """A leaf of the message worth a file of its own."""

    kind: str  # "text", "html" or "attachment"
    content_type: str
    data: bytes
    filename: str | None = None


@dataclass
class ParsedMessage:
    """The facts about a message that the gateway routes, stores and records."""

    subject: str
    from_addrs: list[str]
    message_id: str | None
    date: str | None
    parts: list[Part] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _depth_guard(raw: bytes, limits: LimitsConfig) -> None:
    """Cheap pre-check so that a nesting bomb never reaches the recursive parser."""
    lowered = raw.lower()
    if lowered.count(b"multipart/") > limits.max_mime_parts * 2 + 10:
        raise SecurityError("too-many-parts", "more multipart declarations than allowed")


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - the email package raises many types on hostile headers
        return None
    if value is None:
        return None
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return None


def _raw_header(msg: Message, name: str) -> str | None:
    """The header as it came (before the policy's own decoding), for our robust decoder."""
    for k, v in msg.raw_items():
        if k.lower() == name.lower():
            return v if isinstance(v, str) else str(v)
    return None


def from_addresses(msg: Message) -> list[str]:
    """Every address in every From header (display names dropped, lower-cased domain)."""
    values: list[str] = []
    for k, v in msg.raw_items():
        if k.lower() == "from":
            values.append(str(v))
    out: list[str] = []
    for _name, addr in email.utils.getaddresses(values):
        addr = addr.strip()
        if not addr:
            continue
        local, at, domain = addr.rpartition("@")
        out.append(f"{local}@{domain.lower()}" if at else addr)
    return out


def headers_only(raw: bytes) -> ParsedMessage:
    """Best-effort identification of a message that failed parsing, for the record.

    Reads only the header block, leniently; whatever it finds is labelled as coming from
    a message that was quarantined, never used for routing decisions of stored mail.
    """
    try:
        head = raw[: 256 * 1024]
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
        return ParsedMessage(
            subject=decode_header_text(_raw_header(msg, "Subject")),
            from_addrs=from_addresses(msg),
            message_id=(_header(msg, "Message-ID") or "").strip() or None,
            date=_header(msg, "Date"),
        )
    except Exception:  # noqa: BLE001 - identification is a courtesy, never a failure
        return ParsedMessage(subject="", from_addrs=[], message_id=None, date=None)


def parse_message(raw: bytes, limits: LimitsConfig) -> ParsedMessage:
    """Parse and extract; raises SecurityError(reason) for anything to be quarantined."""
    if len(raw) > limits.max_message_bytes:
        raise SecurityError("oversize", f"{len(raw)} bytes > limit {limits.max_message_bytes}")
    if not raw.strip():
        raise SecurityError("not-a-message", "empty message")
    _depth_guard(raw, limits)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except RecursionError:
        raise SecurityError("mime-too-deep", "nesting exhausted the parser") from None
    except Exception as exc:  # noqa: BLE001
        raise SecurityError("malformed-mime", f"parser failed: {type(exc).__name__}") from None
    if not list(msg.raw_items()):
        raise SecurityError("not-a-message", "no header fields")
    for defect in msg.defects:
        if isinstance(defect, STRUCTURAL_DEFECTS):
            raise SecurityError("malformed-mime", type(defect).__name__)
    parsed = ParsedMessage(
        subject=decode_header_text(_raw_header(msg, "Subject")),
        from_addrs=from_addresses(msg),
        message_id=(_header(msg, "Message-ID") or "").strip() or None,
        date=_header(msg, "Date"),
    )
    counter = [0]
    _collect(msg, parsed, limits, depth=1, counter=counter)
    return parsed


def _collect(part: Message, out: ParsedMessage, limits: LimitsConfig, *, depth: int, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > limits.max_mime_parts:
        raise SecurityError("too-many-parts", f"more than {limits.max_mime_parts} MIME parts")
    if depth > limits.max_mime_depth:
        raise SecurityError("mime-too-deep", f"deeper than {limits.max_mime_depth} levels")
    for defect in part.defects:
        if isinstance(defect, STRUCTURAL_DEFECTS):
            raise SecurityError("malformed-mime", type(defect).__name__)
        out.warnings.append(type(defect).__name__)
    ctype = part.get_content_type()
    if part.is_multipart() and ctype != "message/rfc822":
        payload = part.get_payload()
        if not isinstance(payload, list):
            raise SecurityError("malformed-mime", "multipart without parts")
        for sub in payload:
            if not isinstance(sub, Message):
                raise SecurityError("malformed-mime", "multipart part is not a MIME entity")
            _collect(sub, out, limits, depth=depth + 1, counter=counter)
        return
    filename = _filename(part)
    disposition = (part.get_content_disposition() or "").lower()
    data = _payload_bytes(part)
    if ctype == "message/rfc822":
        out.parts.append(Part("attachment", ctype, data, filename or "forwarded.eml"))
    elif ctype == "text/plain" and disposition != "attachment" and not filename and not _has(out, "text"):
        out.parts.append(Part("text", ctype, _as_utf8(part, data)))
    elif ctype == "text/html" and disposition != "attachment" and not filename and not _has(out, "html"):
        out.parts.append(Part("html", ctype, _as_utf8(part, data)))
    else:
        out.parts.append(Part("attachment", ctype, data, filename))


def _has(out: ParsedMessage, kind: str) -> bool:
    return any(p.kind == kind for p in out.parts)


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001
        name = None
    if name is None:
        try:
            name = part.get_param("name", header="content-type")  # type: ignore[assignment]
        except Exception:  # noqa: BLE001
            name = None
        if isinstance(name, tuple):
            name = email.utils.collapse_rfc2231_value(name)
    return decode_header_text(name) if isinstance(name, str) and name else None


def _payload_bytes(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        if isinstance(payload, list) and payload:
            inner = payload[0]
            try:
                return (
                    inner.as_bytes(policy=email.policy.compat32) if isinstance(inner, EmailMessage | Message) else b""
                )
            except Exception:  # noqa: BLE001
                return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _as_utf8(part: Message, data: bytes) -> bytes:
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text.encode("utf-8")
