"""The JSON-lines view of the verification: the shipped copy of the trail against the database.

Split from ``verify.py`` because reading the JSON-lines file and naming how it differs from
the ledger (missing, altered, duplicated, reordered or unknown lines, a lagging or truncated
file) is a self-contained comparison; ``verify.py`` calls ``scan_jsonl`` before it takes the
database snapshot and ``compare_jsonl`` inside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.audit.findings import DbSnapshot, VerifyReport
from gateway.records.chain import AuditEntry, ChainBreak, entry_hash

#: An export that started just before a checkpoint's commit may finish just after it without
#: the checkpointed entries (another mailbox's worker exports them a moment later).
EXPORT_GRACE = 1.0  # seconds


@dataclass(frozen=True)
class JsonlLine:
    number: int
    offset: int
    length: int
    digest: bytes


@dataclass
class JsonlScan:
    """Every complete line's place and digest, in flat arrays (a long trail has millions of lines)."""

    path: Path
    exists: bool = False
    mtime: float = 0.0
    count: int = 0
    digests: bytearray = field(default_factory=bytearray)  # 32 bytes per line
    offsets: array[int] = field(default_factory=lambda: array("q"))
    torn_tail: bool = False

    @property
    def lines(self) -> Iterator[JsonlLine]:
        for i in range(self.count):
            length = self.offsets[i + 1] - self.offsets[i] - 1
            yield JsonlLine(i + 1, self.offsets[i], length, bytes(self.digests[i * 32 : i * 32 + 32]))


_BLOCK = 1 << 22


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
            _digest_lines(f.read, scan)
    except FileNotFoundError:
        pass
    finally:
        if lock is not None:
            lock.close()
    return scan


def _digest_lines(read: Callable[[int], bytes], scan: JsonlScan) -> None:
    """Read in large blocks and digest each complete line; ``offsets`` ends one past the last line."""
    sha256, digests, offsets = hashlib.sha256, scan.digests, scan.offsets
    offsets.append(0)
    pos, rest = 0, b""
    while block := read(_BLOCK):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for body in lines:
            digests += sha256(body).digest()
            pos += len(body) + 1
            offsets.append(pos)
    scan.count = len(offsets) - 1
    scan.torn_tail = bool(rest)  # a crash mid-write; the next export rewrites it


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
    report.jsonl_lines = scan.count
    prefix = snap.line_digests.dense_prefix(scan.count)
    if prefix is not None and scan.digests == prefix:
        # Line n holds entry n for every line: nothing is missing, reordered or altered.
        _after_lines(scan, snap, scan.count, report)
        return
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
    top = min(max_seen, snap.line_digests.last())
    missing = [s for s in range(1, top + 1) if s not in seen]
    for first, last in _ranges(missing):
        report.breaks.append(
            ChainBreak(
                "jsonl-missing-lines",
                first,
                f"entries {first}-{last} are in the ledger but not in the JSON-lines file"
                if last != first
                else f"entry {first} is in the ledger but not in the JSON-lines file",
                expected=snap.stored_hash(first),
                found=None,
                file=str(scan.path),
            )
        )
    _after_lines(scan, snap, max_seen, report)


def _after_lines(scan: JsonlScan, snap: DbSnapshot, max_seen: int, report: VerifyReport) -> None:
    """What follows the last line: a torn tail, and entries the file lacks (lagging or truncated)."""
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
