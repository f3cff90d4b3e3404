"""One daemon per state directory: an exclusive ``flock`` on ``<state_dir>/poststelle.lock``.

Two daemons on one state directory delete each other's staged files and race for the same
ledger rows (Postfix refuses to start twice for the same reason). The lock is taken before
anything else is written and held until the process ends; the kernel drops it when the
process dies, however it dies, so a stale file never blocks a restart. The file holds the
holder's pid, which is what a second instance names when it refuses to start.

The people's commands (release, cases move) do not take it: they work beside the daemon
through the store's transactions. Reading commands never touch it.

Taking it again in the same process (the CLI's ``run`` and the daemon it starts) nests;
``flock`` would otherwise see the second open as another holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config
from gateway.errors import PoststelleError
from gateway.filemodes import file_mode
from gateway.statedir import lock_path


class AlreadyRunning(PoststelleError):
    """Another process holds the state directory; ``pid`` is what its lock file says (None if unknown)."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        self.state_dir = state_dir
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"{state_dir} is in use by {holder} (another poststelle run); not starting a second one")


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


class StateLock:
    """The held lock on one state directory; ``release`` (or the end of the process) lets go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._released = False

    @classmethod
    def acquire(cls, config: Config) -> StateLock:
        """Take the lock or raise ``AlreadyRunning`` at once (never waits); OSError when the file cannot be made."""
        path = lock_path(config)
        key = path.parent.resolve() / path.name
        with _guard:
            held = _held.get(key)
            if held is not None:
                held.count += 1
                return cls(key)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, file_mode())
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise AlreadyRunning(config.storage.state_dir, _read_pid(fd)) from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except BaseException:
                os.close(fd)
                raise
            _held[key] = _Held(fd, 1)
        return cls(key)

    def release(self) -> None:
        """Let go (once per ``acquire``); the file stays, holding no pid, for the next start."""
        if self._released:
            return
        self._released = True
        with _guard:
            held = _held.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del _held[self.path]
                with contextlib.suppress(OSError):
                    os.ftruncate(held.fd, 0)
                os.close(held.fd)


def holder(config: Config) -> int | None:
    """The pid of the process holding the state directory (a running daemon), or None if nobody does.

    Tried with a shared, non-blocking ``flock``: it succeeds only when no daemon holds the
    lock, so a pid left in the file by a crash is never taken for a running daemon. A
    holder whose pid cannot be read counts as running, with pid 0.
    """
    return holder_at(lock_path(config))


def holder_at(path: Path) -> int | None:
    """``holder`` for the lock file at ``path`` (another state directory's, say a ledger's own)."""
    key = path.parent.resolve() / path.name if path.parent.exists() else path
    with _guard:
        if key in _held:  # this process runs the daemon (a test, or ``run`` itself)
            return os.getpid()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            return pid if pid is not None else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
