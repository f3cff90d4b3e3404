"""The field syntax receipts share: header blocks, ``type; address``, xtext, Message-IDs.

Receipts are evidence that moves a delivery record, and anyone on the internet can send one,
so every value that could change what is matched (addresses, ids, actions, status codes) is
read strictly: one line of printable ASCII, the field at most once per block. Anything else
raises :class:`FieldError`, which each parser turns into a ``MalformedReceipt``; a receipt
that is quarantined for a person to read is a smaller harm than one that moves the wrong
document's state. Free text (diagnostics, user agents) is only made safe to show.

Values are read from ``Message.raw_items()`` of messages parsed with ``policy.compat32``: the
bytes as sent, unfolded here, without RFC 2047 decoding (no receipt field is encoded text)
and without the policy turning 8-bit bytes into ``Header`` objects.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Iterable
from email.message import Message

from gateway.mime.headers import decode_header_text

__all__ = [
    "FieldError",
    "block_fields",
    "detail",
    "display_value",
    "first_header",
    "from_xtext",
    "message_id",
    "strict_value",
    "typed_address",
    "unfold",
    "xtext_decode",
]

# Folding is a line end (CRLF, or LF in a message stored with LF) before white space; a bare CR
# is no line end, stays in the value and is refused by strict_value.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# One line of printable ASCII (space and tab allowed inside): what a strict field may hold.
_STRICT = re.compile(r"[\x20-\x7e\t]*")
_ADDRESS_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
# A Message-ID as one angle-bracketed token: no white space, no nested brackets.
_MESSAGE_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]+)>")


class FieldError(ValueError):
    """A receipt field that cannot be trusted to say one thing; the text is the detail."""


def unfold(value: str) -> str:
    """The field's value on one line (RFC 5322 unfolding), without surrounding white space."""
    return _FOLD.sub("", value).strip(" \t\r\n")


def strict_value(value: str, field: str) -> str:
    """The unfolded value, if it is one line of printable ASCII; else :class:`FieldError`.

    A CR or LF left after unfolding, a control character, a non-ASCII character or a byte the
    parser could not decode (a lone surrogate) would let one field say two things to two
    readers, so none of them is accepted in a field that decides a match.
    """
    text = unfold(value)
    if not _STRICT.fullmatch(text):
        raise FieldError(f"{field}: control or non-ASCII characters")
    return text


def display_value(value: str) -> str:
    """Free text (Diagnostic-Code, Reporting-UA) made safe to store and show, never rejected."""
    return decode_header_text(unfold(value), encoded_words=False)


def detail(exc: Exception) -> str:
    """An error's text for ``MalformedReceipt.detail``: it may quote the sender's bytes, so made safe and short."""
    return decode_header_text(str(exc), encoded_words=False)[:200]


def first_header(msg: Message, name: str) -> str | None:
    """The raw value of the FIRST field called ``name`` (case-insensitive), or ``None``.

    De-Mail (TR 01201) says the first occurrence of a field counts. ``msg[name]`` happens to
    return the first as well, but it may hand back a ``Header`` object for 8-bit values; the
    rule is spelled out here so it never depends on the policy in use.
    """
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def block_fields(block: Message, single: Iterable[str], what: str) -> dict[str, str]:
    """The fields of one header block (lower-cased names -> raw value), each of ``single`` at most once.

    A block the parser could not read as fields only (a line that is no field, a body after
    the fields) is garbled and refused whole: reading around the garbage would mean guessing
    which of its lines the sender meant. Fields outside ``single`` (extensions) keep their
    first occurrence.
    """
    if block.defects or str(block.get_payload() or "").strip():
        raise FieldError(f"{what}: lines that are not fields")
    once = {name.lower() for name in single}
    out: dict[str, str] = {}
    for key, value in block.raw_items():
        name = key.lower()
        if name in out:
            if name in once:
                raise FieldError(f"{what}: {key} occurs more than once")
            continue
        out[name] = str(value)
    return out


def typed_address(value: str, field: str, *, xtext: bool = False) -> str:
    """The address of an ``address-type ";" address`` field (``rfc822; bob@example.org`` -> the address).

    ``xtext`` reads the address with :func:`from_xtext`: ORCPT travels as RFC 3461 xtext and
    comes back in ``Original-Recipient`` of a DSN, encoded or decoded depending on the MTA.
    """
    text = strict_value(value, field)
    kind, sep, address = text.partition(";")
    kind, address = kind.strip(), address.strip()
    if not sep or not _ADDRESS_TYPE.fullmatch(kind):
        raise FieldError(f"{field}: not 'type; address'")
    if xtext:
        address = from_xtext(address, field)
    if not address or any(c.isspace() for c in address):
        raise FieldError(f"{field}: empty or spaced address")
    return address


def from_xtext(value: str, field: str) -> str:
    """A value that travelled as xtext (ENVID, ORCPT), whichever form the MTA wrote it back in.

    RFC 3461 sends ENVID and ORCPT xtext-encoded; MTAs differ in what they write into the
    DSN. Postfix 3.7 writes the decoded value (``41.c0ffee+1=x y``), others the xtext as
    received (``41.c0ffee+2B1+3Dx+20y``). A value that is valid xtext and has a ``+`` is
    decoded (strictly: a bad byte sequence or a control character is refused); any other
    value is taken as already decoded. The two readings differ only for a decoded value
    that looks like xtext (a literal ``+2B``); the outbox's envids contain no ``+``, so
    for them both forms read the same.
    """
    if "+" in value and _XTEXT.fullmatch(value):
        return xtext_decode(value, field)
    return value


def xtext_decode(value: str, field: str) -> str:
    """RFC 3461 xtext to text: ``+HH`` (upper-case hex) is a byte, the bytes are UTF-8.

    Strict on purpose: a ``+`` without two upper-case hex digits, a space or ``=`` is not
    xtext, and guessing what an MTA meant would let two spellings name one document.
    The sender's side is ``gateway.outbound.smtp.xtext``.
    """
    if not _XTEXT.fullmatch(value):
        raise FieldError(f"{field}: not xtext")
    data = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value).encode("latin-1")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldError(f"{field}: xtext is not UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        raise FieldError(f"{field}: control characters in xtext")
    return text


def message_id(value: str, field: str) -> str:
    """A Message-ID field's id, without the angle brackets (as the outbox records it)."""
    text = strict_value(value, field)
    m = _MESSAGE_ID.fullmatch(text)
    if m is None:
        raise FieldError(f"{field}: not one <id>")
    return m.group(1)


def returned_message_id(part: Message) -> str | None:
    """The Message-ID of the returned original (``text/rfc822-headers`` or ``message/rfc822``).

    ``None`` when the part carries no Message-ID; two Message-IDs make it unclear which
    document the receipt speaks of, so they are refused.
    """
    ctype = part.get_content_type()
    if ctype == "message/rfc822":
        payload = part.get_payload()
        if not isinstance(payload, list) or len(payload) != 1 or not isinstance(payload[0], Message):
            raise FieldError("returned message: not one message")
        headers = payload[0]
    else:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            raise FieldError("returned headers: unreadable")
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    ids = [value for key, value in headers.raw_items() if key.lower() == "message-id"]
    if len(ids) > 1:
        raise FieldError("returned headers: Message-ID occurs more than once")
    return message_id(str(ids[0]), "returned Message-ID") if ids else None
