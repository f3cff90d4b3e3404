"""What every store backend guarantees for delivery records (runs against each of ``support.stores.BACKENDS``).

Steps commit with their ``delivery-state`` events and the caller's events, or not at all;
a step for a document or recipient the outbox does not know records nothing. The SQLite
section at the end covers the upgrade of a database made before delivery records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.stores import BACKENDS, Backend, SQLiteBackend
from support.tamper import tamper_sql, tamper_sql_script

from gateway.receipts.model import DeliveryState, EvidenceKind
from gateway.records.chain import AuditEvent, verify_chain
from gateway.records.deliveries import DeliveryStep, Evidence
from gateway.records.outbox import OutboxRecord, OutboxState, RecipientStatus
from gateway.records.sqlite.connect import migrations
from gateway.records.store import EntryFilter, OutboxChange, Store, StoreError

CASE = "63-BV-2026-0412"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](request, tmp_path)
    yield b
    b.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def doc(oid: str, *recipients: str, case: str = CASE, state: OutboxState = "sent") -> OutboxRecord:
    """A document as the outbox records it; ``sent`` (the default): every recipient accepted by the relay."""
    return OutboxRecord(
        id=oid,
        message_id=f"{oid}@rathaus.test",
        case_ref=case,
        case_folder=case,
        mail_from="rathaus@rathaus.test",
        sha256="cd" * 32,
        size=100,
        path=f"/state/outbox/{oid}.eml",
        signed="none",
        encrypted=False,
        envid=f"{oid}.0011223344556677",
        state=state,
        recipients=[RecipientStatus(r, "sent" if state == "sent" else "pending") for r in recipients],
        created_at=f"2026-12-02T08:00:0{len(oid) % 10}.000000Z",
    )


def step(
    oid: str, rcpt: str, state: DeliveryState, kind: EvidenceKind = "dsn", at: str = "2026-12-02T09:00:00.000000Z"
) -> DeliveryStep:
    return DeliveryStep(oid, rcpt, state, at, Evidence(kind, f"{CASE}/receipts/{oid}-{state}.eml", "ef" * 32, state))


def enqueue(store: Store, rec: OutboxRecord) -> None:
    store.outbox_enqueue(
        rec,
        [AuditEvent("queued", case=rec.case_ref, document=rec.id)],
        deliveries=[step(rec.id, r.address, "queued", "outbox") for r in rec.recipients],
    )


def trail(store: Store, oid: str) -> list[tuple[str, str | None]]:
    return [(e.event, e.details.get("to")) for e in store.select(EntryFilter(document=oid))]


def test_an_enqueued_document_has_a_queued_record_per_recipient_committed_with_it(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test", "b@x.test"))
    records = store.delivery_get("d1")
    assert [(r.recipient, r.state, r.case_ref) for r in records] == [
        ("a@x.test", "queued", CASE),
        ("b@x.test", "queued", CASE),
    ]
    assert records[0].timeline[0].evidence.kind == "outbox" and records[0].timeline[0].before is None
    assert trail(store, "d1") == [("queued", None), ("delivery-state", "queued"), ("delivery-state", "queued")]


def test_applied_steps_commit_with_the_callers_events_and_one_state_event_each(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test"))
    matched = AuditEvent("receipt-matched", case=CASE, document="d1", details={"kind": "dsn"})
    outcomes = store.delivery_apply([step("d1", "a@x.test", "delivered"), step("d1", "a@x.test", "relayed")], [matched])
    assert [(o.kind, o.before, o.after) for o in outcomes] == [
        ("advanced", "queued", "delivered"),
        ("ignored-backwards", "delivered", "delivered"),
    ]
    (rec,) = store.delivery_get("d1")
    assert rec.state == "delivered" and [t.state for t in rec.timeline] == ["queued", "delivered", "relayed"]
    assert rec.timeline[-1].outcome == "ignored-backwards"
    assert rec.timeline[1].evidence == Evidence("dsn", f"{CASE}/receipts/d1-delivered.eml", "ef" * 32, "delivered")
    assert trail(store, "d1")[-3:] == [
        ("receipt-matched", None),
        ("delivery-state", "delivered"),
        ("delivery-state", "delivered"),
    ]
    assert verify_chain(store.entries())[2] == []


def test_a_step_for_an_unknown_document_or_recipient_records_nothing(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test"))
    count = store.count()
    steps = [step("d1", "stranger@x.test", "delivered"), step("nope", "a@x.test", "failed")]
    outcomes = store.delivery_apply(steps, [])
    assert [(o.kind, o.record) for o in outcomes] == [("not-ours", None), ("not-ours", None)]
    assert store.count() == count and [r.recipient for r in store.deliveries_list()] == ["a@x.test"]


def test_a_batch_that_fails_half_way_leaves_neither_records_nor_events(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test"))
    count = store.count()
    with pytest.raises(ValueError, match="cannot name"):
        store.delivery_apply(
            [step("d1", "a@x.test", "delivered"), step("d1", "a@x.test", "deemed-served")],
            [AuditEvent("receipt-matched")],
        )
    (rec,) = store.delivery_get("d1")
    assert rec.state == "queued" and len(rec.timeline) == 1 and store.count() == count


def test_a_document_recorded_without_delivery_records_gets_one_with_its_first_receipt(store: Store) -> None:
    store.outbox_enqueue(doc("old", "a@x.test"), [AuditEvent("queued", document="old")])
    assert store.delivery_get("old") == []
    (outcome,) = store.delivery_apply([step("old", "a@x.test", "delivered")], [])
    assert (outcome.kind, outcome.before, outcome.after) == ("advanced", None, "delivered")
    assert [r.state for r in store.delivery_get("old")] == ["delivered"]


def test_a_receipt_for_a_document_never_handed_over_is_kept_as_contradictory(store: Store) -> None:
    """A cancelled (or held, or still waiting) document was never sent: no receipt can be about it."""
    for oid, state in (("cancel", "cancelled"), ("waits", "deferred"), ("active", "active")):
        enqueue(store, doc(oid, "a@x.test", state=state))
    outcomes = store.delivery_apply(
        [
            step("cancel", "a@x.test", "delivered"),
            step("waits", "a@x.test", "failed"),
            step("active", "a@x.test", "delivered"),
        ],
        [],
    )
    assert [o.kind for o in outcomes] == ["contradictory", "contradictory", "advanced"], "active: the relay has it"
    assert {r.document_id: r.state for r in store.deliveries_list()} == {
        "cancel": "queued",
        "waits": "queued",
        "active": "delivered",
    }
    assert store.delivery_get("cancel")[0].timeline[-1].evidence.path == f"{CASE}/receipts/cancel-delivered.eml"


def test_deliveries_are_listed_by_case_and_state_oldest_document_first(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test", "b@x.test"))
    enqueue(store, doc("d22", "c@x.test", case="OTHER-1"))
    store.delivery_apply([step("d1", "b@x.test", "failed"), step("d22", "c@x.test", "delivered")], [])
    assert [(r.document_id, r.recipient) for r in store.deliveries_list()] == [
        ("d1", "a@x.test"),
        ("d1", "b@x.test"),
        ("d22", "c@x.test"),
    ]
    assert [r.recipient for r in store.deliveries_list(case_ref="OTHER-1")] == ["c@x.test"]
    assert [r.recipient for r in store.deliveries_list(["failed", "delivered"], case_ref=CASE)] == ["b@x.test"]
    assert [r.recipient for r in store.deliveries_list(["queued"])] == ["a@x.test"]
    assert store.delivery_get("nope") == []


def test_the_matcher_finds_documents_by_envid_and_message_id(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test"))
    found = store.outbox_by_envid("d1.0011223344556677")
    assert found is not None and found.id == "d1" and [r.address for r in found.recipients] == ["a@x.test"]
    by_mid = store.outbox_by_message_id("d1@rathaus.test")
    assert by_mid is not None and by_mid.id == "d1"
    assert store.outbox_by_envid("d1") is None and store.outbox_by_message_id("<d1@rathaus.test>") is None


def test_counts_the_oldest_waiting_document_and_bcc_fields_read_back_as_written(store: Store) -> None:
    assert store.outbox_oldest_waiting() is None and store.delivery_counts() == {}
    letter = replace(
        doc("d1", "a@x.test", state="queued"),
        bcc=["c@x.test"],
        key_refusals=["certificate of a@x.test refused: expired (ldap)"],
    )
    copy = replace(doc("d22", "c@x.test", state="deferred"), bcc=["c@x.test"], bcc_copy_of="d1")
    enqueue(store, letter)
    enqueue(store, copy)
    enqueue(store, doc("d333", "b@x.test"))  # sent: not waiting
    got, got_copy = store.outbox_get("d1"), store.outbox_get("d22")
    assert got is not None and (got.bcc, got.bcc_copy_of, got.key_refusals) == (letter.bcc, None, letter.key_refusals)
    assert got_copy is not None and (got_copy.bcc, got_copy.bcc_copy_of, got_copy.key_refusals) == (
        ["c@x.test"],
        "d1",
        [],
    )
    assert store.outbox_oldest_waiting() == letter.created_at
    assert store.delivery_counts() == {"queued": 3}


def test_steps_given_with_an_outbox_change_commit_only_when_the_change_is_made(store: Store) -> None:
    enqueue(store, doc("d1", "a@x.test", state="queued"))
    enqueue(store, doc("d2", "b@x.test", state="queued"))
    one, two = store.outbox_get("d1"), store.outbox_get("d2")
    assert one is not None and two is not None
    one.state = two.state = "sent"
    made = store.outbox_save_many(
        [
            OutboxChange(
                one,
                [AuditEvent("submitted", document="d1")],
                ["queued"],
                deliveries=[step("d1", "a@x.test", "submitted", "relay")],
            ),
            OutboxChange(
                two,
                [AuditEvent("submitted", document="d2")],
                ["active"],
                deliveries=[step("d2", "b@x.test", "submitted", "relay")],
            ),
        ]
    )
    assert made == [True, False]
    assert [r.state for r in store.delivery_get("d1")] == ["submitted"]
    assert [r.state for r in store.delivery_get("d2")] == ["queued"], "a stale change takes its steps with it"
    assert ("delivery-state", "submitted") not in trail(store, "d2")


def test_two_stores_apply_steps_to_one_record_one_after_the_other(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    enqueue(one, doc("d1", "a@x.test"))
    one.delivery_apply([step("d1", "a@x.test", "delivered")], [])
    (outcome,) = two.delivery_apply([step("d1", "a@x.test", "failed")], [])
    assert (outcome.kind, outcome.before) == ("contradictory", "delivered"), "decided against the committed state"
    (rec,) = one.delivery_get("d1")
    assert rec.state == "delivered" and len(rec.timeline) == 3


def test_a_read_only_store_reads_deliveries_and_refuses_to_apply_steps(backend: Backend) -> None:
    writer = backend.open()
    enqueue(writer, doc("d1", "a@x.test"))
    reader = backend.open(readonly=True)
    assert [r.state for r in reader.delivery_get("d1")] == ["queued"]
    with pytest.raises(StoreError):
        reader.delivery_apply([step("d1", "a@x.test", "delivered")], [])
    with reader.snapshot() as snap:
        assert [r.recipient for r in snap.deliveries_list()] == ["a@x.test"]


# -- SQLite: upgrading a database made before delivery records --------------------------------------
@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SQLiteBackend]:
    b = SQLiteBackend(tmp_path)
    yield b
    b.close_all()


def test_a_version_4_database_with_outbox_documents_is_upgraded_and_they_get_records_on_receipt(
    sqlite: SQLiteBackend,
) -> None:
    before = [m for m in migrations() if m.version <= 4]
    assert [m.version for m in before] == [1, 2, 3, 4]
    tamper_sql_script(sqlite.path, "\n".join(m.script for m in before) + "\nPRAGMA user_version=4;")
    tamper_sql(
        sqlite.path,
        "INSERT INTO outbox (id, message_id, case_ref, case_folder, mail_from, sha256, size, path, signed, "
        "encrypted, state, created_at, updated_at, envid) VALUES ('old', 'old@r.test', 'C1', 'C1', 'r@r.test', "
        "'00', 1, '/p', 'none', 0, 'sent', '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'old.env')",
    )
    tamper_sql(
        sqlite.path,
        "INSERT INTO outbox_recipients (outbox_id, position, address, state, updated_at) "
        "VALUES ('old', 0, 'a@x.test', 'sent', '2026-11-30T10:00:00Z')",
    )
    store = sqlite.open()
    assert store.schema_version == migrations()[-1].version >= 5
    assert store.delivery_get("old") == []
    found = store.outbox_by_envid("old.env")
    assert found is not None and found.id == "old"
    store.delivery_apply([step("old", "a@x.test", "delivered")], [])
    assert [(r.state, r.case_ref) for r in store.delivery_get("old")] == [("delivered", "C1")]
    indexes = {row[0] for row in tamper_sql(sqlite.path, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"outbox_envid", "outbox_message_id", "deliveries_state"} <= indexes


def test_a_reader_of_a_version_5_database_reads_its_outbox_documents_without_the_bcc_columns(
    sqlite: SQLiteBackend,
) -> None:
    """``audit verify`` and ``outbox list`` open read-only and never migrate: the new code reads an old ledger."""
    before = [m for m in migrations() if m.version <= 5]
    tamper_sql_script(sqlite.path, "\n".join(m.script for m in before) + "\nPRAGMA user_version=5;")
    tamper_sql(
        sqlite.path,
        "INSERT INTO outbox (id, message_id, case_ref, case_folder, mail_from, sha256, size, path, signed, "
        "encrypted, state, created_at, updated_at, envid) VALUES ('old', 'old@r.test', 'C1', 'C1', 'r@r.test', "
        "'00', 1, '/p', 'none', 0, 'sent', '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'old.env')",
    )
    reader = sqlite.open(readonly=True)
    assert reader.schema_version == 5
    (rec,) = reader.outbox_list()
    assert (rec.id, rec.bcc, rec.bcc_copy_of, rec.key_refusals) == ("old", [], None, [])
