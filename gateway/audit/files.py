"""The files view of the verification: case folders and quarantine against the ledger and the trail.

Split from ``verify.py`` because listing the published entries, checking each against its
manifest and comparing the manifests with the ledger rows and the placement events is a
self-contained comparison; ``verify.py`` lists the disk first (``list_disk_entries``) and
runs ``check_entries`` after the database snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.audit.findings import DbSnapshot, Placement, VerifyReport
from gateway.audit.manifests import MANIFEST_KINDS, BackgroundChecks, Checked, check_manifests
from gateway.filing.sent import SENT
from gateway.receipts.placement import RECEIPTS
from gateway.records.chain import ChainBreak
from gateway.records.messages import MessagePlace
from gateway.statedir import STAGING

#: From this many entries on, the manifests are checked in worker processes (one per core):
#: reading and hashing pays for starting them, and the parent reads the database meanwhile.
PROCESS_FROM = 2000


@dataclass(frozen=True)
class DiskEntry:
    """A published entry directory found on disk, keyed like the record keys it.

    ``link`` is set for a case folder or entry that is a symbolic link (to ``link``):
    whatever is behind it is outside its root, whether or not the target happens to lie
    inside; it is reported, never read.
    """

    area: str  # "cases" | "quarantine"
    rel: str  # "<case folder>/<entry>" or "<entry>" (or "<case folder>" for a linked folder)
    path: Path
    link: str | None = None

    @property
    def message(self) -> str:
        return self.path.name.rsplit("_", 1)[-1]


def list_disk_entries(cases_dir: Path, quarantine_dir: Path) -> tuple[list[DiskEntry], int]:
    """Every published entry (staging excluded), and every link where a folder or entry belongs.

    Returns (entries, number of case folders). Links are listed, not followed: a case
    folder swapped for a link would otherwise hide the entries written through it.
    """
    out: list[DiskEntry] = []
    folders = 0
    dirs, links = _subdirs(cases_dir, links_too=True)
    out.extend(DiskEntry("cases", p.name, p, link=_target(p)) for p in links)
    for folder in dirs:
        folders += 1
        entries, linked = _subdirs(folder)
        if any(e.name == SENT for e in entries):
            entries = [e for e in entries if e.name != SENT]
            sent, sent_links = _subdirs(folder / SENT)
            out.extend(DiskEntry("sent", f"{folder.name}/{SENT}/{e.name}", e) for e in sent)
            out.extend(DiskEntry("sent", f"{folder.name}/{SENT}/{e.name}", e, link=_target(e)) for e in sent_links)
        if any(e.name == RECEIPTS for e in entries):
            entries = [e for e in entries if e.name != RECEIPTS]
            got, got_links = _subdirs(folder / RECEIPTS)
            out.extend(DiskEntry("cases", f"{folder.name}/{RECEIPTS}/{e.name}", e) for e in got)
            out.extend(DiskEntry("cases", f"{folder.name}/{RECEIPTS}/{e.name}", e, link=_target(e)) for e in got_links)
        out.extend(DiskEntry("cases", f"{folder.name}/{e.name}", e) for e in entries)
        out.extend(DiskEntry("cases", f"{folder.name}/{e.name}", e, link=_target(e)) for e in linked)
    entries, linked = _subdirs(quarantine_dir)
    out.extend(DiskEntry("quarantine", e.name, e) for e in entries)
    out.extend(DiskEntry("quarantine", e.name, e, link=_target(e)) for e in linked)
    return out, folders


def _subdirs(d: Path, *, links_too: bool = False) -> tuple[list[Path], list[Path]]:
    """(real subdirectories, symbolic links) of ``d``; staging and hidden names are skipped.

    ``links_too`` also lists hidden links (in the cases root, a linked ``.incoming`` is
    the first step of an attack on the staging clean-up of older versions).
    """
    try:
        with os.scandir(d) as it:
            found = list(it)
    except FileNotFoundError:
        return [], []
    dirs = sorted(Path(e.path) for e in found if e.is_dir(follow_symlinks=False) and not e.name.startswith(STAGING[0]))
    links = sorted(Path(e.path) for e in found if e.is_symlink() and (links_too or not e.name.startswith(STAGING[0])))
    return dirs, links


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


def _linked_component(root: Path, rel: str) -> Path | None:
    """The first component of ``root/rel`` below ``root`` that is a symbolic link, if any."""
    p = root
    for part in Path(rel).parts:
        p = p / part
        if p.is_symlink():
            return p
    return None


# -- comparing files, ledger rows and placement events ------------------------------------------
def record_key(rec: MessagePlace) -> tuple[str, str] | None:
    """Where the ledger row says the message's entry is, in the disk listing's terms."""
    if rec.path is None:
        return None
    state = rec.target_state if rec.state == "processing" else rec.state
    parts = Path(rec.path).parts
    if state == "quarantined":
        return "quarantine", parts[-1]
    if state in ("stored", "released"):
        return "cases", "/".join(parts[-3:] if len(parts) > 2 and parts[-2] == RECEIPTS else parts[-2:])
    return None


def check_entries(
    disk: list[DiskEntry],
    snap: DbSnapshot,
    cases_dir: Path,
    quarantine_dir: Path,
    report: VerifyReport,
    checked: Mapping[Path, Checked] | None = None,
) -> None:
    """Each entry against its manifest, and each manifest against the ledger and the trail.

    ``checked``: the manifest checks already made (``ManifestChecks``, started before the
    database was read); entries not in it are checked here.
    """
    done = checked or {}
    for d in disk:
        if d.link is not None:
            report.breaks.append(
                ChainBreak(
                    "entry-outside-root",
                    None,
                    f"{'case folder' if '/' not in d.rel and d.area == 'cases' else 'entry'} {d.rel} is a symbolic "
                    "link: what is behind it is outside the gateway's folders",
                    expected=None,
                    found=d.link,
                    file=str(d.path),
                )
            )
    _check_sent([d for d in disk if d.area == "sent" and d.link is None], snap, cases_dir, report, done)
    by_key = {(d.area, d.rel): d for d in disk if d.link is None and d.area != "sent"}
    expected: dict[tuple[str, str], MessagePlace] = {}
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
            linked = _linked_component(root, key[1])
            if linked is not None:
                report.breaks.append(
                    ChainBreak(
                        "entry-outside-root",
                        snap.placements[rec.id].seq if rec.id in snap.placements else None,
                        f"message {rec.id} is {rec.state} in the ledger, but {linked} is a symbolic link: "
                        "its entry is not inside the gateway's folders",
                        expected=rec.manifest_sha256,
                        found=_target(linked),
                        file=str(path),
                    )
                )
            elif path.is_dir():  # published after the disk listing was taken
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

    results = _checked([d.path for d in by_key.values()], done)
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
            kind = MANIFEST_KINDS.get(p.problem, "manifest-unreadable")
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
    d: DiskEntry, rec: MessagePlace, manifest_sha: str | None, placement: Placement | None, report: VerifyReport
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


def _checked(paths: list[Path], done: Mapping[Path, Checked]) -> dict[Path, Checked]:
    """Every path's check: the ones made already, the rest now."""
    todo = [p for p in paths if p not in done]
    fresh = check_manifests(todo) if todo else {}
    return {p: done[p] if p in done else fresh[p] for p in paths}


