"""The files view of the verification: case folders and quarantine against the ledger and the trail.

Split from ``verify.py`` because listing the published entries, checking each against its
manifest and comparing the manifests with the ledger rows and the placement events is a
self-contained comparison; ``verify.py`` lists the disk first (``list_disk_entries``) and
runs ``check_entries`` after the database snapshot.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.findings import DbSnapshot, Placement, VerifyReport
from gateway.audit.manifests import verify_entry
from gateway.records.chain import ChainBreak
from gateway.records.messages import MessageRecord
from gateway.statedir import STAGING

CHECK_THREADS = 4  # hashing releases the GIL; more threads than cores hides file-open latency
_MANIFEST_KINDS = {"missing": "file-missing", "altered": "file-altered", "unlisted file": "file-unlisted"}


@dataclass(frozen=True)
class DiskEntry:
    """A published entry directory found on disk, keyed like the record keys it."""

    area: str  # "cases" | "quarantine"
    rel: str  # "<case folder>/<entry>" or "<entry>"
    path: Path

    @property
    def message(self) -> str:
        return self.path.name.rsplit("_", 1)[-1]


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
            if p.problem == "unlisted file":
                # Thumbs.db, desktop.ini, a clerk's note: office tools add files to folders they
                # show. Every listed file still verifies, so this is named, not a break.
                report.warnings.append(f"{p.path}: unlisted file in entry {d.rel} (not part of the filed message)")
                continue
            kind = _MANIFEST_KINDS.get(p.problem, "manifest-unreadable")
            report.breaks.append(
                ChainBreak(kind, None, f"{p.problem} (entry {d.rel})", expected=p.expected, found=p.found, file=p.path)
            )
        owner = expected.get(key)
        if owner is None:
            if key in pending:
                continue
            if d.area == "cases" and manifest_sha is not None and snap.refiled_from.get(d.rel) == manifest_sha:
                report.warnings.append(f"{d.path}: leftover copy of refiled message {d.message} (safe to remove)")
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
