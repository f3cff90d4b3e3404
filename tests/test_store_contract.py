"""What every store backend guarantees: the contract behind ``gateway.records.store``.

Each test runs against every backend in ``support.stores.BACKENDS``; a new backend passes
all of them before the gateway may use it. Concurrency is tested by interleaving two
store instances explicitly, never by timing. The SQLite section at the end covers what
is particular to one database file: its migrations and read-only opening.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.stores import BACKENDS, Backend, SQLiteBackend
from support.tamper import tamper_sql, tamper_sql_script

from gateway.records.chain import (
    EMPTY_HEAD,
    GENESIS,
    AuditEvent,
    ChainHead,
    canonical,
    chain_events,
    row_entry,
    verify_chain,
)
from gateway.records.messages import MessagePlace, MessageRecord, State
from gateway.records.signing import Signer, verify_checkpoints
from gateway.records.sqlite.connect import migrations
from gateway.records.store import ChangedMeanwhile, DuplicateKey, EntryFilter, Store, StoreError


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def rec(msg_id: str, uid: int, *, sha: str | None = None, state: State = "processing", **over: object) -> MessageRecord:
    base = MessageRecord(
        id=msg_id,
        mailbox="rathaus",
        folder="INBOX",
        uidvalidity=7,
        uid=uid,
        sha256=sha or f"sha-{msg_id}",
        message_id=f"<{msg_id}@test>",
        size=100,
        internaldate="2026-12-01T08:00:00.000000Z",
        state=state,
        target_state="stored",
        path=f"/cases/C1/{msg_id}",
    )
    return replace(base, **over)  # type: ignore[arg-type]


def ev(kind: str, msg: str | None = None, **details: object) -> AuditEvent:
    return AuditEvent(kind, message=msg, details=dict(details))


def events_of(store: Store) -> list[tuple[str, str | None]]:
    return [(e.event, e.message) for e in store.entries()]


def head_of_entries(store: Store) -> ChainHead:
    entries = list(store.entries())
    return ChainHead(entries[-1].seq, entries[-1].hash) if entries else EMPTY_HEAD


def filed(store: Store, r: MessageRecord, state: State = "stored") -> MessageRecord:
    """Plan and finish ``r`` with its events, as the intake does."""
    store.plan([r], [ev("fetched", r.id)])
    r.state = state
    store.finish([r], [ev(state, r.id)])
    return r


# -- messages and their events commit together ----------------------------------------------------
def test_a_planned_batch_is_recorded_in_processing_with_its_events(store: Store) -> None:
    a, b = rec("a", 1), rec("b", 2)
    store.plan([a, b], [ev("fetched", "a"), ev("fetched", "b")])
    got = store.get("a")
    assert got is not None and got.state == "processing" and got.fetched_at and got.updated_at
    assert got == a, "the store returns what was recorded, with the times it set on the record"
    assert [r.id for r in store.in_state("processing", mailbox="rathaus")] == ["a", "b"]
    assert events_of(store) == [("fetched", "a"), ("fetched", "b")]


def test_a_finished_record_keeps_its_outcome_and_its_events_in_the_same_commit(store: Store) -> None:
    a = rec("a", 1)
    store.plan([a], [ev("fetched", "a")])
    a.state, a.manifest_sha256, a.reasons = "quarantined", "m" * 64, ["no-signature"]
    a.case_ref, a.case_folder, a.route, a.verdict = "1 K 1/26", "VG 1 K 1%2F26", "court", {"verdict": "unverified"}
    store.finish([a], [ev("quarantined", "a")])
    got = store.get("a")
    assert got is not None
    assert (got.state, got.manifest_sha256, got.reasons, got.verdict) == (
        "quarantined",
        "m" * 64,
        ["no-signature"],
        {"verdict": "unverified"},
    )
    assert (got.case_ref, got.case_folder, got.route) == ("1 K 1/26", "VG 1 K 1%2F26", "court")
    assert events_of(store) == [("fetched", "a"), ("quarantined", "a")]


def test_a_unit_of_work_that_fails_leaves_neither_state_nor_events(store: Store) -> None:
    filed(store, rec("a", 1))
    before = (store.count(), store.head(), store.counts_by_state())
    with pytest.raises(RuntimeError), store.unit_of_work() as uow:
        uow.insert_messages([rec("b", 2)])
        uow.set_server_done(["a"])
        uow.append([ev("fetched", "b")])
        raise RuntimeError("disk full while writing the entry")
    assert (store.count(), store.head(), store.counts_by_state()) == before
    assert store.get("b") is None
    got = store.get("a")
    assert got is not None and not got.server_done


def test_a_taken_idempotency_key_is_refused_and_nothing_of_the_batch_is_written(store: Store) -> None:
    store.plan([rec("a", 1)], [ev("fetched", "a")])
    head = store.head()
    with pytest.raises(DuplicateKey):
        store.plan([rec("b", 2), rec("c", 1)], [ev("fetched", "b"), ev("fetched", "c")])
    assert store.get("b") is None and store.get("c") is None
    assert events_of(store) == [("fetched", "a")] and store.head() == head


def test_the_same_uid_in_another_folder_or_uidvalidity_is_another_message(store: Store) -> None:
    store.plan(
        [rec("a", 1), rec("b", 1, folder="Archiv"), rec("c", 1, uidvalidity=8)],
        [ev("fetched", m) for m in "abc"],
    )
    assert {u: r.id for u, r in store.by_key("rathaus", "INBOX", 7, [1, 2, 3]).items()} == {1: "a"}
    assert {u: r.id for u, r in store.by_key("rathaus", "INBOX", 8, [1]).items()} == {1: "c"}
    assert store.by_key("rathaus", "Archiv", 7, []) == {}


def test_by_key_finds_messages_among_more_uids_than_one_query_takes(store: Store) -> None:
    store.plan([rec(f"m{i}", i) for i in range(1, 1202)], [])
    found = store.by_key("rathaus", "INBOX", 7, list(range(1, 2000)))
    assert sorted(found) == list(range(1, 1202)) and found[1201].id == "m1201"


def test_abandon_forgets_only_intents_still_in_processing(store: Store) -> None:
    done = filed(store, rec("a", 1))
    pending = rec("b", 2)
    store.plan([pending], [ev("fetched", "b")])
    store.abandon([done, pending], [ev("processing-abandoned", "b")])
    assert store.get("b") is None
    assert store.get("a") is not None, "a finished message is never forgotten"
    assert events_of(store)[-1] == ("processing-abandoned", "b")


def test_first_by_sha256_is_the_earliest_original_never_a_duplicate_or_an_intent(store: Store) -> None:
    store.plan([rec("intent", 1, sha="X")], [])
    assert store.first_by_sha256("X") is None, "bytes still being written are not yet an original"
    first = filed(store, rec("first", 2, sha="X"), "quarantined")
    filed(store, rec("dup", 3, sha="X"), "duplicate")
    filed(store, rec("later", 4, sha="X"))
    found = store.first_by_sha256("X")
    assert found is not None and found.id == first.id
    released = filed(store, rec("rel", 5, sha="Y"), "released")
    found = store.first_by_sha256("Y")
    assert found is not None and found.id == released.id
    assert store.first_by_sha256("Z") is None


def test_messages_with_one_message_id_are_listed_oldest_first(store: Store) -> None:
    filed(store, rec("a", 1, message_id="<same@x>"))
    filed(store, rec("b", 2, message_id="<same@x>"))
    assert [r.id for r in store.by_message_id("<same@x>")] == ["a", "b"]
    assert store.by_message_id("<other@x>") == []


def test_a_batchs_digests_and_message_ids_are_looked_up_at_once_with_the_single_lookups_answers(
    store: Store,
) -> None:
    store.plan([rec("intent", 1, sha="X")], [])
    filed(store, rec("first", 2, sha="X", message_id="<same@x>"), "quarantined")
    filed(store, rec("dup", 3, sha="X"), "duplicate")
    filed(store, rec("later", 4, sha="X", message_id="<same@x>"))
    filed(store, rec("y", 5, sha="Y", message_id="<y@x>"))
    shas = ["X", "Y", "Z", "X"]
    firsts = store.first_by_sha256_many(shas)
    assert (
        {k: v.id for k, v in firsts.items()}
        == {s: found.id for s in shas if (found := store.first_by_sha256(s)) is not None}
        == {"X": "first", "Y": "y"}
    )
    mids = ["<same@x>", "<y@x>", "<none@x>"]
    assert store.by_message_ids(mids) == {m: found for m in mids if (found := store.by_message_id(m))}
    assert [r.id for r in store.by_message_ids(mids)["<same@x>"]] == ["first", "later"]
    assert store.first_by_sha256_many([]) == {} and store.by_message_ids([]) == {}


def test_awaiting_server_lists_finished_messages_until_their_move_is_recorded(store: Store) -> None:
    a, b = filed(store, rec("a", 1)), filed(store, rec("b", 2))
    store.plan([rec("c", 3)], [])
    filed(store, rec("d", 4, folder="Archiv"))
    assert sorted(r.id for r in store.awaiting_server("rathaus", "INBOX")) == ["a", "b"]
    store.mark_server_done([a.id], [ev("moved", "a")])
    assert [r.id for r in store.awaiting_server("rathaus", "INBOX")] == ["b"]
    c = store.get("c")
    assert c is not None
    c.state = "stored"
    store.finish([c], [ev("stored", "c"), ev("moved", "b")], server_done=[b.id])
    assert [r.id for r in store.awaiting_server("rathaus", "INBOX")] == ["c"]
    assert events_of(store)[-2:] == [("stored", "c"), ("moved", "b")]


def test_a_released_message_is_filed_with_who_released_it(store: Store) -> None:
    q = filed(store, rec("q", 1), "quarantined")
    q.state, q.case_ref, q.case_folder, q.path = "released", "C2", "C2", "/cases/C2/q"
    store.release(q, [AuditEvent("released", message="q", actor="cli:alice")])
    got = store.get("q")
    assert got is not None and (got.state, got.case_folder) == ("released", "C2")
    last = list(store.entries())[-1]
    assert (last.event, last.actor) == ("released", "cli:alice")


def test_mailbox_status_updates_keep_the_fields_they_do_not_give(store: Store) -> None:
    store.set_status("rathaus", last_poll="t1", backlog=5, uidvalidity=7)
    store.set_status("rathaus", last_error="timeout", last_error_at="t2")
    store.set_status("rathaus", last_success="t3", backlog=0)
    store.set_status("bauamt", last_poll="t4")
    (bauamt, rathaus) = store.statuses()
    assert bauamt.mailbox == "bauamt" and bauamt.last_poll == "t4" and bauamt.backlog is None
    assert rathaus.to_json() == {
        "mailbox": "rathaus",
        "last_poll": "t1",
        "last_success": "t3",
        "last_error": "timeout",
        "last_error_at": "t2",
        "backlog": 0,
        "uidvalidity": 7,
        "state": None,
        "state_since": None,
    }


def test_a_mailbox_back_to_ok_loses_its_error_and_keeps_when_its_state_began(store: Store) -> None:
    store.set_status("rathaus", last_error="login failed", last_error_at="t1", state="auth-failed", state_since="t1")
    store.set_status("rathaus", last_error="login failed again", last_error_at="t2")
    (failing,) = store.statuses()
    assert (failing.state, failing.state_since, failing.last_error_at) == ("auth-failed", "t1", "t2")
    store.set_status("rathaus", last_success="t3", state="ok", state_since="t3")
    (ok,) = store.statuses()
    assert (ok.state, ok.state_since, ok.last_success) == ("ok", "t3", "t3")
    assert ok.last_error is None and ok.last_error_at is None


def test_cases_count_only_filed_messages(store: Store) -> None:
    filed(store, rec("a", 1, case_ref="1 K 1/26", case_folder="K1"))
    filed(store, rec("b", 2, case_ref="1 K 1/26", case_folder="K1"), "released")
    filed(store, rec("c", 3, case_ref="1 K 1/26", case_folder="K1"), "quarantined")
    filed(store, rec("d", 4, case_ref="C2", case_folder="C2"))
    assert [(c.case_folder, c.case_ref, c.messages) for c in store.cases()] == [("C2", "C2", 1), ("K1", "1 K 1/26", 2)]
    assert [r.id for r in store.messages_of_case("K1")] == ["a", "b"]
    assert store.counts_by_state() == {"stored": 2, "released": 1, "quarantined": 1}
    assert [r.id for r in store.all_messages()] == ["a", "b", "c", "d"]


# -- one chain, however many writers ------------------------------------------------------------
def test_the_head_row_names_the_last_entry_after_every_commit(store: Store) -> None:
    assert store.head() == EMPTY_HEAD and store.count() == 0
    store.record_events([ev("config-loaded")])
    assert store.head() == head_of_entries(store)
    filed(store, rec("a", 1))
    store.mark_server_done(["a"], [ev("moved", "a")])
    assert store.head() == head_of_entries(store) and store.count() == 4
    store.record_events([])
    assert store.head() == head_of_entries(store) and store.count() == 4, "no events, no entry"


def test_two_store_instances_extend_one_chain_without_forking_it(backend: Backend) -> None:
    """Two writers (mailbox workers, the CLI) interleave commits on one database."""
    one, two = backend.open(actor="daemon"), backend.open(actor="cli:alice")
    one.record_events([ev("config-loaded")])
    two.record_events([ev("note", None, text="by the clerk")])
    one.plan([rec("a", 1)], [ev("fetched", "a")])
    two.plan([rec("b", 2)], [ev("fetched", "b")])
    a = one.get("a")
    assert a is not None
    a.state = "stored"
    one.finish([a], [ev("stored", "a"), ev("verdict", "a")])
    two.record_events([ev("certificate-collected", "b")])
    for s in (one, two):
        entries = list(s.entries())
        n, head, breaks = verify_chain(entries)
        assert (n, breaks) == (7, []), "consecutive numbers, every link to the entry before"
        assert [e.seq for e in entries] == list(range(1, 8))
        d, c = "daemon", "cli:alice"
        assert [e.actor for e in entries] == [d, c, d, c, d, d, c], "each store names its own actor"
        assert s.head() == ChainHead(7, head)


def test_an_append_rolled_back_in_one_store_leaves_the_head_to_the_next_writer(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    one.record_events([ev("config-loaded")])
    with pytest.raises(RuntimeError), one.unit_of_work() as uow:
        uow.append([ev("fetched", "lost")])
        raise RuntimeError("crash before the commit")
    two.record_events([ev("fetched", "kept")])
    assert events_of(one) == [("config-loaded", None), ("fetched", "kept")]
    assert verify_chain(one.entries())[2] == [] and one.head() == head_of_entries(one)


def test_entries_since_entry_and_hashes_read_the_same_chain(store: Store) -> None:
    store.record_events([ev(f"e{i}") for i in range(5)])
    entries = list(store.entries())
    assert [e.seq for e in store.entries(since_seq=3)] == [4, 5]
    assert list(store.entry_hashes(since_seq=1)) == [(e.seq, e.hash) for e in entries[1:]]
    assert store.entry(2) == entries[1] and store.entry(6) is None


def test_chain_rows_and_hash_lookup_read_the_entries_as_stored(store: Store) -> None:
    """What verification streams: each entry's columns, its details in the canonical text that was hashed."""
    store.record_events([ev(f"e{i}", details={"n": i, "ü": "ß"}) for i in range(5)])
    entries = list(store.entries())
    assert [row_entry(r) for r in store.chain_rows(since_seq=2)] == entries[2:]
    assert all(r[8] == canonical(e.details).decode() for r, e in zip(store.chain_rows(), entries, strict=True))
    assert store.seqs_of_hash(entries[3].hash) == [4] and store.seqs_of_hash(GENESIS) == []


def test_message_places_get_many_and_places_of_read_what_get_reads(store: Store) -> None:
    store.plan([rec("a", 1), rec("b", 2)], [ev("fetched", "a"), ev("fetched", "b")])
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert store.get_many(["b", "a", "nope"]) == {"a": a, "b": b}
    assert list(store.message_places()) == [MessagePlace.of(r) for r in store.all_messages()]
    assert store.places_of(["b", "nope", "a"]) == {"a": MessagePlace.of(a), "b": MessagePlace.of(b)}
    assert store.places_of([]) == {}


def test_verification_counts_group_the_verdicts_of_recorded_messages(store: Store) -> None:
    odd = {"verdict": "unverified", "reasons": ["signer name a\u0000b"]}  # text jsonb would refuse
    store.plan(
        [
            rec("a", 1, verdict={"verdict": "verified"}),
            rec("b", 2, verdict={"verdict": "verified"}),
            rec("c", 3, verdict=odd),
            rec("d", 4),
        ],
        [ev("fetched", m) for m in "abcd"],
    )
    assert store.verification_counts() == {"verified": 2, "unverified": 1}


# -- checkpoints ----------------------------------------------------------------------------------
def test_checkpoints_are_signed_every_n_entries_and_a_seal_covers_the_tail(backend: Backend) -> None:
    key = Ed25519PrivateKey.generate()
    store = backend.open(signer=Signer(key), checkpoint_every=3)
    for i in range(7):
        store.record_events([ev("fetched", f"m{i}")])
    assert [cp.seq for cp in store.checkpoints()] == [3, 6]
    store.seal()
    store.seal()
    cps = store.checkpoints()
    assert [cp.seq for cp in cps] == [3, 6, 7], "a second seal adds nothing"
    hashes = dict(store.entry_hashes())
    assert all(cp.hash == hashes[cp.seq] for cp in cps)
    assert verify_checkpoints(cps, hashes, key.public_key()) == (3, 7, [])


