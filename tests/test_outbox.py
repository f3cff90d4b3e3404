"""The outbox against a scripted SMTP peer: durable enqueue, retries on an injected clock, bounces, crashes.

The peer is aiosmtpd (no DSN); the real relay, Postfix, is in test_outbox_postfix.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support.outbox import Clock, document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.audit.manifests import verify_entry
from gateway.audit.verify import verify_state
from gateway.config import Config, load_config
from gateway.demo.postfix import free_port
from gateway.errors import PermanentError
from gateway.outbound import outbox, scheduler
from gateway.outbound.drain import RESENT_AFTER_CRASH, Drain, DrainHooks
from gateway.outbound.smtp import Attempt
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord
from gateway.records.store import EntryFilter, Store, StoreError


class SimulatedCrash(BaseException):
    """Ends the pass the way a power cut would: nothing after it runs."""


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


@pytest.fixture
def config(tmp_path: Path, peer: ScriptedPeer) -> Config:
    return load_config(smtp_config(tmp_path, port=peer.port))


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = open_store(config)
    yield s
    s.close()


def events(store: Store, outbox_id: str) -> list[str]:
    """The outbox's own events of a document (its delivery records' steps are tested in test_deliveries_*)."""
    return [e.event for e in store.select(EntryFilter(document=outbox_id)) if e.event != "delivery-state"]


def test_enqueue_makes_the_exact_bytes_durable_and_commits_a_queued_event_before_returning(
    config: Config, store: Store
) -> None:
    doc = document()
    oid = outbox.enqueue(config, store, doc)
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "queued" and rec.message_id == doc.message_id
    assert Path(rec.path).read_bytes() == doc.raw and oid in rec.path
    assert Path(rec.path).stat().st_mode & 0o077 == 0
    assert [r.address for r in rec.recipients] == list(doc.recipients)
    assert events(store, oid) == ["queued"]
    assert not list(Path(rec.path).parent.glob(".*tmp*"))


def test_enqueue_whose_commit_fails_leaves_no_spool_file_and_no_row(
    config: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(rec: OutboxRecord, events: object, **kw: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "outbox_enqueue", fail)
    with pytest.raises(StoreError):
        outbox.enqueue(config, store, document())
    assert list((config.storage.state_dir / "outbox").iterdir()) == []
    assert store.outbox_list() == []


@pytest.mark.parametrize(
    "change",
    [
        {"to": ("a@b.test\r\nRCPT TO:<evil@x.test>",)},
        {"to": ()},
        {"case": "\x00"},
        {"to": ("a@b.test", "a@b.test")},
        {"to": ("jürgen@beispiel.test",)},
    ],
)
def test_a_bad_document_is_refused_and_nothing_is_queued(config: Config, store: Store, change: dict) -> None:
    with pytest.raises(PermanentError):
        outbox.enqueue(config, store, document(**change))
    assert store.outbox_list() == []


def test_a_document_is_sent_once_filed_in_the_case_folder_and_verified_by_its_manifest(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    doc = document(to=("a@remote.test", "b@remote.test"))
    oid = outbox.enqueue(config, store, doc)
    report = Drain(config, store).run_once()
    assert report.sent == [oid] and report.filed == [oid]
    assert len(peer.received) == 1 and peer.received[0].content == doc.raw
    assert peer.received[0].rcpt_tos == ["a@remote.test", "b@remote.test"]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "sent" and rec.sent_path is not None
    assert {r.state for r in rec.recipients} == {"sent"} and rec.recipients[0].queue_id == "PEER0001"
    entry = Path(rec.sent_path)
    assert entry.parent.name == "sent" and entry.parent.parent.name == rec.case_folder
    assert (entry / "message.eml").read_bytes() == doc.raw
    assert verify_entry(entry) == []
    manifest = json.loads((entry / "manifest.json").read_bytes())
    assert manifest["message_id"] == doc.message_id and manifest["recipients"][1]["reply"].startswith("250")
    assert events(store, oid) == ["queued", "submitted", "filed-sent"]
    assert Drain(config, store).run_once().sent == []  # nothing twice
    report = verify_state(config)
    assert report.ok and report.sent_entries == 1, report.breaks
    (entry / "message.eml").chmod(0o600)
    (entry / "message.eml").write_bytes(doc.raw.replace(b"Bescheid", b"Bescheld"))
    assert [b.kind for b in verify_state(config).breaks] == ["file-altered"]


def test_dsn_parameters_are_not_sent_to_a_relay_that_does_not_advertise_dsn(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    oid = outbox.enqueue(config, store, document())
    Drain(config, store).run_once()
    got = peer.received[0]
    assert not any(o.startswith(("RET=", "ENVID=")) for o in got.mail_options) and got.rcpt_options == []
    submitted = next(e for e in store.select(EntryFilter(document=oid)) if e.event == "submitted")
    assert submitted.details["dsn_requested"] is False


def test_a_peer_answering_450_then_250_defers_with_backoff_and_sends_when_due(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("busy@remote.test", "450 4.2.1 mailbox busy", "450 4.2.1 still busy")
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    oid = outbox.enqueue(config, store, document(to=("busy@remote.test",)))
    assert drain.run_once().deferred == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "deferred" and rec.attempts == 1
    assert rec.recipients[0].reply == "450 4.2.1 mailbox busy"
    clock.advance(299)
    assert drain.run_once().deferred == []  # not due yet: nothing attempted
    clock.advance(1)
    assert drain.run_once().deferred == [oid]  # second 450: the wait doubles
    rec = store.outbox_get(oid)
    assert rec is not None and rec.attempts == 2
    clock.advance(599)
    assert drain.run_once().sent == []
    clock.advance(1)
    assert drain.run_once().sent == [oid]
    assert len(peer.received) == 1
    assert events(store, oid) == ["queued", "deferred", "deferred", "submitted", "filed-sent"]


def test_a_550_bounces_the_recipient_with_the_peers_reply_and_the_others_are_sent(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("gone@remote.test", "550 5.1.1 no such user")
    oid = outbox.enqueue(config, store, document(to=("gone@remote.test", "ok@remote.test")))
    assert Drain(config, store).run_once().bounced == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "bounced"
    gone, ok = rec.recipients
    assert (gone.state, gone.reply) == ("bounced", "550 5.1.1 no such user")
    assert ok.state == "sent" and peer.received[0].rcpt_tos == ["ok@remote.test"]
    bounced = next(e for e in store.select(EntryFilter(document=oid)) if e.event == "bounced")
    assert bounced.details["replies"] == {"gone@remote.test": "550 5.1.1 no such user"}
    assert rec.sent_path is not None  # what went out to ok@ is filed


def test_relay_down_loses_nothing_and_everything_is_sent_when_it_returns(tmp_path: Path) -> None:
    port = free_port()
    config = load_config(smtp_config(tmp_path, port=port))
    store = open_store(config)
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    ids = [outbox.enqueue(config, store, document()) for _ in range(3)]
    assert sorted(drain.run_once().deferred) == sorted(ids)
    with ScriptedPeer(port=port) as peer:
        clock.advance(300)
        assert sorted(drain.run_once().sent) == sorted(ids)
        assert len(peer.received) == 3
    store.close()


def test_a_crash_between_the_relays_250_and_the_commit_resends_with_the_same_message_id(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    def crash(rec: OutboxRecord, att: Attempt) -> None:
        raise SimulatedCrash

    doc = document()
    oid = outbox.enqueue(config, store, doc)
    with pytest.raises(SimulatedCrash):
        Drain(config, store, hooks=DrainHooks(after_accept=crash)).run_once()
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "active"
    report = Drain(config, store).run_once()  # the restart
    assert report.resent == [oid] and report.sent == [oid]
    assert [r.content for r in peer.received] == [doc.raw, doc.raw]  # same bytes, same Message-ID
    rec = store.outbox_get(oid)
    assert rec is not None and rec.resent and rec.state == "sent"
    trail = [e for e in store.select(EntryFilter(document=oid)) if e.event != "delivery-state"]
    assert [e.event for e in trail] == ["queued", "resent", "submitted", "filed-sent"]
    assert trail[1].details["reason"] == RESENT_AFTER_CRASH and trail[2].details["resent_after_crash"] is True


def test_a_crash_after_the_sent_commit_files_the_copy_on_the_next_pass_without_resending(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    def crash(rec: OutboxRecord) -> None:
        raise SimulatedCrash

    oid = outbox.enqueue(config, store, document())
    with pytest.raises(SimulatedCrash):
        Drain(config, store, hooks=DrainHooks(after_sent_commit=crash)).run_once()
    report = Drain(config, store).run_once()
    assert report.filed == [oid] and report.resent == [] and len(peer.received) == 1


def test_a_crash_before_the_sent_copy_is_published_leaves_nothing_staged_after_the_next_pass(
    config: Config, store: Store, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill between staging the sent copy and its rename: the retry, a moment later, cleans up."""
    import gateway.filing.sent as sent_copy
    from gateway.statedir import staging_dir

    def crash(*args: Any, **kw: Any) -> None:
        raise SimulatedCrash

    clock = Clock()
    oid = outbox.enqueue(config, store, document())
    with monkeypatch.context() as m:
        m.setattr(sent_copy, "rename_noreplace", crash)
        with pytest.raises(SimulatedCrash):
            Drain(config, store, clock=clock).run_once()
    staging = staging_dir(config, "cases")
    assert [f"_{oid}." in p.name for p in staging.iterdir()] == [True]
    clock.advance(5)  # the next pass stages under another name (each attempt its own)
    report = Drain(config, store, clock=clock).run_once()
    assert report.filed == [oid] and report.resent == [] and len(peer.received) == 1
    assert list(staging.iterdir()) == []
    assert verify_state(config).ok


