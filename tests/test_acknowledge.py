"""The acknowledgement of receipt: a signed MDN, only to the verified signer, saying only "received and stored".

The incoming document is a real S/MIME message signed by Alice (the test PKI's sender),
analysed by Poststelle's own intake decision; the acknowledgement is checked with the
standard library's MIME parser and with ``openssl cms -verify`` against the test root.
"""

from __future__ import annotations

import email
import email.policy
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.smime_pki import (
    NOW,
    RECIPIENT,
    SENDER,
    TestPKI,
    build_pki,
    headers,
    mime_text,
    multipart_signed,
    now,
    openssl,
    openssl_verify,
    sign_detached_der,
)

from gateway.config import Config, parse_config
from gateway.errors import ConfigError
from gateway.inbound.decide import Plan, analyse
from gateway.outbound.compose import MAX_SUBJECT_CHARS, ComposeError
from gateway.outbound.document import ComposedDocument
from gateway.outbound.protect import OutboundKeys
from gateway.receipts.acknowledge import (
    DISPOSITION,
    SUBJECT_PREFIX,
    AcknowledgementError,
    Receipt,
    acknowledgement_for,
    acknowledgement_subject,
    receipt_of,
    wants_acknowledgement,
)
from gateway.records.messages import MessageRecord
from gateway.unwrap import UnwrapContext

CASE = "63-BV-2026-0147"
SECRET = "GEHEIM-INHALT-7f3a"
ARRIVED = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)
ATTACKER = "evil@attacker.example"


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ack-") as d:
        yield Path(d)


def config_data(tmp: Path, pki: TestPKI, *, encrypt: str = "never", acknowledge: bool = True) -> dict[str, Any]:
    files = pki.write(tmp / "pki")
    chain = tmp / "pki" / "authority-chain.pem"
    chain.write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp / "correspondents"
    corr.mkdir(exist_ok=True)
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    return {
        "storage": {"state_dir": str(tmp / "state")},
        "smime": {
            "identities": [{"key_file": str(files["recipient.key"]), "cert_file": str(chain)}],
            "trust_anchors": [str(files["root"])],
        },
        "outbound": {"sign": "smime", "encrypt": encrypt, "correspondents_dir": str(corr)},
        "smtp": {"host": "127.0.0.1", "port": 2525, "security": "plain", "from": RECIPIENT},
        "route": [
            {
                "name": "building permits",
                "subject": r"Az\.? (?P<case>\d{2}-BV-\d{4}-\d{4})",
                "case": "{case}",
                "acknowledge": acknowledge,
            },
            {"name": "court", "subject": r"Az\.? (?P<case>\d+ K \d+/\d+)", "case": "VG {case}"},
        ],
        "ui": {"timezone": "Europe/Berlin"},
    }


def make_config(tmp: Path, pki: TestPKI, **kw: Any) -> Config:
    return parse_config(config_data(tmp, pki, **kw), file=str(tmp / "poststelle.toml"))


def incoming(pki: TestPKI, *, subject: str = f"Az. {CASE} Bauantrag", extra: str = "") -> bytes:
    """Alice's signed letter; ``extra`` header lines are outside the signature (as Reply-To is)."""
    inner = mime_text(body=f"Sehr geehrte Damen und Herren,\r\n{SECRET}\r\n")
    signature = sign_detached_der(pki["sender"], inner)
    return multipart_signed(headers(SENDER, subject=subject, extra=extra), inner, signature)


def decide(cfg: Config, raw: bytes) -> Plan:
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)
    try:
        return analyse(raw, cfg, ctx, at=now())
    finally:
        ctx.close()


def stored(plan: Plan, *, state: str = "stored") -> MessageRecord:
    """The ledger's record of a filed message, as the intake writes it."""
    assert plan.route is not None
    return MessageRecord(
        id="0a1b2c3d4e5f",
        mailbox="rathaus",
        folder="INBOX",
        uidvalidity=1,
        uid=7,
        sha256="0" * 64,
        message_id=plan.message_id,
        size=4096,
        internaldate="2026-12-02T09:30:00+01:00",
        state=state,  # type: ignore[arg-type]
        target_state="stored",
        fetched_at="2026-12-02T08:31:00.000000Z",
        case_ref=plan.route.case_ref,
        case_folder=plan.route.case_folder,
        route=plan.route.rule,
        verdict=plan.verdict.to_json(),
        subject=plan.subject,
        from_addr=SENDER,
    )


def acknowledge(cfg: Config, receipt: Receipt) -> ComposedDocument:
    keys = OutboundKeys.from_config(cfg)
    try:
        return acknowledgement_for(receipt, config=cfg, keys=keys, now=NOW)
    finally:
        keys.close()


