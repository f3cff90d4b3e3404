"""The intake queues a signed acknowledgement for a verified letter when its route asks, and only then."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import ROUTES, Env, mailbox_entry, write_config
from support.receipts import thunderbird_mdn
from support.smime_pki import SENDER, TestPKI, headers, mime_text, multipart_signed, sign_detached_der

from gateway.demo.dovecot import Dovecot
from gateway.records.open import open_store
from gateway.records.store import EntryFilter
from gateway.statedir import init_storage

SUBJECT = "Az. 63-BV-2026-0412 Antrag auf Baugenehmigung"


def acknowledging_env(dovecot: Dovecot, root: Path, user: str, pki: TestPKI) -> Env:
    files = pki.write(root / "pki")
    extra = f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}"]

[outbound]
sign = "smime"
encrypt = "never"

[smtp]
host = "127.0.0.1"
port = 2525
security = "plain"
from = "poststelle@rathaus.example"
"""
    routes = ROUTES.replace('name = "building permits"', 'name = "building permits"\nacknowledge = true')
    path = write_config(root, [mailbox_entry(dovecot, user, root)], extra=extra, routes=routes)
    env = Env(dovecot, user, root, path)
    init_storage(env.config)
    return env


def signed_letter(pki: TestPKI, subject: str = SUBJECT, message_id: str = "antrag-1@example.org") -> bytes:
    inner = mime_text("Anbei der Antrag.\r\n")
    head = headers(subject=subject).replace(b"<t@example.org>", f"<{message_id}>".encode())
    return multipart_signed(head, inner, sign_detached_der(pki["sender"], inner))


def test_a_verified_letter_on_an_acknowledging_route_gets_one_signed_mdn_to_its_signer(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: Any
) -> None:
    env = acknowledging_env(dovecot, tmp_path, new_user(), pki)
    env.append(signed_letter(pki))
    env.cli("run", "--once", check=True)  # no relay listens: the acknowledgement waits in the outbox
    store = open_store(env.config, readonly=True)
    try:
        docs = store.outbox_list()
        events = [e for e in store.select(EntryFilter()) if e.event.startswith("acknowledgement")]
    finally:
        store.close()
    assert len(docs) == 1 and [r.address for r in docs[0].recipients] == [SENDER]
    assert docs[0].signed == "smime" and docs[0].case_ref == "63-BV-2026-0412"
    raw = Path(docs[0].path).read_bytes()
    assert b"report-type=disposition-notification" in raw and b"application/pkcs7-signature" in raw
    assert [e.event for e in events] == ["acknowledgement-queued"] and events[0].document == docs[0].id


def test_unverified_letters_and_receipts_are_never_acknowledged(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], pki: Any
) -> None:
    env = acknowledging_env(dovecot, tmp_path, new_user(), pki)
    unsigned = headers(subject=SUBJECT).replace(b"<t@example.org>", b"<plain@example.org>") + b"\r\n" + mime_text()
    env.append(
        unsigned,
        thunderbird_mdn(original_message_id="whatever@example.org", subject=SUBJECT),
    )
    env.cli("run", "--once", check=True)
    store = open_store(env.config, readonly=True)
    try:
        assert store.outbox_list() == []
    finally:
        store.close()
