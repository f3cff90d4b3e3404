"""Bcc through a real relay: the throwaway Postfix delivering into the test Dovecot by LMTP.

What each mailbox receives is read back from Dovecot: the To recipient's copy names no
Bcc recipient (no header, no RecipientInfo), each Bcc recipient's own message opens with
their key (real ``openssl cms``) and carries the authority's signature, and the case
folder's manifests tell the authority who got what. Postfix must start as root; the
``postfix`` fixture skips these tests elsewhere, naming the reason.
"""

from __future__ import annotations

import base64
import json
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as a_cms
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from support.outbox import smtp_config
from support.smime_pki import Party, TestPKI, _leaf, _rsa, build_pki, openssl_verify

from gateway.clock import utcnow
from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.compose import Letter
from gateway.outbound.drain import Drain
from gateway.outbound.handin import OutboxSpool
from gateway.outbound.protect import OutboundKeys, compose_document
from gateway.outbound.submission import SubmissionListener
from gateway.outbound.users import hash_password, write_users
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord
from gateway.records.store import EntryFilter, Store

EMAIL_EKU = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
CASE = "1 K 77/26"
PASSWORD = "correct horse battery"


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll a condition the relay fulfils asynchronously; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not reached before the deadline")


def inbox(dovecot: Dovecot, user: str) -> list[bytes]:
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search("ALL")
        return [v[b"BODY[]"] for v in conn.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []


def arrived(dovecot: Dovecot, user: str, message_id: str) -> bytes:
    """The one message with ``message_id`` in ``user``'s INBOX, once Postfix delivered it."""

    def find() -> list[bytes]:
        return [m for m in inbox(dovecot, user) if f"<{message_id}>".encode() in head(m)]

    (raw,) = wait_for(find)
    return raw


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def serials(raw: bytes) -> set[int]:
    """Whose certificates the envelope names: everyone it is encrypted to."""
    der = base64.b64decode(raw.split(b"\r\n\r\n", 1)[1])
    out: set[int] = set()
    for ri in a_cms.ContentInfo.load(der)["content"]["recipient_infos"]:
        if ri.name == "ktri":
            out.add(ri.chosen["rid"].chosen["serial_number"].native)
        else:
            out.update(k["rid"].chosen["serial_number"].native for k in ri.chosen["recipient_encrypted_keys"])
    return out


def decrypt(raw: bytes, party: Party, tmp: Path) -> bytes:
    (tmp / "k.pem").write_bytes(party.key_pem())
    (tmp / "c.pem").write_bytes(party.cert_pem())
    return subprocess.run(
        ["openssl", "cms", "-decrypt", "-inkey", str(tmp / "k.pem"), "-recip", str(tmp / "c.pem")],
        input=raw,
        capture_output=True,
        check=True,
    ).stdout


@dataclass
class World:
    config: Config
    store: Store
    pki: TestPKI
    authority: Party
    users: dict[str, str]  # role -> Dovecot user
    parties: dict[str, Party]  # role -> certificate holder (only those with a certificate)

    def addr(self, role: str) -> str:
        return f"{self.users[role]}@mailbox.test"


@pytest.fixture
def world(postfix: Any, tmp_path: Path, new_user: Callable[[], str]) -> Iterator[World]:
    pki = build_pki()
    users = {role: new_user() for role in ("authority", "to", "bcc_ec", "bcc_plain", "bcc_rsa")}
    authority = _leaf(
        "Rathaus", f"{users['authority']}@mailbox.test", _rsa(2048, "authority"), pki.inter, eku=EMAIL_EKU
    )
    parties = {
        "to": _leaf("To", f"{users['to']}@mailbox.test", _rsa(2048, "to"), pki.inter, eku=EMAIL_EKU),
        "bcc_ec": _leaf(
            "Bcc EC",
            f"{users['bcc_ec']}@mailbox.test",
            ec.generate_private_key(ec.SECP256R1()),
            pki.inter,
            eku=EMAIL_EKU,
        ),
        "bcc_rsa": _leaf("Bcc RSA", f"{users['bcc_rsa']}@mailbox.test", _rsa(2048, "bcc"), pki.inter, eku=EMAIL_EKU),
    }
    files = pki.write(tmp_path / "pki")
    (tmp_path / "me.key").write_bytes(authority.key_pem())
    (tmp_path / "me.key").chmod(0o600)
    (tmp_path / "me.pem").write_bytes(authority.cert_pem() + pki.inter.cert_pem())
    corr = tmp_path / "correspondents"
    corr.mkdir()
    for role, party in parties.items():
        (corr / f"{role}.pem").write_bytes(party.cert_pem())
    write_users(tmp_path / "submission.users", {"clerk": hash_password(PASSWORD.encode(), ln=10)})
    path = smtp_config(tmp_path, port=postfix.port, extra={"from": f"{users['authority']}@mailbox.test"})
    path.write_text(
        path.read_text()
        + f"""
[smime]
identities = [{{ key_file = "{tmp_path / "me.key"}", cert_file = "{tmp_path / "me.pem"}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]

[outbound]
sign = "smime"
encrypt = "auto"
correspondents_dir = "{corr}"

[[route]]
name = "Aktenzeichen"
subject = '(?i)\\bAz\\.?\\s*:?\\s*(?P<case>\\d K \\d+/\\d\\d)'
case = "{{case}}"

[submission]
listen = "127.0.0.1:10587"
users_file = "{tmp_path / "submission.users"}"
sender = "{users["authority"]}@mailbox.test"
"""
    )
    config = load_config(path)
    store = open_store(config)
    yield World(config, store, pki, authority, users, parties)
    store.close()


def send(w: World, **kw: tuple[str, ...]) -> tuple[str, list[OutboxRecord]]:
    """Compose and queue a letter as ``poststelle send`` does; its outbox id and every record queued."""
    keys = OutboundKeys.from_config(w.config)
    try:
        doc = compose_document(
            Letter(case=CASE, subject="Bescheid", body="Guten Tag,\nanbei.\n", **kw),
            mail_from=w.addr("authority"),
            config=w.config,
            keys=keys,
            at=utcnow(),
        )
    finally:
        keys.close()
    oid = outbox.enqueue(w.config, w.store, doc)
    return oid, w.store.outbox_list()


def manifest(rec: OutboxRecord) -> dict[str, Any]:
    assert rec.sent_path is not None
    data: dict[str, Any] = json.loads((Path(rec.sent_path) / "manifest.json").read_bytes())
    return data


def test_encrypted_letter_with_bcc_reaches_each_mailbox_and_no_copy_names_a_bcc_recipient(
    world: World, dovecot: Dovecot, tmp_path: Path
) -> None:
    w = world
    oid, recs = send(w, to=(w.addr("to"),), bcc=(w.addr("bcc_ec"), w.addr("bcc_plain")))
    assert len(recs) == 3
    assert sorted(Drain(w.config, w.store).run_once().sent) == sorted(r.id for r in recs)
    main = next(r for r in recs if r.id == oid)
    copies = {r.recipients[0].address: r for r in recs if r.id != oid}
    assert [r.address for r in main.recipients] == [w.addr("to")] and main.encrypted
    assert main.bcc == [w.addr("bcc_ec"), w.addr("bcc_plain")]

    to_copy = arrived(dovecot, w.users["to"], main.message_id)
    assert b"bcc:" not in head(to_copy).lower()
    assert w.addr("bcc_ec").encode() not in to_copy and w.addr("bcc_plain").encode() not in to_copy
    assert serials(to_copy) == {w.parties["to"].cert.serial_number, w.authority.cert.serial_number}
    assert openssl_verify(w.pki, decrypt(to_copy, w.parties["to"], tmp_path))

    ec_rec = copies[w.addr("bcc_ec")]
    ec_copy = arrived(dovecot, w.users["bcc_ec"], ec_rec.message_id)
    assert ec_rec.encrypted and b"bcc:" not in head(ec_copy).lower()
    assert serials(ec_copy) == {w.parties["bcc_ec"].cert.serial_number, w.authority.cert.serial_number}
    assert openssl_verify(w.pki, decrypt(ec_copy, w.parties["bcc_ec"], tmp_path))

    plain_rec = copies[w.addr("bcc_plain")]  # no certificate: its own message, signed only
    plain_copy = arrived(dovecot, w.users["bcc_plain"], plain_rec.message_id)
    assert not plain_rec.encrypted and openssl_verify(w.pki, plain_copy)
    assert w.addr("to").encode() in head(plain_copy)  # To is shown as it is to everyone

    # Each mailbox got exactly its own message.
    assert len(inbox(dovecot, w.users["to"])) == 1 and len(inbox(dovecot, w.users["bcc_ec"])) == 1

    # The case folder tells the authority who got what; each recipient has a delivery record.
    done = {r.id: w.store.outbox_get(r.id) for r in recs}
    assert manifest(done[oid])["bcc"] == [w.addr("bcc_ec"), w.addr("bcc_plain")]  # type: ignore[arg-type]
    for r in (ec_rec, plain_rec):
        m = manifest(done[r.id])  # type: ignore[arg-type]
        assert m["bcc_copy_of"] == oid and m["bcc"] == [r.recipients[0].address]
        assert m["recipients"][0]["state"] == "sent"
        assert [d.recipient for d in w.store.delivery_get(r.id)] == [r.recipients[0].address]
    queued = list(w.store.select(EntryFilter(events=("queued",))))
    assert {e.document: e.details.get("bcc_copy_of") for e in queued} == {oid: None, ec_rec.id: oid, plain_rec.id: oid}


def test_unencrypted_bcc_rides_in_one_envelope_through_postfix_without_a_header(world: World, dovecot: Dovecot) -> None:
    w = world
    oid, recs = send(w, to=(w.addr("bcc_plain"),), bcc=(w.addr("authority"),))  # nobody here has a certificate
    (rec,) = recs
    assert [r.address for r in rec.recipients] == [w.addr("bcc_plain"), w.addr("authority")] and not rec.encrypted
    assert Drain(w.config, w.store).run_once().sent == [oid]
    for user in ("bcc_plain", "authority"):
        got = arrived(dovecot, w.users[user], rec.message_id)
        assert b"bcc:" not in head(got).lower() and openssl_verify(w.pki, got)
    shown = arrived(dovecot, w.users["bcc_plain"], rec.message_id)
    assert b"\r\nTo: " + w.addr("bcc_plain").encode() + b"\r\n" in head(shown)
    assert manifest(w.store.outbox_get(oid))["bcc"] == [w.addr("authority")]  # type: ignore[arg-type]


def test_a_mail_program_s_bcc_through_the_submission_listener_gets_its_own_encrypted_message(
    world: World, dovecot: Dovecot, tmp_path: Path
) -> None:
    w = world
    listener = SubmissionListener(w.config, OutboxSpool(w.config), listen=("127.0.0.1", 0))
    listener.start()
    try:
        letter = (
            f"From: Rathaus <{w.addr('authority')}>\r\nTo: {w.addr('to')}\r\n"
            f"Subject: Bescheid Az. {CASE}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Guten Tag,\r\nanbei der Bescheid.\r\n"
        ).encode()
        host, port = listener.address
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.login("clerk", PASSWORD)
            assert smtp.sendmail(w.addr("authority"), [w.addr("to"), w.addr("bcc_rsa")], letter) == {}
    finally:
        listener.stop()
    recs = w.store.outbox_list()
    assert len(recs) == 2
    main = next(r for r in recs if r.bcc_copy_of is None)
    copy = next(r for r in recs if r.bcc_copy_of == main.id)
    assert [r.address for r in main.recipients] == [w.addr("to")] and main.bcc == [w.addr("bcc_rsa")]
    assert [r.address for r in copy.recipients] == [w.addr("bcc_rsa")] and copy.encrypted
    assert sorted(Drain(w.config, w.store).run_once().sent) == sorted([main.id, copy.id])
    got = arrived(dovecot, w.users["bcc_rsa"], copy.message_id)
    assert serials(got) == {w.parties["bcc_rsa"].cert.serial_number, w.authority.cert.serial_number}
    assert b"anbei der Bescheid" in decrypt(got, w.parties["bcc_rsa"], tmp_path)
    to_copy = arrived(dovecot, w.users["to"], main.message_id)
    assert w.addr("bcc_rsa").encode() not in to_copy
