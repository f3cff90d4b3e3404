"""Who is sending a document right now: ``host:pid:start-time`` of the process that made it ``active``.

A document left ``active`` is resent by the next pass only when the process that claimed
it is gone (a crash); one claimed by a process still running (the daemon, while someone
runs ``run --once`` beside it) is that process's business and is left alone. The start
time (from ``/proc``) tells a live claimant from a later process that got the same pid.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def _start_time(pid: int) -> str | None:
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if not fields or fields[0] == "Z":
        return None
    return fields[19] if len(fields) > 19 else None  # field 22 of stat(5): starttime


@cache
def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def claimant_alive(claim: str | None) -> bool:
    """Whether the process named by ``claim`` still runs on this host (other hosts: assumed gone)."""
    if not claim:
        return False
    host, _, rest = claim.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # our own earlier claim: this process is past it (a pass that raised)
    return started != "?" and _start_time(pid) == started
