"""``poststelle demo`` end to end: the inbound part, then a document sent for a case.

The demo runs once per module as a subprocess (it sets up logging and signal handlers
of its own) in a directory the Postfix and Dovecot users can reach; the tests then read
what it left behind: the ledger, the case folder, the letter as the court's mailbox
received it, the receipts filed under the case and the delivery record they moved. The
sending part needs Postfix, which must start as root: those tests skip elsewhere, naming
the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import POSTSTELLE
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.demo.postfix import postfix_unavailable
from gateway.demo.sending import AUTHORITY, CASE, CORRESPONDENT, demo_relay, outbound_toml
from gateway.records.open import open_store
from gateway.statedir import cases_dir


@dataclass
class DemoRun:
    work: Path
    rc: int
    out: str
    err: str


def body(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoRun]:
    reason = postfix_unavailable()
    if reason is not None:
        pytest.skip(f"the demo's sending part needs a throwaway Postfix: {reason}")
    work = Path(tempfile.mkdtemp(prefix="pst-demo-"))
    try:
        done = subprocess.run(
            [*POSTSTELLE, "demo", "--dir", str(work)], capture_output=True, text=True, timeout=300, check=False
        )
        yield DemoRun(work, done.returncode, done.stdout, done.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_demo_sends_the_document_and_the_outbox_row_says_sent_with_postfixs_queue_id(demo: DemoRun) -> None:
    assert demo.rc == 0, demo.out + demo.err
    config = load_config(demo.work / "poststelle.toml")
    store = open_store(config, readonly=True)
    try:
        (rec,) = store.outbox_list()
    finally:
        store.close()
    assert rec.state == "sent" and rec.case_ref == CASE and rec.mail_from == AUTHORITY
    assert rec.signed == "smime" and rec.encrypted
    (rcpt,) = rec.recipients
    assert rcpt.address == CORRESPONDENT and rcpt.queue_id and (rcpt.reply or "").startswith("250")
    assert f"== outbox row {rec.id}: sent" in demo.out and rcpt.queue_id in demo.out
    assert any("smime certstore" in source for _, source in rec.key_sources)


def test_the_sent_copy_in_the_case_folder_is_what_arrived_in_the_courts_mailbox(demo: DemoRun) -> None:
    config = load_config(demo.work / "poststelle.toml")
    store = open_store(config, readonly=True)
    try:
        (rec,) = store.outbox_list()
    finally:
        store.close()
    assert rec.sent_path is not None and Path(rec.sent_path).parent.name == "sent"
    sent = (Path(rec.sent_path) / "message.eml").read_bytes()
    received = (demo.work / "received-by-court.eml").read_bytes()
    assert body(received) == body(sent)
    assert "== arrived in the court's mailbox" in demo.out


def test_the_courts_poststelle_finds_the_letter_signed_by_the_town_hall_and_verified(demo: DemoRun) -> None:
    done = subprocess.run(
        [
            *POSTSTELLE,
            "inspect",
            "--json",
            "-c",
            str(demo.work / "court" / "poststelle.toml"),
            str(demo.work / "received-by-court.eml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    verdict = json.loads(done.stdout)
    assert verdict["verdict"] == "verified"
    assert verdict["signature"]["signer"] == AUTHORITY
    assert verdict["encryption"]["status"] == "decrypted"
    assert "verdict verified: signature valid" in demo.out


def test_postfixs_dsn_and_the_courts_return_receipt_are_filed_under_the_case_as_evidence(demo: DemoRun) -> None:
    config = load_config(demo.work / "poststelle.toml")
    store = open_store(config, readonly=True)
    try:
        (rec,) = store.outbox_list()
        (delivery,) = store.delivery_get(rec.id)
        receipts = [m for m in store.all_messages() if m.route and m.route.startswith("receipt:")]
    finally:
        store.close()
    assert sorted(m.route or "" for m in receipts) == ["receipt:dsn", "receipt:mdn"]
    assert all(m.state == "stored" and m.case_ref == CASE for m in receipts)
    by_kind = {t.evidence.kind: t.evidence for t in delivery.timeline}
    dsn_file = cases_dir(config) / (by_kind["dsn"].path or "")
    mdn_file = cases_dir(config) / (by_kind["mdn"].path or "")
    assert dsn_file.parent.parent.name == "receipts" and mdn_file.parent.parent.name == "receipts"
    dsn, mdn = dsn_file.read_bytes(), mdn_file.read_bytes()
    assert hashlib.sha256(dsn).hexdigest() == by_kind["dsn"].sha256
    assert hashlib.sha256(mdn).hexdigest() == by_kind["mdn"].sha256
    assert f"Original-Envelope-Id: {rec.envid}".encode() in dsn and b"Status: 2.0.0" in dsn
    assert f"Final-Recipient: rfc822; {CORRESPONDENT}".encode() in dsn
    assert b"report-type=disposition-notification" in mdn and f"<{rec.message_id}>".encode() in mdn
    assert "== delivery status notification from Postfix" in demo.out and "Status: 2.0.0" in demo.out
    assert "Disposition: manual-action/MDN-sent-manually; displayed" in demo.out


def test_one_run_takes_both_receipts_in_and_the_record_goes_submitted_relayed_displayed(demo: DemoRun) -> None:
    config = load_config(demo.work / "poststelle.toml")
    store = open_store(config, readonly=True)
    try:
        (rec,) = store.outbox_list()
        (delivery,) = store.delivery_get(rec.id)
    finally:
        store.close()
    assert delivery.recipient == CORRESPONDENT and delivery.state == "displayed"
    assert [(t.state, t.outcome) for t in delivery.timeline] == [
        ("queued", "advanced"),
        ("submitted", "advanced"),
        ("relayed", "advanced"),
        ("displayed", "advanced"),
    ]
    receipts_run = demo.out.split("== poststelle run --once (the intake takes the receipts in)", 1)[1]
    assert receipts_run.lstrip().startswith("mailbox rathaus: stored 2, quarantined 0")
    shown = receipts_run.split(f"== poststelle deliveries show {rec.id}", 1)[1].split("\n== ", 1)[0]
    assert f"recipient        {CORRESPONDENT}" in shown and "state            displayed" in shown
    for step, kind in (("submitted", "relay"), ("relayed", "dsn"), ("displayed", "mdn")):
        assert re.search(rf"\b{step}\s+advanced\s+{kind}\b", shown), (step, shown)
    assert shown.count("/receipts/") == 2


def test_the_html_report_shows_the_documents_delivery_state_and_its_receipts(demo: DemoRun) -> None:
    page = (demo.work / "audit-report.html").read_text(encoding="utf-8")
    assert "displayed to the recipient since" in page and "/receipts/" in page
    assert "Return receipt for" in page and "Delivery status notification for" in page


def test_audit_verify_stays_green_after_sending_and_the_report_path_is_printed(demo: DemoRun) -> None:
    assert "audit verify: OK" in demo.out
    report = demo.work / "audit-report.html"
    assert report.is_file() and str(report) in demo.out


def test_without_a_postfix_the_sending_part_is_skipped_in_one_line_and_not_configured(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import gateway.demo.sending as sending

    monkeypatch.setattr(sending, "sending_unavailable", lambda: "Postfix's master must start as root")
    with demo_relay(tmp_path, server=None) as relay:  # type: ignore[arg-type]  # never reached
        assert relay is None
    assert capsys.readouterr().out == "== sending a document: skipped (Postfix's master must start as root)\n"
    assert outbound_toml(None) == ""


def test_the_town_halls_demo_certificate_names_the_from_address_it_signs_with(tmp_path: Path) -> None:
    from cryptography import x509

    from gateway.demo.pki import build_demo_pki

    pki = build_demo_pki(tmp_path / "pki")
    san = pki.recipient.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [AUTHORITY]


@settings(max_examples=150, deadline=None)
@given(subject=st.text(max_size=200))
def test_the_demos_return_receipt_is_read_as_an_mdn_for_the_sent_message_whatever_the_subject(subject: str) -> None:
    from email import message_from_bytes
    from email.policy import default

    from gateway.demo.receipts import thunderbird_mdn
    from gateway.receipts.model import Mdn
    from gateway.receipts.recognise import recognise

    letter = f"From: {AUTHORITY}\r\nMessage-ID: <abc123@stadt.example>\r\n\r\nbody\r\n".encode()
    raw = thunderbird_mdn(
        original=letter,
        original_message_id="abc123@stadt.example",
        reader=CORRESPONDENT,
        sender=AUTHORITY,
        subject=subject,
        at=datetime(2026, 12, 2, 9, 15, tzinfo=UTC),
    )
    mdn = recognise(raw, raw)
    assert isinstance(mdn, Mdn) and mdn.disposition_type == "displayed"
    head = message_from_bytes(raw, policy=default)
    assert sorted(head.keys()) == sorted(
        ["Content-Type", "Message-ID", "Date", "MIME-Version", "User-Agent", "From", "To", "Subject"]
    )


def test_the_demos_return_receipt_is_read_as_an_mdn_for_the_sent_message_by_the_reader() -> None:
    from gateway.demo.receipts import DISPLAYED, thunderbird_mdn
    from gateway.receipts.model import Mdn
    from gateway.receipts.recognise import recognise

    letter = (
        f"From: {AUTHORITY}\r\nTo: {CORRESPONDENT}\r\nSubject: [Az. {CASE}] Stellungnahme\r\n"
        "Message-ID: <abc123@stadt.example>\r\n\r\nbody\r\n"
    ).encode()
    raw = thunderbird_mdn(
        original=letter,
        original_message_id="abc123@stadt.example",
        reader=CORRESPONDENT,
        sender=AUTHORITY,
        subject=f"[Az. {CASE}] Stellungnahme – Grüße",
        at=datetime(2026, 12, 2, 9, 15, tzinfo=UTC),
    )
    mdn = recognise(raw, raw)
    assert isinstance(mdn, Mdn)
    assert mdn.original_message_id is not None and "abc123@stadt.example" in mdn.original_message_id
    assert mdn.final_recipient is not None and CORRESPONDENT in mdn.final_recipient
    assert mdn.disposition_type == "displayed" and mdn.disposition == DISPLAYED
