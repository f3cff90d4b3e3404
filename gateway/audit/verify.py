"""Full verification of the record: the chain, its signatures, the shipped copy and the files.

``chain.verify_chain`` and ``signing.verify_checkpoints`` prove the database holds together;
an auditor also needs to know that the case folders are what the record says was filed,
and that the JSON-lines copy shipped to external storage agrees with the database. This
module joins the four views (audit entries, ledger rows, files on disk, JSON-lines file)
and names every place where they disagree.

It only reads, and works with read-only access to the state directory. It is safe to run
while the gateway runs: the disk listing and the JSON-lines file are read *before* the
store's snapshot, so everything they show was committed by then (an entry is published
after its ledger row is planned, a line is exported after its entry is committed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.audit.manifests import verify_entry
from gateway.config import Config
from gateway.records.chain import GENESIS, AuditEntry, ChainBreak, ChainHead, canonical, entry_hash, verify_chain
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store
from gateway.records.signing import key_id, load_public_key, verify_checkpoints
from gateway.records.store import AuditReader, Store
from gateway.statedir import STAGING, audit_jsonl_path, audit_public_key_path, cases_dir, ledger_path, quarantine_dir

PLACEMENT_EVENTS = ("stored", "quarantined", "released")
#: An export that started just before a checkpoint's commit may finish just after it without
#: the checkpointed entries (another mailbox's worker exports them a moment later).
EXPORT_GRACE = 1.0  # seconds
CHECK_THREADS = 4  # hashing releases the GIL; more threads than cores hides file-open latency
_MANIFEST_KINDS = {"missing": "file-missing", "altered": "file-altered", "unlisted file": "file-unlisted"}


# -- the report -----------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    """What was checked and every break found; ``ok`` decides the exit status."""

    entries: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    sealed_up_to: int = 0
    public_key_id: str | None = None
    case_folders: int = 0
    case_entries: int = 0
    quarantine_entries: int = 0
    ledger_messages: int = 0
    jsonl_file: str | None = None
    jsonl_lines: int = 0
    jsonl_lagging: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def unsealed(self) -> int:
        return max(0, self.entries - self.sealed_up_to)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("breaks",)}
        out["ok"] = self.ok
        out["unsealed"] = self.unsealed
        out["breaks"] = [b.to_json() for b in self.breaks]
        return out


# -- what each view contributes -------------------------------------------------------------------
@dataclass(frozen=True)
class DiskEntry:
    """A published entry directory found on disk, keyed like the record keys it."""

    area: str  # "cases" | "quarantine"
    rel: str  # "<case folder>/<entry>" or "<entry>"
    path: Path

    @property
    def message(self) -> str:
        return self.path.name.rsplit("_", 1)[-1]


@dataclass(frozen=True)
class JsonlLine:
    number: int
    offset: int
    length: int
    digest: bytes


@dataclass
class JsonlScan:
    path: Path
    exists: bool = False
    mtime: float = 0.0
    lines: list[JsonlLine] = field(default_factory=list)
    torn_tail: bool = False


@dataclass(frozen=True)
class Placement:
    """The last stored/quarantined/released event of a message: where the record says it is."""

    seq: int
    event: str
    rel: str | None
    manifest_sha256: str | None


@dataclass
class DbSnapshot:
    entries: int = 0
    head_hash: str = GENESIS
    line_digests: dict[int, bytes] = field(default_factory=dict)
    entry_hashes: dict[int, str] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # (seq, at)
    messages: list[MessageRecord] = field(default_factory=list)
    content_hash: Callable[[int], str | None] = lambda seq: None


def list_disk_entries(cases_dir: Path, quarantine_dir: Path) -> tuple[list[DiskEntry], int]:
    """Every published entry (staging excluded); returns (entries, number of case folders)."""
    out: list[DiskEntry] = []
    folders = 0
    for folder in _subdirs(cases_dir):
        folders += 1
        out.extend(DiskEntry("cases", f"{folder.name}/{e.name}", e) for e in _subdirs(folder))
    out.extend(DiskEntry("quarantine", e.name, e) for e in _subdirs(quarantine_dir))
    return out, folders


def _subdirs(d: Path) -> list[Path]:
    try:
        with os.scandir(d) as it:
            return sorted(
                Path(e.path) for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(STAGING[0])
            )
    except FileNotFoundError:
        return []


def scan_jsonl(path: Path) -> JsonlScan:
    """Digest every line of the JSON-lines file, under the exporter's lock when it exists."""
    scan = JsonlScan(path)
    lock_path = path.with_name(path.name + ".lock")
    lock = None
    try:
        lock = open(lock_path, "rb")  # noqa: SIM115 - held across the read below
        fcntl.flock(lock, fcntl.LOCK_SH)
    except OSError:
        lock = None
    try:
        with open(path, "rb") as f:
            scan.exists = True
            scan.mtime = os.fstat(f.fileno()).st_mtime
            offset = 0
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    scan.torn_tail = True  # a crash mid-write; the next export rewrites it
                    break
                body = line[:-1]
                scan.lines.append(JsonlLine(number, offset, len(body), hashlib.sha256(body).digest()))
                offset += len(line)
    except FileNotFoundError:
        pass
    finally:
        if lock is not None:
            lock.close()
    return scan


