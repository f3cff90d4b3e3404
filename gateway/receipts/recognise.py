"""Is this fetched message a receipt, and if so what does it say? Decided before routing.

Nearly every message is an ordinary letter, so the question is answered from the header
block alone: the first ``X-de-mail-message-type`` of the message as fetched, then the first
``Content-Type`` of the delivered content. Only a message that claims to be a receipt is
parsed further. A claim that cannot be read is a ``MalformedReceipt`` (quarantined, never
filed as a letter); anything unexpected inside the parsers, too (``malformed-receipt``):
:func:`recognise` never raises, because one odd message must not stop a batch.

Where a claim is made decides what is believed: De-Mail's type travels in the fetched
message's own header (the provider sets it), DSNs and MDNs are read from the content after
decryption and verification, so a signed receipt is read from what the signature covers.
"""

from __future__ import annotations

import email
import email.parser
import email.policy
import re
from email.message import Message

from gateway.mime.cut import MimeError, parse_entity, split_multipart
from gateway.receipts.demail import CONFIRMATIONS, NOT_RECEIPTS, UNKNOWN_TYPE, message_type, parse_demail_confirmation
from gateway.receipts.dsn import MALFORMED as DSN_MALFORMED
from gateway.receipts.dsn import parse_dsn
from gateway.receipts.fields import FieldError, detail, unfold
from gateway.receipts.mdn import MALFORMED as MDN_MALFORMED
from gateway.receipts.mdn import parse_mdn
from gateway.receipts.model import MalformedReceipt, Receipt, ReceiptKind
from gateway.receipts.report import report_type_of

__all__ = ["MALFORMED", "recognise"]

#: The reason when a parser met something it did not expect (it raised).
MALFORMED = "malformed-receipt"

# The end of the header block: the first empty line.
_HEAD_END = re.compile(rb"\n\r?\n")
# A field we look at, with its continuation lines. Like CPython's parser, no space before the colon.
_FIELD = re.compile(rb"^(content-type|x-de-mail-message-type):(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_REPORT = re.compile(r"multipart/report(?:[ \t]*;|[ \t]*$)", re.IGNORECASE)
#: report-type -> the parser that reads it (the ``global-`` forms of RFC 6533 are refused there).
_REPORTS = {
    "delivery-status": "dsn",
    "global-delivery-status": "dsn",
    "disposition-notification": "mdn",
    "global-disposition-notification": "mdn",
}


def recognise(raw: bytes, content: bytes) -> Receipt | MalformedReceipt | None:
    """The receipt in a fetched message, a ``MalformedReceipt``, or ``None`` for an ordinary message.

    ``raw`` is the message as fetched (its header carries ``X-de-mail-*``); ``content`` is
    what decryption and verification delivered (``raw`` itself for a plain message).
    """
    # The claim's kind, for a MalformedReceipt if a parser raises; _fields cannot fail (a regex
    # over bytes, latin-1 text), and the kind is settled from the header before any parsing.
    kind: ReceiptKind = "dsn"
    try:
        head = _fields(raw)
        demail = head.get("x-de-mail-message-type")
        if demail is not None:
            kind = "demail"
            return _demail(raw, content, demail)
        ctype = head.get("content-type") if content is raw or content == raw else _fields(content).get("content-type")
        if ctype is None or not _REPORT.match(ctype):
            return None
        kind = "mdn" if "disposition-notification" in ctype.lower() else "dsn"
        end = _HEAD_END.search(content)
        head_block = content if end is None else content[: end.end()]
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head_block)
        report_type = report_type_of(msg)
        parser = _REPORTS.get(report_type.strip().lower()) if isinstance(report_type, str) else None
        if parser is None:
            return None  # another kind of report (abuse feedback, TLS reports): no receipt of ours
        kind = "mdn" if parser == "mdn" else "dsn"
        try:
            _attach_parts(msg, content)
        except MimeError as exc:
            return MalformedReceipt(kind, MDN_MALFORMED if kind == "mdn" else DSN_MALFORMED, f"MIME: {exc.detail}")
        return parse_mdn(msg) if parser == "mdn" else parse_dsn(msg)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises": the claim is quarantined
        return MalformedReceipt(kind, MALFORMED, type(exc).__name__)


def _demail(raw: bytes, content: bytes, value: str) -> Receipt | MalformedReceipt | None:
    try:
        kind = message_type(value)
    except FieldError as exc:
        return MalformedReceipt("demail", UNKNOWN_TYPE, detail(exc))
    if kind in NOT_RECEIPTS:
        return None
    if kind not in CONFIRMATIONS:
        return MalformedReceipt("demail", UNKNOWN_TYPE, f"X-de-mail-message-type {kind[:60]!r}")
    body = email.message_from_bytes(content, policy=email.policy.compat32)
    same = content is raw or content == raw
    headers = body if same else email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return parse_demail_confirmation(headers, body)


def _attach_parts(msg: Message, content: bytes) -> None:
    """Give the report's header (``policy.compat32``) its parts, cut by ``mime.cut``.

    The same tree ``email.message_from_bytes`` builds, with the parts cut where
    ``parse_message`` cut them for the entry (the parts read are the parts stored), each
    parsed by ``email`` on its own. The feed parser over the whole message compiles a
    regular expression for every new boundary, and a reporting MTA writes a new boundary
    into every report: that compile was most of the cost of recognising a receipt.
    ``MimeError`` for a structure that cannot be cut (``parse_message`` refuses it too).
    """
    top = parse_entity(content)
    if top.is_multipart:
        boundary = top.params.get("boundary")
        if boundary is None:
            raise MimeError("multipart without boundary")
        msg.set_payload([_part(raw) for raw in split_multipart(top.body, boundary)])


def _part(raw: bytes) -> Message:
    """One part as ``email`` parses it; a leaf's header alone, its body kept as the text it is.

    For a part that is neither ``message/*`` nor ``multipart/*`` the feed parser keeps the
    body as it is, so parsing only the header gives the same ``Message`` for less.
    """
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    if head.get_content_maintype() in ("message", "multipart"):
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    return head


def _fields(message: bytes) -> dict[str, str]:
    """The FIRST value of each field :func:`recognise` looks at, from the header block only."""
    if message.startswith((b"\n", b"\r\n")):
        return {}
    end = _HEAD_END.search(message)
    head = message if end is None else message[: end.start() + 1]
    out: dict[str, str] = {}
    for m in _FIELD.finditer(head):
        name = m.group(1).decode("ascii").lower()
        if name not in out:
            out[name] = unfold(m.group(2).decode("latin-1"))
    return out
