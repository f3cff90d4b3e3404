"""Delivery status notifications (RFC 3464) read into a ``Dsn``: the facts, no decisions.

CPython parses ``message/delivery-status`` into a list of header blocks (the per-message
block, then one per recipient); ``get_payload(decode=True)`` is ``None`` there, so the blocks
are read as parsed, and a block the parser had to repair (a line that is no field) is refused.

ENVID and ORCPT were sent as xtext (RFC 3461) and come back in ``Original-Envelope-Id`` and
``Original-Recipient``, xtext-encoded or already decoded depending on the MTA (Postfix
decodes); :func:`gateway.receipts.fields.from_xtext` reads either, so they compare equal to
what the outbox recorded. Postfix's own fields (``X-Postfix-Queue-ID``) and other
extensions are ignored.

A DSN is accepted only when every recipient block says one clear thing: an Action from RFC
3464, a Status whose class fits it, a Final-Recipient. A DSN that fails that is returned as
``MalformedReceipt`` and quarantined; it never moves a delivery record.
"""

from __future__ import annotations

import re
from email.message import Message

from gateway.receipts.fields import (
    FieldError,
    block_fields,
    detail,
    display_value,
    from_xtext,
    returned_message_id,
    strict_value,
    typed_address,
)
from gateway.receipts.model import Dsn, DsnRecipient, MalformedReceipt
from gateway.receipts.report import report_parts

__all__ = ["MALFORMED", "parse_dsn"]

#: The reason of every DSN that cannot be read.
MALFORMED = "malformed-delivery-status"

#: RFC 3464 section 2.3.3, and the status classes each action may carry (section 2.3.4):
#: ``failed`` with 4.x.x is what an MTA sends when a temporary failure outlived the queue.
_ACTIONS = {
    "failed": frozenset("45"),
    "delayed": frozenset("4"),
    "delivered": frozenset("2"),
    "relayed": frozenset("2"),
    "expanded": frozenset("2"),
}
# status-code = class "." subject "." detail, optionally followed by a comment.
_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:[ \t]*\([\x20-\x7e]*\))?")
_PER_MESSAGE = ("Original-Envelope-Id", "Reporting-MTA", "DSN-Gateway", "Received-From-MTA", "Arrival-Date")
_PER_RECIPIENT = (
    "Original-Recipient",
    "Final-Recipient",
    "Action",
    "Status",
    "Remote-MTA",
    "Diagnostic-Code",
    "Last-Attempt-Date",
    "Final-Log-ID",
    "Will-Retry-Until",
)


def parse_dsn(msg: Message) -> Dsn | MalformedReceipt:
    """Read a ``multipart/report; report-type=delivery-status`` (parsed with ``policy.compat32``)."""
    try:
        return _parse(msg)
    except FieldError as exc:
        return MalformedReceipt("dsn", MALFORMED, detail(exc))


def _parse(msg: Message) -> Dsn:
    report = report_parts(msg, "delivery-status", "message/delivery-status")
    payload = report.status.get_payload()
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    if len(blocks) < 2 or len(blocks) != len(payload):
        raise FieldError("no per-message block followed by recipient blocks")
    head = block_fields(blocks[0], _PER_MESSAGE, "per-message block")
    if "reporting-mta" not in head:
        raise FieldError("per-message block: no Reporting-MTA")
    if "final-recipient" in head or "action" in head:
        raise FieldError("per-message block: recipient fields")
    envid = head.get("original-envelope-id")
    return Dsn(
        envid=from_xtext(strict_value(envid, "Original-Envelope-Id"), "Original-Envelope-Id") if envid else None,
        reporting_mta=display_value(head["reporting-mta"]),
        arrival_date=_optional_strict(head, "arrival-date", "Arrival-Date"),
        recipients=tuple(_recipient(block, i) for i, block in enumerate(blocks[1:], 1)),
        original_message_id=returned_message_id(report.returned) if report.returned is not None else None,
    )


def _recipient(block: Message, index: int) -> DsnRecipient:
    what = f"recipient block {index}"
    fields = block_fields(block, _PER_RECIPIENT, what)
    for required in ("final-recipient", "action", "status"):
        if required not in fields:
            raise FieldError(f"{what}: no {required}")
    action = strict_value(fields["action"], "Action").lower()
    if action not in _ACTIONS:
        raise FieldError(f"{what}: Action {action[:40]!r} is not in RFC 3464")
    status_text = strict_value(fields["status"], "Status")
    m = _STATUS.fullmatch(status_text)
    if m is None:
        raise FieldError(f"{what}: Status is not a status code")
    if m.group(1) not in _ACTIONS[action]:
        raise FieldError(f"{what}: Status {m.group(1)}.x.x contradicts Action {action}")
    orcpt = fields.get("original-recipient")
    remote = fields.get("remote-mta")
    diagnostic = fields.get("diagnostic-code")
    return DsnRecipient(
        action=action,
        status=".".join(m.group(1, 2, 3)),
        final_recipient=typed_address(fields["final-recipient"], "Final-Recipient"),
        original_recipient=typed_address(orcpt, "Original-Recipient", xtext=True) if orcpt else None,
        diagnostic=display_value(diagnostic) if diagnostic else None,
        remote_mta=display_value(remote) if remote else None,
        last_attempt=_optional_strict(fields, "last-attempt-date", "Last-Attempt-Date"),
    )


def _optional_strict(fields: dict[str, str], key: str, name: str) -> str | None:
    value = fields.get(key)
    return strict_value(value, name) if value is not None else None