def snapshot_db(store: Store, public_key: Ed25519PublicKey | None, scan: JsonlScan, report: VerifyReport) -> DbSnapshot:
    """One read snapshot: chain, head, checkpoints, placements, ledger rows and the comparison
    with the JSON-lines file all see the same moment."""
    snap = DbSnapshot()
    with store.snapshot() as reader:
        snap.content_hash = lambda seq: _content_hash(reader, seq)
        n, head, breaks = verify_chain(_observe(reader.entries(), snap))
        snap.entries, snap.head_hash = n, head
        report.breaks.extend(breaks)
        check_head(reader, snap, report)
        checkpoints = reader.checkpoints()
        report.checkpoints, report.sealed_up_to, cp_breaks = verify_checkpoints(
            checkpoints, snap.entry_hashes, public_key
        )
        report.breaks.extend(cp_breaks)
        snap.checkpoints = [(cp.seq, cp.at) for cp in checkpoints]
        snap.messages = list(reader.all_messages())
        compare_jsonl(scan, snap, report)
    return snap


def _content_hash(reader: AuditReader, seq: int) -> str | None:
    """The hash of what the database entry says now (which differs from its stored hash if edited)."""
    entry = reader.entry(seq)
    return entry_hash(entry.body()) if entry is not None else None


def check_head(reader: AuditReader, snap: DbSnapshot, report: VerifyReport) -> None:
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
    last = ChainHead(max(snap.entry_hashes, default=0), snap.head_hash)
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


def _observe(entries: Iterator[AuditEntry], snap: DbSnapshot) -> Iterator[AuditEntry]:
    for e in entries:
        snap.line_digests[e.seq] = hashlib.sha256(canonical(e.to_json())).digest()
        snap.entry_hashes[e.seq] = e.hash
        if e.event in PLACEMENT_EVENTS and e.message is not None:
            path = e.details.get("path")
            snap.placements[e.message] = Placement(
                e.seq, e.event, path if isinstance(path, str) else None, e.details.get("manifest_sha256")
            )
        yield e


