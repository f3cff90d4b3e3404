"""Spool files whose row never committed: set aside, recorded, never sent.

``enqueue`` writes the document's spool file before its row commits, so a process killed
between the two (or a commit that failed in a way the clean-up could not follow) leaves a
file no row points to. Nobody was told the document was queued, so sending it would be
wrong; deleting it would lose what a clerk prepared. Like Postfix's ``postsuper -s``
finding stray queue files, the daemon moves such files to ``outbox/orphaned/`` when it
starts its outbox, and the trail records each one. A file younger than ``MIN_AGE`` is
left alone: its enqueue may be running in another process at this moment. Nodes sharing
one spool (``[storage] spool_dir``) each sweep it; the first to move a file records it.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import structlog

from gateway.config import Config
from gateway.filing.durable import fsync_dir, makedirs_durable
from gateway.records.chain import AuditEvent
from gateway.records.store import Store
from gateway.statedir import outbox_dir

log = structlog.get_logger("poststelle.outbox")
MIN_AGE = 3600.0  # seconds; far longer than any enqueue takes between its write and its commit
ORPHANED = "orphaned"


def sweep_orphans(config: Config, store: Store, *, now: float | None = None) -> list[Path]:
    """Move spool files without an outbox row to ``outbox/orphaned/``; return where they went."""
    spool = outbox_dir(config)
    if not spool.is_dir():
        return []
    now = time.time() if now is None else now
    moved: list[Path] = []
    for path in sorted(spool.glob("*.eml")):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # sent and removed meanwhile
        if age < MIN_AGE or store.outbox_get(path.stem) is not None:
            continue
        target_dir = spool / ORPHANED
        makedirs_durable(target_dir)
        target = target_dir / path.name
        try:
            data = path.read_bytes()
            os.replace(path, target)
        except FileNotFoundError:
            continue  # another node sharing the spool set it aside first
        fsync_dir(target_dir)
        fsync_dir(spool)
        details = {
            "file": path.name,
            "moved_to": str(target),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "age_seconds": int(age),
        }
        store.record_events([AuditEvent("outbox-orphan-set-aside", details=details)])
        log.warning("spool file without an outbox row set aside", **details)
        moved.append(target)
    return moved
