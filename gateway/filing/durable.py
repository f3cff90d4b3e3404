"""Durable file-system writes: temp name, fsync, rename, fsync the directory.

Postfix's rule: a message is not accepted until it is on stable storage. Every byte the
gateway promises to keep goes through these helpers, so that a crash leaves either the
old state or the complete new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

from gateway.filemodes import dir_mode, file_mode


def fsync_dir(path: Path) -> None:
    """Persist a directory entry (a rename or a new file) itself, not just file contents."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, mode: int | None = None, sync: bool = True) -> None:
    """Create ``path`` with ``data`` (and flush it unless the caller syncs the batch); never overwrites."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, file_mode() if mode is None else mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        # fdatasync: the data and the size that reading it back needs; the name becomes
        # durable with the directory fsync of the publish step.
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int | None = None, overwrite: bool = False, sync: bool = True
) -> None:
    """Write ``path`` atomically (temp + fsync + rename + dir fsync).

    With ``overwrite=False`` an existing file is an error: records are never rewritten.
    ``sync=False`` keeps the atomic rename (a reader sees the old or the new file, never a
    torn one) without the flushes, for files that are not evidence (the daemon's status).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_file(tmp, data, mode=mode, sync=sync)
    if not overwrite and path.exists():
        tmp.unlink()
        raise FileExistsError(path)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def makedirs_durable(path: Path, *, mode: int | None = None) -> None:
    """Create ``path`` and any missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=dir_mode() if mode is None else mode)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


_libc: ctypes.CDLL | None = None


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page and inode of the file system holding ``path`` (syncfs(2)).

    Group commit for a batch: one flush instead of one per file and directory. Falls back
    to sync(2) where syncfs is unavailable; both wait for the data to reach the device.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sync_fd(fd, str(path))
    finally:
        os.close(fd)


def sync_fd(fd: int, label: str = "") -> None:
    """``sync_filesystem`` for the file system of an open descriptor (a root held open)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    if syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs failed: {os.strerror(err)}", label)
