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

import errno
import hashlib
import json
import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

CHECK_THREADS = 4  # hashing releases the GIL; more threads than cores hides file-open latency
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str
    expected: str | None = None
    found: str | None = None


#: An entry's manifest problems and the sha256 of its manifest (None when unreadable).
Checked = tuple[list[ManifestProblem], str | None]
#: The break kind ``audit verify`` reports for each problem a listed file can have.
MANIFEST_KINDS = {
    "missing": "file-missing",
    "altered": "file-altered",
    "unlisted file": "file-unlisted",
    "symlink": "file-symlink",
    "not a regular file": "file-not-regular",
    "path outside entry": "file-outside-entry",
}


def check_manifests(paths: list[Path]) -> dict[Path, Checked]:
    """Check entries against their manifests on threads, a few dozen entries per task."""
    size = max(1, min(64, len(paths) // (CHECK_THREADS * 4)))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    out: dict[Path, Checked] = {}
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        for chunk, checked in zip(chunks, pool.map(check_paths, chunks), strict=True):
            out.update(zip(chunk, checked, strict=True))
    return out


def check_paths(paths: list[Path]) -> list[Checked]:
    """``check_entry`` for each path; the task a worker thread or process is given."""
    return [check_entry(p) for p in paths]


class BackgroundChecks:
    """Manifest checks in worker processes, fed with entries while the caller reads the database.

    One worker per core; the parent reads the chain on one core while the workers read and
    hash the files on the other. ``add`` queues an entry, ``result`` waits for every check.

    ``method="spawn"`` starts fresh interpreters: no lock or connection of the parent is
    inherited, at the price of each importing this module. ``"fork"`` copies the parent
    instead, which costs next to nothing; ``start`` then forks the workers at once, and the
    caller does so before it opens a store or starts a thread, so a worker holds nothing
    but this module's code (``fork_is_safe`` says whether that holds now).
    """

    def __init__(self, *, workers: int | None = None, method: str = "spawn", chunk: int = 256) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, mp_context=multiprocessing.get_context(method)
        )
        self._futures: list[tuple[list[Path], Future[list[Checked]]]] = []
        self._queued: list[Path] = []
        self._seen: set[Path] = set()
        self._chunk = chunk

    def start(self) -> None:
        """Start the workers now rather than at the first chunk (with ``fork``: before anything else is open)."""
        if self._pool is not None:
            self._futures.append(([], self._pool.submit(check_paths, [])))

    def add(self, path: Path) -> None:
        if path in self._seen:
            return
        self._seen.add(path)
        self._queued.append(path)
        if len(self._queued) >= self._chunk:
            self._submit()

    def extend(self, paths: list[Path]) -> None:
        for i in range(0, len(paths), self._chunk):
            self._queued.extend(paths[i : i + self._chunk])
            self._submit()

    def _submit(self) -> None:
        chunk, self._queued = self._queued, []
        if chunk and self._pool is not None:
            self._futures.append((chunk, self._pool.submit(check_paths, chunk)))

    def result(self) -> dict[Path, Checked]:
        """Every entry's check; a chunk whose worker failed is checked here instead."""
        from concurrent.futures.process import BrokenProcessPool

        self._submit()
        out: dict[Path, Checked] = {}
        try:
            for chunk, future in self._futures:
                try:
                    checked = future.result()
                except (BrokenProcessPool, OSError):
                    checked = check_paths(chunk)
                out.update(zip(chunk, checked, strict=True))
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def fork_is_safe() -> bool:
    """Forked workers may be used: the platform forks, and no other thread could hold a lock meanwhile."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1




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
    raw = _read_file(root, "manifest.json")
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
    dirs: dict[str, int] = {"": root}  # the entry's real directories, opened by the walk
    try:
        found = _walk(root, "", dirs)
        for rel, meta in listed.items():
            expected = meta.get("sha256") if isinstance(meta, dict) else None
            data = _read_listed(rel, found, dirs)
            if isinstance(data, str):
                problems.append(ManifestProblem(str(entry / rel), data, expected, None))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected:
                problems.append(ManifestProblem(str(entry / rel), "altered", expected, digest))
        for rel, kind in found.items():
            if rel in listed or kind == _DIR:
                continue  # already checked, a link there included
            parent, _, name = rel.rpartition("/")
            here = dirs.get(parent)
            if here is None:
                continue
            if kind == _LINK:
                problems.append(ManifestProblem(str(entry / rel), "symlink", None, _readlink(name, here)))
            elif rel != "manifest.json":
                data = read_at(root, rel)
                unlisted_sha = hashlib.sha256(data).hexdigest() if isinstance(data, bytes) else None
                problems.append(ManifestProblem(str(entry / rel), "unlisted file", None, unlisted_sha))
    finally:
        for rel, fd in dirs.items():
            if rel:
                os.close(fd)
    return problems, manifest_sha


_FILE, _DIR, _LINK, _OTHER = "file", "dir", "link", "other"


def _walk(here: int, prefix: str, dirs: dict[str, int]) -> dict[str, str]:
    """Everything below ``here`` by relative path and kind (file, dir, link, other), in the
    order found: a directory's items, then each real subdirectory's. Subdirectories opened
    are added to ``dirs`` (the caller closes them); links are listed, never followed.

    The kinds come from the directory listing (``d_type``), so a listed file costs no
    ``stat`` of its own; ``_read_listed`` confirms with ``fstat`` what it opened.
    """
    with os.scandir(here) as it:
        entries = list(it)
    out: dict[str, str] = {}
    subdirs: list[str] = []
    for d in entries:
        rel = prefix + d.name
        if d.is_symlink():
            out[rel] = _LINK
        elif d.is_dir(follow_symlinks=False):
            out[rel] = _DIR
            subdirs.append(d.name)
        elif d.is_file(follow_symlinks=False):
            out[rel] = _FILE
        else:
            out[rel] = _OTHER
    for name in subdirs:
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=here)
        except OSError:
            continue  # replaced meanwhile, or not readable: its files read as missing
        dirs[prefix + name] = sub
        out.update(_walk(sub, f"{prefix}{name}/", dirs))
    return out


def _read_listed(rel: str, found: dict[str, str], dirs: dict[str, int]) -> bytes | str:
    """``read_at`` for a file the manifest lists, answered from the walk where it can be.

    A path of plain components is looked up in ``found``: the same refusals as ``read_at``
    (a link or a non-directory on the way, a link or a non-regular file at the end), and a
    regular file is read through its directory's descriptor. Any other form of path goes
    to ``read_at`` itself.
    """
    parts = rel.split("/")
    if any(p in _ODD for p in parts):
        return read_at(dirs[""], rel)
    prefix = ""
    for part in parts[:-1]:
        prefix = prefix + part if not prefix else f"{prefix}/{part}"
        kind = found.get(prefix)
        if kind == _LINK:
            return "symlink"
        if kind != _DIR or prefix not in dirs:
            return "missing"
    kind = found.get(rel)
    if kind is None:
        return "missing"
    if kind == _LINK:
        return "symlink"
    if kind != _FILE:
        return "not a regular file"
    return _read_file(dirs[rel.rpartition("/")[0]], parts[-1])


_ODD = frozenset(("", ".", ".."))


def _read_file(here: int, name: str) -> bytes | str:
    """A regular file's bytes, opened without following a link; the refusal words of ``read_at``."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=here)
    except OSError as exc:
        return "symlink" if exc.errno == errno.ELOOP else "missing"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        data = os.read(fd, st.st_size + 1)
        if len(data) == st.st_size:
            return data
        chunks = [data]  # it changed since, or a read stopped short: read to the end
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _readlink(name: str, here: int) -> str | None:
    try:
        return os.readlink(name, dir_fd=here)
    except OSError:
        return None


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
