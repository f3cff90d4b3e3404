"""Full verification of the record: the chain, its signatures, the shipped copy and the files.

``chain.verify_chain`` and ``signing.verify_checkpoints`` prove the database holds together;
an auditor also needs to know that the case folders are what the record says was filed,
and that the JSON-lines copy shipped to external storage agrees with the database. This
module joins the four views (audit entries, ledger rows, files on disk, JSON-lines file)
and names every place where they disagree. It holds the database side and the whole run;
the JSON-lines comparison is in ``jsonl.py``, the files on disk in ``files.py``, and the
report and snapshot they share in ``findings.py``.

It only reads, and works with read-only access to the state directory. It is safe to run
while the gateway runs: the disk listing and the JSON-lines file are read *before* the
store's snapshot, so everything they show was committed by then (an entry is published
after its ledger row is planned, a line is exported after its entry is committed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chainview import check_head, handovers, public_key_for, read_chain
from gateway.audit.files import ManifestChecks, check_entries, list_disk_entries
from gateway.audit.findings import DbSnapshot, VerifyReport
from gateway.audit.jsonl import JsonlScan, compare_jsonl, scan_jsonl
from gateway.config import Config
from gateway.records.chain import ChainChecker, ChainHead, entry_hash
from gateway.records.open import open_store, store_exists, store_name
from gateway.records.outbox import OutboxRecord
from gateway.records.signing import verify_checkpoints
from gateway.records.store import AuditReader, ReadSnapshot, Store, StoreError
from gateway.statedir import audit_jsonl_path, audit_public_key_path, cases_dir, quarantine_dir


# -- the database view ---------------------------------------------------------------------------
def snapshot_db(
    store: Store, public_key: Sequence[Ed25519PublicKey] | None, scan: JsonlScan, report: VerifyReport
) -> DbSnapshot:
    """One read snapshot: chain, head, checkpoints, placements, ledger rows and the comparison
    with the JSON-lines file all see the same moment."""
    snap = DbSnapshot()
    with store.snapshot() as reader:
        snap.content_hash = lambda seq: _content_hash(reader, seq)
        snap.stored_hash = lambda seq: _stored_hash(reader, seq)
        checkpoints = reader.checkpoints()
        checker = ChainChecker()
        read_chain(reader.chain_rows(), checker, snap, {cp.seq for cp in checkpoints})
        snap.entries, snap.head_hash = checker.count, checker.prev
        report.breaks.extend(checker.breaks)
        check_head(reader, ChainHead(snap.last_seq, snap.head_hash), report)
        report.checkpoints, report.sealed_up_to, cp_breaks = verify_checkpoints(
            checkpoints, snap.entry_hashes, public_key, handovers(reader)
        )
        report.breaks.extend(cp_breaks)
        snap.checkpoints = [(cp.seq, cp.at) for cp in checkpoints]
        snap.messages = list(reader.message_places())
        for rec in _outbox(reader):
            if rec.sent_path is not None:
                parts = Path(rec.sent_path).parts
                snap.sent_copies["/".join(parts[-3:])] = (rec.id, rec.sent_manifest_sha256)
            elif any(r.state == "sent" for r in rec.recipients):
                snap.sent_unfiled.add(rec.id)
        compare_jsonl(scan, snap, report)
    return snap


def _outbox(reader: ReadSnapshot) -> list[OutboxRecord]:
    """The outbox rows; none in a ledger opened read-only before its outbox migration ran."""
    try:
        return reader.outbox_list()
    except StoreError:
        return []


def _stored_hash(reader: AuditReader, seq: int) -> str | None:
    entry = reader.entry(seq)
    return entry.hash if entry is not None else None


def _content_hash(reader: AuditReader, seq: int) -> str | None:
    """The hash of what the database entry says now (which differs from its stored hash if edited)."""
    entry = reader.entry(seq)
    return entry_hash(entry.body()) if entry is not None else None


# -- the whole verification -----------------------------------------------------------------------
def verify_state(
    config: Config,
    *,
    public_key_file: Path | None = None,
    jsonl_file: Path | None = None,
    between: Callable[[str], None] = lambda phase: None,
) -> VerifyReport:
    """Verify everything the gateway recorded; never writes.

    The three views are read in commit order (disk listing, JSON-lines file, database),
    which is what makes verifying a running gateway safe. ``between(phase)`` is called
    after each of the first two reads (``"disk-listed"``, ``"jsonl-scanned"``), so a
    caller can decide what happens in between: the tests run gateway steps there to
    prove every interleaving, instead of hoping the scheduler produces one.
    """
    import time

    started = time.monotonic()
    report = VerifyReport()
    cases_root = cases_dir(config)
    quarantine_root = quarantine_dir(config)
    public_key = public_key_for(public_key_file or audit_public_key_path(config), report)

    disk, report.case_folders = list_disk_entries(cases_root, quarantine_root)
    between("disk-listed")
    scan = scan_jsonl(jsonl_file or audit_jsonl_path(config))
    between("jsonl-scanned")
    manifests = ManifestChecks(disk)  # on large states, worker processes read the files meanwhile
    try:
        snap = _read_db(config, public_key, scan, report)
        check_entries(disk, snap, cases_root, quarantine_root, report, manifests.result())
    finally:
        manifests.close()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _read_db(
    config: Config, public_key: Sequence[Ed25519PublicKey] | None, scan: JsonlScan, report: VerifyReport
) -> DbSnapshot:
    if not store_exists(config):
        report.warnings.append(f"no ledger at {store_name(config)}: nothing recorded yet")
        snap = DbSnapshot()
        compare_jsonl(scan, snap, report)  # lines without a ledger: the database was removed
    else:
        store = open_store(config, readonly=True)
        try:
            if store.readonly_note:
                report.warnings.append(store.readonly_note)
            snap = snapshot_db(store, public_key, scan, report)
        finally:
            store.close()
    report.entries, report.head_hash = snap.entries, snap.head_hash
    report.ledger_messages = len(snap.messages)
    if report.unsealed:
        report.warnings.append(
            f"{report.unsealed} entries after entry {report.sealed_up_to} are not sealed by a checkpoint yet "
            "(the gateway seals at the end of each run)"
        )
    return snap
