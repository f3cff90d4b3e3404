"""Case folders (and the quarantine store, which has the same entry layout) on disk.

An entry is built completely in its area's staging directory (``filing.areas``), made
durable, then renamed into place in one step: a reader or a crash sees either no entry or
a complete one. Entries are never rewritten. Every directory is reached through a
descriptor without following links (``filing.dirs``): a case folder that is a link, not a
directory or not ours is refused when its entry is published, whatever it was before.

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

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.filemodes import dir_mode
from gateway.filing.areas import Area, Areas
from gateway.filing.dirs import (
    UnsafeDirectory,
    check_component,
    check_owner,
    kind_at,
    open_dir,
    open_root,
    read_at,
    remove_at,
    rename_noreplace,
    write_at,
)
from gateway.filing.durable import sync_fd
from gateway.filing.safenames import NameAllocator, safe_filename
from gateway.mime.message import Part
from gateway.statedir import STAGING

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
    """``20261125T091500Z_<id>``: sorts by arrival (as a UTC instant, whatever zone it came in), unique by the id."""
    return f"{received.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}_{msg_id}"


#: The shape of every entry name (``entry_name``): the only thing a staging sweep removes.
ENTRY_NAME = re.compile(r"[0-9]{8,}T[0-9]{6}Z_[0-9a-f]{12}")
#: The suffix a staged entry is renamed to while it is discarded (``discard_staging``).
WITHDRAWN = ".withdrawn"


@dataclass(frozen=True)
class EntryFile:
    relpath: str
    data: bytes
    sha256: str | None = None  # when the caller already hashed ``data`` (the original's key)
    #: Chunks written as they come instead of ``data`` (a message over the size limit,
    #: streamed from the server); hashed and counted while written.
    stream: Iterable[bytes] | None = field(default=None, compare=False, repr=False)


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
    """An entry's files written in its area's staging directory; its manifest is still to come.

    Analysis (in a worker process when there are cores for it) writes these; the intake
    adds ``manifest.json`` once the ledger has decided the entry's fate, because the
    manifest carries ledger facts (the id's duplicates, reasons found by looking back).
    Plain values (names, not descriptors), so that a worker process can hand them back.
    """

    area: str  # "cases" | "quarantine"
    bucket: str  # the mailbox's staging bucket ("" for a release)
    name: str  # the entry's name, in staging and when published
    folder: str | None  # the case folder, None in the quarantine
    final: Path  # where it will be published (recorded in the ledger)
    staging: Path  # where it is being built (for people reading logs)
    files: dict[str, dict[str, Any]]  # relpath -> {"sha256", "size"}


@dataclass(frozen=True)
class StagedEntry:
    """An entry fully written in staging, manifest included, not yet visible."""

    area: str
    bucket: str
    name: str
    folder: str | None
    final: Path
    manifest_sha256: str


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _bucket_fd(area: Area, bucket: str, *, create: bool) -> int:
    """The staging bucket's descriptor (the staging directory itself for ``bucket=""``)."""
    if not bucket:
        return os.dup(area.staging_fd)
    return open_dir(bucket, dir_fd=area.staging_fd, create=create, where=str(area.staging))


def stage_files(
    area: Area,
    folder: str | None,
    name: str,
    files: Sequence[EntryFile],
    *,
    bucket: str = "",
    sync: bool = True,
) -> StagedFiles:
    """Write an entry's files (all but the manifest) into the area's staging directory.

    ``sync=False`` leaves flushing to the caller, who makes a whole batch durable with one
    ``syncfs`` before publishing (group commit). ``folder`` was produced by
    ``casenames.case_folder_name`` (or is a reserved name), and every relpath by
    ``safenames``; the component checks are a second lock on the door, not the first.
    The case folder itself is not looked at here: ``publish_entries`` opens it, without
    following a link, at the moment the entry goes in.
    """
    for component in (*(folder.split("/") if folder is not None else ()), name, bucket or None):
        if component is not None:
            check_component(component)
    with _fd(_bucket_fd(area, bucket, create=True)) as bucket_fd:
        remove_at(bucket_fd, name)  # a leftover of an attempt that did not reach the ledger
        os.mkdir(name, dir_mode(), dir_fd=bucket_fd)
        try:
            with _fd(open_dir(name, dir_fd=bucket_fd)) as entry_fd:
                manifest_files = _write_files(entry_fd, files, sync=sync)
        except BaseException:
            # A half-written entry (a full disk, most often) goes at once: it would hold the
            # space that is missing until the next pass's sweep.
            with contextlib.suppress(OSError):
                remove_at(bucket_fd, name)
            raise
    staging = area.staging / bucket / name if bucket else area.staging / name
    return StagedFiles(area.name, bucket, name, folder, final_path(area.root, folder, name), staging, manifest_files)


def _write_files(entry_fd: int, files: Sequence[EntryFile], *, sync: bool) -> dict[str, dict[str, Any]]:
    manifest_files: dict[str, dict[str, Any]] = {}
    attachments: int | None = None
    try:
        for f in files:
            head, _, tail = f.relpath.partition("/")
            if tail:
                if head != "attachments" or "/" in tail:
                    raise ValueError(f"unexpected entry file {f.relpath!r}")
                if attachments is None:
                    os.mkdir("attachments", dir_mode(), dir_fd=entry_fd)
                    attachments = open_dir("attachments", dir_fd=entry_fd)
                target, fname = attachments, tail
            else:
                target, fname = entry_fd, head
            if f.stream is not None:
                digest = hashlib.sha256()
                size = write_at(target, fname, _hashing(f.stream, digest), sync=sync)
                manifest_files[f.relpath] = {"sha256": digest.hexdigest(), "size": size}
            else:
                write_at(target, fname, f.data, sync=sync)
                manifest_files[f.relpath] = {"sha256": f.sha256 or sha256_hex(f.data), "size": len(f.data)}
        if sync:
            if attachments is not None:
                os.fsync(attachments)
            os.fsync(entry_fd)
    finally:
        if attachments is not None:
            os.close(attachments)
    return manifest_files


def _hashing(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def seal_staging(area: Area, staged: StagedFiles, metadata: dict[str, Any], *, sync: bool = True) -> StagedEntry:
    """Add ``manifest.json`` (metadata and the sha256 of every file) to staged files."""
    manifest = {"schema": MANIFEST_SCHEMA, **metadata, "files": staged.files}
    manifest_bytes = _json_bytes(manifest)
    with (
        _fd(_bucket_fd(area, staged.bucket, create=False)) as bucket_fd,
        _fd(open_dir(staged.name, dir_fd=bucket_fd)) as entry_fd,
    ):
        write_at(entry_fd, "manifest.json", manifest_bytes, sync=sync)
        if sync:
            os.fsync(entry_fd)
    return StagedEntry(staged.area, staged.bucket, staged.name, staged.folder, staged.final, sha256_hex(manifest_bytes))


def stage_entry(
    area: Area,
    folder: str | None,
    name: str,
    files: Sequence[EntryFile],
    metadata: dict[str, Any],
    *,
    sync: bool = True,
) -> StagedEntry:
    """Write an entry's files and its manifest into the staging directory."""
    return seal_staging(area, stage_files(area, folder, name, files, sync=sync), metadata, sync=sync)


def open_case_folder(area: Area, folder: str, *, create: bool) -> int:
    """The case folder's descriptor, opened without following a link; the caller closes it.

    ``folder`` is a case folder or one of its subfolders (``<case>/receipts``): each
    component is opened through its parent's descriptor and checked on its own.
    Raises ``UnsafeDirectory`` when a component is a symbolic link, not a directory, or
    belongs to someone other than the gateway or the share's owner; ``FileNotFoundError``
    when it is missing and ``create`` is false. Checked on every call, never remembered:
    the folder can change between two messages.
    """
    parts = folder.split("/")
    fd = os.dup(area.root_fd)
    where = str(area.root)
    try:
        for part in parts:
            child = open_dir(part, dir_fd=fd, create=create, where=where)
            os.close(fd)
            fd = child
            where = f"{where}/{part}"
            check_owner(fd, area.owners, where)
    except BaseException:
        os.close(fd)
        raise
    return fd


def case_folder_problem(area: Area, folder: str) -> str | None:
    """Why an entry cannot go into ``folder`` right now (it is a link, ...), or None.

    A missing folder is fine: publishing creates it. One the gateway may not enter (a
    person's ``chmod 000``, a wrong owner after a restore) is a problem like a link: the
    message goes to quarantine saying so, instead of failing its whole batch at every
    retry while the folder stays closed.
    """
    try:
        os.close(open_case_folder(area, folder, create=False))
    except FileNotFoundError:
        return None
    except UnsafeDirectory as exc:
        return exc.problem
    except PermissionError as exc:
        return f"is not accessible to the gateway ({exc.strerror})"
    return None


def publish_entries(areas: Areas | Mapping[str, Area], entries: Sequence[StagedEntry]) -> None:
    """Make a batch of staged entries durable and visible: sync, rename each, sync again.

    One ``syncfs`` before the renames persists every file of the batch (an entry is never
    visible before its content is on disk); one after persists the renames and any new case
    folder. Two flushes per batch instead of about ten per message. Each case folder is
    opened (and made) through the root's descriptor without following links, and each
    entry renamed into that descriptor: a folder swapped for a link raises
    ``UnsafeDirectory`` and nothing is written through it.
    """
    used = sorted({e.area for e in entries})
    for name in used:
        sync_fd(areas[name].root_fd)
    opened: dict[tuple[str, str], int] = {}
    try:
        for e in entries:
            area = areas[e.area]
            key = (e.area, e.bucket)
            if key not in opened:
                opened[key] = _bucket_fd(area, e.bucket, create=False)
            if e.folder is None:
                rename_noreplace(e.name, e.name, src_dir_fd=opened[key], dst_dir_fd=area.root_fd)
                continue
            with _fd(open_case_folder(area, e.folder, create=True)) as folder_fd:
                rename_noreplace(e.name, e.name, src_dir_fd=opened[key], dst_dir_fd=folder_fd)
    finally:
        for fd in opened.values():
            os.close(fd)
    for name in used:
        sync_fd(areas[name].root_fd)


def write_entry(
    area: Area, folder: str | None, name: str, files: Sequence[EntryFile], metadata: dict[str, Any]
) -> tuple[Path, str]:
    """Write one entry durably and publish it; returns (final path, manifest sha256).

    Every file and directory is fsynced on its own (one entry, no batch to share a flush).
    """
    staged = stage_entry(area, folder, name, files, metadata, sync=True)
    with _fd(_bucket_fd(area, "", create=False)) as bucket_fd:
        if folder is None:
            rename_noreplace(name, name, src_dir_fd=bucket_fd, dst_dir_fd=area.root_fd)
        else:
            with _fd(open_case_folder(area, folder, create=True)) as folder_fd:
                os.fsync(area.root_fd)  # the folder, if it is new
                rename_noreplace(name, name, src_dir_fd=bucket_fd, dst_dir_fd=folder_fd)
                os.fsync(folder_fd)
        os.fsync(bucket_fd)
    os.fsync(area.root_fd)
    return staged.final, staged.manifest_sha256


def published_manifest(area: Area, folder: str | None, name: str) -> bytes | None:
    """The manifest of a published entry, read without following links; None when there is none.

    A case folder that is a link, not a directory or not ours counts as "not published":
    nothing behind it is the gateway's entry.
    """
    try:
        parent = os.dup(area.root_fd) if folder is None else open_case_folder(area, folder, create=False)
    except (FileNotFoundError, UnsafeDirectory):
        return None
    with _fd(parent):
        try:
            with _fd(open_dir(name, dir_fd=parent)) as entry_fd:
                return read_at(entry_fd, "manifest.json")
        except (FileNotFoundError, UnsafeDirectory):
            return None
        except OSError:  # manifest.json a link (ELOOP) or unreadable
            return None


def _staging_dirs(area: Area) -> Iterator[tuple[str, int]]:
    """Every directory entries of ``area`` may have been built in, opened without following links.

    The one in use, and the other candidate: a layout that changed between runs (the root
    moved to its own mount) or an earlier version that always staged in ``<root>/.incoming``
    may have left entries there.
    """
    yield str(area.staging), os.dup(area.staging_fd)
    if area.in_share:
        if area.private_staging != area.staging and area.private_staging.is_dir():
            yield str(area.private_staging), open_root(area.private_staging, create=False)
        return
    try:
        fd = open_dir(STAGING, dir_fd=area.root_fd, where=str(area.root))
    except (FileNotFoundError, UnsafeDirectory):
        return
    yield str(area.root / STAGING), fd


def discard_staging(area: Area, name: str, bucket: str = "") -> None:
    """Remove a half-written entry of an abandoned intent, so that it can never be published.

    Only the entry the ledger names, looked for in every staging directory of the area;
    links are removed as links, never followed. It is first renamed, in one step, to a
    name no publish looks for (``<name>.withdrawn``) and removed from there. On a shared
    store the node that staged it may have been paused and wake at any moment: its publish
    (a rename of the staged name) then either happened before, and the entry is in its
    case folder, or finds nothing and fails; it can never move a half-removed entry into a
    case folder, nor publish one after the new holder found it unpublished.
    """
    check_component(name)
    withdrawn = name + WITHDRAWN
    for where, staging_fd in _staging_dirs(area):
        with _fd(staging_fd):
            for b in dict.fromkeys((bucket, "")):
                try:
                    parent = os.dup(staging_fd) if not b else open_dir(b, dir_fd=staging_fd, where=where)
                except (FileNotFoundError, UnsafeDirectory):
                    continue
                with _fd(parent):
                    remove_at(parent, withdrawn)  # left by a crash during an earlier withdrawal
                    try:
                        os.rename(name, withdrawn, src_dir_fd=parent, dst_dir_fd=parent)
                    except FileNotFoundError:
                        continue
                    remove_at(parent, withdrawn)


@dataclass
class Sweep:
    """What a staging sweep removed, and what it found and left alone (with why)."""

    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def sweep_staging(area: Area, bucket: str) -> Sweep:
    """Remove what a crash left in a bucket before its intent reached the ledger.

    Called by recovery once every unfinished intent of the bucket's mailbox has been
    finished or abandoned (those are removed by name, ``discard_staging``): what is left
    was staged by analysis before its intent was committed, so nothing refers to it and it
    was never visible. Only directories named like an entry are removed, and only by
    ``remove_at`` (no link followed, at any depth); a bucket that is a link, and anything
    else found in a bucket, is left alone and reported.
    """
    check_component(bucket)
    out = Sweep()
    for where, staging_fd in _staging_dirs(area):
        with _fd(staging_fd):
            try:
                bucket_fd = open_dir(bucket, dir_fd=staging_fd, where=where)
            except FileNotFoundError:
                continue
            except UnsafeDirectory as exc:
                out.left.append(str(exc))
                continue
            with _fd(bucket_fd):
                with os.scandir(bucket_fd) as it:
                    names = sorted(e.name for e in it)
                for entry in names:
                    kind = kind_at(bucket_fd, entry)
                    if kind == "dir" and ENTRY_NAME.fullmatch(entry.removesuffix(WITHDRAWN)):
                        remove_at(bucket_fd, entry)
                        out.removed.append(entry)
                    elif kind is not None:
                        out.left.append(f"{where}/{bucket}/{entry} is a {kind} the gateway did not stage")
    return out