class ManifestChecks:
    """Manifest checks running in the background while the caller reads the database.

    Few entries are checked on threads when ``result`` is called; from ``PROCESS_FROM``
    entries on, worker processes (``BackgroundChecks``) start checking at once, so the
    database and the files are read at the same time on two cores.
    """

    def __init__(self, disk: list[DiskEntry], *, processes_from: int = PROCESS_FROM) -> None:
        self.paths = [d.path for d in disk if d.link is None]
        self._background: BackgroundChecks | None = None
        if len(self.paths) >= processes_from and (os.cpu_count() or 1) > 1:
            self._background = BackgroundChecks()
            self._background.extend(self.paths)

    def result(self) -> dict[Path, Checked]:
        if self._background is None:
            return check_manifests(self.paths)
        return self._background.result()

    def close(self) -> None:
        if self._background is not None:
            self._background.close()


def _check_sent(
    disk: list[DiskEntry], snap: DbSnapshot, cases_dir: Path, report: VerifyReport, done: Mapping[Path, Checked]
) -> None:
    """Sent copies (``<case>/sent/<entry>``) against their manifests and the outbox rows."""
    report.sent_entries = len(disk)
    on_disk = {d.rel: d for d in disk}
    results = _checked([d.path for d in disk], done)
    for rel, d in sorted(on_disk.items()):
        problems, manifest_sha = results[d.path]
        for p in problems:
            if p.problem == "unlisted file":
                report.warnings.append(f"{p.path}: unlisted file in sent copy {rel} (not part of what was sent)")
                continue
            kind = MANIFEST_KINDS.get(p.problem, "manifest-unreadable")
            text = f"{p.problem} (sent copy {rel})"
            report.breaks.append(ChainBreak(kind, None, text, expected=p.expected, found=p.found, file=p.path))
        known = snap.sent_copies.get(rel)
        if known is None:
            if d.message in snap.sent_unfiled:
                report.warnings.append(f"{d.path}: sent copy not yet recorded (the next outbox pass records it)")
                continue
            report.breaks.append(
                ChainBreak(
                    "entry-unknown-to-ledger",
                    None,
                    f"sent copy {rel} is not recorded in the outbox",
                    found=manifest_sha,
                    file=str(d.path),
                )
            )
        elif manifest_sha is not None and known[1] != manifest_sha:
            report.breaks.append(
                ChainBreak(
                    "manifest-differs-from-ledger",
                    None,
                    f"manifest of the sent copy of outbox {known[0]} is not the one the outbox recorded",
                    expected=known[1],
                    found=manifest_sha,
                    file=str(d.path / "manifest.json"),
                )
            )
    filed_ids = {d.message for d in disk}
    for outbox_id in sorted(snap.sent_unfiled - filed_ids):
        report.warnings.append(
            f"outbox {outbox_id} was sent, but its sent copy is not filed yet "
            "(the outbox retries at every pass; see the daemon's log if this stays)"
        )
    for rel, (outbox_id, sha) in sorted(snap.sent_copies.items()):
        if rel not in on_disk and not (cases_dir / rel).is_dir():
            report.breaks.append(
                ChainBreak(
                    "entry-missing",
                    None,
                    f"outbox {outbox_id} was sent and filed, but its sent copy is gone",
                    expected=sha,
                    file=str(cases_dir / rel),
                )
            )
