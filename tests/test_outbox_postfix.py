"""The outbox against a real relay: the throwaway Postfix delivering into the test Dovecot by LMTP.

Postfix advertises DSN, so here the DSN parameters are sent and Postfix's own success
notification comes back to the sender's mailbox with our ENVID. Postfix must start as
root; the ``postfix`` fixture skips these tests elsewhere, naming the reason.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.outbox import Clock, document, smtp_config

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, Store


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll a condition the relay fulfils asynchronously; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not reached before the deadline")


def fetch_by_message_id(dovecot: Dovecot, user: str, message_id: str) -> list[bytes]:
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search(["HEADER", "Message-ID", message_id])
        if not uids:
            return []
        return [v[b"BODY[]"] for v in conn.fetch(uids, ["BODY.PEEK[]"]).values()]


def fetch_all(dovecot: Dovecot, user: str) -> list[bytes]:
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search("ALL")
        return [v[b"BODY[]"] for v in conn.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []


def body(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def setup(postfix: Any, tmp_path: Path, new_user: Callable[[], str]) -> Iterator[tuple[Config, Store, str, str]]:
    sender, recipient = new_user(), new_user()
    config = load_config(smtp_config(tmp_path, port=postfix.port, extra={"from": f"{sender}@mailbox.test"}))
    store = open_store(config)
    yield config, store, sender, recipient
    store.close()


def test_sent_mail_arrives_in_the_recipients_dovecot_mailbox_with_the_exact_body(
    setup: tuple[Config, Store, str, str], dovecot: Dovecot
) -> None:
    config, store, sender, recipient = setup
    doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
    oid = outbox.enqueue(config, store, doc)
    assert Drain(config, store).run_once().sent == [oid]
    got = wait_for(lambda: fetch_by_message_id(dovecot, recipient, doc.message_id))
    assert len(got) == 1 and body(got[0]) == body(doc.raw)
    # What was sent is what is filed: the same bytes Dovecot's copy ends with.
    rec = store.outbox_get(oid)
    assert rec is not None and rec.sent_path is not None
    assert (Path(rec.sent_path) / "message.eml").read_bytes() == doc.raw
    assert rec.recipients[0].queue_id  # Postfix's queue id from "queued as …"


def test_dsn_is_requested_from_postfix_and_its_success_notice_carries_our_envid(
    setup: tuple[Config, Store, str, str], dovecot: Dovecot
) -> None:
    config, store, sender, recipient = setup
    oid = outbox.enqueue(config, store, document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test"))
    Drain(config, store).run_once()
    rec = store.outbox_get(oid)
    assert rec is not None
    submitted = next(e for e in store.select(EntryFilter(document=oid)) if e.event == "submitted")
    assert submitted.details["dsn_requested"] is True and submitted.details["envid"] == rec.envid
    notices = wait_for(lambda: [m for m in fetch_all(dovecot, sender) if b"multipart/report" in m])
    assert f"Original-Envelope-Id: {rec.envid}".encode() in notices[0]
    assert f"Original-Recipient: rfc822;{recipient}@mailbox.test".encode() in notices[0]


def test_a_recipient_postfix_refuses_with_550_is_bounced_with_postfixs_reply(
    setup: tuple[Config, Store, str, str],
) -> None:
    config, store, sender, _ = setup
    oid = outbox.enqueue(config, store, document(to=("refused@mailbox.test",), mail_from=f"{sender}@mailbox.test"))
    assert Drain(config, store).run_once().bounced == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.recipients[0].state == "bounced"
    reply = rec.recipients[0].reply or ""
    assert reply.startswith("550 5.1.1") and "no such mailbox here" in reply


def test_postfix_down_loses_nothing_and_the_documents_arrive_after_it_returns(
    setup: tuple[Config, Store, str, str], postfix: Any, dovecot: Dovecot
) -> None:
    config, store, sender, recipient = setup
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    docs = [document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test") for _ in range(3)]
    postfix.stop()
    try:
        ids = [outbox.enqueue(config, store, d) for d in docs]
        assert sorted(drain.run_once().deferred) == sorted(ids)
    finally:
        postfix.start()
    clock.advance(config.smtp.min_backoff if config.smtp else 0)
    assert sorted(drain.run_once().sent) == sorted(ids)
    for d in docs:
        assert len(wait_for(lambda d=d: fetch_by_message_id(dovecot, recipient, d.message_id))) == 1


@pytest.fixture
def pf_root() -> Iterator[Path]:
    """A directory the postfix user can reach (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="pst-pf-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_postfix_relays_remote_domains_to_a_scripted_peer_and_reports_its_550_back_by_dsn(
    dovecot: Dovecot, tmp_path: Path, pf_root: Path, new_user: Callable[[], str]
) -> None:
    """The transport map: ``remote.test`` goes to an aiosmtpd peer; what it refuses later comes back as a DSN."""
    from support.smtp_peer import ScriptedPeer

    from gateway.demo.postfix import Postfix

    sender = new_user()
    with (
        ScriptedPeer({"gone@remote.test": ["550 5.1.1 no such user"]}) as peer,
        Postfix(pf_root, lmtp_port=dovecot.lmtp_port, remote_routes={"remote.test": peer.port}) as relay,
    ):
        config = load_config(smtp_config(tmp_path, port=relay.port, extra={"from": f"{sender}@mailbox.test"}))
        store = open_store(config)
        doc = document(to=("ok@remote.test", "gone@remote.test"), mail_from=f"{sender}@mailbox.test")
        oid = outbox.enqueue(config, store, doc)
        assert Drain(config, store).run_once().sent == [oid]  # the relay took both
        assert peer.wait_for(1)
        assert peer.received[0].rcpt_tos == ["ok@remote.test"] and body(peer.received[0].content) == body(doc.raw)
        rec = store.outbox_get(oid)
        store.close()
        assert rec is not None
        # Postfix may report the relayed and the refused recipient in separate notices, in either order.
        notice = wait_for(
            lambda: [m for m in fetch_all(dovecot, sender) if b"multipart/report" in m and b"Action: failed" in m]
        )[0]
    assert f"Original-Envelope-Id: {rec.envid}".encode() in notice
    assert b"Action: failed" in notice and b"550 5.1.1 no such user" in notice


