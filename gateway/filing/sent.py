"""The sent copy: the exact bytes handed to the relay, filed in the case folder under ``sent/``.

Layout (docs/case-folders.md)::

    <cases_dir>/<case folder>/sent/<sent-UTC>_<outbox id>/
        message.eml       the bytes sent, byte for byte
        manifest.json     sha256 and size, recipients with the relay's replies and queue ids

Built like every entry (staged, fsynced, published with one rename through directory
descriptors that follow no link), and idempotent: an entry already published for this
outbox id (a crash before the ledger learned of it, another process filing it at the same
time) is taken, not written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.filing.areas import Area
from gateway.filing.dirs import UnsafeDirectory, check_owner, open_dir, read_at, remove_at, rename_noreplace
from gateway.filing.durable import sync_fd
from gateway.filing.entries import EntryFile, entry_name, open_case_folder, stage_entry

SENT = "sent"
SENT_FILE = "message.eml"


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _sent_dir(area: Area, folder: str) -> int:
    """``<case folder>/sent``, made if missing, opened without following links and owner-checked.

    Not flushed here: the caller flushes the whole file system afterwards (group commit).
    """
    with _fd(open_case_folder(area, folder, create=True)) as folder_fd:
        fd = open_dir(SENT, dir_fd=folder_fd, create=True, where=str(area.root / folder))
        try:
            check_owner(fd, area.owners, str(area.root / folder / SENT))
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


def _staged_name(name: str) -> str:
    """This attempt's own staging name: two processes filing one document never share one."""
    return f"{name}.{secrets.token_hex(6)}"


def _staged_leftovers(area: Area, outbox_id: str) -> list[str]:
    """Copies of ``outbox_id`` in the staging directory (``_staged_name``, or an entry name of old)."""
    shape = re.compile(rf"[0-9]{{8,}}T[0-9]{{6}}Z_{re.escape(outbox_id)}(\.[0-9a-f]+)?")
    with os.scandir(area.staging_fd) as it:
        return [e.name for e in it if shape.fullmatch(e.name)]


def _discard_staged(area: Area, outbox_id: str) -> None:
    """Remove the staged copies of ``outbox_id`` once its copy is published.

    A crash leaves them before their publishing rename; another process filing the same
    copy at this moment (it lost the race, or will) finds its own gone or its rename
    refused, and takes the published one. Only after publication: then a process whose
    staged copy went has a copy to take. Best effort: that process removes its own too.
    """
    for name in _staged_leftovers(area, outbox_id):
        with contextlib.suppress(OSError):
            remove_at(area.staging_fd, name)


def _take(sent_fd: int, outbox_id: str, folder: str, area: Area) -> tuple[Path, str] | None:
    found = _existing(sent_fd, outbox_id)
    if found is None:
        return None
    name, manifest = found
    return area.root / folder / SENT / name, hashlib.sha256(manifest).hexdigest()


@dataclass(frozen=True)
class SentCopy:
    """One document's sent copy to file: its case folder, outbox id, bytes and manifest metadata.

    ``sent_at`` names the entry (``<sent-UTC>_<outbox id>``): the time the relay took the
    document, as the ledger records it, so that every process filing this copy arrives at
    the same name and the publishing rename lets only one of them in.
    """

    folder: str
    outbox_id: str
    raw: bytes
    metadata: dict[str, Any]
    sent_at: datetime
    sha256: str | None = None  # of ``raw``, when the caller has checked it already


def file_sent_copies(area: Area, copies: Sequence[SentCopy]) -> list[tuple[Path, str] | OSError | ValueError]:
    """Publish the sent copies of many documents with two file-system flushes in all (group commit).

    Every entry is staged without its own fsyncs, one ``syncfs`` makes all of them
    durable before any is renamed into its case folder (an entry is never visible
    before its bytes are on disk), and one more persists the renames and new folders:
    the same guarantees as one by one, the flushes shared by the batch, as the intake
    does with ``publish_entries``. Per copy: (path, manifest sha256), or the error that
    stopped that copy alone (a case folder that is a link, ...).

    Another process may file the same copy at the same time (the sender, and a node that
    found its claim expired). Each stages under its own name and publishes under the one
    name ``SentCopy.sent_at`` gives, without replacing: the first rename wins, and the
    other, whose rename is refused or whose staged copy the winner removed, takes the
    published entry. The ledger records one of them (``ClaimTerms.unfiled``).
    """
    results: list[tuple[Path, str] | OSError | ValueError | None] = [None] * len(copies)
    staged: list[tuple[int, str, str, str]] = []
    for i, c in enumerate(copies):
        name = entry_name(c.sent_at, c.outbox_id)
        try:
            with _fd(_sent_dir(area, c.folder)) as sent_fd:
                results[i] = _take(sent_fd, c.outbox_id, c.folder, area)
            if results[i] is not None:
                _discard_staged(area, c.outbox_id)  # a crash's leftover, the copy being published
                continue
            stage = _staged_name(name)
            files = [EntryFile(SENT_FILE, c.raw, c.sha256)]
            entry = stage_entry(area, None, stage, files, {"kind": "sent", **c.metadata}, sync=False)
            staged.append((i, stage, name, entry.manifest_sha256))
        except (OSError, ValueError) as exc:
            results[i] = _taken_instead(area, c, exc)
    if staged:
        sync_fd(area.root_fd, str(area.root))
        with _fd(os.dup(area.staging_fd)) as staging_fd:
            for i, stage, name, manifest_sha in staged:
                c = copies[i]
                try:
                    with _fd(_sent_dir(area, c.folder)) as sent_fd:
                        rename_noreplace(stage, name, src_dir_fd=staging_fd, dst_dir_fd=sent_fd)
                    results[i] = area.root / c.folder / SENT / name, manifest_sha
                except (OSError, ValueError) as exc:
                    with contextlib.suppress(OSError):
                        remove_at(staging_fd, stage)
                    results[i] = _taken_instead(area, c, exc)
                    continue
                _discard_staged(area, c.outbox_id)
    if any(isinstance(r, tuple) for r in results):
        # Also for an entry taken: another process's rename may not be durable yet.
        sync_fd(area.root_fd, str(area.root))
    return [r if r is not None else OSError("not filed") for r in results]


def _taken_instead(area: Area, copy: SentCopy, exc: OSError | ValueError) -> tuple[Path, str] | OSError | ValueError:
    """After a failed stage or publish: the entry another process published meanwhile, else the error.

    A refused rename (it published first) and a staged copy gone (it removed this one as a
    leftover after publishing) both mean the copy is there; any other error is this copy's.
    """
    try:
        with _fd(_sent_dir(area, copy.folder)) as sent_fd:
            taken = _take(sent_fd, copy.outbox_id, copy.folder, area)
    except (OSError, ValueError):
        return exc
    return taken if taken is not None else exc
