"""The arrival time (Zugang) is the server's INTERNALDATE, not the moment the gateway fetched.

Messages are APPENDed to a real Dovecot with an explicit INTERNALDATE in the past and in
another zone than UTC, as if they had been delivered before a weekend outage; the gateway
fetches them now. The record keeps both moments, names the entry by the arrival, and
validates signatures as of the arrival: a certificate generated in the test run that
expired between arrival and fetch still verifies.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import ROUTES, Env, mailbox_entry, write_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from support.smime_pki import (
    PEM,
    TestPKI,
    _leaf,
    _rsa,
    mime_text,
    multipart_signed,
    raw_signed_data,
    raw_signer_info,
)

from gateway.clock import utcnow
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import letter
from gateway.inbound.arrival import Arrival
from gateway.inbound.imap import _arrival
from gateway.records.open import open_store

CET = timezone(timedelta(hours=1))
#: Friday evening before the outage, as the server recorded it (+0100).
FRIDAY = datetime(2026, 11, 27, 23, 30, tzinfo=CET)


def ledger(env: Env) -> dict[str, dict[str, Any]]:
    store = open_store(env.config, readonly=True)
    try:
        return {r.id: r.to_json() for r in store.all_messages()}
    finally:
        store.close()


def fetched_events(env: Env) -> dict[str, dict[str, Any]]:
    store = open_store(env.config, readonly=True)
    try:
        return {str(e.message): dict(e.details) for e in store.entries() if e.event == "fetched"}
    finally:
        store.close()


def server_internaldate(env: Env, folder: str) -> datetime:
    """The INTERNALDATE of the one message in ``folder``, with the offset the server sends."""
    client = env.dovecot.client(env.user, tls=False)
    try:
        client.normalise_times = False
        client.select_folder(folder, readonly=True)
        (item,) = client.fetch(client.search("ALL"), ["INTERNALDATE"]).values()
        when = item[b"INTERNALDATE"]
        assert isinstance(when, datetime) and when.utcoffset() is not None
        return when.replace(tzinfo=timezone(when.utcoffset()))  # type: ignore[arg-type]
    finally:
        client.logout()


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_arrival_is_the_internaldate_with_its_zone_and_the_fetch_is_recorded_beside_it(env: Env) -> None:
    before = utcnow()
    env.dovecot.append(env.user, "INBOX", [letter(subject="Bauantrag Az.: 63-BV-2026-0147")], msg_time=FRIDAY)
    env.cli("run", "--once", check=True)
    after = utcnow()

    (entry,) = env.entries()
    assert entry.name.startswith("20261127T223000Z_"), "the entry is named by the arrival, in UTC"
    manifest = read_json(entry / "manifest.json")
    # Dovecot keeps INTERNALDATE as the file's mtime and says it in its own zone: the record
    # keeps exactly what the server said, and the instant is the delivery's.
    said = server_internaldate(env, "Poststelle/Processed")
    assert manifest["received"] == said.isoformat()
    assert datetime.fromisoformat(manifest["received"]) == FRIDAY
    fetched = datetime.fromisoformat(manifest["fetched"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= fetched <= after
    (row,) = ledger(env).values()
    assert row["internaldate"] == manifest["received"]
    assert row["fetched_at"] == manifest["fetched"]
    details = fetched_events(env)[row["id"]]
    assert details["received"] == manifest["received"] and details["fetched"] == manifest["fetched"]
    verdict = read_json(entry / "verification.json")
    assert verdict["validated_at"] == said.isoformat()
    assert verdict["validation_time_source"] == "arrival"
    assert row["verdict"]["validation_time_source"] == "arrival"
    env.cli("audit", "verify", check=True)


def test_quarantine_record_and_folder_carry_the_arrival(env: Env) -> None:
    broken = (
        b"From: x@example.org\r\nSubject: Az. 63-BV-2026-0002\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n--nope\r\nbroken\r\n"
    )
    env.dovecot.append(env.user, "INBOX", [broken], msg_time=FRIDAY)
    env.cli("run", "--once", check=True)
    (q,) = env.quarantined()
    assert q.name.startswith("20261127T223000Z_")
    (listed,) = json.loads(env.cli("quarantine", "list", "--json", check=True).stdout)
    assert datetime.fromisoformat(listed["received"]) == FRIDAY
    assert listed["fetched"].endswith("Z")
    assert read_json(q / "manifest.json")["received"] == listed["received"]
    shown = env.cli("quarantine", "show", listed["id"], check=True).stdout
    assert "2026-11-27 23:30:00 CET" in shown


def test_cases_show_and_the_html_report_show_the_arrival_in_local_time(env: Env, tmp_path: Path) -> None:
    env.dovecot.append(env.user, "INBOX", [letter(subject="Bauantrag Az.: 63-BV-2026-0147")], msg_time=FRIDAY)
    env.cli("run", "--once", check=True)

    (row,) = json.loads(env.cli("cases", "show", "63-BV-2026-0147", "--json", check=True).stdout)["messages"]
    assert datetime.fromisoformat(row["received"]) == FRIDAY and row["fetched"].endswith("Z")
    table = env.cli("cases", "show", "63-BV-2026-0147", check=True).stdout
    assert "2026-11-27 23:30:00 CET" in table, table  # Europe/Berlin, the default [ui] zone

    report = tmp_path / "report.html"
    env.cli("audit", "export", "--format", "html", "--output", str(report), check=True)
    html = report.read_text()
    assert "Letter received 2026-11-27 23:30:00 CET" in html
    assert "delivered to the mailbox 2026-11-27 23:30:00 CET" in html


# --- signatures as of the arrival --------------------------------------------------------


def lapsed_signer(pki: TestPKI, arrival: datetime) -> Any:
    """A signer whose certificate was valid at ``arrival`` and expired before now."""
    now = datetime.now(UTC).replace(microsecond=0)
    return _leaf(
        "Lapsed",
        "lapsed@example.org",
        _rsa(2048, "lapsed"),
        pki.inter,
        not_before=arrival - timedelta(days=30),
        not_after=now - timedelta(days=2),
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
    )


def crl_since(issuer: Any, since: datetime) -> x509.CertificateRevocationList:
    """A CA's empty CRL issued before the arrival: it can prove a certificate good at that time."""
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(since)
        .next_update(datetime.now(UTC) + timedelta(days=30))
        .add_extension(x509.CRLNumber(7), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


@pytest.fixture
def signed_env(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: TestPKI) -> Callable[..., Env]:
    def make(arrival: datetime) -> Env:
        files = pki.write(tmp_path / "pki")
        crls = []
        for name, ca in (("inter", pki.inter), ("root", pki.root)):
            crls.append(tmp_path / "pki" / f"{name}-then.crl.pem")
            crls[-1].write_bytes(crl_since(ca, arrival - timedelta(days=1)).public_bytes(PEM))
        smime = f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{crls[0]}", "{crls[1]}"]
revocation = "require"
"""
        user = new_user()
        cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path)], extra=smime, routes=ROUTES)
        return Env(dovecot, user, tmp_path, cfg)

    return make


def signed_letter(signer: Any, subject: str, signed_at: datetime) -> bytes:
    """A detached S/MIME signature made at ``signed_at`` (its signingTime)."""
    inner = mime_text("Anbei der Antrag.\r\n", subject=subject)
    head = (
        f"From: Lapsed <{signer.email}>\r\nTo: poststelle@rathaus.example\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    info = raw_signer_info(signer, inner, signed_at=signed_at)
    der = raw_signed_data(inner, [info], detached=True, certs=[signer.cert, *signer.chain])
    return multipart_signed(head, inner, der)


def test_certificate_expired_between_arrival_and_fetch_still_verifies(
    signed_env: Callable[..., Env], pki: TestPKI
) -> None:
    arrival = (datetime.now(UTC) - timedelta(days=7)).astimezone(CET).replace(microsecond=0)
    signed = arrival - timedelta(minutes=5)
    signer = lapsed_signer(pki, arrival)
    env = signed_env(arrival)
    env.dovecot.append(env.user, "INBOX", [signed_letter(signer, "Az. 63-BV-2026-0011", signed)], msg_time=arrival)
    # The same kind of letter delivered now: its signer's certificate has expired by now.
    env.dovecot.append(env.user, "INBOX", [signed_letter(signer, "Az. 63-BV-2026-0012", signed)])
    env.cli("run", "--once", check=True)

    by_case = {e.parent.name: e for e in env.entries()}
    old = read_json(by_case["63-BV-2026-0011"] / "verification.json")
    assert old["verdict"] == "verified", old
    assert datetime.fromisoformat(old["validated_at"]) == arrival
    assert old["validation_time_source"] == "arrival"
    assert {c["status"] for c in old["signature"]["revocation"]["certificates"]} == {"good"}
    new = read_json(by_case["63-BV-2026-0012"] / "verification.json")
    assert new["verdict"] == "unverified" and "cert-expired" in new["reasons"], new
    assert new["validation_time_source"] == "arrival"

    # inspect re-checks the stored original as of its recorded arrival, or of a given moment.
    original = str(by_case["63-BV-2026-0011"] / "original.eml")
    again = json.loads(env.cli("inspect", "--json", original, check=True).stdout)
    assert again["verdict"] == "verified" and again["validation_time_source"] == "arrival"
    assert again["validated_at"] == old["validated_at"]
    now = json.loads(env.cli("inspect", "--json", "--at", utcnow().isoformat(), original, check=True).stdout)
    assert now["verdict"] == "unverified" and now["validation_time_source"] == "given"
    table = env.cli("inspect", original, check=True).stdout
    assert "(arrival)" in table and "CET" in table


# --- without an INTERNALDATE ---------------------------------------------------------------


def test_without_internaldate_the_fetch_time_stands_in_and_says_so() -> None:
    fetched = _arrival({b"BODY[]": b"x"})
    assert fetched.received is None and fetched.source == "fetch"
    assert fetched.at == fetched.fetched and fetched.received_text is None
    naive = _arrival({b"INTERNALDATE": datetime(2026, 11, 27, 23, 30)})
    assert naive.received is None, "a time without a zone is not guessed"


def test_arrival_keeps_the_server_offset_and_survives_the_trip_to_a_worker() -> None:
    from imapclient.fixed_offset import FixedOffset

    arrival = _arrival({b"INTERNALDATE": datetime(2026, 11, 27, 23, 30, tzinfo=FixedOffset(60))})
    assert arrival.received_text == "2026-11-27T23:30:00+01:00"
    assert arrival.utc == datetime(2026, 11, 27, 22, 30, tzinfo=UTC)
    assert arrival.source == "arrival"
    assert pickle.loads(pickle.dumps(arrival)) == arrival  # noqa: S301 - our own bytes
    with pytest.raises(ValueError, match="timezone-aware"):
        Arrival(received=datetime(2026, 11, 27, 23, 30), fetched=utcnow())


# --- the report, from the trail alone --------------------------------------------------------


def report_of(details: dict[str, object], language: str = "en") -> str:
    """The HTML report of one fetched letter (fetched on Monday morning) and its verdict."""
    from gateway.audit.html import render_html
    from gateway.audit.report import AuditQuery
    from gateway.records.chain import AuditEntry
    from gateway.ui import Locale

    monday = "2026-11-30T07:00:00.000000Z"
    key = {"mailbox": "rathaus", "folder": "INBOX", "uid": 7, "size": 2048}
    entries = [
        AuditEntry(1, monday, "fetched", "daemon", "m1", None, None, None, {**key, **details}, "0" * 64, "f" * 64),
        AuditEntry(2, monday, "verdict", "daemon", "m1", None, None, None, {"verdict": "no"}, "f" * 64, "e" * 64),
    ]
    page = render_html(
        entries,
        records={},
        query=AuditQuery(),
        generated_at=monday,
        verification=None,
        locale=Locale(language=language),
    )
    return " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S).split())


def test_report_heads_a_letter_with_its_arrival_and_says_when_it_was_fetched() -> None:
    arrived = {"received": "2026-11-27T22:30:00+00:00", "fetched": "2026-11-30T07:00:00.000000Z"}
    en = report_of(arrived)
    assert "Letter received 2026-11-27 23:30:00 CET" in en
    assert "2026-11-30 08:00:00 CET" in en  # the fetch, as the entry's own time
    assert "delivered to the mailbox 2026-11-27 23:30:00 CET" in en
    assert "Zugang im Postfach: 27.11.2026 23:30:00 MEZ" in report_of(arrived, "de")


def test_report_of_a_letter_without_internaldate_says_the_fetch_time_stands_in() -> None:
    page = report_of({"received": None, "fetched": "2026-11-30T07:00:00.000000Z"})
    assert "Letter received 2026-11-30 08:00:00 CET" in page
    assert "the server gave no arrival time, the fetch time stands for it" in page


def test_report_of_an_older_trail_reads_its_internaldate() -> None:
    page = report_of({"internaldate": "2026-11-30T07:00:00.000000Z"})
    assert "Letter received 2026-11-30 08:00:00 CET" in page
    assert "delivered to the mailbox" not in page and "no arrival time" not in page