def test_a_batch_crossing_the_interval_is_sealed_at_its_last_entry(backend: Backend) -> None:
    store = backend.open(signer=Signer(Ed25519PrivateKey.generate()), checkpoint_every=3)
    store.record_events([ev("fetched", f"m{i}") for i in range(5)])
    assert [cp.seq for cp in store.checkpoints()] == [5]


def test_without_a_signer_nothing_is_sealed(store: Store) -> None:
    store.record_events([ev("fetched", "a")])
    store.seal()
    assert store.checkpoints() == []


def test_an_empty_trail_is_not_sealed(backend: Backend) -> None:
    store = backend.open(signer=Signer(Ed25519PrivateKey.generate()))
    store.seal()
    assert store.checkpoints() == []


# -- reading ----------------------------------------------------------------------------------------
def test_a_snapshot_sees_one_moment_while_another_store_commits(backend: Backend) -> None:
    reader, writer = backend.open(), backend.open()
    filed(writer, rec("a", 1))
    with reader.snapshot() as snap:
        seen = (snap.count(), snap.head(), list(snap.entries()), [r.id for r in snap.all_messages()])
        filed(writer, rec("b", 2))
        writer.record_events([ev("config-loaded")])
        assert (snap.count(), snap.head(), list(snap.entries()), [r.id for r in snap.all_messages()]) == seen
        assert snap.get("b") is None and snap.checkpoints() == []
    assert reader.count() == seen[0] + 3 and reader.get("b") is not None


