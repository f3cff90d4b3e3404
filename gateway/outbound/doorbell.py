"""The outbox's doorbell: a FIFO a queueing process writes one byte to, so the daemon drains at once.

Postfix's ``postdrop`` tells the pickup daemon about a new file the same way (a write to
``public/pickup``). Ringing is best effort and never blocks or fails a queueing: with no
daemon listening (nobody has the FIFO open for reading) or the pipe already full of
unanswered rings, the write is dropped, and the daemon's poll finds the document anyway.
The bell carries no data: a ring only means "look at the outbox", whoever wrote it.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import threading
from pathlib import Path

import structlog

log = structlog.get_logger("poststelle.outbox")
#: Longest uninterrupted wait: how soon a stop request is noticed while nothing rings.
STOP_CHECK = 1.0


def ring(path: Path) -> bool:
    """Tell a listening daemon that something was queued; whether anyone was listening."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: no reader; ENOENT: no daemon ever ran here; EACCES: not ours to ring
        return False
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass  # the pipe is full of rings nobody answered yet: one more adds nothing
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class Doorbell:
    """The listening end, held open by the daemon's outbox thread for its whole run.

    A doorbell that cannot be made (a read-only state directory, something else at its
    path) is logged and the thread falls back to polling: slower to notice, never wrong.
    """

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        try:
            with contextlib.suppress(FileExistsError):
                os.mkfifo(path, 0o660)
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                raise OSError(f"{path} exists and is not a FIFO")
            # Read and write: the FIFO then always has a writer, so select never reports an
            # endless end-of-file once a queueing process has closed its end.
            self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            log.warning(
                "no outbox doorbell; new documents are noticed at the next poll", path=str(path), error=str(exc)
            )

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds for a ring or ``stop``; whether it rang (rings are consumed)."""
        if self.fd is None:
            stop.wait(timeout)
            return False
        remaining = max(0.0, timeout)
        while not stop.is_set():
            slice_ = min(remaining, STOP_CHECK)
            ready, _, _ = select.select([self.fd], [], [], slice_)
            if ready:
                self._swallow(self.fd)
                return True
            remaining -= slice_
            if remaining <= 0:
                return False
        return False

    @staticmethod
    def _swallow(fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


__all__ = ["Doorbell", "ring"]
