"""Network faults between the outbox and a real Postfix (and the Sent folder's Dovecot), by the fault proxy.

A connection cut inside DATA loses the transaction (Postfix discards it): the document
is deferred and delivered once by the next attempt. A connection cut after the whole
message, before Postfix's answer, is the one network window where the relay may have
queued it: the next attempt delivers it again and is marked ``resent`` (``reply-lost``).
The gateway cannot tell the two apart when the whole (small) message had left its socket
before the cut: it then marks the retry too, erring on the side of "may be a duplicate".
An APPEND to the Sent folder cut either way leaves exactly one copy there after the
next pass (it looks for the Message-ID first). ``audit verify`` is green after each.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, dovecot_password
from support.outbox import Clock, document, smtp_config
from support.tcpproxy import TcpProxy
from test_outbox_postfix import fetch_by_message_id, wait_for

from gateway.config import Config, MailboxConfig, Secret, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.outbound.sentfolder import sent_folder_copier
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, Store

Relay = tuple[Config, Store, TcpProxy, str, str]


@pytest.fixture
def relay(postfix: Any, tmp_path: Path, new_user: Callable[[], str]) -> Iterator[Relay]:
    """An outbox whose relay is the session's Postfix behind the fault proxy."""
    sender, recipient = new_user(), new_user()
    with TcpProxy("127.0.0.1", postfix.port) as proxy:
        config = load_config(smtp_config(tmp_path, port=proxy.port, extra={"from": f"{sender}@mailbox.test"}))
        store = open_store(config)
        try:
            yield config, store, proxy, sender, recipient
        finally:
            store.close()


def events_of(store: Store, oid: str) -> list[Any]:
    return list(store.select(EntryFilter(document=oid)))


def audit_verify_is_green(config: Config) -> None:
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config.path)}
    proc = subprocess.run(
        [*POSTSTELLE, "audit", "verify", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not json.loads(proc.stdout).get("breaks")


def test_cut_inside_data_is_discarded_by_postfix_and_the_retry_delivers_once(relay: Relay, dovecot: Dovecot) -> None:
    config, store, proxy, sender, recipient = relay
    clock = Clock()
    doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
    oid = outbox.enqueue(config, store, doc)
    cut = proxy.cut_on(b"Subject: Az.", direction="c2s", extra=20)  # inside the message, before the final dot
    assert Drain(config, store, clock=clock).run_once().deferred == [oid]
    assert cut.fired == 1
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "deferred" and rec.next_attempt_at is not None
    assert config.smtp is not None
    clock.advance(config.smtp.min_backoff)
    assert Drain(config, store, clock=clock).run_once().sent == [oid]
    assert len(wait_for(lambda: fetch_by_message_id(dovecot, recipient, doc.message_id))) == 1
    rec = store.outbox_get(oid)
    assert rec is not None and rec.attempts == 2
    # The letter had left the gateway's socket whole: for all it knows Postfix may have it.
    resent = [e.details["reason"] for e in events_of(store, oid) if e.event == "resent"]
    assert resent == (["reply-lost"] if rec.resent else [])
    audit_verify_is_green(config)


def test_answer_lost_after_the_whole_message_is_resent_and_marked(relay: Relay, dovecot: Dovecot) -> None:
    config, store, proxy, sender, recipient = relay
    clock = Clock()
    doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
    oid = outbox.enqueue(config, store, doc)
    cut = proxy.cut_on(b"Ok: queued", at="before")  # Postfix has queued it; its answer never arrives
    assert Drain(config, store, clock=clock).run_once().deferred == [oid]
    assert cut.fired == 1
    deferred = next(e for e in events_of(store, oid) if e.event == "deferred")
    assert deferred.details.get("reply_lost") is True
    assert config.smtp is not None
    clock.advance(config.smtp.min_backoff)
    second = Drain(config, store, clock=clock).run_once()
    assert second.sent == [oid] and second.resent == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.resent
    resent = next(e for e in events_of(store, oid) if e.event == "resent")
    assert resent.details["reason"] == "reply-lost"
    # Both transactions were queued by Postfix: the recipient has it twice, and the record says why.
    assert (
        len(
            wait_for(
                lambda: (
                    len(fetch_by_message_id(dovecot, recipient, doc.message_id)) >= 2
                    and fetch_by_message_id(dovecot, recipient, doc.message_id)
                )
            )
        )
        == 2
    )
    audit_verify_is_green(config)


@pytest.mark.parametrize(
    ("direction", "pattern", "at"),
    [("c2s", b"Subject: Az.", "after"), ("s2c", b"[APPENDUID", "before")],
    ids=["inside-the-literal", "answer-lost-after-append"],
)
def test_cut_append_to_the_sent_folder_leaves_exactly_one_copy_after_the_next_pass(
    relay: Relay,
    dovecot: Dovecot,
    tmp_path: Path,
    direction: str,
    pattern: bytes,
    at: str,
) -> None:
    config, store, _, sender, recipient = relay
    with TcpProxy(dovecot.host, dovecot.imap_port) as imap_proxy:
        mb = MailboxConfig(
            name="rathaus",
            host="127.0.0.1",
            port=imap_proxy.port,
            security="plain",
            username=sender,
            password=Secret(dovecot_password(sender)),
            timeout=5,
        )
        copier = sent_folder_copier(mb)
        doc = document(to=(f"{recipient}@mailbox.test",), mail_from=f"{sender}@mailbox.test")
        oid = outbox.enqueue(config, store, doc)
        cut = imap_proxy.cut_on(pattern, direction=direction, at=at, extra=30)  # type: ignore[arg-type]
        first = Drain(config, store, copy_to_sent=copier).run_once()
        assert cut.fired == 1
        assert first.sent == [oid] and first.copied == []
        second = Drain(config, store, copy_to_sent=copier).run_once()
        assert second.copied == [oid]
    with dovecot.client(sender, tls=False) as conn:
        conn.select_folder("Sent", readonly=True)
        uids = conn.search(["HEADER", "Message-ID", doc.message_id])
        assert len(uids) == 1
    assert [e.event for e in events_of(store, oid)].count("copied-to-sent-folder") == 1
    audit_verify_is_green(config)


def test_outbox_thread_records_its_recovery_after_a_failed_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that fails (here: the disk, as an OSError) is ``outbox-error``; the next good one ``outbox-recovered``."""
    import threading

    from gateway.service import outbox_worker

    config = load_config(smtp_config(tmp_path, port=1))  # nothing is queued: a pass never dials the relay
    real = Drain.run_once
    calls: list[str] = []

    def flaky(self: Drain) -> Any:
        calls.append("pass")
        if len(calls) == 1:
            raise OSError(28, "No space left on device", str(tmp_path / "state"))
        return real(self)

    monkeypatch.setattr(Drain, "run_once", flaky)
    stop = threading.Event()
    failures: list[str] = []
    outbox_worker.run_outbox(config, stop, once=False, on_pass=lambda _: stop.set(), on_failure=failures.append)
    assert len(calls) == 2 and len(failures) == 1
    store = open_store(config, readonly=True)
    try:
        events = [e for e in store.entries() if e.event.startswith("outbox-")]
    finally:
        store.close()
    assert [e.event for e in events] == ["outbox-error", "outbox-recovered"]
    assert "No space left on device" in events[1].details["last_error"]