def test_a_write_inside_a_snapshot_of_the_same_store_is_refused(store: Store) -> None:
    with store.snapshot() as snap:
        with pytest.raises(StoreError):
            store.record_events([ev("config-loaded")])
        assert snap.count() == 0
    store.record_events([ev("config-loaded")])
    assert store.count() == 1


def test_selected_entries_follow_whole_items_through_case_and_correspondent(store: Store) -> None:
    store.record_events(
        [
            ev("fetched", "a"),
            AuditEvent("routed", message="a", details={"case_folder": "VG 1 K 1%2F26"}),
            ev("moved", "a"),
            AuditEvent("fetched", message="b", correspondent="Bauamt@Stadt.example"),
            ev("moved", "b"),
            AuditEvent("stored", message="c", case="1 K 1/26"),
            AuditEvent("sent", document="d", case="1 K 1/26"),
            AuditEvent("delivered", document="d"),
            AuditEvent("fetched", message="e", correspondent="x_y%z@example"),
        ]
    )

    def picked(f: EntryFilter) -> list[int]:
        return [e.seq for e in store.select(f)]

    assert picked(EntryFilter()) == list(range(1, 10))
    assert picked(EntryFilter(case_names=("VG 1 K 1%2F26",))) == [1, 2, 3]
    assert picked(EntryFilter(case_names=("1 K 1/26", "VG 1 K 1%2F26"))) == [1, 2, 3, 6, 7, 8]
    assert picked(EntryFilter(correspondent="bauamt@stadt")) == [4, 5], "part of the address, any case"
    assert picked(EntryFilter(correspondent="x_y%")) == [9] and picked(EntryFilter(correspondent="_")) == [9]
    assert picked(EntryFilter(message="a", events=("moved", "routed"))) == [2, 3]
    assert picked(EntryFilter(document="d")) == [7, 8]
    at = store.entry(1)
    assert at is not None
    assert picked(EntryFilter(since=at.at)) == list(range(1, 10)) and picked(EntryFilter(until=at.at)) == []


