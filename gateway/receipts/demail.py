"""De-Mail confirmations and notifications (BSI TR 01201) read into a ``DemailConfirmation``.

A provider's confirmation is itself a De-Mail: the ``X-de-mail-*`` fields say what it is
and whose message it speaks of (``X-de-mail-private-id``, our own reference, copied by the
provider), and a ``multipart/mixed`` body carries an XML document (namespace
``urn:de-mail``; ``Acknowledge-Message`` with Time, DeliveryTime, Hash, or
``Notification-Message``) and a PDF with the same content.

The header fields come from the message as fetched; the body may come from the content
under the provider's signature (``body=``), which the intake has verified by then. Header
names are case-insensitive and, as TR 01201 says, the FIRST occurrence of a field counts:
:func:`gateway.receipts.fields.first_header` reads it explicitly. The XML goes through
:mod:`gateway.receipts.safexml`, which refuses DTDs and entities.
"""

from __future__ import annotations

import email.utils
import re
import xml.etree.ElementTree as ET
from email.message import Message

from gateway.receipts.fields import FieldError, detail, first_header, strict_value
from gateway.receipts.model import DemailConfirmation, MalformedReceipt
from gateway.receipts.safexml import UnsafeXml, XmlError, parse_xml

__all__ = [
    "CONFIRMATIONS",
    "MALFORMED",
    "NOT_RECEIPTS",
    "UNKNOWN_TYPE",
    "UNSAFE_XML",
    "message_type",
    "parse_demail_confirmation",
]

MALFORMED = "malformed-demail-confirmation"
UNSAFE_XML = "unsafe-xml"
UNKNOWN_TYPE = "unknown-demail-message-type"

