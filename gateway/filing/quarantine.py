"""The quarantine store and releasing from it.

Quarantine entries have the case-folder layout under ``<state_dir>/quarantine/``, plus
``reason.json``. Releasing is a person's decision, recorded with who made it: the entry's
files are published as a new case entry (the manifest says it was released, by whom and
from which quarantine reasons), the ledger and the audit trail are committed, and only
then is the quarantine copy removed, so the message is in exactly one place at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.clock import iso, utcnow
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory
from gateway.filing.entries import EntryFile, published_manifest, sha256_hex, write_entry
from gateway.filing.reading import read_inside, remove_entry
from gateway.records.actors import Actor
from gateway.records.chain import AuditEvent
from gateway.records.messages import MessageRecord
from gateway.records.store import MessageReader, MessageStore
from gateway.routing.casenames import case_folder_name


class ReleaseError(PermanentError):
    """The release cannot be done as asked (wrong id, wrong state): a person's request that
    asking again will not fix, so it is reported, not retried."""


@dataclass(frozen=True)
class QuarantineEntry:
    record: MessageRecord
    path: Path
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.record.id,
            "received": self.record.internaldate,
            "fetched": self.record.fetched_at or None,
            "mailbox": self.record.mailbox,
            "from": self.record.from_addr,
            "subject": self.record.subject,
            "reasons": self.reasons,
            "case_reference": self.record.case_ref,
            "path": str(self.path),
        }


def list_entries(ledger: MessageReader) -> list[QuarantineEntry]:
    return [QuarantineEntry(r, Path(r.path or ""), r.reasons) for r in ledger.in_state("quarantined")]


def get_entry(ledger: MessageReader, msg_id: str) -> QuarantineEntry:
    rec = ledger.get(msg_id)
    if rec is None:
        raise ReleaseError(f"no message with id {msg_id!r}")
    if rec.state != "quarantined":
        raise ReleaseError(f"message {msg_id} is {rec.state}, not quarantined")
    return QuarantineEntry(rec, Path(rec.path or ""), rec.reasons)


def release(
    config: Config, ledger: MessageStore, msg_id: str, *, actor: Actor, case: str | None, note: str | None
) -> MessageRecord:
    """Move a quarantined message into a case folder (``case`` or the route found at intake)."""
    entry = get_entry(ledger, msg_id)
    rec = entry.record
    was = (rec.state, rec.manifest_sha256)
    if case is not None:
        case_ref: str | None = case
        folder = case_folder_name(case, slash=config.routing.folder_slash)
    else:
        case_ref, folder = rec.case_ref, rec.case_folder or config.routing.unassigned
    files = _entry_files(entry.path)
    old_manifest = json.loads((entry.path / "manifest.json").read_text(encoding="utf-8"))
    old_manifest.pop("files", None)
    old_manifest.pop("schema", None)
    released = {
        "by": actor.name,
        **actor.fields(),
        "at": iso(utcnow()),
        "quarantine_reasons": rec.reasons,
        "note": note,
    }
    metadata = {
        **old_manifest,
        "case_reference": case_ref,
        "case_folder": folder,
        "state": "released",
        "released": released,
    }
    area = Area.open(config, "cases")
    try:
        final, manifest_sha = _publish(area, folder, entry.path.name, files, metadata)
    finally:
        area.close()
    rec.state = "released"
    rec.path = str(final)
    rec.case_ref, rec.case_folder = case_ref, folder
    rec.manifest_sha256 = manifest_sha
    ledger.decide(
        rec,
        [
            AuditEvent(
                "released",
                message=rec.id,
                case=case_ref,
                correspondent=rec.from_addr,
                actor=actor.name,
                details={
                    **actor.fields(),
                    "path": f"{folder}/{final.name}",
                    "manifest_sha256": manifest_sha,
                    "quarantine_reasons": released["quarantine_reasons"],
                    "note": note,
                },
            )
        ],
        was=was,
    )
    quarantine = Area.open(config, "quarantine")
    try:
        remove_entry(quarantine, entry.path)
    except (UnsafeDirectory, ValueError) as exc:
        raise ReleaseError(f"released, but the quarantined copy {entry.path} was not removed: {exc}") from None
    finally:
        quarantine.close()
    return rec


def _entry_files(entry: Path) -> list[EntryFile]:
    """Every file of a quarantine entry, read without following a link (one is refused)."""
    files = []
    for top, dirs, names in os.walk(entry, followlinks=False):
        for name in sorted(names + [d for d in dirs if (Path(top) / d).is_symlink()]):
            rel = (Path(top) / name).relative_to(entry).as_posix()
            if rel == "manifest.json":
                continue
            data = read_inside(entry, rel)
            if isinstance(data, str):
                raise ReleaseError(f"{entry / rel}: {data}; nothing was changed (run poststelle audit verify)")
            files.append(EntryFile(rel, data))
    return sorted(files, key=lambda f: f.relpath)


def _publish(area: Area, folder: str, name: str, files: list[EntryFile], metadata: dict[str, Any]) -> tuple[Path, str]:
    """Publish the released entry through the cases root's descriptor, never through a link.

    An entry already in place is a crash after publishing but before the commit: it is
    taken as it is. A case folder that is a link, not a directory or not ours is refused
    (the person fixes the folder or releases into another case).
    """
    try:
        existing = published_manifest(area, folder, name)
        if existing is not None:
            return area.root / folder / name, sha256_hex(existing)
        return write_entry(area, folder, name, files, metadata)
    except UnsafeDirectory as exc:
        raise ReleaseError(f"cannot release into {folder!r}: {exc}; nothing was changed") from None
    except FileExistsError:
        raise ReleaseError(f"{area.root / folder / name} exists but is not a complete entry") from None
