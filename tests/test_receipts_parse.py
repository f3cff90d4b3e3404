"""Receipts read from bytes: DSNs (RFC 3464), MDNs (RFC 8098), De-Mail confirmations (TR 01201).

The parsers are pure, so most tests hand them messages built the way real peers build them
(``support/receipts.py``); one reads a DSN a real Postfix wrote into a real Dovecot. Hostile
cases check that every claim to be a receipt that cannot be read comes back as a
``MalformedReceipt`` with a machine reason, and that nothing makes ``recognise`` raise.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.receipts import (
    Rcpt,
    acknowledge_xml,
    demail_confirmation,
    demail_notification,
    ordinary_letter,
    postfix_dsn,
    thunderbird_mdn,
)

from gateway.demo.dovecot import Dovecot
from gateway.mime.headers import is_clean_header_text
from gateway.outbound.smtp import xtext
from gateway.receipts import recognise as recognise_module
from gateway.receipts.demail import parse_demail_confirmation
from gateway.receipts.dsn import parse_dsn
from gateway.receipts.mdn import parse_mdn
from gateway.receipts.model import DemailConfirmation, Dsn, DsnRecipient, MalformedReceipt, Mdn
from gateway.receipts.recognise import recognise

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def malformed(result: object, kind: str, reason: str) -> MalformedReceipt:
    assert isinstance(result, MalformedReceipt), result
    assert (result.kind, result.reason) == (kind, reason), result
    return result


def dsn_status(*blocks: str) -> str:
    return "\r\n\r\n".join(blocks) + "\r\n"


HEAD = "Reporting-MTA: dns; mail.mailbox.test\r\nArrival-Date: Wed, 2 Dec 2026 09:00:05 +0100"


# --- DSN -----------------------------------------------------------------------------------


def test_postfix_success_dsn_gives_envid_recipients_and_the_original_message_id() -> None:
    raw = postfix_dsn(envid="17.0badc0ffee", original_message_id="abc@rathaus.test")
    got = recognise(raw, raw)
    assert isinstance(got, Dsn)
    assert got.envid == "17.0badc0ffee" and got.original_message_id == "abc@rathaus.test"
    assert got.reporting_mta == "dns; mail.mailbox.test" and got.arrival_date
    assert got.recipients == (
        DsnRecipient(
            action="relayed",
            status="2.0.0",
            final_recipient="bob@example.org",
            original_recipient="bob@example.org",
            diagnostic="smtp; 250 2.0.0 Ok: queued as 4ABCDEF123",
            remote_mta="dns; mailbox.test",
        ),
    )


def test_bounce_reports_each_recipient_with_its_action_status_and_diagnostic() -> None:
    raw = postfix_dsn(
        envid="9.ff",
        recipients=[
            Rcpt("ok@example.org"),
            Rcpt("gone@example.org", "failed", "5.1.1", diagnostic="smtp; 550 5.1.1 <gone@example.org>: no such user"),
            Rcpt("slow@example.org", "delayed", "4.4.1", diagnostic="X-Postfix; connect timed out"),
        ],
    )
    got = parse_dsn(parsed(raw))
    assert isinstance(got, Dsn)
    assert [(r.final_recipient, r.action, r.status) for r in got.recipients] == [
        ("ok@example.org", "relayed", "2.0.0"),
        ("gone@example.org", "failed", "5.1.1"),
        ("slow@example.org", "delayed", "4.4.1"),
    ]
    assert got.recipients[1].diagnostic == "smtp; 550 5.1.1 <gone@example.org>: no such user"


@pytest.mark.parametrize("encoded", [True, False], ids=["xtext", "decoded-like-postfix"])
def test_envid_and_original_recipient_read_the_same_xtext_encoded_or_decoded(encoded: bool) -> None:
    raw = postfix_dsn(
        envid="7.a+b=c d",
        recipients=[Rcpt("bob@example.org", original="Bob+Akte=1@example.org")],
        xtext_encoded=encoded,
    )
    assert (b"Original-Envelope-Id: 7.a+2Bb+3Dc+20d" in raw) is encoded
    got = recognise(raw, raw)
    assert isinstance(got, Dsn)
    assert got.envid == "7.a+b=c d" and got.recipients[0].original_recipient == "Bob+Akte=1@example.org"


def test_a_returned_whole_message_gives_the_original_message_id_too() -> None:
    got = parse_dsn(parsed(postfix_dsn(original_message_id="m1@rathaus.test", returned="message")))
    assert isinstance(got, Dsn) and got.original_message_id == "m1@rathaus.test"


def test_a_dsn_without_the_returned_headers_has_no_original_message_id() -> None:
    got = parse_dsn(parsed(postfix_dsn(returned=None)))
    assert isinstance(got, Dsn) and got.original_message_id is None


def test_failed_with_a_temporary_status_is_accepted_as_the_expired_queue_lifetime() -> None:
    got = parse_dsn(parsed(postfix_dsn(recipients=[Rcpt("a@example.org", "failed", "4.4.7")])))
    assert isinstance(got, Dsn) and got.recipients[0].status == "4.4.7"


def test_a_status_with_a_comment_keeps_only_the_code() -> None:
    raw = postfix_dsn(recipients=[Rcpt("a@example.org", "failed", "5.0.0 (permanent failure)")])
    got = parse_dsn(parsed(raw))
    assert isinstance(got, Dsn) and got.recipients[0].status == "5.0.0"


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(
            dsn_status(HEAD, "Reporting-MTA: x\r\nthis line is no field\r\nFinal-Recipient: rfc822; a@b"), id="garbage"
        ),
        pytest.param(dsn_status(HEAD), id="no-recipient-block"),
        pytest.param(
            dsn_status("Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1"), id="no-per-message"
        ),
        pytest.param(
            dsn_status("Arrival-Date: x", "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1"),
            id="no-reporting-mta",
        ),
        pytest.param(dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nStatus: 5.1.1"), id="no-action"),
        pytest.param(dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: failed"), id="no-status"),
        pytest.param(dsn_status(HEAD, "Action: failed\r\nStatus: 5.1.1"), id="no-final-recipient"),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: bounced\r\nStatus: 5.1.1"),
            id="action-not-in-rfc3464",
        ),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: delivered\r\nStatus: 5.1.1"),
            id="status-contradicts-action",
        ),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 550"), id="status-not-a-code"
        ),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: delivered\r\nAction: failed\r\nStatus: 2.0.0"),
            id="two-actions",
        ),
        pytest.param(dsn_status(HEAD, "Final-Recipient: a@b\r\nAction: failed\r\nStatus: 5.1.1"), id="untyped-address"),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; bö@b\r\nAction: failed\r\nStatus: 5.1.1"), id="unicode-address"
        ),
        pytest.param(
            dsn_status(HEAD, "Final-Recipient: rfc822; a@b\r\nAction: fail\red\r\nStatus: 5.1.1"),
            id="bare-cr-in-action",
        ),
        pytest.param(
            dsn_status(
                HEAD + "\r\nOriginal-Envelope-Id: 7+FF",
                "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1",
            ),
            id="envid-not-utf8",
        ),
        pytest.param(
            dsn_status(
                HEAD + "\r\nOriginal-Envelope-Id: ours.1\r\nOriginal-Envelope-Id: theirs.2",
                "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1",
            ),
            id="two-envids",
        ),
        pytest.param(
            dsn_status(
                HEAD,
                "Final-Recipient: rfc822; a@b\r\nOriginal-Recipient: rfc822; a+0A@b\r\nAction: failed\r\nStatus: 5.1.1",
            ),
            id="orcpt-with-a-newline",
        ),
    ],
)
def test_a_malformed_delivery_status_is_a_malformed_receipt(status: str) -> None:
    raw = postfix_dsn(delivery_status=status)
    malformed(recognise(raw, raw), "dsn", "malformed-delivery-status")


def _replace(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda r: _replace(
                r, b"Content-Type: text/plain; charset=us-ascii", b"Content-Type: message/delivery-status"
            ),
            id="two-status-parts",
        ),
        pytest.param(
            lambda r: _replace(
                r,
                b"Content-Type: message/delivery-status",
                b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64",
            ),
            id="status-part-transfer-encoded",
        ),
        pytest.param(
            lambda r: _replace(r, b"Content-Type: message/delivery-status", b"Content-Type: text/plain"),
            id="no-status-part",
        ),
        pytest.param(
            lambda r: _replace(r, b"report-type=delivery-status", b"report-type=global-delivery-status"),
            id="global-delivery-status",
        ),
        pytest.param(
            lambda r: _replace(r, b"Message-ID: <x@y>", b"Message-ID: <x@y>\r\nMessage-ID: <other@y>"),
            id="two-returned-message-ids",
        ),
        pytest.param(
            lambda r: _replace(r, b"Message-ID: <x@y>", b"Message-ID: x@y"), id="returned-id-without-brackets"
        ),
    ],
)
def test_a_report_of_the_wrong_shape_is_a_malformed_dsn(mutate: Callable[[bytes], bytes]) -> None:
    raw = mutate(postfix_dsn(original_message_id="x@y"))
    malformed(recognise(raw, raw), "dsn", "malformed-delivery-status")


def test_a_real_postfix_dsn_is_read_with_our_xtext_envid_and_orcpt(
    postfix: Any, dovecot: Dovecot, new_user: Callable[[], str]
) -> None:
    """Postfix 3.7 writes the notice into the sender's Dovecot mailbox; the parser reads it back."""
    sender, recipient = new_user(), new_user()
    envid, orcpt = "41.c0ffee+1=x y", f"{recipient}+akte=1@mailbox.test"
    message_id = f"real-{sender}@rathaus.test"
    letter = (
        f"From: <{sender}@mailbox.test>\r\nTo: <{recipient}@mailbox.test>\r\nSubject: Az. 1 Bescheid\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Wed, 2 Dec 2026 09:00:00 +0100\r\n\r\nText\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.ehlo("rathaus.test")
        assert smtp.has_extn("dsn")
        assert smtp.mail(f"{sender}@mailbox.test", ["RET=HDRS", f"ENVID={xtext(envid)}"])[0] == 250
        opts = ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{xtext(orcpt)}"]
        assert smtp.rcpt(f"{recipient}@mailbox.test", opts)[0] == 250
        assert smtp.data(letter)[0] == 250
    notice = _wait_for_report(dovecot, sender)
    got = recognise(notice, notice)
    assert isinstance(got, Dsn), got
    assert got.envid == envid and got.original_message_id == message_id
    assert len(got.recipients) == 1
    rcpt = got.recipients[0]
    assert rcpt.final_recipient == f"{recipient}@mailbox.test" and rcpt.original_recipient == orcpt
    assert rcpt.action in {"relayed", "delivered"} and rcpt.status.startswith("2.")


def _wait_for_report(dovecot: Dovecot, user: str, timeout: float = 60.0) -> bytes:
    """Poll the mailbox until the relay's notice is there; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with dovecot.client(user, tls=False) as conn:
            conn.select_folder("INBOX", readonly=True)
            uids = conn.search("ALL")
            for data in conn.fetch(uids, ["BODY.PEEK[]"]).values() if uids else []:
                if b"multipart/report" in data[b"BODY[]"]:
                    return bytes(data[b"BODY[]"])
        time.sleep(0.05)
    raise AssertionError("no delivery status notification arrived")


# --- MDN -----------------------------------------------------------------------------------


def test_thunderbird_mdn_gives_the_disposition_and_the_original_message_id() -> None:
    raw = thunderbird_mdn(
        original_message_id="doc1@rathaus.test", final_recipient="bob@example.org", original_recipient="bob@example.org"
    )
    got = recognise(raw, raw)
    assert got == Mdn(
        original_message_id="doc1@rathaus.test",
        final_recipient="bob@example.org",
        original_recipient="bob@example.org",
        disposition="manual-action/MDN-sent-manually; displayed",
        disposition_type="displayed",
        reporting_ua="example.org; Mozilla Thunderbird",
    )


def test_an_automatic_processed_mdn_with_a_modifier_is_read() -> None:
    raw = thunderbird_mdn(
        original_message_id="d@r", disposition="Automatic-Action/MDN-Sent-Automatically; Processed/error"
    )
    got = parse_mdn(parsed(raw))
    assert isinstance(got, Mdn) and got.disposition_type == "processed"


def test_an_mdn_without_original_message_id_falls_back_to_the_returned_headers() -> None:
    raw = thunderbird_mdn(original_message_id=None, returned_message_id="back@rathaus.test")
    got = parse_mdn(parsed(raw))
    assert isinstance(got, Mdn) and got.original_message_id == "back@rathaus.test"


def test_an_mdn_naming_two_different_messages_is_malformed() -> None:
    raw = thunderbird_mdn(original_message_id="ours@rathaus.test", returned_message_id="theirs@other.test")
    malformed(recognise(raw, raw), "mdn", "malformed-disposition-notification")


MDN_OK = "Reporting-UA: x; y\r\nFinal-Recipient: rfc822;bob@example.org\r\nOriginal-Message-ID: <d@r>\r\n"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            MDN_OK + "Disposition: manual-action/MDN-sent-manually; displayed\r\n"
            "Disposition: manual-action/MDN-sent-manually; deleted\r\n",
            id="two-dispositions",
        ),
        pytest.param(MDN_OK, id="no-disposition"),
        pytest.param(MDN_OK + "Disposition: manual-action/MDN-sent-manually; read\r\n", id="type-not-in-rfc8098"),
        pytest.param(MDN_OK + "Disposition: displayed\r\n", id="no-action-mode"),
        pytest.param(MDN_OK + "Disposition: manual-action/MDN-sent-manually; displayed\u00a0\r\n", id="unicode"),
        pytest.param(MDN_OK + "Disposition: manual-action/MDN-sent-manually;\r displayed\r\n", id="bare-cr"),
        pytest.param(
            MDN_OK.replace("<d@r>", "<d@r> <e@r>") + "Disposition: manual-action/MDN-sent-manually; displayed\r\n",
            id="two-ids",
        ),
        pytest.param(
            "Reporting-UA: x\r\nOriginal-Message-ID: <d@r>\r\n"
            "Disposition: manual-action/MDN-sent-manually; displayed\r\n",
            id="no-final-recipient",
        ),
        pytest.param(
            MDN_OK + "Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\nand a body\r\n",
            id="body-after-fields",
        ),
    ],
)
def test_a_malformed_disposition_notification_is_a_malformed_receipt(fields: str) -> None:
    raw = thunderbird_mdn(original_message_id="d@r", fields=fields)
    malformed(recognise(raw, raw), "mdn", "malformed-disposition-notification")


# --- De-Mail -------------------------------------------------------------------------------


def test_retrieval_confirmation_gives_private_id_times_hash_and_its_parts() -> None:
    raw = demail_confirmation("confirmation of retrieve", private_id="17.0badc0ffee")
    got = recognise(raw, raw)
    assert isinstance(got, DemailConfirmation)
    assert got.message_type == "confirmation of retrieve" and got.private_id == "17.0badc0ffee"
    assert got.sender == "Abholbestaetigung@provider.de-mail.test"
    assert got.time == "2026-12-02T09:00:07+01:00" and got.delivery_time == "2026-12-03T14:12:30+01:00"
    assert got.hash is not None and got.hash.startswith("v=1; a=sha256")
    assert got.has_xml and got.has_pdf


def test_a_prefixed_root_with_unqualified_children_is_read() -> None:
    xml = (
        b"<?xml version='1.0'?><dm:Acknowledge-Message xmlns:dm='urn:de-mail'><Time>\n  2026-12-02T09:00:07Z\n</Time>"
        b"<DeliveryTime>2026-12-03T10:00:00Z</DeliveryTime><Hash>v=1;\n  a=sha256</Hash></dm:Acknowledge-Message>"
    )
    got = recognise(raw := demail_confirmation("confirmation of retrieve", private_id="p", xml=xml), raw)
    assert isinstance(got, DemailConfirmation)
    assert (got.time, got.delivery_time, got.hash) == ("2026-12-02T09:00:07Z", "2026-12-03T10:00:00Z", "v=1; a=sha256")


@pytest.mark.parametrize("kind", ["confirmation of dispatch", "confirmation of receipt"])
def test_dispatch_and_receipt_confirmations_are_read_without_a_delivery_time(kind: str) -> None:
    got = recognise(raw := demail_confirmation(kind, private_id="p1", with_pdf=False), raw)
    assert isinstance(got, DemailConfirmation)
    assert got.message_type == kind and got.delivery_time is None and got.has_xml and not got.has_pdf


def test_a_notification_carries_its_notification_type() -> None:
    raw = demail_notification(private_id="p2", notification_type="Unknown-Recipient")
    got = recognise(raw, raw)
    assert isinstance(got, DemailConfirmation)
    assert got.message_type == "notification" and got.notification_type == "unknown-recipient" and got.hash is None


def test_demail_field_names_are_case_insensitive_and_the_first_occurrence_counts() -> None:
    raw = demail_confirmation(
        "confirmation of retrieve",
        private_id="second",
        extra_headers=[("x-DE-MAIL-private-ID", "first"), ("X-De-Mail-Message-Type", "Confirmation  of  Dispatch")],
    )
    got = recognise(raw, raw)
    assert isinstance(got, DemailConfirmation)
    assert got.private_id == "first" and got.message_type == "confirmation of dispatch"


def test_a_normal_demail_and_the_providers_other_notices_are_not_receipts() -> None:
    for kind in ("normal", "NORMAL", "identification", "malware-notification"):
        raw = demail_confirmation(kind, private_id="p")
        assert recognise(raw, raw) is None


def test_an_unknown_demail_message_type_is_malformed() -> None:
    raw = demail_confirmation("confirmation of everything", private_id="p")
    malformed(recognise(raw, raw), "demail", "unknown-demail-message-type")


@pytest.mark.parametrize(
    "xml",
    [
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><Acknowledge-Message xmlns="urn:de-mail">'
            b"<Time>&x;</Time></Acknowledge-Message>",
            id="internal-entity",
        ),
        pytest.param(
            b'<?xml version="1.0"?><!DOCTYPE a SYSTEM "file:///etc/passwd"><Acknowledge-Message '
            b'xmlns="urn:de-mail"><Time>t</Time></Acknowledge-Message>',
            id="external-dtd",
        ),
        pytest.param(
            b'<!DOCTYPE lol [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<Acknowledge-Message xmlns="urn:de-mail"><Time>&b;</Time></Acknowledge-Message>',
            id="billion-laughs",
        ),
        pytest.param(
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]>'
            '<Acknowledge-Message xmlns="urn:de-mail"><Time>&x;</Time></Acknowledge-Message>'.encode("utf-16"),
            id="utf16-doctype",
        ),
    ],
)
def test_xml_with_a_dtd_or_entities_is_refused_as_unsafe(xml: bytes) -> None:
    raw = demail_confirmation("confirmation of dispatch", private_id="p", xml=xml)
    malformed(recognise(raw, raw), "demail", "unsafe-xml")


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"with_xml": False}, "no XML"),
        ({"xml": acknowledge_xml().replace(b"urn:de-mail", b"urn:other")}, "wrong namespace"),
        ({"xml": acknowledge_xml(root="Notification-Message")}, "wrong root"),
        ({"xml": acknowledge_xml(time=None)}, "no Time"),
        ({"xml": acknowledge_xml(delivery_time=None)}, "retrieve without DeliveryTime"),
        ({"xml": acknowledge_xml(delivery_time="t").replace(b"<Time>", b"<Time>x</Time><Time>")}, "two Times"),
        ({"xml": b"<Acknowledge-Message xmlns='urn:de-mail'><Time>t</Time>"}, "not well-formed"),
        (
            {
                "xml": b"<a:Acknowledge-Message xmlns:a='urn:de-mail'><a:Time>t</a:Time><Time>u</Time>"
                b"<DeliveryTime>d</DeliveryTime></a:Acknowledge-Message>"
            },
            "qualified and unqualified Time",
        ),
        ({"extra_headers": [("X-de-mail-private-id", "a\u00e4b")]}, "unicode private id"),
        ({"extra_headers": [("X-de-mail-private-id", "x" * 1025)]}, "private id too long"),
        ({"extra_headers": [("From", "a@x, b@y")]}, "two senders"),
    ],
)
def test_a_confirmation_that_cannot_be_read_is_malformed(kwargs: dict[str, Any], what: str) -> None:
    raw = demail_confirmation("confirmation of retrieve", private_id="p", **kwargs)
    malformed(recognise(raw, raw), "demail", "malformed-demail-confirmation")


def test_a_signed_confirmation_is_read_from_the_fetched_headers_and_the_verified_content() -> None:
    """The X-de-mail-* fields are the fetched message's; the XML comes from what the signature covered."""
    whole = demail_confirmation("confirmation of receipt", private_id="p9")
    head, _, body = whole.partition(b"\r\n\r\n")
    content_type = next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Type:"))
    content = content_type + b"\r\n\r\n" + body
    raw = (
        head.replace(content_type, b"Content-Type: application/pkcs7-mime; smime-type=signed-data")
        + b"\r\n\r\nMIIB\r\n"
    )
    got = recognise(raw, content)
    assert isinstance(got, DemailConfirmation) and got.private_id == "p9" and got.has_xml
    # The same fields on the content alone are not what counts.
    assert isinstance(parse_demail_confirmation(parsed(raw)), MalformedReceipt)


# --- recognise -----------------------------------------------------------------------------


def test_an_ordinary_letter_is_not_a_receipt() -> None:
    raw = ordinary_letter()
    assert recognise(raw, raw) is None


def test_an_ordinary_letter_is_judged_by_its_header_block_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Letters are the common case: nothing parses them here (a parse would fail this test)."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("parsed an ordinary letter")

    monkeypatch.setattr(recognise_module.email, "message_from_bytes", refuse)
    raw = ordinary_letter(body="Content-Type: multipart/report; report-type=delivery-status\r\n")
    assert recognise(raw, raw) is None


def test_other_report_types_are_not_receipts() -> None:
    raw = postfix_dsn().replace(b"report-type=delivery-status", b"report-type=feedback-report", 1)
    assert recognise(raw, raw) is None


def test_a_dsn_is_read_from_the_decrypted_content_not_from_the_envelope() -> None:
    content = postfix_dsn(envid="3.aa")
    raw = b"From: x@y\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB\r\n"
    got = recognise(raw, content)
    assert isinstance(got, Dsn) and got.envid == "3.aa"
    assert recognise(content, raw) is None  # a report-looking envelope around a letter is no receipt


def test_an_exception_inside_a_parser_becomes_a_malformed_receipt(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_msg: object) -> None:
        raise RecursionError("deep")

    monkeypatch.setattr(recognise_module, "parse_mdn", explode)
    raw = thunderbird_mdn(original_message_id="d@r")
    got = malformed(recognise(raw, raw), "mdn", "malformed-receipt")
    assert got.detail == "RecursionError"


@FAST
@given(raw=st.binary(max_size=4096), content=st.none() | st.binary(max_size=2048))
def test_recognise_never_raises_on_arbitrary_bytes(raw: bytes, content: bytes | None) -> None:
    recognise(raw, raw if content is None else content)


_SAMPLES = [
    postfix_dsn(
        envid="1.a+b",
        original_message_id="x@y",
        xtext_encoded=True,
        recipients=[Rcpt("a@example.org"), Rcpt("b@example.org", "failed", "5.1.1")],
    ),
    thunderbird_mdn(original_message_id="x@y"),
    demail_confirmation("confirmation of retrieve", private_id="p"),
    demail_notification(private_id="p"),
]


@FAST
@given(
    sample=st.sampled_from(_SAMPLES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 8), st.binary(max_size=8)), min_size=1, max_size=6),
)
def test_recognise_never_raises_on_mutated_receipts(sample: bytes, edits: list[tuple[float, int, bytes]]) -> None:
    raw = bytearray(sample)
    for where, cut, insert in edits:
        at = int(where * len(raw))
        raw[at : at + cut] = insert
    got = recognise(bytes(raw), bytes(raw))
    assert got is None or isinstance(got, Dsn | Mdn | DemailConfirmation | MalformedReceipt)
    # The parsers refuse what they cannot read themselves; recognise's catch-all is only a net.
    assert not isinstance(got, MalformedReceipt) or got.reason != "malformed-receipt", got
    assert not isinstance(got, MalformedReceipt) or is_clean_header_text(got.detail), got


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@FAST
@given(
    subject=_TEXT,
    body=_TEXT,
    ctype=st.sampled_from(
        ["text/plain", "text/html", "multipart/mixed; boundary=b", "application/pdf", "message/rfc822"]
    ),
)
def test_an_ordinary_message_is_never_a_receipt(subject: str, body: str, ctype: str) -> None:
    raw = (
        f"From: a@example.org\r\nSubject: {' '.join(subject.split())}\r\nContent-Type: {ctype}\r\n\r\n{body}"
    ).encode("utf-8", "surrogatepass")
    assert recognise(raw, raw) is None


