"""Directories reached without following links: a root opened once, every level below by name.

The case folders live on a share that clerks (and whoever else can write there) may change
while the gateway runs. A path such as ``<cases_dir>/<folder>/<entry>`` is resolved by the
kernel afresh on every use, so a folder swapped for a symbolic link between two calls
redirects the next write or delete to wherever the link points, and no earlier check can
prevent that. Here every directory below a root is opened relative to its parent's
descriptor with ``O_NOFOLLOW`` (a link is refused by the kernel in the same call that opens
it, ``ELOOP``), and files are created, renamed and removed by name relative to a descriptor
(``dir_fd=``): what a descriptor refers to cannot be redirected, whatever happens to the
names above it.

The root itself (``cases_dir``, the quarantine, the staging directory) is the
administrator's configured path and is resolved once, when it is opened: a link there is
the administrator's choice, not an attacker's.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from gateway.filemodes import dir_mode, file_mode

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDirectory(OSError):
    """A directory the gateway was to write into or clean up is a link, not a directory, or not ours.

    An ``OSError`` so that callers that treat any write failure as "retry later" still do;
    the callers that can do better (the worker's case-folder check, the release) catch it.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(errno.ELOOP, problem, path)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path} {self.problem}"


def check_component(name: str) -> str:
    """``name`` if it is exactly one harmless path component, else ValueError."""
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise ValueError(f"unsafe path component {name!r}")
    return name


def open_root(path: Path, *, create: bool = True) -> int:
    """The descriptor of a configured root directory (links in the configured path resolved now)."""
    if create:
        path.mkdir(parents=True, exist_ok=True, mode=dir_mode())
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir(name: str, *, dir_fd: int, create: bool = False, where: str = "", mode: int | None = None) -> int:
    """Open (and with ``create``, make) the directory ``name`` in ``dir_fd`` without following a link.

    Raises ``UnsafeDirectory`` when ``name`` is a symbolic link or not a directory,
    ``FileNotFoundError`` when it is missing and ``create`` is false. ``where`` names the
    parent in messages.
    """
    check_component(name)
    label = f"{where}/{name}" if where else name
    for _ in range(2):
        try:
            return os.open(name, OPEN_DIR, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_mode() if mode is None else mode, dir_fd=dir_fd)
        except OSError as exc:
            raise _unsafe(exc, name, dir_fd, label) from None
    return os.open(name, OPEN_DIR, dir_fd=dir_fd)


def _unsafe(exc: OSError, name: str, dir_fd: int, label: str) -> OSError:
    """The ``UnsafeDirectory`` an ``O_NOFOLLOW | O_DIRECTORY`` failure means, or ``exc`` itself."""
    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
        return exc
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return exc
    if stat.S_ISLNK(st.st_mode):
        return UnsafeDirectory(label, "is a symbolic link")
    return UnsafeDirectory(label, "is not a directory")


def check_owner(fd: int, owners: Iterable[int], label: str) -> None:
    """``UnsafeDirectory`` unless the directory open at ``fd`` belongs to one of ``owners``."""
    uid = os.fstat(fd).st_uid
    if uid not in set(owners):
        raise UnsafeDirectory(label, f"belongs to uid {uid}, not to the gateway or the share's owner")


def write_at(
    dir_fd: int, name: str, data: bytes | Iterable[bytes], *, mode: int | None = None, sync: bool = False
) -> int:
    """Create file ``name`` in ``dir_fd`` (never a link, never over an existing name); returns its size.

    ``data`` may be an iterable of chunks, written as they come (a message larger than the
    limit streamed from the server). ``sync=False`` leaves flushing to the caller, who syncs
    a whole batch; ``fdatasync`` otherwise (the name becomes durable with its directory).
    """
    fd = os.open(check_component(name), CREATE_FILE, file_mode() if mode is None else mode, dir_fd=dir_fd)
    size = 0
    try:
        for chunk in (data,) if isinstance(data, bytes | bytearray | memoryview) else data:
            view = memoryview(chunk)
            size += len(view)
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return size


def read_at(dir_fd: int, name: str) -> bytes:
    """The content of file ``name`` in ``dir_fd``; a link is refused (``ELOOP``)."""
    fd = os.open(check_component(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def exists_at(dir_fd: int, name: str) -> bool:
    """Whether ``name`` exists in ``dir_fd`` as anything at all (a dangling link counts)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` from ``dir_fd``: a directory tree, a file or a link, never what a link points to.

    ``shutil.rmtree`` with ``dir_fd`` (Python 3.11) walks with ``openat``/``O_NOFOLLOW`` and
    unlinks links instead of descending (``shutil.rmtree.avoids_symlink_attacks`` is true on
    Linux, checked by the tests); a link at the top is unlinked here, since rmtree refuses one.
    """
    check_component(name)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def kind_at(dir_fd: int, name: str) -> str | None:
    """``"dir"``, ``"link"``, ``"file"``, ``"other"`` for ``name`` in ``dir_fd``; None when missing."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "link"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def mount_id(fd: int) -> int | None:
    """The mount an open file is on (``/proc/self/fdinfo``), or None where Linux does not say.

    Two directories on the same file system but different mounts (a bind mount) have the
    same ``st_dev`` and still cannot ``rename(2)`` into each other (``EXDEV``); the mount id
    tells them apart.
    """
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def same_mount(a: int, b: int) -> bool:
    """Whether a directory can be renamed from one open directory into the other."""
    if os.fstat(a).st_dev != os.fstat(b).st_dev:
        return False
    ma, mb = mount_id(a), mount_id(b)
    return ma is None or mb is None or ma == mb


RENAME_NOREPLACE = 1
_libc: ctypes.CDLL | None = None


def rename_noreplace(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
    """Rename ``src`` in one directory to ``dst`` in another, failing if ``dst`` exists.

    ``renameat2(RENAME_NOREPLACE)`` checks and renames in one step (plain ``rename(2)``
    silently replaces an empty directory). Where the C library or the file system lacks it
    (``EINVAL``/``ENOSYS``), an ``lstat`` check before ``rename`` is the fallback.
    """
    global _libc
    check_component(src)
    check_component(dst)
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), dst)
    if exists_at(dst_dir_fd, dst):
        raise FileExistsError(errno.EEXIST, "entry exists", dst)
    os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