# -- comparing the JSON-lines file with the database ----------------------------------------------
def compare_jsonl(scan: JsonlScan, snap: DbSnapshot, report: VerifyReport) -> None:
    """Every line must equal the entry with its seq; a shorter file only lags (see below).

    Deleted, reordered, duplicated or changed lines are breaks, and so is a line the
    database does not have (the database lost entries). A file that is a prefix of the
    database is lagging: the exporter runs after each commit and catches up on the next
    start. It is a break ("jsonl-truncated") when the file lacks an entry covered by a
    checkpoint signed *before* the file was last written (by more than ``EXPORT_GRACE``),
    because every export writes all committed entries: lines were removed.
    """
    report.jsonl_file = str(scan.path)
    if not scan.exists:
        if snap.checkpoints:
            report.breaks.append(
                ChainBreak(
                    "jsonl-missing",
                    None,
                    "the JSON-lines file is missing although the ledger holds sealed entries",
                    file=str(scan.path),
                )
            )
        elif snap.entries:
            report.warnings.append(f"no JSON-lines file at {scan.path}")
        return
    report.jsonl_lines = len(scan.lines)
    seen: set[int] = set()
    unknown: list[tuple[int, str | None]] = []
    max_seen = 0
    with open(scan.path, "rb") as f:
        for line in scan.lines:
            expected = max_seen + 1
            if snap.line_digests.get(expected) == line.digest and expected not in seen:
                seq = expected
            else:
                f.seek(line.offset)
                raw = f.read(line.length)
                seq_or_none = _classify_line(raw, line, snap, seen, max_seen, unknown, report)
                if seq_or_none is None:
                    continue
                seq = seq_or_none
            seen.add(seq)
            max_seen = max(max_seen, seq)
    _report_unknown(unknown, report)
    top = min(max_seen, max(snap.line_digests, default=0))
    missing = [s for s in range(1, top + 1) if s not in seen]
    for first, last in _ranges(missing):
        report.breaks.append(
            ChainBreak(
                "jsonl-missing-lines",
                first,
                f"entries {first}-{last} are in the ledger but not in the JSON-lines file"
                if last != first
                else f"entry {first} is in the ledger but not in the JSON-lines file",
                expected=snap.entry_hashes.get(first),
                found=None,
                file=str(scan.path),
            )
        )
    report.jsonl_lagging = max(0, snap.entries - max_seen)
    if scan.torn_tail:
        report.warnings.append(
            f"{scan.path}: the last line is incomplete (a crash mid-write); the next export repairs it"
        )
    if report.jsonl_lagging:
        _check_lag(scan, snap, max_seen, report)


def _classify_line(
    raw: bytes,
    line: JsonlLine,
    snap: DbSnapshot,
    seen: set[int],
    max_seen: int,
    unknown: list[tuple[int, str | None]],
    report: VerifyReport,
) -> int | None:
    """Name what is wrong with a line that is not the next expected entry; its seq if usable."""
    where = f"{line.number}"
    try:
        obj = json.loads(raw)
        seq = int(obj["seq"])
    except (ValueError, KeyError, TypeError):
        report.breaks.append(
            ChainBreak("jsonl-unreadable-line", None, f"line {where} is not an audit entry", file=_file(report))
        )
        return None
    if seq not in snap.line_digests:
        unknown.append((seq, _recomputed_hash(obj)))
        return seq
    if snap.line_digests[seq] != line.digest:
        report.breaks.append(
            ChainBreak(
                "jsonl-altered-line",
                seq,
                f"line {where} differs from ledger entry {seq} (expected: hash of the ledger's entry, "
                "found: hash of the line's content)",
                expected=snap.content_hash(seq),
                found=_recomputed_hash(obj),
                file=_file(report),
            )
        )
    if seq in seen:
        report.breaks.append(
            ChainBreak("jsonl-duplicate-line", seq, f"line {where} repeats entry {seq}", file=_file(report))
        )
    elif seq < max_seen:
        report.breaks.append(
            ChainBreak(
                "jsonl-out-of-order",
                seq,
                f"line {where} holds entry {seq} after entry {max_seen}",
                expected=str(max_seen + 1),
                found=str(seq),
                file=_file(report),
            )
        )
    return seq


def _report_unknown(unknown: list[tuple[int, str | None]], report: VerifyReport) -> None:
    """Lines whose entries the database does not have, one break per run of numbers."""
    found = dict(unknown)
    for first, last in _ranges(sorted(found)):
        what = f"entries {first}-{last}" if last != first else f"entry {first}"
        report.breaks.append(
            ChainBreak(
                "jsonl-entry-not-in-ledger",
                first,
                f"the JSON-lines file holds {what}, which the ledger does not have (entries lost from the database)",
                expected=None,
                found=found[first],
                file=_file(report),
            )
        )


def _recomputed_hash(obj: Any) -> str | None:
    """The hash of what the line actually says (not the hash it claims)."""
    try:
        return entry_hash(AuditEntry.from_json(obj).body())
    except (KeyError, TypeError, AttributeError):
        return None


