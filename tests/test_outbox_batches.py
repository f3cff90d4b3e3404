"""The drain's shared costs: one relay connection per pass, outcomes committed together, copies filed in batches."""

from __future__ import annotations

import base64
import os
import smtplib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.audit.verify import verify_state
from gateway.config import Config, load_config
from gateway.outbound import outbox
from gateway.outbound.compose import base64_lines
from gateway.outbound.drain import Drain
from gateway.outbound.groupcommit import GroupCommit
from gateway.outbound.smtp import SmtpAgent, dot_stuff
from gateway.records.open import open_store
from gateway.records.store import OutboxChange, Store
from gateway.routing.casenames import case_folder_name
from gateway.statedir import cases_dir


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


class CountingAgent(SmtpAgent):
    """The real agent, counting the connections it opens."""

    connections = 0

    def _connect(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super()._connect()


@given(st.binary(max_size=400).map(lambda b: b.replace(b"x", b".").replace(b"y", b"\n")))
def test_dot_stuffing_is_smtplibs(raw: bytes) -> None:
    assert dot_stuff(raw) == smtplib._quote_periods(raw)  # type: ignore[attr-defined]


@given(st.binary(max_size=3000))
def test_base64_lines_are_the_standard_librarys_mime_lines_with_crlf(data: bytes) -> None:
    assert base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")


def test_a_pass_sends_every_due_document_over_one_relay_connection(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    docs = [document() for _ in range(5)]
    ids = [outbox.enqueue(config, store, d) for d in docs]
    assert config.smtp is not None
    agent = CountingAgent(config.smtp)
    report = Drain(config, store, agent).run_once()
    assert sorted(report.sent) == sorted(ids) and sorted(report.filed) == sorted(ids)
    assert agent.connections == 1
    assert [r.content for r in peer.received] == [d.raw for d in docs]


def test_a_pass_in_lanes_sends_every_document_once_and_files_every_copy(
    config: Config, store: Store, peer: ScriptedPeer
) -> None:
    docs = [document(case=f"63-BV-2026-{i % 3:04d}") for i in range(23)]
    ids = [outbox.enqueue(config, store, d) for d in docs]
    report = Drain(config, store, lanes=4).run_once()
    assert sorted(report.sent) == sorted(ids) and sorted(report.filed) == sorted(ids)
    assert sorted(r.content for r in peer.received) == sorted(d.raw for d in docs)
    assert all(rec.state == "sent" and rec.sent_path for rec in store.outbox_list())
    assert not any(rec.resent for rec in store.outbox_list())
    assert verify_state(config).ok


def test_the_agent_reconnects_when_the_relay_dropped_the_kept_connection(tmp_path: Path) -> None:
    first, second = document(), document()
    with ScriptedPeer() as relay:
        config = load_config(smtp_config(tmp_path, port=relay.port))
        assert config.smtp is not None
        agent = CountingAgent(config.smtp)
        assert agent.send(first.mail_from, first.recipients, first.raw, "e1").outcome(first.recipients[0]) == "accepted"
    with ScriptedPeer(port=relay.port) as restarted:  # the kept connection died with the first relay
        att = agent.send(second.mail_from, second.recipients, second.raw, "e2")
        agent.close()
        assert att.outcome(second.recipients[0]) == "accepted" and att.error is None
        assert [r.content for r in restarted.received] == [second.raw]
    assert agent.connections == 2


def test_lines_starting_with_dots_reach_the_relay_as_written(config: Config, peer: ScriptedPeer) -> None:
    assert config.smtp is not None
    agent = SmtpAgent(config.smtp)
    dots = document(body=b".\r\n..\r\n.Zeile\r\nEnde ohne Zeilenende")
    agent.send(dots.mail_from, dots.recipients, dots.raw, "e")
    agent.close()
    # A last line without CRLF gets one, as smtplib's own DATA has always done.
    assert [r.content for r in peer.received] == [dots.raw + b"\r\n"]


def test_save_many_leaves_out_a_change_whose_state_moved_and_commits_the_others(config: Config, store: Store) -> None:
    ids = [outbox.enqueue(config, store, document()) for _ in range(3)]
    outbox.hold(store, ids[1], actor="clerk")
    recs = [store.outbox_get(i) for i in ids]
    changes = []
    for rec in recs:
        assert rec is not None
        rec.state = "cancelled"
        changes.append(OutboxChange(rec, [], ["queued"]))
    assert store.outbox_save_many(changes) == [True, False, True]
    states = [r.state for i in ids if (r := store.outbox_get(i)) is not None]
    assert states == ["cancelled", "hold", "cancelled"]


def test_a_case_folder_that_is_a_link_stops_only_its_own_sent_copy(
    config: Config, store: Store, tmp_path: Path
) -> None:
    cases = ["63-BV-2026-0001", "63-BV-2026-0002", "63-BV-2026-0003"]
    docs = [document(case=c) for c in cases]
    ids = [outbox.enqueue(config, store, d) for d in docs]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, cases_dir(config) / case_folder_name(cases[1]))
    report = Drain(config, store).run_once()
    assert sorted(report.sent) == sorted(ids)
    assert sorted(report.filed) == sorted([ids[0], ids[2]]) and report.unfiled == [ids[1]]
    assert list(elsewhere.iterdir()) == []
    for oid, doc in ((ids[0], docs[0]), (ids[2], docs[2])):
        rec = store.outbox_get(oid)
        assert rec is not None and rec.sent_path is not None
        assert (Path(rec.sent_path) / "message.eml").read_bytes() == doc.raw
    os.unlink(cases_dir(config) / case_folder_name(cases[1]))
    assert Drain(config, store).run_once().filed == [ids[1]]
    assert verify_state(config).ok


def test_lanes_whose_commits_meet_share_one_transaction_and_each_learns_its_own_outcome(
    config: Config, store: Store
) -> None:
    ids = [outbox.enqueue(config, store, document()) for _ in range(4)]
    outbox.hold(store, ids[2], actor="clerk")  # this lane's change finds the state moved
    calls: list[list[str]] = []
    first_inside, release = threading.Event(), threading.Event()

    def save_many(changes: Sequence[OutboxChange]) -> list[bool]:
        calls.append([c.rec.id for c in changes])
        if len(calls) == 1:
            first_inside.set()
            release.wait(60)
        return store.outbox_save_many(changes)

    group = GroupCommit(save_many)
    results: dict[str, list[bool]] = {}

    def lane(oid: str) -> None:
        rec = store.outbox_get(oid)
        assert rec is not None
        rec.state = "cancelled"
        results[oid] = group.save_many([OutboxChange(rec, [], ["queued"])])

    threads = [threading.Thread(target=lane, args=(oid,)) for oid in ids]
    threads[0].start()
    assert first_inside.wait(60)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 60  # bounds a failure only: the three wait behind the first commit
    while len(group._waiting) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(60)
    assert calls[0] == [ids[0]] and sorted(calls[1]) == sorted(ids[1:]) and len(calls) == 2
    assert results == {ids[0]: [True], ids[1]: [True], ids[2]: [False], ids[3]: [True]}
    states = [r.state for i in ids if (r := store.outbox_get(i)) is not None]
    assert states == ["cancelled", "cancelled", "hold", "cancelled"]


def test_a_failed_group_commit_fails_every_lane_whose_changes_were_in_it(config: Config, store: Store) -> None:
    first_inside, release = threading.Event(), threading.Event()
    calls = 0

    def save_many(changes: Sequence[OutboxChange]) -> list[bool]:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_inside.set()
            release.wait(60)
            return [True] * len(changes)
        raise OSError(28, "No space left on device")

    group = GroupCommit(save_many)
    rec = store.outbox_get(outbox.enqueue(config, store, document()))
    assert rec is not None
    errors: list[BaseException | None] = []

    def lane() -> None:
        try:
            group.save_many([OutboxChange(rec, [], ["queued"])])
            errors.append(None)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lane) for _ in range(3)]
    threads[0].start()
    assert first_inside.wait(60)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 60
    while len(group._waiting) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(60)
    assert calls == 2
    assert errors[0] is None and all(isinstance(e, OSError) for e in errors[1:]) and len(errors) == 3


def test_the_lanes_last_sent_copies_are_filed_in_one_batch_for_the_pass(
    config: Config, store: Store, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.outbound.drain as drain_module

    batches: list[int] = []
    real = drain_module.file_sent_copies

    def counting(area, copies, **kw):  # type: ignore[no-untyped-def]
        batches.append(len(copies))
        return real(area, copies, **kw)

    monkeypatch.setattr(drain_module, "file_sent_copies", counting)
    ids = [outbox.enqueue(config, store, document(case=f"63-BV-2026-{i % 3:04d}")) for i in range(8)]
    report = Drain(config, store, lanes=4).run_once()  # fewer documents than a lane's batch
    assert sorted(report.filed) == sorted(ids)
    assert batches == [8]
    assert verify_state(config).ok
