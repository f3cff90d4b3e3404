"""The outbox's doorbell: a queued document reaches the relay without waiting for the daemon's poll."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.audit.verify import verify_state
from gateway.config import load_config
from gateway.outbound import outbox
from gateway.outbound.doorbell import Doorbell, ring
from gateway.records.open import open_store
from gateway.service import outbox_worker
from gateway.statedir import outbox_doorbell


def test_ringing_with_no_daemon_listening_is_harmless(tmp_path: Path) -> None:
    assert ring(tmp_path / "never-made.wake") is False
    os.mkfifo(tmp_path / "nobody.wake")
    assert ring(tmp_path / "nobody.wake") is False  # a FIFO without a reader: dropped, no block


def test_a_ring_wakes_the_listener_and_is_consumed(tmp_path: Path) -> None:
    bell = Doorbell(tmp_path / "outbox.wake")
    stop = threading.Event()
    try:
        for _ in range(3):
            assert ring(tmp_path / "outbox.wake") is True
        assert bell.wait(3600, stop) is True  # three rings answered by one look
        stop.set()
        assert bell.wait(3600, stop) is False  # consumed; and a stop ends the wait
    finally:
        bell.close()


def test_a_full_pipe_of_unanswered_rings_never_blocks_the_queueing_side(tmp_path: Path) -> None:
    bell = Doorbell(tmp_path / "outbox.wake")
    try:
        for _ in range(70_000):  # more than a pipe holds
            assert ring(tmp_path / "outbox.wake") is True
    finally:
        bell.close()


def test_something_else_at_the_doorbell_path_falls_back_to_polling(tmp_path: Path) -> None:
    (tmp_path / "outbox.wake").write_text("not a fifo")
    bell = Doorbell(tmp_path / "outbox.wake")
    stop = threading.Event()
    stop.set()
    assert bell.fd is None
    assert bell.wait(3600, stop) is False
    assert (tmp_path / "outbox.wake").read_text() == "not a fifo"


def test_the_daemon_sends_a_document_queued_after_its_first_pass_without_waiting_for_the_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_worker, "POLL", 3600.0)  # only the doorbell can start the second pass
    with ScriptedPeer() as peer:
        config = load_config(smtp_config(tmp_path, port=peer.port))
        stop = threading.Event()
        first_pass = threading.Event()
        thread = threading.Thread(
            target=outbox_worker.run_outbox,
            args=(config, stop),
            kwargs={"once": False, "on_pass": lambda _: first_pass.set(), "on_failure": lambda _: None},
        )
        thread.start()
        try:
            assert first_pass.wait(120), "the outbox thread made no first pass"
            store = open_store(config)
            doc = document()
            outbox.enqueue(config, store, doc)
            store.close()
            assert peer.wait_for(1, timeout=120), "the queued document was not sent"
            assert peer.received[0].content == doc.raw
            assert stat.S_ISFIFO(outbox_doorbell(config).lstat().st_mode)
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()


def test_passes_that_follow_each_other_share_the_relay_connection_which_is_closed_once_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_worker, "POLL", 3600.0)
    monkeypatch.setattr(outbox_worker, "KEEP_CONNECTIONS", 3600.0)  # idle only when the test says so
    with ScriptedPeer(pipelining=True) as peer:
        config = load_config(smtp_config(tmp_path, port=peer.port))
        stop = threading.Event()
        passes: list[object] = []
        store = open_store(config)  # first: a fresh state's first opening makes its audit key
        thread = threading.Thread(
            target=outbox_worker.run_outbox,
            args=(config, stop),
            kwargs={"once": False, "on_pass": passes.append, "on_failure": lambda _: None},
        )
        thread.start()
        try:
            docs = [document() for _ in range(3)]
            ids = []
            for i, doc in enumerate(docs):  # one pass each: the next is queued after the last arrived
                ids.append(outbox.enqueue(config, store, doc))
                assert peer.wait_for(i + 1, timeout=120), "the queued document was not sent"
            store.close()
            assert [r.content for r in peer.received] == [d.raw for d in docs]
            assert peer.handler.sessions == 1 and peer.handler.quits == 0
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()
        with peer.handler.arrived:  # the thread's end closes what it kept
            assert peer.handler.arrived.wait_for(lambda: peer.handler.quits == 1, 60)
        store = open_store(config, readonly=True)  # and files the sent copies it had left for later
        try:
            assert all(store.outbox_get(oid).sent_path for oid in ids)  # type: ignore[union-attr]
        finally:
            store.close()


def test_a_relay_connection_left_idle_is_closed_before_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_worker, "POLL", 3600.0)
    monkeypatch.setattr(outbox_worker, "KEEP_CONNECTIONS", 0.2)
    with ScriptedPeer() as peer:
        config = load_config(smtp_config(tmp_path, port=peer.port))
        stop = threading.Event()
        store = open_store(config)  # first: a fresh state's first opening makes its audit key
        thread = threading.Thread(
            target=outbox_worker.run_outbox,
            args=(config, stop),
            kwargs={"once": False, "on_pass": lambda _: None, "on_failure": lambda _: None},
        )
        thread.start()
        try:
            outbox.enqueue(config, store, document())
            store.close()
            assert peer.wait_for(1, timeout=120), "the queued document was not sent"
            with peer.handler.arrived:
                assert peer.handler.arrived.wait_for(lambda: peer.handler.quits == 1, 60), "kept open while idle"
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()


def test_passes_that_follow_each_other_leave_the_sent_copies_to_a_whole_batch_or_to_idleness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.outbound.drain as drain_module

    monkeypatch.setattr(outbox_worker, "POLL", 3600.0)
    monkeypatch.setattr(outbox_worker, "KEEP_CONNECTIONS", 3600.0)  # never idle until the test says so
    monkeypatch.setattr(drain_module, "FILE_BATCH", 3)
    with ScriptedPeer() as peer:
        config = load_config(smtp_config(tmp_path, port=peer.port))
        stop = threading.Event()
        first_pass = threading.Event()  # the first pass files whatever it finds at once: let it find nothing
        thread = threading.Thread(
            target=outbox_worker.run_outbox,
            args=(config, stop),
            kwargs={"once": False, "on_pass": lambda _: first_pass.set(), "on_failure": lambda _: None},
        )
        store = open_store(config)  # first: a fresh state's first opening makes its audit key
        thread.start()

        def copies(ids: list[str]) -> list[bool]:
            store = open_store(config, readonly=True)
            try:
                return [rec is not None and rec.sent_path is not None for rec in map(store.outbox_get, ids)]
            finally:
                store.close()

        def wait_until_filed(ids: list[str]) -> None:
            deadline = time.monotonic() + 120  # bounds a failure only
            while not all(copies(ids)):
                assert time.monotonic() < deadline, "the sent copies were not filed"
                time.sleep(0.05)

        try:
            assert first_pass.wait(120), "the outbox worker made no first pass"
            ids = []
            for i in range(5):
                ids.append(outbox.enqueue(config, store, document()))
                assert peer.wait_for(i + 1, timeout=120), "the queued document was not sent"
                if i == 1:
                    assert copies(ids) == [False, False]  # two sent, fewer than a batch: not filed yet
                if i == 2:
                    wait_until_filed(ids)  # the third makes a whole batch
            assert copies(ids)[3:] == [False, False]
            monkeypatch.setattr(outbox_worker, "KEEP_CONNECTIONS", 0.2)  # from the next wait on: idle
            store.close()
            assert ring(outbox_doorbell(config))  # a pass with nothing due, then the idle wait
            wait_until_filed(ids)
            assert verify_state(config).ok
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()
