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
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory, check_owner, open_dir, read_at, remove_at, rename_noreplace
from gateway.filing.entries import ENTRY_NAME, EntryFile, entry_name, open_case_folder, stage_entry

SENT = "sent"
SENT_FILE = "message.eml"


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _sent_dir(area: Area, folder: str) -> int:
    """``<case folder>/sent``, made if missing, opened without following links and owner-checked."""
    with _fd(open_case_folder(area, folder, create=True)) as folder_fd:
        os.fsync(area.root_fd)  # the case folder, if it is new
        fd = open_dir(SENT, dir_fd=folder_fd, create=True, where=str(area.root / folder))
        try:
            check_owner(fd, area.owners, str(area.root / folder / SENT))
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
