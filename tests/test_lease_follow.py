"""A follower's attempt to take a lease another node holds is a read: it does not queue for the chain head.

Every node follows every mailbox it does not hold and asks again every third of the lease
time. Were each attempt a unit of work, the followers of many mailboxes would queue for the
chain head's lock with every holder's commit, and the take-over of a dead node's mailboxes
would wait behind them (seen as take-overs many seconds past the lease's expiry with three
nodes on one PostgreSQL). Runs against every store backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stores import BACKENDS, Backend

LONG = 600.0


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


def test_a_lease_held_by_another_node_is_refused_without_waiting_for_the_chain_head(backend: Backend) -> None:
    holder, follower, writer = backend.open(), backend.open(), backend.open()
    assert holder.lease_acquire("post", "gw-1", LONG).granted
    entries = len(list(holder.entries()))
    locked, release = threading.Event(), threading.Event()

    def hold_the_head() -> None:
        with writer.unit_of_work():  # a long commit of another writer: the chain head is locked meanwhile
            locked.set()
            release.wait(60)

    busy = threading.Thread(target=hold_the_head)
    busy.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        got = follower.lease_acquire("post", "gw-2", LONG)
        took = time.monotonic() - started
    finally:
        release.set()
        busy.join()
    assert not got.granted and got.before is not None and got.before.holder == "gw-1"
    assert took < 5.0, f"the attempt waited {took:.1f}s for the chain head"
    assert len(list(holder.entries())) == entries, "a refused attempt records nothing"


def test_an_expired_lease_is_still_taken_over_and_recorded(backend: Backend) -> None:
    holder, follower = backend.open(), backend.open()
    assert holder.lease_acquire("post", "gw-1", 1.0).granted
    deadline = time.monotonic() + 30  # bounds a failure only
    while not (got := follower.lease_acquire("post", "gw-2", LONG)).granted:
        assert time.monotonic() < deadline, "the expired lease was never taken over"
        time.sleep(0.1)
    assert got.taken_over and got.lease is not None and got.lease.holder == "gw-2" and got.lease.epoch == 2
    assert [e.event for e in follower.entries()][-1] == "lease-taken-over"
