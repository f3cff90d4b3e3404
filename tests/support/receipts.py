"""Receipts as real peers send them: Postfix DSNs, Thunderbird MDNs, De-Mail confirmations.

Each builder returns the whole message as bytes (CRLF line ends), ready to APPEND to a
Dovecot mailbox or to hand to ``recognise(raw, raw)``. Every argument has a sensible default,
so a test names only what it is about::

    dsn = postfix_dsn(envid=rec.envid, original_message_id=rec.message_id,
                      recipients=[Rcpt("bob@example.org")])                  # relayed, 2.0.0
    bounce = postfix_dsn(envid=..., recipients=[Rcpt("x@example.org", "failed", "5.1.1",
                         diagnostic="smtp; 550 5.1.1 <x@example.org>: Recipient address rejected")])
    mdn = thunderbird_mdn(original_message_id=rec.message_id, final_recipient="bob@example.org")
    conf = demail_confirmation("confirmation of retrieve", private_id=rec.envid)
    note = demail_notification(private_id=rec.envid, notification_type="unknown-recipient")

Message-IDs are given without angle brackets, as the outbox records them. The layouts
follow Postfix 3.7's bounce daemon (``bounce_notify_util.c``: Reporting-MTA,
X-Postfix-Queue-ID, X-Postfix-Sender, Arrival-Date; per recipient Final-Recipient,
Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code; then the returned headers;
checked against what a real Postfix 3.7 wrote in ``test_receipts_parse.py``),
Thunderbird's MDN (text/plain, ``message/disposition-notification; name="MDNPart2.txt"``,
``text/rfc822-headers; name="MDNPart3.txt"``) and TR 01201 for De-Mail (system sender
address, ``*Abholbestätigung*`` subject prefix, ``X-de-mail-*`` fields, a multipart/mixed
with an XML ``Acknowledge-Message`` and a PDF).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header

from gateway.outbound.smtp import xtext

__all__ = [
    "Rcpt",
    "acknowledge_xml",
    "demail_confirmation",
    "demail_notification",
    "ordinary_letter",
    "postfix_dsn",
    "thunderbird_mdn",
]

DATE = "Wed,  2 Dec 2026 09:00:05 +0100 (CET)"
#: The system sender of each De-Mail message type (TR 01201) and its subject prefix.
DEMAIL_SENDERS = {
    "confirmation of dispatch": ("Versandbestaetigung", "*Versandbestätigung*"),
    "confirmation of receipt": ("Eingangsbestaetigung", "*Eingangsbestätigung*"),
    "confirmation of retrieve": ("Abholbestaetigung", "*Abholbestätigung*"),
    "notification": ("Meldung", "*Meldung*"),
}
#: A tiny but well-formed PDF, enough for "a PDF part exists".
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass(frozen=True)
class Rcpt:
    """One recipient of a DSN. ``original`` is the ORCPT we sent (default: the address; ``""`` omits it)."""

    address: str
    action: str = "relayed"
    status: str = "2.0.0"
    original: str | None = None
    remote_mta: str | None = "dns; mailbox.test"
    diagnostic: str | None = "smtp; 250 2.0.0 Ok: queued as 4ABCDEF123"


def returned_headers(
    message_id: str | None, *, sender: str = "rathaus@mailbox.test", to: str = "bob@example.org"
) -> str:
    """The original's header block as a relay returns it with RET=HDRS."""
    lines = [
        f"Return-Path: <{sender}>",
        "Received: from rathaus.test (localhost [127.0.0.1])\r\n"
        "\tby mail.mailbox.test (Postfix) with ESMTP id 4ABCDEF123",
        f"From: Rathaus <{sender}>",
        f"To: {to}",
        "Subject: Az. 63-BV-2026-0412 Bescheid",
    ]
    if message_id is not None:
        lines.append(f"Message-ID: <{message_id}>")
    lines += ["Date: Wed, 02 Dec 2026 09:00:00 +0100", "MIME-Version: 1.0"]
    return "\r\n".join(lines) + "\r\n"


