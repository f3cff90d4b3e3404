"""The trail as the database holds it: reading the chain, its head row and the public key.

Both verifications use it: the full one (``verify.py``) from the first entry, ``--since``
(``since.py``) from a kept head. It is apart from ``verify.py`` so that ``--since``, an
auditor's daily run, imports neither the disk listing nor the JSON-lines comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from itertools import islice
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.findings import DbSnapshot, Placement, VerifyReport
from gateway.records.chain import ChainBreak, ChainChecker, ChainHead, ChainRow, row_entry
from gateway.records.signing import KEY_ROTATED, Handover, handover_of, key_id, load_public_keys
from gateway.records.store import AuditReader, EntryFilter

PLACEMENT_EVENTS = ("stored", "quarantined", "released")


def check_head(reader: AuditReader, last: ChainHead, report: VerifyReport) -> None:
    """The head row is moved in the transaction that appends, so it names the last entry.

    A head row that names another one means entries were removed, added or rewritten
    without the gateway (which the chain and the checkpoints then show in detail).
    """
    head = reader.head()
    if head is None:
        report.warnings.append(
            "the ledger has no chain head row (not yet opened for writing since its upgrade, or the row was removed)"
        )
        return
    if head != last:
        report.breaks.append(
            ChainBreak(
                "head-differs",
                head.seq,
                f"the chain's head row names entry {head.seq} as the last one, the trail ends at entry {last.seq}"
                if head.seq != last.seq
                else f"the chain's head row holds another hash than entry {head.seq}",
                expected=f"{head.seq} {head.hash}",
                found=f"{last.seq} {last.hash}",
            )
        )


def read_chain(
    rows: Iterator[ChainRow],
    checker: ChainChecker,
    snap: DbSnapshot,
    sealed: Container[int],
    *,
    lines: bool = True,
    placed: Callable[[Placement], None] | None = None,
) -> None:
    """Check every row in order and keep what the other views need: line digests, placements,
    and the stored hashes of the entries in ``sealed`` (the checkpoints' seqs) and of the last.

    Only placement events are parsed (``row_entry``); the others are hashed as stored.
    ``lines=False`` (no JSON-lines copy to compare) leaves the line digests out. ``placed``
    hears of each placement as it is read, so the files can be checked meanwhile (a later
    entry may still move the message: ``snap.placements`` holds where it ended up).
    """
    if not lines:
        _read_rows(rows, checker, snap, sealed, placed)
        return
    add_line, check, hashes = snap.line_digests.add, checker.check, snap.entry_hashes
    row: ChainRow | None = None
    for row in rows:
        seq = row[0]
        add_line(seq, check(row))
        if seq in sealed:
            hashes[seq] = row[10]
        if row[2] in _PLACING and row[4] is not None:
            _place(row, snap, placed)
    if row is not None:
        snap.last_seq = row[0]
        hashes[row[0]] = row[10]


def _read_rows(
    rows: Iterator[ChainRow],
    checker: ChainChecker,
    snap: DbSnapshot,
    sealed: Container[int],
    placed: Callable[[Placement], None] | None,
) -> None:
    """``read_chain`` without line digests, a batch of rows at a time (``ChainChecker.check_entries``)."""
    hashes = snap.entry_hashes
    while batch := list(islice(rows, _BATCH)):
        checker.check_entries(batch)
        for row in batch:
            if row[0] in sealed:
                hashes[row[0]] = row[10]
            if row[2] in _PLACING and row[4] is not None:
                _place(row, snap, placed)
        snap.last_seq = batch[-1][0]
        hashes[snap.last_seq] = batch[-1][10]


_BATCH = 2000


_PLACING = frozenset((*PLACEMENT_EVENTS, "refiled"))


def _place(row: ChainRow, snap: DbSnapshot, placed: Callable[[Placement], None] | None = None) -> None:
    try:
        e = row_entry(row)
    except ValueError:
        return  # the checker names the row (altered-entry); it places nothing
    if not isinstance(e.details, dict) or e.message is None:
        return
    if e.event in PLACEMENT_EVENTS:
        path = e.details.get("path")
        snap.placements[e.message] = Placement(
            e.seq, e.event, path if isinstance(path, str) else None, e.details.get("manifest_sha256")
        )
    elif e.message in snap.placements:
        # A move keeps the message's state (stored or released) and changes where it is.
        path, before = e.details.get("path"), snap.placements[e.message]
        snap.placements[e.message] = Placement(
            e.seq, before.event, path if isinstance(path, str) else None, e.details.get("manifest_sha256")
        )
        source, left = e.details.get("from"), e.details.get("from_manifest_sha256")
        if isinstance(source, str) and isinstance(left, str):
            snap.refiled_from[source] = left
    else:
        return
    if placed is not None:
        placed(snap.placements[e.message])


def public_key_for(path: Path, report: VerifyReport) -> list[Ed25519PublicKey] | None:
    """The auditor's audit public key(s): the file may list each key the gateway used, oldest first."""
    try:
        keys = load_public_keys(path)
    except FileNotFoundError:
        report.warnings.append(f"no audit public key at {path}: checkpoint signatures cannot be checked")
        return None
    except ValueError as exc:
        report.breaks.append(ChainBreak("bad-public-key", None, str(exc), file=str(path)))
        return None
    report.public_key_id = ", ".join(key_id(k) for k in keys)
    return keys


def handovers(reader: AuditReader) -> list[Handover]:
    """The key rotations the trail records (``audit rotate-key``)."""
    return [handover_of(e.seq, e.details) for e in reader.select(EntryFilter(events=(KEY_ROTATED,)))]