def _file(report: VerifyReport) -> str | None:
    return report.jsonl_file


def _check_lag(scan: JsonlScan, snap: DbSnapshot, max_seen: int, report: VerifyReport) -> None:
    written_after = [
        (seq, at) for seq, at in snap.checkpoints if seq > max_seen and _epoch(at) + EXPORT_GRACE < scan.mtime
    ]
    if written_after:
        seq, at = written_after[0]
        report.breaks.append(
            ChainBreak(
                "jsonl-truncated",
                max_seen + 1,
                f"the JSON-lines file ends at entry {max_seen}, but was written after checkpoint {seq} "
                f"(signed {at}) sealed entries up to {seq}: lines were removed",
                expected=str(seq),
                found=str(max_seen),
                file=str(scan.path),
            )
        )
    else:
        report.warnings.append(
            f"the JSON-lines file lags {report.jsonl_lagging} entries behind the ledger "
            "(written after the last export; the next export catches up)"
        )


def _epoch(at: str) -> float:
    """Seconds since the epoch; an unreadable time counts as "later than anything"."""
    try:
        return datetime.fromisoformat(at).timestamp()
    except ValueError:
        return float("inf")


def _ranges(nums: list[int]) -> Iterator[tuple[int, int]]:
    if not nums:
        return
    start = prev = nums[0]
    for n in nums[1:]:
        if n != prev + 1:
            yield start, prev
            start = n
        prev = n
    yield start, prev


# -- comparing files, ledger rows and placement events ------------------------------------------
def record_key(rec: MessageRecord) -> tuple[str, str] | None:
    """Where the ledger row says the message's entry is, in the disk listing's terms."""
    if rec.path is None:
        return None
    state = rec.target_state if rec.state == "processing" else rec.state
    parts = Path(rec.path).parts
    if state == "quarantined":
        return "quarantine", parts[-1]
    if state in ("stored", "released"):
        return "cases", "/".join(parts[-2:])
    return None


def check_entries(
    disk: list[DiskEntry], snap: DbSnapshot, cases_dir: Path, quarantine_dir: Path, report: VerifyReport
) -> None:
    """Each entry against its manifest, and each manifest against the ledger and the trail."""
    by_key = {(d.area, d.rel): d for d in disk}
    expected: dict[tuple[str, str], MessageRecord] = {}
    pending: set[tuple[str, str]] = set()
    for rec in snap.messages:
        key = record_key(rec)
        if key is None:
            continue
        if rec.state == "processing":
            pending.add(key)
            report.warnings.append(
                f"message {rec.id} is still in processing (an interrupted or running batch; "
                "the next run finishes or abandons it)"
            )
            continue
        expected[key] = rec
        if key not in by_key:
            root = cases_dir if key[0] == "cases" else quarantine_dir
            path = root / key[1]
            if path.is_dir():  # published after the disk listing was taken
                by_key[key] = DiskEntry(key[0], key[1], path)
            else:
                report.breaks.append(
                    ChainBreak(
                        "entry-missing",
                        snap.placements[rec.id].seq if rec.id in snap.placements else None,
                        f"message {rec.id} is {rec.state} in the ledger, but its entry is gone",
                        expected=rec.manifest_sha256,
                        found=None,
                        file=str(path),
                    )
                )
    report.case_entries = sum(1 for k in by_key if k[0] == "cases")
    report.quarantine_entries = sum(1 for k in by_key if k[0] == "quarantine")
    states = {rec.id: rec.state for rec in snap.messages}

    results = _hash_entries([d.path for d in by_key.values()])
    for key, d in sorted(by_key.items()):
        problems, manifest_sha = results[d.path]
        if d.area == "quarantine" and not d.path.exists():
            report.warnings.append(f"{d.path}: left the quarantine during the check (released meanwhile?)")
            continue
        for p in problems:
            kind = _MANIFEST_KINDS.get(p.problem, "manifest-unreadable")
            report.breaks.append(
                ChainBreak(kind, None, f"{p.problem} (entry {d.rel})", expected=p.expected, found=p.found, file=p.path)
            )
        owner = expected.get(key)
        if owner is None:
            if key in pending:
                continue
            if d.area == "quarantine" and states.get(d.message) == "released":
                report.warnings.append(
                    f"{d.path}: leftover quarantine copy of released message {d.message} (safe to remove)"
                )
                continue
            report.breaks.append(
                ChainBreak(
                    "entry-unknown-to-ledger",
                    None,
                    f"entry {d.rel} is not recorded in the ledger",
                    expected=None,
                    found=manifest_sha,
                    file=str(d.path),
                )
            )
            continue
        _compare_manifest(d, owner, manifest_sha, snap.placements.get(owner.id), report)

    for msg, placement in snap.placements.items():
        if msg not in states:
            report.breaks.append(
                ChainBreak(
                    "event-without-message",
                    placement.seq,
                    f"the trail records message {msg} as {placement.event}, but the ledger does not know it",
                    expected=placement.manifest_sha256,
                    file=placement.rel,
                )
            )


