"""Outbox claims across nodes: claim, renew, take over after expiry, fenced completion.

The store half runs against every backend of ``support.stores.BACKENDS`` (PostgreSQL judges
expiry by the database's clock, SQLite by the machine's). The drain half works on SQLite
with a scripted SMTP peer and two node names; the processes of several real nodes on one
PostgreSQL and a real Postfix are in ``test_outbox_nodes.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer
from support.stores import BACKENDS, Backend

from gateway.clock import iso, utcnow
from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.outbound import outbox
from gateway.outbound.claim import may_take_over, this_process
from gateway.outbound.drain import RESENT_AFTER_CRASH, Drain, DrainHooks
from gateway.outbound.smtp import Attempt
from gateway.records.chain import AuditEvent
from gateway.records.open import open_store
from gateway.records.outbox import ClaimTerms, OutboxRecord, RecipientStatus
from gateway.records.store import EntryFilter, OutboxChange, StaleOutboxState, Store, StoreError
from gateway.statedir import outbox_dir

LONG = 600.0


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


def queued(store: Store, oid: str = "d1") -> OutboxRecord:
    rec = OutboxRecord(
        id=oid,
        message_id=f"{oid}@rathaus.test",
        case_ref="63-BV-2026-0412",
        case_folder="63-BV-2026-0412",
        mail_from="rathaus@rathaus.test",
        sha256="cd" * 32,
        size=100,
        path=f"/spool/{oid}.eml",
        signed="none",
        encrypted=False,
        envid=f"{oid}.00112233",
        recipients=[RecipientStatus("a@x.test")],
    )
    store.outbox_enqueue(rec, [AuditEvent("queued", document=oid)])
    got = store.outbox_get(oid)
    assert got is not None
    return got


def claim(store: Store, rec: OutboxRecord, by: str, ttl: float, *, take_over: bool = False) -> OutboxRecord:
    """Make ``rec`` active for ``by`` as the drain does (``take_over``: of the claim it carries now)."""
    before, old = rec.state, rec.claimed_by
    rec.state, rec.claimed_by = "active", by
    terms = ClaimTerms(fence=rec.claim_token, expired=True, ttl=ttl) if take_over else ClaimTerms(ttl=ttl)
    store.outbox_save(rec, [], expect=[before], expect_claim=old if take_over else None, claim=terms)
    return rec


def complete(store: Store, rec: OutboxRecord) -> None:
    rec.state = "sent"
    rec.recipients[0].state = "sent"
    store.outbox_save(
        rec,
        [AuditEvent("submitted", document=rec.id)],
        expect=["active"],
        expect_claim=rec.claimed_by,
        claim=ClaimTerms(fence=rec.claim_token),
    )


# -- the store contract ---------------------------------------------------------------------------
def test_a_claim_counts_its_token_up_and_expires_by_the_stores_clock(backend: Backend) -> None:
    store = backend.open()
    rec = claim(store, queued(store), "a:1:1", LONG)
    stored = store.outbox_get(rec.id)
    assert stored is not None and stored.state == "active" and stored.claimed_by == "a:1:1"
    assert stored.claim_token == rec.claim_token == 1
    assert stored.claim_expires_at == rec.claim_expires_at
    assert rec.claim_expires_at is not None and rec.claim_expires_at > iso(utcnow())


def test_of_two_nodes_claiming_one_queued_document_only_the_first_gets_it(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    rec = queued(a)
    seen_by_b = b.outbox_get(rec.id)
    assert seen_by_b is not None
    claim(a, rec, "a:1:1", LONG)
    with pytest.raises(StaleOutboxState):
        claim(b, seen_by_b, "b:1:1", LONG)
    stored = a.outbox_get(rec.id)
    assert stored is not None and stored.claimed_by == "a:1:1" and stored.claim_token == 1


def test_a_claim_that_has_not_expired_is_not_taken_over(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    claim(a, queued(a), "a:1:1", LONG)
    seen = b.outbox_get("d1")
    assert seen is not None
    with pytest.raises(StaleOutboxState, match="claimed by a:1:1 until"):
        claim(b, seen, "b:1:1", LONG, take_over=True)


def test_an_expired_claim_is_taken_over_and_the_old_holders_completion_is_refused(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    held = claim(a, queued(a), "a:1:1", 0.05)
    deadline = time.monotonic() + 30  # bounds a failure only
    while True:
        seen = b.outbox_get("d1")
        assert seen is not None
        try:
            taken = claim(b, seen, "b:1:1", LONG, take_over=True)
            break
        except StaleOutboxState:
            assert time.monotonic() < deadline, "the claim never expired"
            time.sleep(0.05)
    assert taken.claim_token == 2
    with pytest.raises(StaleOutboxState):
        complete(a, held)  # woke up after the take-over: fenced
    complete(b, taken)
    stored = a.outbox_get("d1")
    assert stored is not None and stored.state == "sent" and stored.claimed_by == "b:1:1"
    assert [e.event for e in a.select(EntryFilter(document="d1"))] == ["queued", "submitted"]


def test_a_completion_in_a_batch_with_an_old_token_is_left_out_and_the_others_commit(backend: Backend) -> None:
    store = backend.open()
    one = claim(store, queued(store, "d1"), "a:1:1", LONG)
    two = claim(store, queued(store, "d2"), "a:1:1", LONG)
    one.state = two.state = "deferred"
    made = store.outbox_save_many(
        [
            OutboxChange(one, [], ["active"], "a:1:1", claim=ClaimTerms(fence=one.claim_token - 1)),
            OutboxChange(two, [], ["active"], "a:1:1", claim=ClaimTerms(fence=two.claim_token)),
        ]
    )
    assert made == [False, True]
    assert [r.state for r in store.outbox_list()] == ["active", "deferred"]


def test_renewal_extends_a_claim_still_held_and_names_one_taken_over(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    rec = claim(a, queued(a), "a:1:1", 30)
    first = rec.claim_expires_at
    assert first is not None
    assert a.outbox_renew([(rec.id, rec.claim_token)], LONG) == [rec.id]
    renewed = a.outbox_get(rec.id)
    assert renewed is not None and renewed.claim_expires_at is not None and renewed.claim_expires_at > first
    assert renewed.claim_token == rec.claim_token  # renewing is not claiming again
    assert a.outbox_renew([(rec.id, rec.claim_token - 1)], LONG) == []  # an older claim
    complete(b, renewed)
    assert a.outbox_renew([(rec.id, rec.claim_token)], LONG) == []  # finished: nothing to renew
    assert a.outbox_renew([], LONG) == []


def test_a_postgresql_claim_skips_a_row_another_transaction_holds_instead_of_waiting(backend: Backend) -> None:
    if backend.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    import psycopg

    store = backend.open()
    rec = queued(store)
    with psycopg.connect(backend.dsn) as other:  # type: ignore[attr-defined]
        other.execute("SELECT id FROM outbox WHERE id = 'd1' FOR UPDATE")  # a renewal or claim in flight
        started = time.monotonic()
        with pytest.raises(StaleOutboxState, match="another process"):
            claim(store, rec, "a:1:1", LONG)
        assert time.monotonic() - started < 10  # not the lock timeout
    stored = store.outbox_get("d1")
    assert stored is not None and stored.state == "queued"


def test_a_postgresql_writer_frozen_inside_a_transaction_is_cut_off_and_the_others_write_on(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name != "postgresql":
        pytest.skip("SQLite's writers are the processes of one machine")
    from gateway.records.postgres import connect

    monkeypatch.setattr(connect, "IDLE_IN_TRANSACTION_TIMEOUT", "1s")
    frozen, other = backend.open(), backend.open()
    with pytest.raises(StoreError), frozen.unit_of_work() as uow:
        uow.append([AuditEvent("held-the-head")])  # the chain head is locked from here
        # Frozen: the other node's write waits for the head until the server ends this session.
        other.record_events([AuditEvent("written-meanwhile")])
        # Woken: this transaction is gone, its commit fails and writes nothing.
    assert [e.event for e in other.entries()] == ["written-meanwhile"]
    frozen.record_events([AuditEvent("after-waking")])  # a new connection, at the next transaction
    assert [e.event for e in other.entries()] == ["written-meanwhile", "after-waking"]


# -- the drain on two named nodes ------------------------------------------------------------------
@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


def node_config(root: Path, peer: ScriptedPeer, node: str, ttl: str = "2m") -> Config:
    path = smtp_config(root, port=peer.port)
    text = path.read_text().replace("[storage]\n", f'[storage]\nnode = "{node}"\n', 1)
    path.write_text(text + f'\n[outbound]\nsign = "none"\nclaim_ttl = "{ttl}"\n')
    return load_config(path)


def test_another_nodes_document_is_left_alone_until_its_claim_expires_then_resent_marked(
    tmp_path: Path, peer: ScriptedPeer
) -> None:
    config = node_config(tmp_path, peer, "alpha")
    store = open_store(config)
    try:
        oid = outbox.enqueue(config, store, document())
        rec = store.outbox_get(oid)
        assert rec is not None
        claim(store, rec, "beta:4242:17", LONG)  # beta's pid means nothing on alpha
        assert Drain(config, store).run_once().resent == [] and peer.received == []
        assert store.outbox_renew([(oid, rec.claim_token)], 0.05) == [oid]  # beta's last renewal, then it died
        deadline = time.monotonic() + 30
        while not (report := Drain(config, store).run_once()).resent:
            assert time.monotonic() < deadline, "the expired claim was never taken over"
            time.sleep(0.05)
        assert report.resent == [oid] and report.sent == [oid] and len(peer.received) == 1
        resent = [e.details for e in store.select(EntryFilter(document=oid, events=("resent",)))]
        assert resent == [
            {
                "message_id": rec.message_id,
                "reason": RESENT_AFTER_CRASH,
                "attempt": 1,
                "taken_over_from": "beta:4242:17",
            }
        ]
        final = store.outbox_get(oid)
        assert final is not None and final.claimed_by == this_process("alpha") and final.claim_token == 2
    finally:
        store.close()


def test_a_node_whose_claim_was_taken_over_while_it_sent_has_its_completion_refused_and_recorded(
    tmp_path: Path, peer: ScriptedPeer
) -> None:
    config = node_config(tmp_path, peer, "alpha")
    store, other = open_store(config), open_store(config)
    try:
        oid = outbox.enqueue(config, store, document())

        def paused(rec: OutboxRecord, att: Attempt) -> None:
            # While alpha waited for the relay, beta found the claim expired and took the document over.
            seen = other.outbox_get(rec.id)
            assert seen is not None
            seen.state, seen.claimed_by = "active", "beta:1:1"
            other.outbox_save(
                seen,
                [AuditEvent("resent", document=rec.id)],
                expect=["active"],
                expect_claim=rec.claimed_by,
                claim=ClaimTerms(fence=seen.claim_token, ttl=LONG),
            )

        report = Drain(config, store, hooks=DrainHooks(after_accept=paused)).run_once()
        assert report.sent == [] and report.lost == [oid]
        final = store.outbox_get(oid)
        assert final is not None and final.state == "active" and final.claimed_by == "beta:1:1"
        assert final.claim_token == 2 and final.recipients[0].state == "pending"
        refused = [e.details for e in store.select(EntryFilter(document=oid, events=("completion-refused",)))]
        assert len(refused) == 1 and refused[0]["node"] == "alpha" and refused[0]["claim_token"] == 1
        assert refused[0]["replies"][final.recipients[0].address].startswith("250")
        assert not list(store.select(EntryFilter(document=oid, events=("submitted",))))
    finally:
        store.close()
        other.close()


def test_a_long_delivery_keeps_its_claim_by_renewal_and_completes(tmp_path: Path, peer: ScriptedPeer) -> None:
    config = node_config(tmp_path, peer, "alpha", ttl="3s")
    store, other = open_store(config), open_store(config)
    try:
        oid = outbox.enqueue(config, store, document())

        def slow_relay(rec: OutboxRecord, att: Attempt) -> None:
            # The relay's answer takes longer than the claim holds: the keeper renews meanwhile.
            seen: set[str | None] = set()
            deadline = time.monotonic() + 60  # bounds a failure only
            while len(seen) < 3:
                now = other.outbox_get(rec.id)
                assert now is not None and time.monotonic() < deadline, f"renewed only to {seen}"
                seen.add(now.claim_expires_at)
                time.sleep(0.05)
            assert now.claim_token == rec.claim_token  # renewed, not claimed again
            now.claimed_by = "beta:1:1"
            with pytest.raises(StaleOutboxState, match="claimed by"):
                other.outbox_save(
                    now,
                    [],
                    expect=["active"],
                    expect_claim=rec.claimed_by,
                    claim=ClaimTerms(fence=now.claim_token, expired=True, ttl=LONG),
                )

        report = Drain(config, store, hooks=DrainHooks(after_accept=slow_relay)).run_once()
        assert report.sent == [oid] and report.lost == [] and len(peer.received) == 1
    finally:
        store.close()
        other.close()


def test_a_claim_found_lost_before_sending_sends_nothing(tmp_path: Path, peer: ScriptedPeer, monkeypatch: Any) -> None:
    config = node_config(tmp_path, peer, "alpha", ttl="1s")
    store = open_store(config)
    try:
        oid = outbox.enqueue(config, store, document())
        # The pass was frozen between its claim and the relay for longer than the claim holds:
        # the claim looks confirmed an hour ago, so it is checked with the store before sending.
        real = time.monotonic
        monkeypatch.setattr("gateway.outbound.drain.time", SimpleNamespace(monotonic=lambda: real() - 3600))
        other = open_store(config)
        original = store.outbox_save_many

        def claim_then_lose(changes: Any) -> list[bool]:
            made = original(changes)
            for c in changes:
                if c.rec.state == "active" and c.claim is not None and c.claim.ttl is not None:
                    seen = other.outbox_get(c.rec.id)
                    assert seen is not None
                    seen.claimed_by = "beta:1:1"
                    other.outbox_save(seen, [], expect=["active"], claim=ClaimTerms(fence=seen.claim_token, ttl=LONG))
            return made

        monkeypatch.setattr(store, "outbox_save_many", claim_then_lose)
        report = Drain(config, store).run_once()
        other.close()
        assert report.lost == [oid] and report.sent == [] and peer.received == []
    finally:
        store.close()


def test_the_same_nodes_dead_process_is_taken_over_at_once_whatever_the_expiry() -> None:
    now = iso(utcnow())
    later = "9999-12-31T00:00:00.000000Z"
    assert may_take_over("alpha:999999999:1", later, node="alpha", now=now)  # gone: no need to wait
    assert not may_take_over(this_process("alpha"), later, node="beta", now=now)  # another node, not expired
    assert may_take_over(this_process("alpha"), "2000-01-01T00:00:00.000000Z", node="beta", now=now)
    assert may_take_over("gamma:1:1", None, node="beta", now=now)  # claimed before claims expired


# -- configuration ---------------------------------------------------------------------------------
def test_the_spool_is_under_state_dir_unless_spool_dir_names_a_shared_one(tmp_path: Path, peer: ScriptedPeer) -> None:
    config = node_config(tmp_path, peer, "alpha")
    assert outbox_dir(config) == config.storage.state_dir / "outbox"
    assert config.outbound is not None and config.outbound.claim_ttl == 120.0
    path = config.path
    shared = tmp_path / "shared-spool"
    text = path.read_text().replace("[storage]\n", f'[storage]\nspool_dir = "{shared}"\n', 1)
    path.write_text(text.replace('claim_ttl = "2m"', 'claim_ttl = "30s"'))
    from gateway.statedir import init_storage

    config = load_config(path)
    init_storage(config)
    assert outbox_dir(config) == shared and shared.is_dir() and config.outbound is not None
    assert config.outbound.claim_ttl == 30.0
    oid = outbox.enqueue(config, store := open_store(config), document())
    try:
        rec = store.outbox_get(oid)
        assert rec is not None and Path(rec.path).parent == shared
    finally:
        store.close()


@pytest.mark.parametrize(
    ("line", "key", "problem"),
    [
        ('node = "alpha:1"', "storage.node", "letters, digits"),
        ('node = ""', "storage.node", "letters, digits"),
        ('spool_dir = "relative/spool"', "storage.spool_dir", "absolute"),
        ('spool_dir = "{root}/state/cases/spool"', "storage.spool_dir", "cases_dir"),
    ],
)
def test_a_bad_node_name_or_spool_dir_stops_start_up_naming_the_key(
    tmp_path: Path, peer: ScriptedPeer, line: str, key: str, problem: str
) -> None:
    path = smtp_config(tmp_path, port=peer.port)
    path.write_text(path.read_text().replace("[storage]\n", f"[storage]\n{line.format(root=tmp_path)}\n", 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and problem in err.value.problem


def test_a_claim_ttl_that_is_no_duration_is_refused(tmp_path: Path, peer: ScriptedPeer) -> None:
    path = smtp_config(tmp_path, port=peer.port)
    path.write_text(path.read_text() + '\n[outbound]\nsign = "none"\nclaim_ttl = "soon"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "outbound.claim_ttl"


def test_a_configured_spool_dir_that_is_not_there_stops_start_up_like_a_missing_share(
    tmp_path: Path, peer: ScriptedPeer
) -> None:
    from gateway.statedir import require_roots

    path = smtp_config(tmp_path, port=peer.port)
    missing = tmp_path / "not-mounted" / "spool"
    path.write_text(path.read_text().replace("[storage]\n", f'[storage]\nspool_dir = "{missing}"\n', 1))
    with pytest.raises(ConfigError) as err:
        require_roots(load_config(path))
    assert err.value.key == "storage.spool_dir" and "does not exist" in err.value.problem
    assert not missing.exists()


def test_a_deferred_filing_pass_leaves_the_sent_copies_of_another_nodes_live_claims_to_that_node(
    tmp_path: Path, peer: ScriptedPeer
) -> None:
    """Two nodes filing one document's copy at once race in the shared staging directory (one
    removes the other's staged entry, or both publish one); the sender files its own."""
    from gateway.outbound.drain import FILE_BATCH

    config = node_config(tmp_path, peer, "alpha")
    store = open_store(config)
    try:
        ids = [outbox.enqueue(config, store, document()) for _ in range(FILE_BATCH)]
        for oid in ids:  # sent by beta, which is alive (its claim has not expired) and files them itself
            rec = store.outbox_get(oid)
            assert rec is not None
            complete(store, claim(store, rec, "beta:4242:17", LONG))
        drain = Drain(config, store)
        drain.defer_filing = True
        report = drain.run_once()
        assert report.filed == [] and report.filing_deferred == []
        assert all((r.sent_path is None) for r in store.outbox_list())
    finally:
        store.close()