def report_of(raw: bytes) -> Message:
    """The multipart/report inside the detached signature."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/signed"
    report = msg.get_payload(0)
    assert isinstance(report, Message)
    return report


def receipt(**kw: Any) -> Receipt:
    args: dict[str, Any] = {
        "message_id": "<t@example.org>",
        "signer": SENDER,
        "case": CASE,
        "arrived_at": ARRIVED,
        "subject": f"Az. {CASE} Bauantrag",
    }
    args.update(kw)
    return Receipt(**args)


def test_acknowledgement_parses_as_an_mdn_with_the_disposition_and_the_original_message_id(
    pki: TestPKI, tmp: Path
) -> None:
    cfg = make_config(tmp, pki)
    doc = acknowledge(cfg, receipt())
    report = report_of(doc.raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "disposition-notification"
    human, notification = report.get_payload()  # type: ignore[misc]
    assert human.get_content_type() == "text/plain"
    text = human.get_content()
    assert "acknowledgement of receipt" in text and "Empfangsbestätigung" in text
    assert "2026-12-02 09:30:00 CET" in text and "02.12.2026 09:30:00 MEZ" in text
    assert f"case reference {CASE}" in text and f"Aktenzeichen {CASE}" in text and "<t@example.org>" in text
    assert notification.get_content_type() == "message/disposition-notification"
    [fields] = notification.get_payload()  # CPython: a list of header blocks
    assert fields["Reporting-UA"] == "rathaus.example; Poststelle"
    assert fields["Final-Recipient"] == f"rfc822; {RECIPIENT}"
    assert fields["Original-Message-ID"] == "<t@example.org>"
    assert fields["Disposition"] == DISPOSITION
    outer = email.message_from_bytes(doc.raw, policy=email.policy.default)
    assert outer["Subject"] == f"Empfangsbestätigung: Az. {CASE} Bauantrag"
    assert outer["From"] == RECIPIENT and outer["Auto-Submitted"] == "auto-replied"
    assert outer["In-Reply-To"] == "<t@example.org>" and outer["Message-ID"] == f"<{doc.message_id}>"
    assert doc.case == CASE and doc.mail_from == RECIPIENT and doc.signed == "smime" and not doc.encrypted


def test_acknowledgement_signature_verifies_with_openssl_cms_against_the_test_ca(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    doc = acknowledge(cfg, receipt())
    assert openssl_verify(pki, doc.raw)
    assert not openssl_verify(pki, doc.raw.replace(b"processed", b"deleted!!"))


def test_acknowledgement_encrypted_to_a_known_signer_decrypts_and_verifies(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki, encrypt="auto")
    doc = acknowledge(cfg, receipt())
    assert doc.encrypted and doc.key_sources[0][0] == SENDER
    files = pki.write(tmp / "alice")
    res = openssl(
        "cms", "-decrypt", "-recip", str(files["sender.pem"]), "-inkey", str(files["sender.key"]), stdin=doc.raw
    )
    assert res.returncode == 0, res.stderr.decode()
    assert openssl_verify(pki, res.stdout)
    assert b"message/disposition-notification" in res.stdout


def test_acknowledgement_of_a_verified_letter_goes_only_to_the_signer_never_to_reply_to(
    pki: TestPKI, tmp: Path
) -> None:
    cfg = make_config(tmp, pki)
    extra = (
        f"Reply-To: {ATTACKER}\r\nDisposition-Notification-To: {ATTACKER}\r\n"
        f"Return-Receipt-To: {ATTACKER}\r\nCc: other@attacker.example\r\n"
    )
    plan = decide(cfg, incoming(pki, extra=extra))
    assert plan.verdict.verdict == "verified", plan.verdict
    record = stored(plan)
    assert wants_acknowledgement(cfg, record)
    doc = acknowledge(cfg, receipt_of(record))
    assert doc.recipients == (SENDER,)
    outer = email.message_from_bytes(doc.raw, policy=email.policy.default)
    assert outer["To"] == SENDER and outer["Cc"] is None and outer["Reply-To"] is None
    assert b"attacker.example" not in doc.raw


def test_acknowledgement_says_nothing_of_the_body(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    doc = acknowledge(cfg, receipt_of(stored(decide(cfg, incoming(pki)))))
    assert SECRET.encode() not in doc.raw
    for part in email.message_from_bytes(doc.raw, policy=email.policy.default).walk():
        if not part.is_multipart() and part.get_content_type().startswith("text/"):
            assert SECRET not in part.get_content()  # type: ignore[attr-defined]
    assert len(report_of(doc.raw).get_payload()) == 2  # no third part: neither the message nor its headers


def test_what_is_said_depends_only_on_received_and_stored_not_on_decryption(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    record = stored(decide(cfg, incoming(pki)))
    decrypted = stored(decide(cfg, incoming(pki)))
    assert decrypted.verdict is not None
    decrypted.verdict = {**decrypted.verdict, "encryption": {"status": "decrypted", "scheme": "smime"}}
    first, second = (report_of(acknowledge(cfg, receipt_of(r)).raw) for r in (record, decrypted))
    assert [p.as_bytes() for p in first.get_payload()] == [p.as_bytes() for p in second.get_payload()]  # type: ignore[union-attr]


def test_subject_with_line_breaks_cannot_add_header_lines(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    hostile = f"Az. {CASE}\r\nBcc: {ATTACKER}\r\n\r\nX\u2028Y\u202e\x00Z"
    doc = acknowledge(cfg, receipt(subject=hostile))
    head = doc.raw.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in head and ATTACKER.encode() not in head
    outer = email.message_from_bytes(doc.raw, policy=email.policy.default)
    assert outer["Subject"] == f"Empfangsbestätigung: Az. {CASE} Bcc: {ATTACKER} X Y Z"
    assert doc.recipients == (SENDER,)


@pytest.mark.parametrize(
    "message_id", ["<a@b>\r\nBcc: evil@attacker.example", "<two words@x>", "<a@b><c@d>", "kein-at-zeichen"]
)
def test_a_message_id_that_is_not_one_plain_id_is_refused(pki: TestPKI, tmp: Path, message_id: str) -> None:
    cfg = make_config(tmp, pki)
    with pytest.raises(AcknowledgementError) as err:
        acknowledge(cfg, receipt(message_id=message_id))
    assert err.value.reason == "unusable-message-id"


def test_a_message_without_message_id_is_acknowledged_without_original_message_id(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    report = report_of(acknowledge(cfg, receipt(message_id=None, subject=None)).raw)
    [fields] = report.get_payload(1).get_payload()  # type: ignore[union-attr]
    assert fields["Original-Message-ID"] is None and fields["Disposition"] == DISPOSITION


def test_a_signer_address_with_a_line_break_is_refused(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    with pytest.raises(ComposeError):
        acknowledge(cfg, receipt(signer=f"{SENDER}\r\nBcc: {ATTACKER}"))


def test_only_a_stored_verified_message_with_a_signer_is_acknowledged(pki: TestPKI, tmp: Path) -> None:
    cfg = make_config(tmp, pki)
    plan = decide(cfg, incoming(pki))
    with pytest.raises(AcknowledgementError) as err:
        receipt_of(stored(plan, state="quarantined"))
    assert err.value.reason == "not-stored"
    untrusted = stored(plan)
    assert untrusted.verdict is not None
    untrusted.verdict = {
        **untrusted.verdict,
        "verdict": "unverified",
        "signature": {**untrusted.verdict["signature"], "status": "untrusted"},
    }
    with pytest.raises(AcknowledgementError) as err:
        receipt_of(untrusted)
    assert err.value.reason == "not-verified"
    unsigned_plan = decide(cfg, headers(SENDER, subject=f"Az. {CASE} Bauantrag") + b"\r\n" + mime_text())
    assert unsigned_plan.verdict.verdict == "unverified"
    with pytest.raises(AcknowledgementError):
        receipt_of(stored(unsigned_plan))
    court = stored(decide(cfg, incoming(pki, subject="Az. 1 K 1234/25 Klage")))
    assert not wants_acknowledgement(cfg, court)  # that route does not acknowledge


def test_acknowledge_defaults_to_off_and_is_read_per_route(pki: TestPKI, tmp: Path) -> None:
    data = config_data(tmp, pki)
    del data["route"][0]["acknowledge"]
    assert [r.acknowledge for r in parse_config(data, file="p.toml").routes] == [False, False]
    assert [r.acknowledge for r in make_config(tmp, pki).routes] == [True, False]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("smtp"), "needs [smtp]"),
        (lambda d: d["outbound"].update(sign="none"), "needs a signature"),
        (lambda d: d["route"][0].update(acknowledge="yes"), "true or false"),
    ],
)
def test_acknowledge_without_a_way_to_sign_and_send_is_refused_at_start(
    pki: TestPKI, tmp: Path, change: Any, problem: str
) -> None:
    data = config_data(tmp, pki)
    change(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, file="p.toml")
    assert err.value.key == "route[0].acknowledge" and problem in err.value.problem, err.value


@given(st.text(max_size=1200))
def test_any_subject_gives_one_line_within_the_limit(subject: str) -> None:
    line = acknowledgement_subject(subject, CASE)
    assert line.startswith(SUBJECT_PREFIX) and len(line) <= MAX_SUBJECT_CHARS
    assert line == line.strip() and line.isprintable()
