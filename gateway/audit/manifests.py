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

import contextlib
import errno
import gc
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

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
    from concurrent.futures import ThreadPoolExecutor  # here: --since with workers needs no threads

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        for chunk, checked in zip(chunks, pool.map(check_paths, chunks), strict=True):
            out.update(zip(chunk, checked, strict=True))
    return out


def check_paths(paths: list[Path]) -> list[Checked]:
    """``check_entry`` for each path; the task a worker thread or process is given."""
    return [check_entry(p) for p in paths]


class BackgroundChecks:
    """Manifest checks in worker processes, fed with entries while the caller reads the database.

    One worker per core, started fresh (``spawn``: no lock or connection of the parent is
    inherited); the parent reads the chain on one core while the workers read and hash
    the files on the other. ``add`` queues an entry, ``result`` waits for every check.
    """

    def __init__(self, *, workers: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")
        )
        self._futures: list[tuple[list[Path], Future[list[Checked]]]] = []
        self._queued: list[Path] = []

    def add(self, path: Path) -> None:
        self._queued.append(path)
        if len(self._queued) >= _CHUNK:
            self._submit()

    def extend(self, paths: list[Path]) -> None:
        for i in range(0, len(paths), _CHUNK):
            self._queued.extend(paths[i : i + _CHUNK])
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


_CHUNK = 256  # entries handed to a worker at a time


class ForkedChecks:
    """Manifest checks in forked worker processes, fed entry by entry while the caller reads on.

    ``audit verify --since`` learns which entries to check while it reads the chain, and
    checking them is most of its work: two workers do that on the other core meanwhile.
    They are forked, not spawned (a fresh interpreter costs more than the checks of a day),
    and fed through plain pipes with no helper thread, because a thread in this process
    would contend for the GIL with the chain being read. Fork before opening a store or
    starting a thread (``fork_is_safe``): a worker then holds nothing but this module's
    code, and it leaves with ``os._exit``, running none of the parent's clean-up.

    A worker reads NUL-separated paths until its pipe closes, then answers with all its
    checks at once (it never writes while it may still be sent work, so neither side can
    block the other for good). Whatever a worker does not answer, because it died or its
    answer cannot be read, ``result`` checks in this process: nothing is taken as checked
    that was not.
    """

    def __init__(self, workers: int = 2, *, chunk: int = 32) -> None:
        self._workers: list[tuple[int, int, int]] = []  # pid, its task pipe (write end), its answer pipe (read end)
        self._sent: list[list[str]] = [[] for _ in range(workers)]
        self._queued: list[str] = []
        self._seen: set[str] = set()
        self._chunk = chunk
        self._turn = 0
        for _ in range(workers):
            task_r, task_w = os.pipe()
            answer_r, answer_w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: only its own ends stay open
                code = 1
                try:
                    gc.disable()  # a collection would touch, and so copy, every page of the parent's objects
                    for _, w, r in self._workers:
                        os.close(w)
                        os.close(r)
                    os.close(task_w)
                    os.close(answer_r)
                    _serve(task_r, answer_w)
                    code = 0
                finally:
                    os._exit(code)
            os.close(task_r)
            os.close(answer_w)
            self._workers.append((pid, task_w, answer_r))

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (until ``result`` or ``close`` has ended them)."""
        return [pid for pid, _, _ in self._workers]

    def add(self, path: str) -> None:
        """Queue an entry's directory for checking (each path once)."""
        if path in self._seen:
            return
        self._seen.add(path)
        self._queued.append(path)
        if len(self._queued) >= self._chunk:
            self._send()

    def _send(self) -> None:
        chunk, self._queued = self._queued, []
        if not chunk or not self._workers:
            return
        turn = self._turn
        self._turn = (turn + 1) % len(self._workers)
        self._sent[turn] += chunk
        data = b"".join(os.fsencode(p) + b"\0" for p in chunk)
        fd = self._workers[turn][1]
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass  # the worker is gone: result() checks what it was sent here

    def result(self) -> dict[str, Checked]:
        """Every queued entry's check, by path; waits for the workers and ends them."""
        import pickle

        self._send()
        out: dict[str, Checked] = {}
        workers, self._workers = self._workers, []
        for _, task_w, _ in workers:
            os.close(task_w)  # end of work: the worker answers now
        for (pid, _, answer_r), sent in zip(workers, self._sent, strict=True):
            try:
                with os.fdopen(answer_r, "rb") as answer:
                    raw = answer.read()
                answered: dict[str, Checked] = pickle.loads(raw) if raw else {}  # noqa: S301 (our own child)
            except Exception:  # noqa: BLE001 (a worker that failed in any way: its entries are checked here)
                answered = {}
            _reap(pid)
            for path in sent:
                out[path] = answered[path] if path in answered else check_entry(Path(path))
        return out

    def close(self) -> None:
        """End the workers if ``result`` was not reached (an error on the way)."""
        import signal

        workers, self._workers = self._workers, []
        for pid, task_w, answer_r in workers:
            os.close(task_w)
            os.close(answer_r)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)


def _serve(task_r: int, answer_w: int) -> None:
    """A forked worker's life: check each path as it arrives; answer once the pipe is closed."""
    import pickle

    checked: dict[str, Checked] = {}
    rest = b""
    while data := os.read(task_r, 1 << 16):
        *paths, rest = (rest + data).split(b"\0")
        for raw in paths:
            path = os.fsdecode(raw)
            checked[path] = check_entry(Path(path))
    answer = pickle.dumps(checked, protocol=pickle.HIGHEST_PROTOCOL)
    while answer:
        answer = answer[os.write(answer_w, answer) :]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def fork_is_safe() -> bool:
    """Whether forked workers may be used: the platform forks, and no other thread could hold a lock."""
    return hasattr(os, "fork") and threading.active_count() == 1


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
        if d.is_file(follow_symlinks=False):  # the usual kind first: one question for most items
            out[rel] = _FILE
        elif d.is_dir(follow_symlinks=False):
            out[rel] = _DIR
            subdirs.append(d.name)
        elif d.is_symlink():
            out[rel] = _LINK
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
    if not _ODD.isdisjoint(parts):
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
