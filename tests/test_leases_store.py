"""Mailbox leases and fencing: the store contract on every backend (``records.leases``).

Two store instances stand for two nodes on one database. Expiry is awaited by polling the
database's own view of the lease (``leases()``) with a generous deadline, never by sleeping
a guessed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.stores import BACKENDS, Backend

from gateway.records.chain import AuditEvent, verify_chain
from gateway.records.leases import Lease
from gateway.records.messages import MessageRecord
from gateway.records.store import LeaseLost, Store

SHORT = 0.3  # seconds: a lease the tests let expire
LONG = 600.0  # seconds: a lease that does not expire during a test


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


def rec(msg_id: str, uid: int) -> MessageRecord:
    return MessageRecord(
        id=msg_id, mailbox="amt", folder="INBOX", uidvalidity=7, uid=uid, sha256=f"{uid:064x}", message_id=None,
        size=10, internaldate=None, fetched_at=None, state="processing", target_state="stored",
        path=f"/cases/{msg_id}",
    )  # fmt: skip


def row(store: Store, mailbox: str = "amt") -> Lease:
    return next(lease for lease in store.leases() if lease.mailbox == mailbox)


def until(what: Callable[[], bool], deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not what():
        assert time.monotonic() < end, "condition not reached within the deadline"
        time.sleep(0.05)


def expire(store: Store, mailbox: str = "amt") -> None:
    until(lambda: row(store, mailbox).expired)


def events(store: Store) -> list[str]:
    return [e.event for e in store.entries()]


def test_a_free_mailbox_is_granted_with_epoch_one_and_an_event_naming_the_node(backend: Backend) -> None:
    store = backend.open()
    got = store.lease_acquire("amt", "node-a", LONG)
    assert got.granted and got.before is None
    assert got.lease is not None and (got.lease.holder, got.lease.epoch, got.lease.expired) == ("node-a", 1, False)
    assert store.fence == got.lease.fence
    last = list(store.entries())[-1]
    assert last.event == "lease-acquired"
    assert last.details["node"] == "node-a" and last.details["mailbox"] == "amt" and last.details["epoch"] == 1


def test_a_lease_held_by_another_node_is_refused_and_nothing_is_written(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.lease_acquire("amt", "node-a", LONG)
    before = events(a)
    got = b.lease_acquire("amt", "node-b", LONG)
    assert not got.granted and got.before is not None and got.before.holder == "node-a"
    assert b.fence is None
    assert events(a) == before
    assert row(a).epoch == 1 and row(a).holder == "node-a"


def test_renewal_moves_the_expiry_by_the_databases_clock(backend: Backend) -> None:
    store = backend.open()
    got = store.lease_acquire("amt", "node-a", 60.0)
    assert got.lease is not None
    renewed = store.lease_renew(got.lease, LONG)
    assert renewed.epoch == 1 and renewed.holder == "node-a"
    assert renewed.expires_at > got.lease.expires_at
    assert row(store).expires_at == renewed.expires_at


def test_an_expired_lease_is_taken_over_with_a_new_epoch_and_the_old_holder_cannot_renew(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    old = a.lease_acquire("amt", "node-a", SHORT).lease
    assert old is not None
    expire(b)
    got = b.lease_acquire("amt", "node-b", LONG)
    assert got.taken_over and got.lease is not None and got.lease.epoch == 2
    last = list(b.entries())[-1]
    assert last.event == "lease-taken-over"
    assert (last.details["node"], last.details["from_node"], last.details["from_epoch"]) == ("node-b", "node-a", 1)
    with pytest.raises(LeaseLost) as lost:
        a.lease_renew(old, LONG)
    assert lost.value.now is not None and lost.value.now.holder == "node-b"
    assert "node-b" in str(lost.value)


def test_a_commit_with_a_stale_epoch_is_refused_and_writes_nothing(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.lease_acquire("amt", "node-a", SHORT)
    a.plan([rec("m1", 1)], [AuditEvent("fetched", message="m1")])
    expire(b)
    b.lease_acquire("amt", "node-b", LONG)
    head, count = b.head(), b.count()
    done = rec("m1", 1)
    done.state = "stored"
    refused: list[Callable[[], None]] = [
        lambda: a.plan([rec("m2", 2)], [AuditEvent("fetched", message="m2")]),
        lambda: a.finish([done], [AuditEvent("stored", message="m1")]),
        lambda: a.abandon([rec("m1", 1)], [AuditEvent("abandoned", message="m1")]),
        lambda: a.mark_server_done(["m1"], [AuditEvent("moved", message="m1")]),
        lambda: a.set_status("amt", last_error="late", state="error"),
        lambda: a.record_events([AuditEvent("late")]),
    ]
    for attempt in refused:
        with pytest.raises(LeaseLost):
            attempt()
    assert b.head() == head and b.count() == count
    assert b.get("m2") is None
    m1 = b.get("m1")
    assert m1 is not None and m1.state == "processing" and not m1.server_done
    assert not any(s.mailbox == "amt" for s in b.statuses())
    # The new holder's own commits go through.
    b.plan([rec("m3", 3)], [AuditEvent("fetched", message="m3")])
    assert b.get("m3") is not None
    assert verify_chain(b.entries())[2] == []


def test_a_lapsed_lease_nobody_took_still_fences_for_its_holder(backend: Backend) -> None:
    """Expiry alone refuses nothing: only another holder or a newer epoch does (nobody else wrote)."""
    store = backend.open()
    store.lease_acquire("amt", "node-a", SHORT)
    expire(store)
    store.plan([rec("m1", 1)], [AuditEvent("fetched", message="m1")])
    assert store.get("m1") is not None


def test_a_node_that_comes_back_under_its_name_gets_a_new_epoch_that_fences_its_old_self(backend: Backend) -> None:
    old, new = backend.open(), backend.open()
    first = old.lease_acquire("amt", "node-a", LONG).lease
    again = new.lease_acquire("amt", "node-a", LONG)
    assert first is not None and again.lease is not None and again.lease.epoch == first.epoch + 1
    assert not again.taken_over
    with pytest.raises(LeaseLost):
        old.record_events([AuditEvent("late")])
    new.record_events([AuditEvent("on-time")])


def test_a_released_lease_is_free_at_once_and_its_successor_continues_the_epoch(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    lease = a.lease_acquire("amt", "node-a", LONG).lease
    assert lease is not None
    assert a.lease_release(lease)
    assert a.fence is None
    assert row(b).released and row(b).expired
    got = b.lease_acquire("amt", "node-b", LONG)
    assert got.lease is not None and got.lease.epoch == 2 and not got.taken_over
    assert [e.event for e in list(b.entries())[-2:]] == ["lease-released", "lease-acquired"]
    assert not a.lease_release(lease)  # no longer its own: nothing happens


def test_leases_of_several_mailboxes_are_independent(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    assert a.lease_acquire("amt", "node-a", LONG).granted
    assert b.lease_acquire("bauamt", "node-b", LONG).granted
    assert [(x.mailbox, x.holder, x.epoch) for x in a.leases()] == [("amt", "node-a", 1), ("bauamt", "node-b", 1)]


# -- configuration ------------------------------------------------------------------------------
def _storage(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    path = tmp_path / "poststelle.toml"
    path.write_text(
        f'[storage]\nstate_dir = "{tmp_path}/state"\n{extra}\n\n'
        f'[[mailbox]]\nname = "amt"\nhost = "imap.example.org"\nusername = "amt"\npassword_file = "{tmp_path}/pw"\n'
    )
    return path


def test_the_node_defaults_to_the_host_name_and_the_lease_time_to_thirty_seconds(tmp_path: Path) -> None:
    import socket

    from gateway.config import load_config

    storage = load_config(_storage(tmp_path, "")).storage
    assert storage.node == socket.gethostname() and storage.lease_ttl == 30.0
    storage = load_config(_storage(tmp_path, 'node = "gw-1.example"\nlease_ttl = "2m"')).storage
    assert storage.node == "gw-1.example" and storage.lease_ttl == 120.0


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('lease_ttl = "0.5s"', "storage.lease_ttl", "at least 1s"),
        ('lease_ttl = "soon"', "storage.lease_ttl", "duration"),
        ('node = "gw 1"', "storage.node", "letters, digits"),
        ('node = ""', "storage.node", "letters, digits"),
    ],
)
def test_a_bad_node_name_or_lease_time_stops_start_up_naming_the_key(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(_storage(tmp_path, extra))
    assert key in str(info.value) and words in str(info.value)