def postfix_dsn(
    *,
    envid: str | None = None,
    original_message_id: str | None = None,
    recipients: Sequence[Rcpt] = (Rcpt("bob@example.org"),),
    reporting_mta: str = "mail.mailbox.test",
    queue_id: str = "4ABCDEF123",
    sender: str = "rathaus@mailbox.test",
    to: str | None = None,
    returned: str | None = "headers",
    delivery_status: str | None = None,
    xtext_encoded: bool = False,
) -> bytes:
    """A DSN the way Postfix 3.7 writes it.

    Postfix writes ENVID and ORCPT back decoded (``Original-Envelope-Id: 41.c0ffee+1=x y``);
    ``xtext_encoded=True`` writes them as RFC 3461 xtext instead, as other MTAs do.

    ``returned``: ``"headers"`` (text/rfc822-headers, RET=HDRS), ``"message"``
    (message/rfc822), or ``None`` (no third part). ``delivery_status`` replaces the whole
    body of the ``message/delivery-status`` part (for hostile cases).
    """
    to = to or sender
    failed = any(r.action == "failed" for r in recipients)
    delayed = any(r.action == "delayed" for r in recipients)
    subject = (
        "Undelivered Mail Returned to Sender"
        if failed
        else "Delayed Mail (still being retried)"
        if delayed
        else "Successful Mail Delivery Report"
    )
    boundary = f"{queue_id}.1796198405/{reporting_mta}"
    if delivery_status is None:
        head = [f"Reporting-MTA: dns; {reporting_mta}"]
        if envid is not None:
            head.append(f"Original-Envelope-Id: {xtext(envid) if xtext_encoded else envid}")
        head += [f"X-Postfix-Queue-ID: {queue_id}", f"X-Postfix-Sender: rfc822; {sender}", f"Arrival-Date: {DATE}"]
        blocks = ["\r\n".join(head)]
        for r in recipients:
            lines = [f"Final-Recipient: rfc822; {r.address}"]
            original = r.address if r.original is None else r.original
            if original:
                lines.append(f"Original-Recipient: rfc822;{xtext(original) if xtext_encoded else original}")
            lines += [f"Action: {r.action}", f"Status: {r.status}"]
            if r.remote_mta:
                lines.append(f"Remote-MTA: {r.remote_mta}")
            if r.diagnostic:
                lines.append(f"Diagnostic-Code: {r.diagnostic}")
            blocks.append("\r\n".join(lines))
        delivery_status = "\r\n\r\n".join(blocks) + "\r\n"
    parts = [
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {reporting_mta}.\r\n\r\n"
        + (
            "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n"
            if failed
            else "Your message was successfully delivered to the destination(s)\r\nlisted below.\r\n"
        ),
        "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n" + delivery_status,
    ]
    if returned == "headers":
        parts.append(
            "Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            + returned_headers(original_message_id, sender=sender, to=recipients[0].address if recipients else to)
        )
    elif returned == "message":
        parts.append(
            "Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\n"
            + returned_headers(original_message_id, sender=sender)
            + "Content-Type: text/plain; charset=utf-8\r\n\r\nSehr geehrte Damen und Herren,\r\n"
        )
    header = (
        f"Return-Path: <>\r\nDate: {DATE}\r\nFrom: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\r\n"
        f"Subject: {subject}\r\nTo: {to}\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        f"Message-Id: <20261202080005.{queue_id}@{reporting_mta}>\r\n\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return (header + body).encode()


def thunderbird_mdn(
    *,
    original_message_id: str | None,
    final_recipient: str = "bob@example.org",
    original_recipient: str | None = None,
    disposition: str = "manual-action/MDN-sent-manually; displayed",
    to: str = "rathaus@mailbox.test",
    subject: str = "Az. 63-BV-2026-0412 Bescheid",
    reporting_ua: str = "example.org; Mozilla Thunderbird",
    returned_message_id: str | None = "same",
    fields: str | None = None,
) -> bytes:
    """An MDN the way Thunderbird sends it when the reader agrees to send a return receipt.

    ``returned_message_id="same"`` puts ``original_message_id`` into the returned headers
    too; ``fields`` replaces the whole ``message/disposition-notification`` body.
    """
    boundary = "------------" + secrets.token_hex(12)
    if fields is None:
        lines = [f"Reporting-UA: {reporting_ua}"]
        if original_recipient is not None:
            lines.append(f"Original-Recipient: rfc822;{original_recipient}")
        lines.append(f"Final-Recipient: rfc822;{final_recipient}")
        if original_message_id is not None:
            lines.append(f"Original-Message-ID: <{original_message_id}>")
        lines.append(f"Disposition: {disposition}")
        fields = "\r\n".join(lines) + "\r\n"
    kind = disposition.rpartition(";")[2].strip().split("/")[0] or "displayed"
    returned = original_message_id if returned_message_id == "same" else returned_message_id
    return (
        f'Content-Type: multipart/report; report-type=disposition-notification;\r\n boundary="{boundary}"\r\n'
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\nDate: Wed, 2 Dec 2026 10:15:00 +0100\r\n"
        "MIME-Version: 1.0\r\nUser-Agent: Mozilla Thunderbird\r\n"
        f"From: Bob <{final_recipient}>\r\nTo: {to}\r\n"
        f"Subject: Return Receipt ({kind}) - {subject}\r\n\r\n"
        "This is a multi-part message in MIME format.\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"This is a Return Receipt for the mail that you sent to {final_recipient}.\r\n\r\n"
        "Note: This Return Receipt only acknowledges that the message was displayed on the recipient's "
        "computer. There is no guarantee that the recipient has read or understood the message contents.\r\n\r\n"
        f'--{boundary}\r\nContent-Type: message/disposition-notification; name="MDNPart2.txt"\r\n'
        "Content-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        f"{fields}\r\n"
        f'--{boundary}\r\nContent-Type: text/rfc822-headers; name="MDNPart3.txt"\r\n'
        "Content-Disposition: inline\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + returned_headers(returned, to=final_recipient)
        + f"\r\n--{boundary}--\r\n"
    ).encode()


def acknowledge_xml(
    *,
    root: str = "Acknowledge-Message",
    time: str | None = "2026-12-02T09:00:07+01:00",
    delivery_time: str | None = None,
    hash_value: str | None = "v=1; a=sha256; c=simple/simple; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    subject: str = "Az. 63-BV-2026-0412 Bescheid",
    sender: str = "rathaus@rathaus.de-mail.test",
) -> bytes:
    """The provider's XML (namespace ``urn:de-mail``), the elements TR 01201 names; ``None`` leaves one out."""
    inner = [f"<Sender>{sender}</Sender>"]
    if root == "Acknowledge-Message":
        inner.append(
            "<Metadata><Metadate><Name>Message-ID</Name><Value>&lt;demo@rathaus.test&gt;</Value>"
            "<OriginalHeader>true</OriginalHeader></Metadate></Metadata>"
        )
    inner += [f"<Subject>{subject}</Subject>", "<Text>Die Nachricht wurde abgeholt.</Text>"]
    if hash_value is not None and root == "Acknowledge-Message":
        inner.append(f"<Hash>{hash_value}</Hash>")
    if time is not None:
        inner.append(f"<Time>{time}</Time>")
    if delivery_time is not None:
        inner.append(f"<DeliveryTime>{delivery_time}</DeliveryTime>")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="urn:de-mail">' + "".join(inner) + f"</{root}>\n"
    ).encode()


