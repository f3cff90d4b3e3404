"""Receipts at intake: DSNs, MDNs and De-Mail confirmations move the delivery records of what we sent.

The first test uses real peers end to end: the throwaway Postfix relays into Dovecot and,
through its transport map, to a scripted remote peer that refuses one recipient; the DSNs
Postfix writes land in the gateway's own mailbox and one ``run --once`` reads them. The
others append receipts built the way their senders build them to the same mailbox.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Env, mailbox_entry, write_config
from support.outbox import document
from support.receipts import Rcpt, demail_confirmation, postfix_dsn, thunderbird_mdn
from support.smtp_peer import ScriptedPeer

from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import Drain
from gateway.records.open import open_store
from gateway.records.store import EntryFilter


def smtp_section(port: int, sender: str) -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\nfrom = "{sender}@mailbox.test"\ntimeout = 10\n'
    )


def gateway(dovecot: Dovecot, root: Path, user: str, relay_port: int, extra: str = "") -> Env:
    path = write_config(root, [mailbox_entry(dovecot, user, root)], extra=smtp_section(relay_port, user) + extra)
    from gateway.statedir import init_storage

    env = Env(dovecot, user, root, path)
    init_storage(env.config)
    return env


def reports_in(dovecot: Dovecot, user: str) -> list[bytes]:
    with dovecot.client(user, tls=False) as conn:
        conn.select_folder("INBOX", readonly=True)
        uids = conn.search("ALL")
        msgs = [v[b"BODY[]"] for v in conn.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []
    return [m for m in msgs if b"multipart/report" in m]


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll what the relay does asynchronously; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.1)
    raise AssertionError("condition not reached before the deadline")


def states(env: Env, oid: str) -> dict[str, str]:
    store = open_store(env.config, readonly=True)
    try:
        return {r.recipient: r.state for r in store.delivery_get(oid)}
    finally:
        store.close()


@pytest.fixture
def pf_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pst-pf-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_real_postfix_dsns_say_relayed_and_failed_after_one_run(
    dovecot: Dovecot, tmp_path: Path, pf_root: Path, new_user: Callable[[], str]
) -> None:
    from gateway.demo.postfix import Postfix, postfix_unavailable

    if (reason := postfix_unavailable()) is not None:
        pytest.skip(reason)
    user, recipient = new_user(), new_user()
    with (
        ScriptedPeer({"gone@remote.test": ["550 5.1.1 no such user"]}) as peer,
        Postfix(
            pf_root,
            lmtp_port=dovecot.lmtp_port,
            remote_routes={"remote.test": peer.port},
            refuse={"refused@mailbox.test": "550 5.1.1 no such mailbox here"},
        ) as relay,
    ):
        env = gateway(dovecot, tmp_path, user, relay.port)
        store = open_store(env.config)
        mail_from = f"{user}@mailbox.test"
        local = outbox.enqueue(env.config, store, document(to=(f"{recipient}@mailbox.test",), mail_from=mail_from))
        remote = outbox.enqueue(
            env.config, store, document(to=("ok@remote.test", "gone@remote.test"), mail_from=mail_from)
        )
        refused = outbox.enqueue(env.config, store, document(to=("refused@mailbox.test",), mail_from=mail_from))
        report = Drain(env.config, store).run_once()
        store.close()
        assert sorted(report.sent) == sorted([local, remote]) and report.bounced == [refused]
        # Dovecot's LMTP offers no DSN, so Postfix reports the local delivery "relayed" too.
        wait_for(
            lambda: (
                sum(m.count(b"Action: relayed") for m in reports_in(dovecot, user)) >= 2
                and any(b"Action: failed" in m for m in reports_in(dovecot, user))
            )
        )
        env.cli("run", "--once", check=True)

    assert states(env, local) == {f"{recipient}@mailbox.test": "relayed"}
    assert states(env, remote) == {"ok@remote.test": "relayed", "gone@remote.test": "failed"}
    assert states(env, refused) == {"refused@mailbox.test": "failed"}
    store = open_store(env.config, readonly=True)
    try:
        failed = next(r for r in store.delivery_get(remote) if r.recipient == "gone@remote.test")
        evidence = failed.timeline[-1].evidence
        assert evidence.kind == "dsn" and "5.1.1" in (evidence.detail or "")
        assert evidence.path and (env.cases_dir / evidence.path).is_file()
        matched = [e for e in store.select(EntryFilter()) if e.event == "receipt-matched"]
        assert {e.document for e in matched} == {local, remote}
    finally:
        store.close()
    receipts = sorted(env.cases_dir.glob("*/receipts/*/manifest.json"))
    assert receipts and all(json.loads(p.read_text())["receipt"]["problem"] is None for p in receipts)
    assert not env.quarantined()
    assert env.cli("audit", "verify").returncode == 0


@pytest.fixture
def sent(env: Env) -> Iterator[tuple[Env, str, str]]:
    """A gateway whose relay (a scripted peer) accepted one document for bob and carol; its id and ENVID."""
    with ScriptedPeer() as peer:
        env = gateway(env.dovecot, env.root, env.user, peer.port)
        store = open_store(env.config)
        oid = outbox.enqueue(
            env.config, store, document(to=("bob@example.org", "carol@example.org"), mail_from="rathaus@mailbox.test")
        )
        assert Drain(env.config, store).run_once().sent == [oid]
        rec = store.outbox_get(oid)
        store.close()
    assert rec is not None
    yield env, oid, rec.envid


def quarantine_reasons(env: Env) -> list[list[str]]:
    return sorted(json.loads((q / "reason.json").read_text())["reasons"] for q in env.quarantined())


def test_an_mdn_marks_its_recipient_displayed_and_is_kept_in_the_case_folder(sent: tuple[Env, str, str]) -> None:
    env, oid, _ = sent
    store = open_store(env.config, readonly=True)
    rec = store.outbox_get(oid)
    store.close()
    assert rec is not None
    env.append(thunderbird_mdn(original_message_id=rec.message_id, final_recipient="bob@example.org"))
    env.cli("run", "--once", check=True)
    assert states(env, oid) == {"bob@example.org": "displayed", "carol@example.org": "submitted"}
    assert [p.parent.name for p in env.cases_dir.glob("*/receipts/*")] == ["receipts"]
    assert not env.quarantined()


def test_receipts_that_belong_to_nothing_are_quarantined_and_move_no_record(sent: tuple[Env, str, str]) -> None:
    env, oid, envid = sent
    store = open_store(env.config, readonly=True)
    rec = store.outbox_get(oid)
    store.close()
    assert rec is not None
    env.append(
        # someone else's DSN (an ENVID that is not ours), though it quotes our Message-ID
        postfix_dsn(
            envid="0badc0ffee00.1111222233334444",
            original_message_id=rec.message_id,
            recipients=[Rcpt("bob@example.org", "failed", "5.1.1")],
            queue_id="A1",
        ),
        # our ENVID, but a recipient the document never went to
        postfix_dsn(envid=envid, recipients=[Rcpt("mallory@example.org", "delivered", "2.0.0")], queue_id="A2"),
        # an MDN from somebody who was not a recipient
        thunderbird_mdn(original_message_id=rec.message_id, final_recipient="mallory@example.org"),
        # a malformed delivery-status part
        postfix_dsn(envid=envid, delivery_status="garbage without any field\r\n", queue_id="A3"),
        # a De-Mail confirmation without the provider's integrity value
        demail_confirmation("confirmation of retrieve", private_id="not-ours"),
    )
    env.cli("run", "--once", check=True)
    assert states(env, oid) == {"bob@example.org": "submitted", "carol@example.org": "submitted"}
    reasons = quarantine_reasons(env)
    assert len(reasons) == 5
    flat = [r for rs in reasons for r in rs]
    assert flat.count("unmatched-receipt") == 1 and flat.count("receipt-names-no-recipient") == 2
    assert flat.count("demail-confirmation-unproven") == 1  # no provider signature: nobody's word
    assert any(r.startswith("malformed") for r in flat)
    assert not list(env.cases_dir.glob("*/receipts/*"))
    assert env.cli("audit", "verify").returncode == 0


def test_a_receipt_for_a_cancelled_document_is_quarantined_with_that_reason(env: Env) -> None:
    with ScriptedPeer() as peer:
        env = gateway(env.dovecot, env.root, env.user, peer.port)
        store = open_store(env.config)
        doc = document(to=("bob@example.org",))
        oid = outbox.enqueue(env.config, store, doc)
        outbox.cancel(store, oid, actor="test")
        rec = store.outbox_get(oid)
        store.close()
    assert rec is not None
    env.append(postfix_dsn(envid=rec.envid, recipients=[Rcpt("bob@example.org", "delivered", "2.0.0")]))
    env.cli("run", "--once", check=True)
    assert quarantine_reasons(env) == [["receipt-for-cancelled-document"]]


def test_contradictory_dsns_are_both_kept_and_the_later_failure_does_not_undo_the_delivery(
    sent: tuple[Env, str, str],
) -> None:
    env, oid, envid = sent
    env.append(postfix_dsn(envid=envid, recipients=[Rcpt("bob@example.org", "delivered", "2.0.0")], queue_id="B1"))
    env.cli("run", "--once", check=True)
    env.append(postfix_dsn(envid=envid, recipients=[Rcpt("bob@example.org", "failed", "5.0.0")], queue_id="B2"))
    env.cli("run", "--once", check=True)
    store = open_store(env.config, readonly=True)
    try:
        bob = next(r for r in store.delivery_get(oid) if r.recipient == "bob@example.org")
    finally:
        store.close()
    assert bob.state == "delivered"
    assert [t.outcome for t in bob.timeline if t.evidence.kind == "dsn"] == ["advanced", "contradictory"]
    assert len(list(env.cases_dir.glob("*/receipts/*"))) == 2


def test_an_oversize_receipt_is_kept_in_quarantine_and_moves_no_record(env: Env) -> None:
    with ScriptedPeer() as peer:
        env = gateway(env.dovecot, env.root, env.user, peer.port, extra="\n[limits]\nmax_message_bytes = 200000\n")
        store = open_store(env.config)
        oid = outbox.enqueue(env.config, store, document(to=("bob@example.org",)))
        assert Drain(env.config, store).run_once().sent == [oid]
        rec = store.outbox_get(oid)
        store.close()
    assert rec is not None
    dsn = postfix_dsn(envid=rec.envid, recipients=[Rcpt("bob@example.org", "delivered", "2.0.0")], returned="message")
    big = dsn.replace(b"Sehr geehrte Damen und Herren,", b"A" * 76 + (b"\r\n" + b"A" * 76) * 4000)
    assert len(big) > 200_000
    env.append(big)
    env.cli("run", "--once", check=True)
    assert quarantine_reasons(env) == [["oversize"]]
    assert states(env, oid) == {"bob@example.org": "submitted"}
    (entry,) = env.quarantined()
    assert (entry / "original.eml").read_bytes().replace(b"\r\n", b"\n") == big.replace(b"\r\n", b"\n")
