"""The sent copy: the exact bytes handed to the relay, filed in the case folder under ``sent/``.

Layout (docs/case-folders.md)::

    <cases_dir>/<case folder>/sent/<sent-UTC>_<outbox id>/
        message.eml       the bytes sent, byte for byte
        manifest.json     sha256 and size, recipients with the relay's replies and queue ids

Built like every entry (staged, fsynced, published with one rename through directory
descriptors that follow no link), and idempotent: an entry already published for this
outbox id (a crash before the ledger learned of it) is taken, not written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory, check_owner, open_dir, read_at, remove_at, rename_noreplace
from gateway.filing.durable import sync_fd
from gateway.filing.entries import ENTRY_NAME, EntryFile, entry_name, open_case_folder, stage_entry

SENT = "sent"
SENT_FILE = "message.eml"


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _sent_dir(area: Area, folder: str, *, sync: bool = True) -> int:
    """``<case folder>/sent``, made if missing, opened without following links and owner-checked.

    ``sync=False``: the caller flushes the whole file system afterwards (group commit).
    """
    with _fd(open_case_folder(area, folder, create=True)) as folder_fd:
        if sync:
            os.fsync(area.root_fd)  # the case folder, if it is new
        fd = open_dir(SENT, dir_fd=folder_fd, create=True, where=str(area.root / folder))
        try:
            check_owner(fd, area.owners, str(area.root / folder / SENT))
            if sync:
                os.fsync(folder_fd)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _existing(sent_fd: int, outbox_id: str) -> tuple[str, bytes] | None:
    """An entry already published for ``outbox_id``: (name, manifest bytes)."""
    with os.scandir(sent_fd) as it:
        names = sorted(e.name for e in it if e.name.endswith(f"_{outbox_id}"))
    for name in names:
        try:
            with _fd(open_dir(name, dir_fd=sent_fd)) as entry_fd:
                return name, read_at(entry_fd, "manifest.json")
        except (FileNotFoundError, UnsafeDirectory, OSError):
            continue
    return None


def _discard_staged(area: Area, outbox_id: str) -> None:
    """Remove copies of ``outbox_id`` a crash left staged before their publishing rename.

    Each attempt stages under a name carrying its own time, so a later attempt does not
    replace such a leftover and no intake sweep looks at the staging root (mailboxes stage
    in their own buckets). The entry-name shape with this outbox id is all that is removed.
    """
    suffix = f"_{outbox_id}"
    with os.scandir(area.staging_fd) as it:
        names = [e.name for e in it if e.name.endswith(suffix) and ENTRY_NAME.fullmatch(e.name)]
    for name in names:
        remove_at(area.staging_fd, name)


def file_sent_copy(
    area: Area, folder: str, outbox_id: str, raw: bytes, metadata: dict[str, Any], *, sent_at: datetime
) -> tuple[Path, str]:
    """Publish the sent copy of ``outbox_id`` in ``folder``; returns (path, manifest sha256)."""
    with _fd(_sent_dir(area, folder)) as sent_fd:
        _discard_staged(area, outbox_id)
        found = _existing(sent_fd, outbox_id)
        if found is not None:
            name, manifest = found
            return area.root / folder / SENT / name, hashlib.sha256(manifest).hexdigest()
        name = entry_name(sent_at, outbox_id)
        staged = stage_entry(area, None, name, [EntryFile(SENT_FILE, raw)], {"kind": "sent", **metadata}, sync=True)
        with _fd(os.dup(area.staging_fd)) as staging_fd:
            rename_noreplace(name, name, src_dir_fd=staging_fd, dst_dir_fd=sent_fd)
            os.fsync(sent_fd)
            os.fsync(staging_fd)
    return area.root / folder / SENT / name, staged.manifest_sha256


@dataclass(frozen=True)
class SentCopy:
    """One document's sent copy to file: its case folder, outbox id, bytes and manifest metadata."""

    folder: str
    outbox_id: str
    raw: bytes
    metadata: dict[str, Any]
    sha256: str | None = None  # of ``raw``, when the caller has checked it already


def file_sent_copies(
    area: Area, copies: Sequence[SentCopy], *, sent_at: datetime
) -> list[tuple[Path, str] | OSError | ValueError]:
    """``file_sent_copy`` for many documents with two file-system flushes in all (group commit).

    Every entry is staged without its own fsyncs, one ``syncfs`` makes all of them
    durable before any is renamed into its case folder (an entry is never visible
    before its bytes are on disk), and one more persists the renames and new folders:
    the same guarantees as one by one, the flushes shared by the batch, as the intake
    does with ``publish_entries``. Per copy: (path, manifest sha256), or the error that
    stopped that copy alone (a case folder that is a link, ...).
    """
    results: list[tuple[Path, str] | OSError | ValueError | None] = [None] * len(copies)
    staged: list[tuple[int, str, str]] = []
    for i, c in enumerate(copies):
        try:
            _discard_staged(area, c.outbox_id)  # a crash's leftover: each attempt stages under a new name
            with _fd(_sent_dir(area, c.folder, sync=False)) as sent_fd:
                found = _existing(sent_fd, c.outbox_id)
            if found is not None:
                results[i] = area.root / c.folder / SENT / found[0], hashlib.sha256(found[1]).hexdigest()
                continue
            name = entry_name(sent_at, c.outbox_id)
            files = [EntryFile(SENT_FILE, c.raw, c.sha256)]
            entry = stage_entry(area, None, name, files, {"kind": "sent", **c.metadata}, sync=False)
            staged.append((i, name, entry.manifest_sha256))
        except (OSError, ValueError) as exc:
            results[i] = exc
    if staged:
        sync_fd(area.root_fd, str(area.root))
        with _fd(os.dup(area.staging_fd)) as staging_fd:
            for i, name, manifest_sha in staged:
                c = copies[i]
                try:
                    with _fd(_sent_dir(area, c.folder, sync=False)) as sent_fd:
                        rename_noreplace(name, name, src_dir_fd=staging_fd, dst_dir_fd=sent_fd)
                    results[i] = area.root / c.folder / SENT / name, manifest_sha
                except (OSError, ValueError) as exc:
                    results[i] = exc
        sync_fd(area.root_fd, str(area.root))
    return [r if r is not None else OSError("not filed") for r in results]