def test_a_document_older_than_max_lifetime_bounces_without_another_attempt(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("busy@remote.test", *["450 4.2.1 busy"] * 100)
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    oid = outbox.enqueue(config, store, document(to=("busy@remote.test",)))
    drain.run_once()
    clock.advance(5 * 86400 + 1)
    assert drain.run_once().bounced == [oid]
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "bounced" and "max_lifetime" in (rec.recipients[0].reply or "")


def test_hold_release_retry_and_cancel_are_recorded_with_the_person_and_respect_states(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    oid = outbox.enqueue(config, store, document())
    outbox.hold(store, oid, actor="cli:clerk")
    assert Drain(config, store).run_once().sent == []  # held: not sent
    with pytest.raises(outbox.OutboxError):
        outbox.hold(store, oid, actor="cli:clerk")
    outbox.release(store, oid, actor="cli:clerk")
    other = outbox.enqueue(config, store, document())
    outbox.cancel(store, other, actor="cli:boss", note="wrong recipient")
    assert Drain(config, store).run_once().sent == [oid]
    with pytest.raises(outbox.OutboxError):
        outbox.cancel(store, oid, actor="cli:boss")
    trail = list(store.select(EntryFilter(document=other)))
    assert [(e.event, e.actor) for e in trail][-1] == ("cancelled", "cli:boss")
    assert trail[-1].details["note"] == "wrong recipient"
    assert [e.actor for e in store.select(EntryFilter(document=oid, events=("held", "released")))] == ["cli:clerk"] * 2
    assert len(peer.received) == 1


def test_backoff_doubles_from_the_minimum_and_stops_at_the_maximum() -> None:
    assert [scheduler.backoff(n, 300, 3600) for n in range(1, 7)] == [300, 600, 1200, 2400, 3600, 3600]
    assert scheduler.backoff(10_000, 300, 3600) == 3600


def test_kill_9_between_the_relays_250_and_the_commit_resends_only_that_document_marked(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    docs = [document() for _ in range(4)]
    ids = [outbox.enqueue(config, store, d) for d in docs]
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "support" / "outbox_crash.py"), str(config.path), "3"],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    states = {oid: rec.state for oid in ids if (rec := store.outbox_get(oid)) is not None}
    assert list(states.values()) == ["sent", "sent", "active", "queued"]
    report = Drain(config, store).run_once()
    assert report.resent == [ids[2]] and sorted(report.sent) == sorted(ids[2:])
    got = [r.content for r in peer.received]
    assert got == [docs[0].raw, docs[1].raw, docs[2].raw, docs[2].raw, docs[3].raw]
    for oid in ids:
        rec = store.outbox_get(oid)
        assert rec is not None and rec.state == "sent" and rec.sent_path is not None
        assert rec.resent == (oid == ids[2])
    resent = list(store.select(EntryFilter(events=("resent",))))
    assert [(e.document, e.details["reason"]) for e in resent] == [(ids[2], RESENT_AFTER_CRASH)]
    assert verify_state(config).ok


def test_a_recipient_deferred_while_another_accepts_is_retried_alone(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    peer.script("busy@remote.test", "451 4.3.0 try again")
    clock = Clock()
    drain = Drain(config, store, clock=clock)
    oid = outbox.enqueue(config, store, document(to=("ok@remote.test", "busy@remote.test")))
    assert drain.run_once().deferred == [oid]
    clock.advance(300)
    assert drain.run_once().sent == [oid]
    assert [r.rcpt_tos for r in peer.received] == [["ok@remote.test"], ["busy@remote.test"]]
    rec = store.outbox_get(oid)
    assert rec is not None and [r.queue_id for r in rec.recipients] == ["PEER0001", "PEER0002"]


def test_a_document_whose_message_id_header_differs_from_the_envelope_is_refused(config: Config, store: Store) -> None:
    doc = document()
    other = type(doc)(**{**doc.__dict__, "message_id": "other@rathaus.test"})
    with pytest.raises(outbox.OutboxError, match="Message-ID"):
        outbox.enqueue(config, store, other)


def test_a_spool_file_changed_after_queueing_is_held_not_sent(config: Config, store: Store, peer: ScriptedPeer) -> None:
    oid = outbox.enqueue(config, store, document())
    rec = store.outbox_get(oid)
    assert rec is not None
    Path(rec.path).write_bytes(b"Subject: forged\r\n\r\nnot what was queued\r\n")
    assert Drain(config, store).run_once().held == [oid]
    assert peer.received == [] and events(store, oid) == ["queued", "held"]


def test_check_reports_the_relay_and_warns_that_it_offers_no_dsn(config: Config) -> None:
    from gateway.service.health import smtp_check

    result = smtp_check(config)
    assert result.ok and result.warning and "no DSN" in result.detail


def test_a_hold_that_lands_while_the_drain_picks_the_document_wins_and_nothing_is_sent(
    config: Config, store: Store, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    oid = outbox.enqueue(config, store, document())
    person = open_store(config, actor="cli:clerk")
    listing = store.outbox_list

    def list_then_hold(states: Sequence[str] = (), **kw: Any) -> list[OutboxRecord]:
        found = listing(states, **kw)  # type: ignore[arg-type]
        if "queued" in states and found:
            outbox.hold(person, oid, actor="cli:clerk")  # between the drain's read and its claim
        return found

    monkeypatch.setattr(store, "outbox_list", list_then_hold)
    assert Drain(config, store).run_once().sent == []
    person.close()
    rec = store.outbox_get(oid)
    assert rec is not None and rec.state == "hold" and rec.attempts == 0 and peer.received == []


def test_a_document_another_running_process_is_sending_is_not_resent_by_a_second_pass(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    from gateway.outbound.claim import claimant_alive, this_process

    oid = outbox.enqueue(config, store, document())
    rec = store.outbox_get(oid)
    assert rec is not None
    parent = f"{this_process().split(':')[0]}:{os.getppid()}:{_start_time_of(os.getppid())}"
    assert claimant_alive(parent)  # the test runner's parent: alive, and not this process
    rec.state, rec.claimed_by = "active", parent
    store.outbox_save(rec, [], expect=["queued"])
    assert Drain(config, store).run_once().resent == [] and peer.received == []
    rec.claimed_by = f"{this_process().split(':')[0]}:999999999:1"  # a process that is gone
    store.outbox_save(rec, [], expect=["active"])
    assert Drain(config, store).run_once().resent == [oid] and len(peer.received) == 1


def _start_time_of(pid: int) -> str:
    from gateway.outbound.claim import _start_time

    found = _start_time(pid)
    assert found is not None
    return found


def test_a_case_folder_that_is_a_link_blocks_only_its_own_sent_copy(
    config: Config, store: Store, peer: ScriptedPeer, tmp_path: Path
) -> None:
    from gateway.routing.casenames import case_folder_name

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config.storage.cases_dir.mkdir(parents=True, exist_ok=True)
    (config.storage.cases_dir / case_folder_name("99-XX-2026-0001")).symlink_to(elsewhere)
    bad = outbox.enqueue(config, store, document(case="99-XX-2026-0001"))
    good = outbox.enqueue(config, store, document())
    report = Drain(config, store).run_once()
    assert sorted(report.sent) == sorted([bad, good]) and report.unfiled == [bad] and report.filed == [good]
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    assert Drain(config, store).run_once().unfiled == [bad]  # tried again, still refused
    assert any(f"outbox {bad} was sent" in w for w in verify_state(config).warnings)


def test_the_audit_report_says_what_was_sent_to_whom_and_what_the_relay_answered(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    from gateway.audit.report import describe
    from gateway.ui import Locale

    peer.script("gone@remote.test", "550 5.1.1 no such user")
    oid = outbox.enqueue(config, store, document(to=("gone@remote.test", "ok@remote.test")))
    Drain(config, store).run_once()
    trail = [e for e in store.select(EntryFilter(case_names=("63-BV-2026-0412",))) if e.event != "delivery-state"]
    english = [describe(e) for e in trail]
    assert english[0].startswith("Queued for sending to gone@remote.test, ok@remote.test")
    assert "ok@remote.test: 250 2.0.0 Ok: queued as PEER0001" in english[1]
    assert english[2] == "Not delivered to gone@remote.test: gone@remote.test: 550 5.1.1 no such user"
    german = [describe(e, Locale(language="de")) for e in trail]
    assert german[2].startswith("Nicht zugestellt an gone@remote.test") and all(e.document == oid for e in trail)