def demail_confirmation(
    message_type: str = "confirmation of retrieve",
    *,
    private_id: str | None = None,
    provider: str = "provider.de-mail.test",
    original_subject: str = "Az. 63-BV-2026-0412 Bescheid",
    xml: bytes | None = None,
    with_xml: bool = True,
    with_pdf: bool = True,
    time: str = "2026-12-02T09:00:07+01:00",
    delivery_time: str | None = "2026-12-03T14:12:30+01:00",
    extra_headers: Sequence[tuple[str, str]] = (),
    notification_type: str | None = None,
) -> bytes:
    """A De-Mail provider's confirmation (dispatch, receipt, retrieve) or notification.

    ``delivery_time`` goes into the XML of a retrieval confirmation only. ``extra_headers``
    are written BEFORE the standard ``X-de-mail-*`` fields (so a test can put a first
    occurrence in front of them). ``xml`` replaces the generated XML document.
    """
    user, prefix = DEMAIL_SENDERS.get(message_type, ("Meldung", "*Meldung*"))
    if xml is None:
        root = "Notification-Message" if message_type == "notification" else "Acknowledge-Message"
        xml = acknowledge_xml(
            root=root,
            time=time,
            delivery_time=delivery_time if message_type == "confirmation of retrieve" else None,
            subject=original_subject,
        )
    boundary = "=_demail_" + secrets.token_hex(8)
    subject = Header(f"{prefix} {original_subject}", "utf-8").encode(maxlinelen=76, linesep="\r\n")
    headers = [f"{name}: {value}" for name, value in extra_headers]
    headers += [
        f"From: {user}@{provider}",
        "To: rathaus@rathaus.de-mail.test",
        f"Subject: {subject}",
        "Date: Wed, 2 Dec 2026 09:00:08 +0100",
        f"Message-ID: <{secrets.token_hex(8)}@{provider}>",
        "MIME-Version: 1.0",
        f"X-de-mail-message-type: {message_type}",
        "X-de-mail-version: 1.8",
        f"X-de-mail-originator-provider: {provider}",
        "X-de-mail-auth-level: normal",
    ]
    if private_id is not None:
        headers.append(f"X-de-mail-private-id: {private_id}")
    if notification_type is not None:
        headers.append(f"X-de-mail-notification-type: {notification_type}")
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    parts = [
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{prefix} zu Ihrer Nachricht \u201e{original_subject}\u201c.\r\n"
    ]
    if with_xml:
        parts.append(
            'Content-Type: application/xml; charset=utf-8; name="Bestaetigung.xml"\r\n'
            'Content-Disposition: attachment; filename="Bestaetigung.xml"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + _b64(xml)
        )
    if with_pdf:
        parts.append(
            'Content-Type: application/pdf; name="Bestaetigung.pdf"\r\n'
            'Content-Disposition: attachment; filename="Bestaetigung.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + _b64(PDF)
        )
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def demail_notification(
    *,
    private_id: str | None = None,
    notification_type: str | None = "unknown-recipient",
    provider: str = "provider.de-mail.test",
    xml: bytes | None = None,
    with_pdf: bool = True,
) -> bytes:
    """A provider's notification (``Meldung@``): XML ``Notification-Message``, no signature."""
    return demail_confirmation(
        "notification",
        private_id=private_id,
        notification_type=notification_type,
        provider=provider,
        xml=xml,
        with_pdf=with_pdf,
    )


def ordinary_letter(
    subject: str = "Az. 63-BV-2026-0412 Widerspruch", body: str = "Sehr geehrte Damen und Herren,"
) -> bytes:
    """An ordinary incoming letter: never a receipt."""
    return (
        f"From: Alice <alice@example.org>\r\nTo: rathaus@mailbox.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\nDate: Wed, 2 Dec 2026 09:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76)) + "\r\n"
