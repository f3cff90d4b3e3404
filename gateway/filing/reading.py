"""Reading a filed entry back (refiling, release, audit verify) without following a link.

The gateway never files a symbolic link, so one inside an entry was put there by someone
with write access to the share: reading through it would copy, hash or "verify" a file
from anywhere on the machine. Every read here walks the entry's path components with
``lstat`` and opens the file with ``O_NOFOLLOW``; a manifest path that is absolute or
climbs out of the entry is refused before anything is opened. Removing an old copy goes
through the area's directory descriptors for the same reason.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from gateway.filing.areas import Area
from gateway.filing.dirs import open_dir, remove_at

#: Why ``read_inside`` could not give the bytes of a listed file.
Refusal = str


def read_inside(entry: Path, rel: str) -> bytes | Refusal:
    """The bytes of ``entry/rel``, or why they cannot be trusted.

    The refusal is one of "missing", "symlink", "not a regular file" or "path outside entry".
    """
    path = PurePosixPath(rel)
    parts = path.parts
    if not parts or path.is_absolute() or any(p in ("..", ".", "") for p in parts):
        return "path outside entry"
    here = entry
    st: os.stat_result | None = None
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = os.lstat(here)
        except OSError:
            return "missing"
        if stat.S_ISLNK(st.st_mode):
            return "symlink"
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return "missing"
    if st is None or not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        fd = os.open(here, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "missing"
    with os.fdopen(fd, "rb") as f:
        return f.read()


def remove_entry(area: Area, entry: Path) -> None:
    """Remove a published entry of ``area`` by descriptors: a link on the way is never followed.

    Raises ``ValueError`` for a path outside the area's root and ``UnsafeDirectory`` when a
    folder on the way is a link (the entry then stays, and ``audit verify`` names it).
    """
    parts = entry.relative_to(area.root).parts
    if not parts or any(p in ("..", ".") for p in parts):
        raise ValueError(f"{entry} is not an entry of {area.root}")
    fds: list[int] = []
    try:
        fd = area.root_fd
        for name in parts[:-1]:
            fd = open_dir(name, dir_fd=fd, where=str(area.root))
            fds.append(fd)
        remove_at(fd, parts[-1])
    finally:
        for opened in fds:
            os.close(opened)