def test_check_finds_postfix_reachable_and_offering_dsn(setup: tuple[Config, Store, str, str]) -> None:
    from gateway.service.health import smtp_check

    result = smtp_check(setup[0])
    assert result.ok and not result.warning and "dsn" in result.detail


def test_the_sent_bytes_are_copied_once_to_the_mailboxs_sent_folder(
    setup: tuple[Config, Store, str, str], dovecot: Dovecot, tmp_path: Path
) -> None:
    from conftest import mailbox_entry

    from gateway.config import MailboxConfig, Secret
    from gateway.outbound.sentfolder import sent_folder_copier

    config, store, sender, recipient = setup
    entry = mailbox_entry(dovecot, sender, tmp_path)
    mb = MailboxConfig(
        name="rathaus",
        host="127.0.0.1",
        port=dovecot.imaps_port,
        security="tls",
        username=sender,
        password=Secret(Path(entry["password_file"]).read_text()),
        ca_file=dovecot.ca_file,
        timeout=10,
    )
    copier = sent_folder_copier(mb)
    doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
    oid = outbox.enqueue(config, store, doc)
    assert Drain(config, store, copy_to_sent=copier).run_once().copied == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.sent_folder == "Sent"
    copier(rec, doc.raw)  # a repeat after a crash: found by Message-ID, not appended again
    with dovecot.client(sender, tls=False) as conn:
        conn.select_folder("Sent", readonly=True)
        uids = conn.search("ALL")
        assert len(uids) == 1
        assert conn.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"] == doc.raw
    assert "copied-to-sent-folder" in [e.event for e in store.select(EntryFilter(document=oid))]
