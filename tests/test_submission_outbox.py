"""A clerk's mail program hands in a letter: it is signed, encrypted and queued like ``send``'s.

The real listener, the real outbox and real S/MIME: the queued bytes verify with
``openssl cms`` after decryption with the recipient's key, the archived copy opens with
the authority's own key, and the trail names the clerk who handed it in.
"""

from __future__ import annotations

import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.smime_pki import RECIPIENT, SENDER, TestPKI, build_pki, openssl_verify

from gateway.config import Config, load_config
from gateway.outbound.handin import OutboxSpool, submitted_draft
from gateway.outbound.outbox import spool_bytes
from gateway.outbound.submission import SubmissionListener
from gateway.outbound.users import hash_password, write_users
from gateway.records.open import open_store
from gateway.statedir import init_storage

AUTHORITY = RECIPIENT  # the test PKI's "recipient" party is the authority's identity here
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def config(pki: TestPKI, tmp_path: Path) -> Config:
    files = pki.write(tmp_path / "pki")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki["recipient"].cert_pem() + pki.inter.cert_pem())
    corr = tmp_path / "corr"
    corr.mkdir()
    (corr / "alice.pem").write_bytes(pki["sender"].cert_pem())
    users = tmp_path / "submission.users"
    write_users(users, {"clerk": hash_password(PASSWORD.encode(), ln=10)})
    path = tmp_path / "poststelle.toml"
    path.write_text(f"""[storage]
state_dir = "{tmp_path}/state"

[[route]]
name = "Aktenzeichen"
subject = '(?i)\\bAz\\.?\\s*:?\\s*(?P<case>\\d K \\d+/\\d\\d)'
case = "{{case}}"

[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{chain}" }}]
trust_anchors = ["{files["root"]}"]

[outbound]
sign = "smime"
encrypt = "auto"
correspondents_dir = "{corr}"

[smtp]
host = "127.0.0.1"
port = 25
security = "plain"
from = "{AUTHORITY}"

[submission]
listen = "127.0.0.1:10587"
users_file = "{users}"
sender = "{AUTHORITY}"
""")
    cfg = load_config(path)
    init_storage(cfg)
    return cfg


@pytest.fixture
def listener(config: Config) -> Iterator[SubmissionListener]:
    lst = SubmissionListener(config, OutboxSpool(config), listen=("127.0.0.1", 0))
    lst.start()
    yield lst
    lst.stop()


LETTER = (
    f"From: Rathaus <{AUTHORITY}>\r\nTo: {SENDER}\r\nBcc: chef@rathaus.example\r\n"
    "Subject: Bescheid Az. 1 K 1234/25\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nGuten Tag,\r\nanbei der Bescheid.\r\n"
).encode()


def test_a_handed_in_letter_is_queued_signed_and_encrypted_and_names_the_clerk(
    config: Config, listener: SubmissionListener, pki: TestPKI, tmp_path: Path
) -> None:
    host, port = listener.address
    with smtplib.SMTP(host, port, timeout=30) as smtp:
        smtp.login("clerk", PASSWORD)
        refused = smtp.sendmail(AUTHORITY, [SENDER], LETTER)
    assert refused == {}
    store = open_store(config, readonly=True)
    try:
        (doc,) = store.outbox_list()
        queued = [e for e in store.entries() if e.event == "queued"]
    finally:
        store.close()
    assert (doc.case_ref, doc.signed, doc.encrypted) == ("1 K 1234/25", "smime", True)
    assert [(e.document, e.actor) for e in queued] == [(doc.id, "submission:clerk")]
    sent = spool_bytes(doc)
    assert b"Bcc:" not in sent and f"Message-ID: <{doc.message_id}>".encode() in sent
    files = pki.write(tmp_path / "keys")
    for party in ("sender", "recipient"):  # the correspondent, and the authority's archived copy
        opened = subprocess.run(
            ["openssl", "cms", "-decrypt", "-inkey", str(files[f"{party}.key"]), "-recip", str(files[f"{party}.pem"])],
            input=sent,
            capture_output=True,
            check=True,
        ).stdout
        assert openssl_verify(pki, opened)
        assert b"anbei der Bescheid" in opened


def test_a_mail_program_s_lf_message_without_message_id_becomes_crlf_with_one() -> None:
    d = submitted_draft(
        b"From: a@rathaus.example\nTo: b@example.org\nSubject: x Az. 1 K 1/25\n\nText\n",
        mail_from="a@rathaus.example",
        recipients=("b@example.org",),
        case="1 K 1/25",
    )
    assert b"\n" not in d.headers.replace(b"\r\n", b"") and b"\n" not in d.entity.replace(b"\r\n", b"")
    assert f"Message-ID: <{d.message_id}>".encode() in d.headers
    assert d.entity.startswith(b"Content-Type: text/plain; charset=us-ascii\r\n\r\nText\r\n")