_LOCAL = st.text(st.sampled_from("abcXYZ019.+=_-"), min_size=1, max_size=12)
_ENVID = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
_OUTCOME = st.sampled_from(
    [
        ("relayed", "2.0.0"),
        ("delivered", "2.1.5"),
        ("failed", "5.1.1"),
        ("failed", "4.4.7"),
        ("delayed", "4.4.1"),
        ("expanded", "2.0.0"),
    ]
)


_DECODED_ENVID = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_LOOKS_LIKE_XTEXT = re.compile(r"\+[0-9A-F]{2}")


@FAST
@given(
    data=st.data(),
    encoded=st.booleans(),
    rcpts=st.lists(st.tuples(_LOCAL, _LOCAL, _OUTCOME), min_size=1, max_size=5),
)
def test_a_dsn_round_trips_envid_and_recipients_through_build_and_parse(
    data: st.DataObject, encoded: bool, rcpts: list[tuple[str, str, tuple[str, str]]]
) -> None:
    """xtext carries any text; written back decoded (Postfix), what does not look like xtext survives."""
    envid = data.draw(_ENVID if encoded else _DECODED_ENVID)
    if not encoded:
        assume(not _LOOKS_LIKE_XTEXT.search(envid) and not any(_LOOKS_LIKE_XTEXT.search(o) for _, o, _ in rcpts))
    recipients = [
        Rcpt(f"{final}@example.org", action, status, original=f"{orig}@example.org")
        for final, orig, (action, status) in rcpts
    ]
    raw = postfix_dsn(envid=envid, original_message_id="m@r", recipients=recipients, xtext_encoded=encoded)
    got = recognise(raw, raw)
    assert isinstance(got, Dsn), got
    assert got.envid == envid and got.original_message_id == "m@r"
    assert [(r.final_recipient, r.original_recipient, r.action, r.status) for r in got.recipients] == [
        (r.address, r.original, r.action, r.status) for r in recipients
    ]