def _compare_manifest(
    d: DiskEntry, rec: MessageRecord, manifest_sha: str | None, placement: Placement | None, report: VerifyReport
) -> None:
    manifest_file = str(d.path / "manifest.json")
    if manifest_sha is not None and rec.manifest_sha256 != manifest_sha:
        report.breaks.append(
            ChainBreak(
                "manifest-differs-from-ledger",
                placement.seq if placement else None,
                f"manifest of message {rec.id} is not the one the ledger recorded",
                expected=rec.manifest_sha256,
                found=manifest_sha,
                file=manifest_file,
            )
        )
    if placement is None:
        report.breaks.append(
            ChainBreak(
                "no-placement-event",
                None,
                f"message {rec.id} is {rec.state} in the ledger, but no placement event is in the trail",
                file=str(d.path),
            )
        )
        return
    if placement.event != rec.state:
        report.breaks.append(
            ChainBreak(
                "placement-differs",
                placement.seq,
                f"the trail's last placement of message {rec.id} is {placement.event!r}, the ledger says {rec.state!r}",
                expected=placement.event,
                found=rec.state,
                file=str(d.path),
            )
        )
    if placement.rel is not None and placement.rel != d.rel:
        report.breaks.append(
            ChainBreak(
                "placement-differs",
                placement.seq,
                f"the trail placed message {rec.id} at {placement.rel!r}",
                expected=placement.rel,
                found=d.rel,
                file=str(d.path),
            )
        )
    if manifest_sha is not None and placement.manifest_sha256 != manifest_sha:
        report.breaks.append(
            ChainBreak(
                "manifest-differs-from-audit",
                placement.seq,
                f"manifest of message {rec.id} is not the one audit entry {placement.seq} recorded",
                expected=placement.manifest_sha256,
                found=manifest_sha,
                file=manifest_file,
            )
        )


def _hash_entries(paths: list[Path]) -> dict[Path, tuple[list[Any], str | None]]:
    def one(path: Path) -> tuple[list[Any], str | None]:
        try:
            sha: str | None = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
        except OSError:
            sha = None
        return verify_entry(path), sha

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


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
    public_key = _public_key(public_key_file or audit_public_key_path(config), report)

    disk, report.case_folders = list_disk_entries(cases_root, quarantine_root)
    between("disk-listed")
    scan = scan_jsonl(jsonl_file or audit_jsonl_path(config))
    between("jsonl-scanned")
    db = ledger_path(config)
    if not db.exists():
        report.warnings.append(f"no ledger at {db}: nothing recorded yet")
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
    check_entries(disk, snap, cases_root, quarantine_root, report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _public_key(path: Path, report: VerifyReport) -> Ed25519PublicKey | None:
    try:
        key = load_public_key(path)
    except FileNotFoundError:
        report.warnings.append(f"no audit public key at {path}: checkpoint signatures cannot be checked")
        return None
    except ValueError as exc:
        report.breaks.append(ChainBreak("bad-public-key", None, str(exc), file=str(path)))
        return None
    report.public_key_id = key_id(key)
    return key