NAMESPACE = "urn:de-mail"
#: The message types that confirm something about a message we sent, and the XML root each carries.
CONFIRMATIONS = {
    "confirmation of dispatch": "Acknowledge-Message",
    "confirmation of receipt": "Acknowledge-Message",
    "confirmation of retrieve": "Acknowledge-Message",
    "notification": "Notification-Message",
}
#: Message types that are De-Mail but no receipt: ordinary letters and the provider's other notices.
NOT_RECEIPTS = frozenset({"normal", "identification", "malware-acknowledge", "malware-notification"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_PRIVATE_ID_MAX = 1024
_SPACES = re.compile(r"[ \t]+")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9-]*")


class _Refused(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def message_type(value: str) -> str:
    """``X-de-mail-message-type`` compared as TR 01201 means it: case and spacing folded."""
    return _SPACES.sub(" ", strict_value(value, "X-de-mail-message-type")).lower()


def parse_demail_confirmation(msg: Message, body: Message | None = None) -> DemailConfirmation | MalformedReceipt:
    """Read a confirmation from ``msg``'s header fields and ``body``'s parts (``msg`` itself by default).

    Both are parsed with ``policy.compat32``. The private id is our outbox envid as the
    provider copied it; matching it is ``match.py``'s job, not this one's.
    """
    try:
        return _parse(msg, msg if body is None else body)
    except _Refused as exc:
        return MalformedReceipt("demail", exc.reason, detail(exc))
    except FieldError as exc:
        return MalformedReceipt("demail", MALFORMED, detail(exc))


def _parse(msg: Message, body: Message) -> DemailConfirmation:
    raw_type = first_header(msg, "X-de-mail-message-type")
    if raw_type is None:
        raise FieldError("no X-de-mail-message-type")
    kind = message_type(raw_type)
    root_name = CONFIRMATIONS.get(kind)
    if root_name is None:
        raise _Refused(UNKNOWN_TYPE, f"X-de-mail-message-type {kind[:60]!r} is no confirmation")
    private_id = _optional(msg, "X-de-mail-private-id")
    if private_id is not None and len(private_id) > _PRIVATE_ID_MAX:
        raise FieldError("X-de-mail-private-id: longer than 1024 characters")
    notification_type = _optional(msg, "X-de-mail-notification-type")
    if notification_type is not None:
        notification_type = notification_type.lower()
        if not _TOKEN.fullmatch(notification_type):
            raise FieldError("X-de-mail-notification-type: not a token")
    if kind == "notification" and notification_type is None:
        raise FieldError("a notification without X-de-mail-notification-type")
    xml_data, has_pdf = _parts(body)
    if xml_data is None:
        raise FieldError(f"no XML {root_name}")
    root = _xml_root(xml_data, root_name)
    time = _element(root, "Time")
    if time is None:
        raise FieldError(f"{root_name}: no Time")
    delivery_time = _element(root, "DeliveryTime") if root_name == "Acknowledge-Message" else None
    if kind == "confirmation of retrieve" and delivery_time is None:
        raise FieldError("confirmation of retrieve without DeliveryTime")
    return DemailConfirmation(
        message_type=kind,
        private_id=private_id,
        sender=_sender(msg),
        time=time,
        delivery_time=delivery_time,
        hash=_element(root, "Hash") if root_name == "Acknowledge-Message" else None,
        notification_type=notification_type,
        has_xml=True,
        has_pdf=has_pdf,
    )


def _optional(msg: Message, name: str) -> str | None:
    value = first_header(msg, name)
    if value is None:
        return None
    return strict_value(value, name) or None


def _sender(msg: Message) -> str | None:
    """The one address in the first From field (the provider's system address), else refused."""
    value = first_header(msg, "From")
    if value is None:
        return None
    found = [addr for _name, addr in email.utils.getaddresses([strict_value(value, "From")]) if addr]
    if len(found) != 1:
        raise FieldError("From: not exactly one address")
    return found[0]


def _parts(body: Message) -> tuple[bytes | None, bool]:
    """The XML document's bytes (exactly one allowed) and whether a PDF is there too."""
    if body.get_content_type() != "multipart/mixed":
        raise FieldError(f"body is {body.get_content_type()}, not multipart/mixed")
    parts = body.get_payload()
    if not isinstance(parts, list):
        raise FieldError("multipart/mixed without parts")
    xml: list[bytes] = []
    has_pdf = False
    for part in parts:
        if not isinstance(part, Message):
            raise FieldError("a part that is no entity")
        ctype = part.get_content_type()
        if ctype in _XML_TYPES:
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                raise FieldError("unreadable XML part")
            xml.append(data)
        elif ctype == "application/pdf":
            data = part.get_payload(decode=True)
            has_pdf = has_pdf or (isinstance(data, bytes) and data.startswith(b"%PDF-"))
    if len(xml) > 1:
        raise FieldError("more than one XML part")
    return (xml[0] if xml else None), has_pdf


def _xml_root(data: bytes, root_name: str) -> ET.Element:
    try:
        root = parse_xml(data)
    except UnsafeXml as exc:
        raise _Refused(UNSAFE_XML, str(exc)) from None
    except XmlError as exc:
        raise FieldError(str(exc)) from None
    if root.tag != f"{{{NAMESPACE}}}{root_name}":
        raise FieldError(f"the XML root is not {root_name} in {NAMESPACE}")
    return root


def _element(root: ET.Element, name: str) -> str | None:
    """The text of the root's one child ``name``; twice or with markup is refused.

    The child may be qualified (``urn:de-mail``, as the root) or unqualified (a schema with
    unqualified local elements); both spellings together count as twice.
    """
    found = [child for child in root if child.tag in (f"{{{NAMESPACE}}}{name}", name)]
    if not found:
        return None
    if len(found) > 1:
        raise FieldError(f"XML: {name} occurs more than once")
    element = found[0]
    if len(element):
        raise FieldError(f"XML: {name} holds elements")
    # XML may wrap long values (Hash) over lines: white space runs count as one space.
    return strict_value(" ".join((element.text or "").split()), f"XML {name}") or None
