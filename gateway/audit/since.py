"""``audit verify --since HEAD_HASH``: prove what was added after a head an earlier run proved.

A provider's trail grows by millions of entries a month; an auditor who verified it once
keeps the head hash that run printed and afterwards checks only the continuation:

- HEAD_HASH must be the hash of an entry of this trail, and that entry's content must
  still hash to it. A hash from another trail, or from a history that was rewritten and
  re-chained since (every later hash changes with it), names no entry: an error, never a
  pass.
- every entry after it links to the one before, starting with prev_hash = HEAD_HASH, is
  numbered without a gap and hashes to its stored hash (``ChainChecker``);
- every checkpoint signed after it verifies with the audit public key and matches the
  chain, and the head row names the last entry;
- every message placed (stored, quarantined, released, refiled) by those entries is in its
  entry on disk, which matches its manifest, and the manifest is the one the trail and the
  ledger recorded.

What lies before HEAD_HASH (an entry edited in place, a case file altered since) is the
earlier run's job; a full ``audit verify`` checks everything again. The JSON-lines copy is
not compared here either (its comparison reads the whole file).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.chainview import check_head, handovers, public_key_for, read_chain
from gateway.audit.findings import DbSnapshot, Placement, VerifyReport
from gateway.audit.manifests import MANIFEST_KINDS, Checked, ForkedChecks, check_manifests, fork_is_safe
from gateway.config import Config
from gateway.records.chain import ChainBreak, ChainChecker, ChainHead
from gateway.records.open import open_store, store_exists, store_name
from gateway.records.signing import verify_checkpoints
from gateway.records.store import ReadSnapshot
from gateway.statedir import audit_public_key_path, cases_dir, quarantine_dir

HEAD_HASH = re.compile(r"[0-9a-f]{64}")


def verify_since(config: Config, head_hash: str, *, public_key_file: Path | None = None) -> VerifyReport:
    """Verify the entries after ``head_hash`` and what they placed; never writes.

    ``ValueError`` when ``head_hash`` is not a sha256 in hex (a typing error, not a finding).
    """
    head_hash = head_hash.strip().lower()
    if not HEAD_HASH.fullmatch(head_hash):
        raise ValueError(f"not an entry hash (64 hex digits): {head_hash!r}")
    started = time.monotonic()
    report = VerifyReport(since_hash=head_hash)
    public_key = public_key_for(public_key_file or audit_public_key_path(config), report)
    if not store_exists(config):
        report.breaks.append(_unknown(head_hash, f"there is no ledger at {store_name(config)}"))
        return report
    files = _FileChecks(config)  # forks its workers first: before the store is opened
    try:
        store = open_store(config, readonly=True)
        try:
            if store.readonly_note:
                report.warnings.append(store.readonly_note)
            with store.snapshot() as reader:
                snap = _continuation(reader, head_hash, public_key, report, files.add)
        finally:
            store.close()
        if snap is not None:
            _check_placed(config, snap, report, files.result(_where(config, snap)))
    finally:
        files.close()
    if snap is not None and report.unsealed:
        report.warnings.append(
            f"{report.unsealed} entries after entry {report.sealed_up_to} are not sealed by a checkpoint yet "
            "(the gateway seals at the end of each run)"
        )
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _unknown(head_hash: str, why: str) -> ChainBreak:
    return ChainBreak(
        "unknown-head",
        None,
        f"the head to continue from is not an entry of this trail ({why}): the trail is another one, or its "
        "history was rewritten before that head",
        expected=head_hash,
    )


def _continuation(
    reader: ReadSnapshot,
    head_hash: str,
    public_key: Sequence[Ed25519PublicKey] | None,
    report: VerifyReport,
    placed: Callable[[Placement], None] | None = None,
) -> DbSnapshot | None:
    """The chain from the old head on, the checkpoints after it and the head row, in one snapshot."""
    seqs = reader.seqs_of_hash(head_hash)
    if not seqs:
        report.breaks.append(_unknown(head_hash, "no entry has this hash"))
        return None
    if len(seqs) > 1:
        report.breaks.append(
            ChainBreak("duplicate-hash", seqs[1], f"entries {', '.join(map(str, seqs))} hold the same hash", head_hash)
        )
    old = seqs[0]
    report.since_seq = old
    rows = reader.chain_rows(since_seq=old - 1)
    first = next(rows, None)
    if first is None or first[0] != old:
        report.breaks.append(_unknown(head_hash, f"entry {old} cannot be read"))
        return None
    # The old head itself: its content must still hash to HEAD_HASH (its link backwards is
    # the earlier run's job). The checker then starts from it, so the first entry after it
    # must name HEAD_HASH as its prev_hash.
    checker = ChainChecker(ChainHead(old - 1, first[9]))
    checker.check(first)
    checker.count = 0
    snap = DbSnapshot()
    after = [cp for cp in reader.checkpoints() if cp.seq > old]
    read_chain(rows, checker, snap, {cp.seq for cp in after}, lines=False, placed=placed)  # no JSON-lines copy
    snap.entries, snap.head_hash = checker.count, checker.prev
    report.entries, report.head_hash = checker.count, checker.prev
    report.breaks.extend(checker.breaks)
    check_head(reader, ChainHead(snap.last_seq or old, checker.prev), report)
    report.checkpoints, sealed, cp_breaks = verify_checkpoints(
        after, snap.entry_hashes, public_key, handovers(reader), proven_up_to=old
    )
    report.sealed_up_to = max(sealed, old) if not cp_breaks else sealed
    report.breaks.extend(cp_breaks)
    snap.messages = list(reader.places_of(list(snap.placements)).values())
    return snap


class _FileChecks:
    """The placed entries' manifest checks, started as the chain names them.

    On a machine with more than one core (and where forking is safe) worker processes
    check the files while this process reads the chain; otherwise ``result`` checks them
    on threads here, once the chain has been read.
    """

    def __init__(self, config: Config) -> None:
        self._roots = {"cases": str(cases_dir(config)), "quarantine": str(quarantine_dir(config))}
        self._workers: ForkedChecks | None = None
        if (os.cpu_count() or 1) > 1 and fork_is_safe():
            self._workers = ForkedChecks()

    def add(self, placement: Placement) -> None:
        if self._workers is not None and placement.rel is not None:
            self._workers.add(_path(self._roots, placement))

    def result(self, where: dict[str, tuple[str, Placement]]) -> dict[str, Checked]:
        """The check of every path in ``where`` (each was added, unless this runs without workers)."""
        done = self._workers.result() if self._workers is not None else {}
        missing = [Path(path) for path, _ in where.values() if path not in done]
        if missing:
            done.update((str(path), checked) for path, checked in check_manifests(missing).items())
        return done

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()


def _path(roots: dict[str, str], placement: Placement) -> str:
    area = "quarantine" if placement.event == "quarantined" else "cases"
    return f"{roots[area]}/{placement.rel}"


def _where(config: Config, snap: DbSnapshot) -> dict[str, tuple[str, Placement]]:
    """Where each message the new entries placed ended up (a message moved since counts where it is now)."""
    roots = {"cases": str(cases_dir(config)), "quarantine": str(quarantine_dir(config))}
    return {msg: (_path(roots, p), p) for msg, p in snap.placements.items() if p.rel is not None}


def _check_placed(config: Config, snap: DbSnapshot, report: VerifyReport, checked: dict[str, Checked]) -> None:
    """Each message the new entries placed: its entry against its manifest, the trail and the ledger."""
    records = {rec.id: rec for rec in snap.messages}
    where = _where(config, snap)
    for msg, (path, placement) in sorted(where.items(), key=lambda item: item[1][1].seq):
        problems, manifest_sha = checked[path]
        rec = records.get(msg)
        if rec is None:
            report.breaks.append(
                ChainBreak(
                    "event-without-message",
                    placement.seq,
                    f"the trail records message {msg} as {placement.event}, but the ledger does not know it",
                    expected=placement.manifest_sha256,
                    file=placement.rel,
                )
            )
            continue
        if rec.state != placement.event:
            report.breaks.append(
                ChainBreak(
                    "placement-differs",
                    placement.seq,
                    f"the trail's last placement of message {msg} is {placement.event!r}, the ledger says "
                    f"{rec.state!r}",
                    expected=placement.event,
                    found=rec.state,
                    file=path,
                )
            )
        report.case_entries += placement.event != "quarantined"
        report.quarantine_entries += placement.event == "quarantined"
        for p in problems:
            if p.problem == "unlisted file":
                report.warnings.append(
                    f"{p.path}: unlisted file in entry {placement.rel} (not part of the filed message)"
                )
                continue
            kind = "entry-missing" if p.problem == "unreadable manifest: missing" else _kind(p.problem)
            report.breaks.append(
                ChainBreak(
                    kind, placement.seq, f"{p.problem} (entry {placement.rel})", p.expected, p.found, file=p.path
                )
            )
        if manifest_sha is None:
            continue
        for kind, recorded, whose in (
            ("manifest-differs-from-audit", placement.manifest_sha256, f"audit entry {placement.seq}"),
            ("manifest-differs-from-ledger", rec.manifest_sha256, "the ledger"),
        ):
            if recorded != manifest_sha:
                report.breaks.append(
                    ChainBreak(
                        kind,
                        placement.seq,
                        f"manifest of message {msg} is not the one {whose} recorded",
                        expected=recorded,
                        found=manifest_sha,
                        file=f"{path}/manifest.json",
                    )
                )
    report.ledger_messages = len(records)


def _kind(problem: str) -> str:
    return MANIFEST_KINDS.get(problem, "manifest-unreadable")