def test_a_read_only_store_reads_everything_and_refuses_every_write(backend: Backend) -> None:
    writer = backend.open()
    filed(writer, rec("a", 1))
    reader = backend.open(readonly=True)
    assert reader.get("a") is not None and reader.count() == 2 and reader.head() == writer.head()
    assert reader.readonly_note is None
    with pytest.raises(StoreError):
        reader.record_events([ev("config-loaded")])
    with pytest.raises(StoreError):
        reader.set_status("rathaus", last_poll="t")
    assert writer.count() == 2 and writer.statuses() == []


# -- SQLite: one database file ----------------------------------------------------------------------
V1_MESSAGE = (
    "INSERT INTO messages (id, mailbox, folder, uidvalidity, uid, sha256, message_id, size, internaldate, "
    "fetched_at, updated_at, state, target_state, case_ref, case_folder, path, reasons, verdict, server_done) "
    "VALUES (?, 'rathaus', 'INBOX', 7, ?, ?, NULL, 10, NULL, ?, ?, 'stored', 'stored', 'C1', 'C1', ?, '[]', "
    '\'{"verdict": "verified"}\', 1)'
)
V1_ENTRY = (
    "INSERT INTO audit (seq, at, event, actor, message, case_ref, document, correspondent, details, prev_hash, hash) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def v1_database(path: Path, messages: int = 2) -> ChainHead:
    """A ledger as version 1 left it: the first schema script only, with messages and a chain."""
    tamper_sql_script(path, "PRAGMA journal_mode=WAL;\n" + migrations()[0].script + "\nPRAGMA user_version=1;")
    at = "2026-11-30T10:00:00.000000Z"
    tamper_sql(path, V1_MESSAGE, *[(f"m{i}", i, f"sha{i}", at, at, f"/cases/C1/m{i}") for i in range(messages)])
    new = chain_events(
        [ev(kind, f"m{i}") for i in range(messages) for kind in ("fetched", "stored")],
        after=EMPTY_HEAD,
        at=at,
        default_actor="daemon",
    )
    fields = ("seq", "at", "event", "actor", "message", "case", "document", "correspondent", "details_json")
    rows = [(*(getattr(e, f) for f in fields), e.prev_hash, e.hash) for e in new]
    tamper_sql(path, V1_ENTRY, *rows)
    return ChainHead(new[-1].seq, new[-1].hash)


def test_the_first_schema_script_is_the_version_1_schema() -> None:
    """Existing databases at user_version 1 were made by exactly this script."""
    first, *later = migrations()
    assert (first.version, first.name) == (1, "0001_initial.sql")
    assert [m.version for m in later] == list(range(2, len(later) + 2)), "numbered without gaps"
    assert "CREATE TABLE audit_checkpoints" in first.script and "audit_head" not in first.script


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SQLiteBackend]:
    b = SQLiteBackend(tmp_path)
    yield b
    b.close_all()


