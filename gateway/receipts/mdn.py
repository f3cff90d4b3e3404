"""Message disposition notifications (RFC 8098) read into an ``Mdn``: the facts, no decisions.

An MDN is written by the recipient's mail program, so it says what a person (or their
program) did with the document: displayed, processed, deleted, dispatched. CPython reads the
``message/disposition-notification`` part like a ``message/rfc822`` whose headers are the
MDN's fields; a body after them means the part was not a field block and is refused.

Matching relies on ``Original-Message-ID``. When the returned headers carry a Message-ID
too, both must name the same message: an MDN that names two is refused rather than
matched to either.
"""

from __future__ import annotations

import re
from email.message import Message

from gateway.receipts.fields import (
    FieldError,
    block_fields,
    detail,
    display_value,
    message_id,
    returned_message_id,
    strict_value,
    typed_address,
)
from gateway.receipts.model import MalformedReceipt, Mdn
from gateway.receipts.report import report_parts

__all__ = ["MALFORMED", "parse_mdn"]

#: The reason of every MDN that cannot be read.
MALFORMED = "malformed-disposition-notification"

# RFC 8098 section 3.2.6: action-mode "/" sending-mode ";" disposition-type ["/" modifiers].
_DISPOSITION = re.compile(
    r"(manual-action|automatic-action)[ \t]*/[ \t]*(MDN-sent-manually|MDN-sent-automatically)[ \t]*;"
    r"[ \t]*(displayed|deleted|dispatched|processed)"
    r"(?:[ \t]*/[ \t]*[A-Za-z0-9-]+(?:[ \t]*,[ \t]*[A-Za-z0-9-]+)*)?",
    re.IGNORECASE,
)
_FIELDS = ("Reporting-UA", "MDN-Gateway", "Original-Recipient", "Final-Recipient", "Original-Message-ID", "Disposition")


def parse_mdn(msg: Message) -> Mdn | MalformedReceipt:
    """Read a ``multipart/report; report-type=disposition-notification`` (parsed with ``policy.compat32``)."""
    try:
        return _parse(msg)
    except FieldError as exc:
        return MalformedReceipt("mdn", MALFORMED, detail(exc))


def _parse(msg: Message) -> Mdn:
    report = report_parts(msg, "disposition-notification", "message/disposition-notification")
    payload = report.status.get_payload()
    if not isinstance(payload, list) or len(payload) != 1 or not isinstance(payload[0], Message):
        raise FieldError("disposition-notification: not one field block")
    fields = block_fields(payload[0], _FIELDS, "disposition-notification")
    if "disposition" not in fields or "final-recipient" not in fields:
        raise FieldError("disposition-notification: no Disposition or no Final-Recipient")
    disposition = strict_value(fields["disposition"], "Disposition")
    m = _DISPOSITION.fullmatch(disposition)
    if m is None:
        raise FieldError("Disposition is not an RFC 8098 disposition")
    original = fields.get("original-message-id")
    original_id = message_id(original, "Original-Message-ID") if original else None
    returned = returned_message_id(report.returned) if report.returned is not None else None
    if original_id and returned and original_id != returned:
        raise FieldError("Original-Message-ID and the returned headers name different messages")
    orcpt = fields.get("original-recipient")
    ua = fields.get("reporting-ua")
    return Mdn(
        original_message_id=original_id or returned,
        final_recipient=typed_address(fields["final-recipient"], "Final-Recipient"),
        original_recipient=typed_address(orcpt, "Original-Recipient") if orcpt else None,
        disposition=disposition,
        disposition_type=m.group(3).lower(),
        reporting_ua=display_value(ua) if ua else None,
    )
