"""Moving a filed entry to another case (``poststelle cases move``).

Routing guesses from a subject, and a released message may land in ``_unassigned``: a
clerk corrects that. Entries are never rewritten in place, so a move writes a new entry in
the target case folder (staged, fsynced, renamed into place, like every entry), commits
the ledger row and a ``refiled`` audit event together, and only then removes the old
entry. The manifest keeps the history: ``refiled`` lists every move (from, to, by, at,
note), so the entry itself tells where it has been.

A crash leaves one of two states, and running the same ``cases move`` again completes
either of them (it is idempotent):

* new entry published, nothing committed: the ledger still names the old entry;
  ``audit verify`` reports the new one as ``entry-unknown-to-ledger`` until the rerun;
* committed, old entry not yet removed: the ledger, the trail and the new entry agree;
  ``audit verify`` names the old one as a leftover copy of a refiled message (a warning).

Only files the manifest lists are moved, each checked against its sha256 first: a move
must not launder an altered entry, and a file the manifest does not list (a clerk's note,
``Thumbs.db``) is not part of the message, so the move refuses and names it rather than
deleting it or silently adopting it into the new manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gateway.clock import iso, utcnow
from gateway.config import Config
from gateway.errors import PermanentError
from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory
from gateway.filing.entries import EntryFile, sha256_hex, write_entry
from gateway.filing.reading import read_inside, remove_entry
from gateway.records.actors import Actor
from gateway.records.chain import AuditEvent
from gateway.records.messages import FILED_STATES, MessageRecord
from gateway.records.store import MessageStore
from gateway.routing.casenames import case_folder_name, case_reference_from_folder, is_reserved_folder
from gateway.statedir import cases_dir

__all__ = ["RefileError", "refile"]


class RefileError(PermanentError):
    """The move cannot be done as asked (unknown id, not filed, altered entry): a person's
    request that asking again will not fix, so it is reported, not retried."""


def refile(
    config: Config, ledger: MessageStore, msg_id: str, *, actor: Actor, case: str, note: str | None
) -> MessageRecord:
    """Move filed message ``msg_id`` into the case folder of reference ``case``."""
    rec = ledger.get(msg_id)
    if rec is None:
        raise RefileError(f"no message with id {msg_id!r}")
    if rec.state not in FILED_STATES or rec.path is None:
        raise RefileError(f"message {msg_id} is {rec.state}, not filed in a case folder (quarantine: use release)")
    folder = case_folder_name(case, slash=config.routing.folder_slash)
    case_ref = case_reference_from_folder(folder)
    root = cases_dir(config)
    current = Path(rec.path)
    name = current.name
    final = root / folder / name

    if rec.case_folder == folder:
        # Done already, or committed before a crash removed the old copy: finish that.
        leftover = _leftover_of(final, root, name)
        if leftover is None:
            raise RefileError(f"message {msg_id} is already filed under {folder}")
        _remove(config, leftover)
        return rec

    old_manifest = _read_manifest(current)
    files = _listed_files(current, old_manifest)
    move = {
        "at": iso(utcnow()),
        "by": actor.name,
        **actor.fields(),
        "from_case": rec.case_ref,
        "from_folder": rec.case_folder,
        "to_case": case_ref,
        "to_folder": folder,
        "note": note,
    }
    metadata: dict[str, Any] = {k: v for k, v in old_manifest.items() if k not in ("files", "schema")}
    metadata.update(
        case_reference=case_ref,
        case_folder=folder,
        refiled=[*(old_manifest.get("refiled") or []), move],
    )
    if final.exists():
        # Published before a crash, not committed: take it if it is this very move's result.
        published = _read_manifest(final)
        if (
            published.get("id") != rec.id
            or (published.get("refiled") or [{}])[-1].get("from_folder") != rec.case_folder
        ):
            raise RefileError(f"{final} exists and is not a move of message {msg_id}")
        manifest_sha = hashlib.sha256((final / "manifest.json").read_bytes()).hexdigest()
    else:
        area = Area.open(config, "cases")
        try:
            final, manifest_sha = write_entry(area, folder, name, files, metadata)
        except UnsafeDirectory as exc:
            raise RefileError(f"cannot move into {folder!r}: {exc}; nothing was changed") from None
        finally:
            area.close()

    old_rel = f"{rec.case_folder}/{name}"
    from_case, from_folder, from_sha = rec.case_ref, rec.case_folder, rec.manifest_sha256
    was = (rec.state, from_sha)
    rec.path = str(final)
    rec.case_ref, rec.case_folder = case_ref, folder
    rec.manifest_sha256 = manifest_sha
    ledger.decide(
        rec,
        [
            AuditEvent(
                "refiled",
                message=rec.id,
                case=case_ref,
                correspondent=rec.from_addr,
                actor=actor.name,
                details={
                    **actor.fields(),
                    "from": old_rel,
                    "from_case": from_case,
                    "from_folder": from_folder,
                    "from_manifest_sha256": from_sha,
                    "path": f"{folder}/{name}",
                    "to_case": case_ref,
                    "manifest_sha256": manifest_sha,
                    "note": note,
                },
            )
        ],
        was=was,
    )
    _remove(config, current)
    return rec


def _remove(config: Config, entry: Path) -> None:
    """Remove the old copy through the area's descriptors (a swapped-in link is never followed)."""
    area = Area.open(config, "cases")
    try:
        remove_entry(area, entry)
    except (UnsafeDirectory, ValueError) as exc:
        raise RefileError(f"the move is recorded, but the old copy {entry} was not removed: {exc}") from None
    finally:
        area.close()