def test_a_version_1_database_is_upgraded_with_its_head_at_the_last_entry(sqlite: SQLiteBackend) -> None:
    old_head = v1_database(sqlite.path)
    store = sqlite.open()
    assert store.schema_version == migrations()[-1].version
    assert store.head() == old_head
    assert [r.id for r in store.all_messages()] == ["m0", "m1"]
    got = store.get("m0")
    assert got is not None and got.verdict == {"verdict": "verified"} and got.server_done
    store.record_events([ev("config-loaded")])
    n, _, breaks = verify_chain(store.entries())
    assert (n, breaks) == (5, []), "new entries continue the old chain"
    assert store.head() == head_of_entries(store)


def test_an_empty_version_1_database_is_upgraded_with_the_genesis_head(sqlite: SQLiteBackend) -> None:
    tamper_sql_script(sqlite.path, migrations()[0].script + "\nPRAGMA user_version=1;")
    assert sqlite.open().head() == ChainHead(0, GENESIS)


def test_a_version_1_database_opened_read_only_is_read_as_it_is(sqlite: SQLiteBackend) -> None:
    v1_database(sqlite.path)
    reader = sqlite.open(readonly=True)
    assert reader.schema_version == 1, "reading never migrates"
    assert reader.head() is None and reader.count() == 4
    assert verify_chain(reader.entries())[2] == []


