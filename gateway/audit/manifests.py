"""Checking a published entry against its manifest, for auditors.

Filing writes ``manifest.json`` (``filing.entries``); this reads it back and compares every
file, so ``poststelle audit verify`` can say which file of an entry is missing, altered or
was added after the fact.

Nothing here follows a symbolic link. The gateway never files one, so a link inside an
entry was put there by someone else: it could make a swapped-out file outside the case
folders verify as the filed one (same bytes, different place), or make the check read
anywhere on the machine. A link is reported as a problem of its own and never read, and a
manifest path that is absolute or climbs out of the entry is refused the same way.

The rules are those of ``filing.reading.read_inside``, applied through one descriptor of
the entry's directory (``*at`` calls: one ``lstat`` per component, no path resolution),
because verification checks every entry of every case folder. The module imports nothing
heavy: ``audit verify`` runs ``check_entry`` in worker processes on large states.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str
    expected: str | None = None
    found: str | None = None


def verify_entry(entry: Path) -> list[ManifestProblem]:
    """Compare every file of an entry with its manifest: missing, altered, linked or unlisted files."""
    return check_entry(entry)[0]


def check_entry(entry: Path) -> tuple[list[ManifestProblem], str | None]:
    """``verify_entry``'s problems, and the sha256 of the manifest as read (None if unreadable)."""
    try:
        root = os.open(entry, _DIR_FLAGS)
    except OSError:
        return [ManifestProblem(str(entry / "manifest.json"), "unreadable manifest: missing")], None
    try:
        return _check(root, entry)
    finally:
        os.close(root)


def _check(root: int, entry: Path) -> tuple[list[ManifestProblem], str | None]:
    raw = read_at(root, "manifest.json")
    if isinstance(raw, str):
        return [ManifestProblem(str(entry / "manifest.json"), f"unreadable manifest: {raw}")], None
    manifest_sha = hashlib.sha256(raw).hexdigest()
    try:
        manifest = json.loads(raw)
        listed: dict[str, dict[str, Any]] = manifest["files"]
        listed.items()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [ManifestProblem(str(entry / "manifest.json"), f"unreadable manifest: {exc}")], manifest_sha
    problems: list[ManifestProblem] = []
    for rel, meta in listed.items():
        expected = meta.get("sha256") if isinstance(meta, dict) else None
        data = read_at(root, rel)
        if isinstance(data, str):
            problems.append(ManifestProblem(str(entry / rel), data, expected, None))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            problems.append(ManifestProblem(str(entry / rel), "altered", expected, digest))
    _unlisted(root, root, "", entry, listed, problems)
    return problems, manifest_sha


def _unlisted(
    root: int, here: int, prefix: str, entry: Path, listed: dict[str, Any], problems: list[ManifestProblem]
) -> None:
    """Links and files under ``here`` the manifest does not list; real directories are descended."""
    with os.scandir(here) as it:
        found = list(it)
    subdirs: list[str] = []
    for d in found:
        rel = prefix + d.name
        is_dir = d.is_dir(follow_symlinks=False)
        if is_dir:
            subdirs.append(d.name)
        if rel in listed:
            continue  # already checked, a link there included
        if d.is_symlink():
            problems.append(ManifestProblem(str(entry / rel), "symlink", None, os.readlink(d.name, dir_fd=here)))
        elif not is_dir and rel != "manifest.json":
            data = read_at(root, rel)
            unlisted_sha = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
            problems.append(ManifestProblem(str(entry / rel), "unlisted file", None, unlisted_sha))
    for name in subdirs:
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=here)
        except OSError:
            continue  # replaced meanwhile: the files were checked by name above
        try:
            _unlisted(root, sub, f"{prefix}{name}/", entry, listed, problems)
        finally:
            os.close(sub)


def read_at(root: int, rel: str) -> bytes | str:
    """The bytes of ``rel`` below the directory ``root``, or why they cannot be trusted.

    The refusal is one of "missing", "symlink", "not a regular file" or "path outside entry"
    (the words of ``filing.reading.read_inside``).
    """
    path = PurePosixPath(rel)
    parts = path.parts
    if not parts or path.is_absolute() or any(p in ("..", ".", "") for p in parts):
        return "path outside entry"
    opened: list[int] = []
    try:
        here = root
        for part in parts[:-1]:
            try:
                st = os.stat(part, dir_fd=here, follow_symlinks=False)
            except OSError:
                return "missing"
            if stat.S_ISLNK(st.st_mode):
                return "symlink"
            if not stat.S_ISDIR(st.st_mode):
                return "missing"
            try:
                here = os.open(part, _DIR_FLAGS, dir_fd=here)
            except OSError:
                return "missing"
            opened.append(here)
        try:
            st = os.stat(parts[-1], dir_fd=here, follow_symlinks=False)
        except OSError:
            return "missing"
        if stat.S_ISLNK(st.st_mode):
            return "symlink"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=here)
        except OSError:
            return "missing"
        with os.fdopen(fd, "rb", buffering=0) as f:
            return f.readall()
    finally:
        for fd in opened:
            os.close(fd)