def _read_manifest(entry: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((entry / "manifest.json").read_bytes())
        return manifest
    except (OSError, ValueError) as exc:
        raise RefileError(f"cannot read {entry / 'manifest.json'}: {exc}") from exc


def _listed_files(entry: Path, manifest: dict[str, Any]) -> list[EntryFile]:
    """The manifest's files, each verified; refuses an entry with extra, linked or altered files."""
    listed: dict[str, dict[str, Any]] = manifest.get("files") or {}
    contents = _entry_contents(entry)
    links = sorted(rel for rel in contents if (entry / rel).is_symlink())
    if links:
        raise RefileError(
            f"{entry} holds symbolic links ({', '.join(links)}), which the gateway never files; "
            "nothing was changed: run poststelle audit verify"
        )
    extra = sorted(rel for rel in contents if rel != "manifest.json" and rel not in listed)
    if extra:
        raise RefileError(
            f"{entry} holds files its manifest does not list ({', '.join(extra)}); "
            "they are not part of the message: move them elsewhere first"
        )
    files = []
    for rel, meta in sorted(listed.items()):
        data = read_inside(entry, rel)
        if isinstance(data, str):
            raise RefileError(f"{entry / rel}: {data}, not the filed file; run poststelle audit verify")
        digest = sha256_hex(data)
        if digest != meta.get("sha256"):
            raise RefileError(f"{entry / rel} differs from its manifest; run poststelle audit verify")
        files.append(EntryFile(rel, data, digest))
    return files


def _entry_contents(entry: Path) -> list[str]:
    """Every file and link below ``entry`` (relative, POSIX), links never descended into."""
    found = []
    for top, dirs, names in os.walk(entry, followlinks=False):
        for name in names + [d for d in dirs if (Path(top) / d).is_symlink()]:
            found.append((Path(top) / name).relative_to(entry).as_posix())
    return found


def _leftover_of(final: Path, root: Path, name: str) -> Path | None:
    """The old copy a crash left behind after the commit, as the new manifest names it."""
    if not final.is_dir():
        return None
    moves = _read_manifest(final).get("refiled") or []
    if not moves:
        return None
    from_folder = moves[-1].get("from_folder")
    if not isinstance(from_folder, str) or "/" in from_folder or from_folder.startswith(".") or not from_folder:
        return None
    if not is_reserved_folder(from_folder):
        case_reference_from_folder(from_folder)  # a folder the mapping made, nothing else
    old = root / from_folder / name
    return old if old.is_dir() and old != final else None
