"""The ``multipart/report`` container (RFC 6522) that DSNs and MDNs share.

A report has two or three parts: text for people, the machine-readable part, and optionally
the original (its headers or the whole message). Only that shape is accepted: a second
status part, a status part in the wrong place or a transfer-encoded one would each let a
sender show one thing to a mail program and another to us.
"""

from __future__ import annotations

import email.utils
import urllib.parse
from dataclasses import dataclass
from email.message import Message

from gateway.receipts.fields import FieldError

__all__ = ["Report", "report_parts"]

#: What the third part may be: the returned headers or the returned message.
_RETURNED = frozenset({"text/rfc822-headers", "message/rfc822"})
#: Transfer encodings that leave the fields readable as they are (RFC 3464 section 2.1: 7bit).
_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


@dataclass(frozen=True)
class Report:
    """The machine-readable part and, if the reporter returned it, the original's part."""

    status: Message
    returned: Message | None


def report_type_of(msg: Message) -> str | None:
    """The report-type parameter, also in its RFC 2231 form (``report-type*=us-ascii''delivery-status``).

    ``email`` decodes RFC 2231 only for parameter names made of word characters, so the
    hyphenated name is decoded here.
    """
    value = msg.get_param("report-type")
    if isinstance(value, str):
        return value
    extended = msg.get_param("report-type*")
    if not isinstance(extended, str):
        return None
    _charset, _language, text = email.utils.decode_rfc2231(extended)
    return urllib.parse.unquote(text, encoding="ascii", errors="replace")


def report_parts(msg: Message, report_type: str, status_type: str) -> Report:
    """The parts of a ``multipart/report; report-type=<report_type>``; :class:`FieldError` if it is not one."""
    if msg.get_content_type() != "multipart/report":
        raise FieldError(f"not multipart/report but {msg.get_content_type()}")
    kind = report_type_of(msg)
    if not isinstance(kind, str) or kind.strip().lower() != report_type:
        raise FieldError(f"report-type is not {report_type}")
    parts = msg.get_payload()
    if not isinstance(parts, list) or not 2 <= len(parts) <= 3:
        raise FieldError("a report has two or three parts")
    status = parts[1]
    if not isinstance(status, Message) or status.get_content_type() != status_type:
        raise FieldError(f"the second part is not {status_type}")
    if sum(1 for p in parts if isinstance(p, Message) and p.get_content_type() == status_type) != 1:
        raise FieldError(f"more than one {status_type} part")
    encoding = str(status.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding not in _IDENTITY:
        raise FieldError(f"{status_type} is transfer-encoded ({encoding})")
    returned = parts[2] if len(parts) == 3 else None
    if returned is not None and (not isinstance(returned, Message) or returned.get_content_type() not in _RETURNED):
        raise FieldError("the third part is neither text/rfc822-headers nor message/rfc822")
    return Report(status, returned)
