"""Case folders (and the quarantine store, which has the same entry layout) on disk.

An entry is built completely in ``<root>/.incoming/<entry>/`` (every file fsynced), then
renamed into place in one step and the parents fsynced (see ``durable.publish_dir``): a
reader or a crash sees either no entry or a complete one. Entries are never rewritten.

Layout (docs/case-folders.md)::

    <cases_dir>/<case folder>/<received-UTC>_<id>/
        original.eml        exact fetched bytes
        content.eml         the opened content (decrypted and/or taken out of its signature wrapper)
        body.txt, body.html readable parts (UTF-8)
        attachments/<name>  attachments, names made safe and unique
        verification.json   the verdict
        manifest.json       sha256 and size of every file above, message metadata, route
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.filing.durable import fsync_dir, makedirs_durable, publish_dir, sync_filesystem, write_file
from gateway.filing.safenames import NameAllocator, safe_filename
from gateway.mime.message import Part
from gateway.statedir import staging_dir

RESERVED_NAMES = (
    "original.eml",
    "content.eml",
    "body.txt",
    "body.html",
    "manifest.json",
    "verification.json",
    "reason.json",
    "attachments",
)
MANIFEST_SCHEMA = 1


def entry_name(received: datetime, msg_id: str) -> str:
    """``20261125T091500Z_<id>``: sorts by arrival, unique by the ledger id."""
    return f"{received.strftime('%Y%m%dT%H%M%SZ')}_{msg_id}"


@dataclass(frozen=True)
class EntryFile:
    relpath: str
    data: bytes
    sha256: str | None = None  # when the caller already hashed ``data`` (the original's key)


def entry_files(
    raw: bytes,
    *,
    decrypted: bytes | None,
    parts: Sequence[Part],
    extra_json: dict[str, Any],
    raw_sha256: str | None = None,
) -> list[EntryFile]:
    """The files of one entry, names made safe; ``extra_json`` adds e.g. verification.json."""
    files = [EntryFile("original.eml", raw, raw_sha256)]
    if decrypted is not None and decrypted != raw:
        files.append(EntryFile("content.eml", decrypted))
    alloc = NameAllocator()
    for part in parts:
        if part.kind == "text":
            files.append(EntryFile("body.txt", part.data))
        elif part.kind == "html":
            files.append(EntryFile("body.html", part.data))
        else:
            name = alloc.allocate(safe_filename(part.filename, fallback=_fallback_name(part.content_type)))
            files.append(EntryFile(f"attachments/{name}", part.data))
    for name, obj in extra_json.items():
        files.append(EntryFile(name, _json_bytes(obj)))
    return files


def _fallback_name(content_type: str) -> str:
    ext = {
        "application/pdf": ".pdf",
        "message/rfc822": ".eml",
        "text/plain": ".txt",
        "text/html": ".html",
        "application/xml": ".xml",
        "text/xml": ".xml",
    }.get(content_type, ".bin")
    return f"attachment{ext}"


_READABLE = json.JSONEncoder(indent=2, sort_keys=True, ensure_ascii=False)


def _json_bytes(obj: Any) -> bytes:
    """Indented, sorted JSON (clerks and auditors read these files), one shared encoder."""
    return _READABLE.encode(obj).encode("utf-8") + b"\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def final_path(root: Path, folder: str | None, name: str) -> Path:
    return root / folder / name if folder else root / name


@dataclass(frozen=True)
class StagedFiles:
    """An entry's files written under the staging area; its manifest is still to come.

    Analysis (in a worker process when there are cores for it) writes these; the intake
    adds ``manifest.json`` once the ledger has decided the entry's fate, because the
    manifest carries ledger facts (the id's duplicates, reasons found by looking back).
    """

    root: Path
    staging: Path
    final: Path
    files: dict[str, dict[str, Any]]  # relpath -> {"sha256", "size"}


@dataclass(frozen=True)
class StagedEntry:
    """An entry fully written under ``<root>/.incoming/``, not yet visible."""

    root: Path
    staging: Path
    final: Path
    manifest_sha256: str


def staging_path(root: Path, name: str, bucket: str = "") -> Path:
    """Where entry ``name`` is built (``statedir.staging_dir``)."""
    return staging_dir(root, bucket) / name


def stage_files(
    root: Path,
    folder: str | None,
    name: str,
    files: Sequence[EntryFile],
    *,
    bucket: str = "",
    sync: bool = True,
) -> StagedFiles:
    """Write an entry's files (all but the manifest) under the staging area.

    ``sync=False`` leaves flushing to the caller, who makes a whole batch durable with one
    ``durable.sync_filesystem`` before publishing (group commit). ``folder`` was produced
    by ``casenames.case_folder_name`` (or is a reserved name), and every relpath by
    ``safenames``; the checks below are a second lock on the door, not the first.
    """
    for component in (folder, name, bucket or None):
        if component is not None and (component in ("", ".", "..") or "/" in component or "\x00" in component):
            raise ValueError(f"unsafe path component {component!r}")
    final = final_path(root, folder, name)
    if not _inside(str(root), folder):
        raise ValueError(f"entry path escapes {root}: {final}")
    staging = staging_path(root, name, bucket)
    if not staging.parent.is_dir():
        makedirs_durable(staging.parent)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(mode=0o750)
    manifest_files: dict[str, dict[str, Any]] = {}
    made_attachments = False
    for f in files:
        target = staging / f.relpath
        if target.parent != staging and not made_attachments:
            (staging / "attachments").mkdir(mode=0o750)
            made_attachments = True
        write_file(target, f.data, sync=sync)
        manifest_files[f.relpath] = {"sha256": f.sha256 or sha256_hex(f.data), "size": len(f.data)}
    if made_attachments and sync:
        fsync_dir(staging / "attachments")
    return StagedFiles(root, staging, final, manifest_files)


def seal_staging(staged: StagedFiles, metadata: dict[str, Any], *, sync: bool = True) -> StagedEntry:
    """Add ``manifest.json`` (metadata and the sha256 of every file) to staged files."""
    manifest = {"schema": MANIFEST_SCHEMA, **metadata, "files": staged.files}
    manifest_bytes = _json_bytes(manifest)
    write_file(staged.staging / "manifest.json", manifest_bytes, sync=sync)
    if sync:
        fsync_dir(staged.staging)
    return StagedEntry(staged.root, staged.staging, staged.final, sha256_hex(manifest_bytes))


def stage_entry(
    root: Path,
    folder: str | None,
    name: str,
    files: Sequence[EntryFile],
    metadata: dict[str, Any],
    *,
    sync: bool = True,
) -> StagedEntry:
    """Write an entry's files and its manifest under the staging directory."""
    return seal_staging(stage_files(root, folder, name, files, sync=sync), metadata, sync=sync)


@functools.lru_cache(maxsize=4096)
def _inside(root: str, folder: str | None) -> bool:
    """Whether ``root/folder`` resolves inside ``root`` (no symlinked case folder).

    Resolving costs a Python-level ``lstat`` per path component; a folder is checked
    once per process, which is enough for a second lock (the first is that every case
    folder name comes from ``casenames``).
    """
    base = Path(root).resolve()
    return (base / folder if folder else base).resolve().is_relative_to(base)


def publish_entries(entries: Sequence[StagedEntry]) -> None:
    """Make a batch of staged entries durable and visible: sync, rename each, sync again.

    One ``syncfs`` before the renames persists every file of the batch (an entry is never
    visible before its content is on disk); one after persists the renames. Two flushes
    per batch instead of about ten per message.
    """
    roots = {e.root for e in entries}
    for root in roots:
        sync_filesystem(root)
    made: set[Path] = set()
    for e in entries:
        folder = e.final.parent
        if folder not in made and not folder.is_dir():
            # A new case folder needs no fsync of its own: the syncfs below persists it
            # with the renames (an fsync per new folder would cost a journal commit each).
            folder.mkdir(mode=0o750, parents=True, exist_ok=True)
        made.add(folder)
        if e.final.exists():
            raise FileExistsError(e.final)
        os.rename(e.staging, e.final)
    for root in roots:
        sync_filesystem(root)


def write_entry(
    root: Path, folder: str | None, name: str, files: Sequence[EntryFile], metadata: dict[str, Any]
) -> tuple[Path, str]:
    """Write one entry durably and publish it; returns (final path, manifest sha256)."""
    staged = stage_entry(root, folder, name, files, metadata, sync=True)
    publish_dir(staged.staging, staged.final)
    return staged.final, staged.manifest_sha256


def discard_staging(root: Path, name: str, bucket: str = "") -> None:
    """Remove a half-written entry left by a crash (it was never published)."""
    for staging in {staging_path(root, name), staging_path(root, name, bucket)}:
        if staging.exists():
            shutil.rmtree(staging)


def sweep_staging(root: Path, bucket: str) -> list[str]:
    """Remove everything a bucket's staging area holds; returns the names removed.

    Called by recovery once every unfinished intent of the bucket's mailbox has been
    finished or abandoned: what is left was staged by analysis before its intent reached
    the ledger (a crash in between), so nothing refers to it and it was never visible.
    """
    area = staging_dir(root, bucket)
    if not bucket or not area.is_dir():
        return []
    removed = []
    for entry in sorted(area.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed

