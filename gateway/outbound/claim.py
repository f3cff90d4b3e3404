"""Who is sending a document right now: ``node:pid:start-time`` of the process that made it ``active``.

A document left ``active`` is resent by the next pass only when its claim is over. On the
claimant's own node that is known at once: the process is gone (a crash), and one still
running (the daemon, while someone runs ``run --once`` beside it) is left alone; the start
time (from ``/proc``) tells a live claimant from a later process that got the same pid.
Another node's processes cannot be looked at, so its claim is over when it has expired by
the database's clock: its holder renews it while the relay has the document
(``claimkeeper``), and one that stopped renewing (killed, paused, cut off) lets it lapse.
The node is ``[storage] node``, else the host name; two nodes must not share a name.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config


def _start_time(pid: int) -> str | None:
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if not fields or fields[0] == "Z":
        return None
    return fields[19] if len(fields) > 19 else None  # field 22 of stat(5): starttime


def node_name(config: Config) -> str:
    """This node's name in claims: ``[storage] node``, else the host name."""
    return getattr(config.storage, "node", None) or socket.gethostname()


@cache
def this_process(node: str | None = None) -> str:
    return f"{node or socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def claim_node(claim: str | None) -> str | None:
    """The node named by a claim (None without one)."""
    return claim.partition(":")[0] if claim else None


def claimant_alive(claim: str | None, node: str | None = None) -> bool:
    """Whether the process named by ``claim`` still runs on this node (``node``: default the host name).

    Another node's claimant cannot be looked at: False here, and its claim's expiry decides
    (``taken_over_now``).
    """
    if not claim:
        return False
    host, _, rest = claim.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != (node or socket.gethostname()) or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # our own earlier claim: this process is past it (a pass that raised)
    return started != "?" and _start_time(pid) == started


def may_take_over(claim: str | None, expires_at: str | None, *, node: str, now: str) -> bool:
    """Whether this node may take over an ``active`` document: its claimant here is gone, or
    another node's claim has expired (``now``: a hint only; the store checks with its clock)."""
    if claim_node(claim) in (None, node):
        return not claimant_alive(claim, node)
    return expires_at is None or expires_at <= now