def test_reopening_an_upgraded_database_runs_no_migration_again(sqlite: SQLiteBackend) -> None:
    sqlite.open().record_events([ev("config-loaded")])
    again = sqlite.open()
    assert again.schema_version == migrations()[-1].version and again.count() == 1
    assert again.head() == head_of_entries(again)


def test_an_append_refuses_to_guess_a_removed_head_row(sqlite: SQLiteBackend) -> None:
    store = sqlite.open()
    store.record_events([ev("config-loaded")])
    tamper_sql(sqlite.path, "DELETE FROM audit_head")
    with pytest.raises(StoreError, match="head row is missing"):
        store.record_events([ev("fetched", "a")])
    assert store.count() == 1


def test_opening_a_missing_database_read_only_is_a_store_error(sqlite: SQLiteBackend) -> None:
    with pytest.raises(StoreError, match="cannot open the ledger"):
        sqlite.open(readonly=True)


def test_the_jsonl_copy_of_a_store_holds_every_committed_entry_once(backend: Backend, tmp_path: Path) -> None:
    copy = tmp_path / "audit.jsonl"
    one, two = backend.open(jsonl=copy), backend.open(jsonl=copy)
    one.record_events([ev("config-loaded")])
    two.record_events([ev("fetched", "a")])
    assert one.export_jsonl() == 2 and two.export_jsonl() == 0
    one.record_events([ev("moved", "a")])
    assert two.export_jsonl() == 1, "entries another store appended are encoded from the store"
    lines = [json.loads(line) for line in copy.read_bytes().splitlines()]
    assert lines == [e.to_json() for e in one.entries()]


def test_a_decision_on_a_message_that_changed_meanwhile_writes_nothing(store: Store) -> None:
    q = filed(store, rec("q", 1, manifest_sha256="a" * 64), "quarantined")
    seen = ("quarantined", "a" * 64)
    first = replace(q, state="released", manifest_sha256="b" * 64)
    store.decide(first, [AuditEvent("released", message="q", actor="cli:bob")], was=seen)
    count = store.count()
    second = replace(q, state="released", manifest_sha256="c" * 64)
    with pytest.raises(ChangedMeanwhile, match="changed while this decision was made"):
        store.decide(second, [AuditEvent("released", message="q", actor="cli:alice")], was=seen)
    assert store.count() == count
    got = store.get("q")
    assert got is not None and got.manifest_sha256 == "b" * 64
