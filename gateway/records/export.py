"""Shipping the trail as JSON lines, for external log storage.

The copy is written after commit, so it may lag after a crash; it catches up on the next
export and never holds an entry the store does not. A lock file keeps CLI and daemon
from interleaving lines, and a line torn by a crash mid-write is cut off and rewritten.
Each line is ``canonical(entry.to_json())``: an auditor can re-hash it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from gateway.records.chain import AuditEntry, NewEntry, canonical

#: The cache only saves re-encoding; a process that appends but never exports (a clerk's
#: long session) must not grow with it, so past this many it starts over.
MAX_CACHED_LINES = 5_000


class EntrySource(Protocol):
    """What the export reads from a store (a consistent snapshot)."""

    def entry_hashes(self, since_seq: int = 0) -> Iterable[tuple[int, str]]: ...

    def entry(self, seq: int) -> AuditEntry | None: ...


class JsonlExport:
    """Appends to the JSON-lines file every entry it does not have yet.

    Entries appended through this store are remembered with their line, encoded once
    when they were chained. A remembered entry that was rolled back may linger; its seq
    then holds another entry in the store, with another hash, so the export recognises
    it and encodes the stored entry instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines: dict[int, tuple[str, NewEntry]] = {}

    def remember(self, entries: Iterable[NewEntry]) -> None:
        if len(self._lines) >= MAX_CACHED_LINES:
            self._lines.clear()  # nobody exports: the store has everything
        for e in entries:
            self._lines[e.seq] = (e.hash, e)

    def export(self, source: EntrySource) -> int:
        """Write the entries after the file's last complete line; returns how many."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            have = last_jsonl_seq(self.path)
            n = 0
            with open(self.path, "ab") as f:
                for seq, h in source.entry_hashes(since_seq=have):
                    cached = self._lines.get(seq)
                    if cached is not None and cached[0] == h:
                        f.write(cached[1].jsonl_line() + b"\n")
                    else:
                        entry = source.entry(seq)
                        assert entry is not None, "an entry listed in the same snapshot"
                        f.write(canonical(entry.to_json()) + b"\n")
                    n += 1
                f.flush()
                os.fsync(f.fileno())
            self._lines.clear()  # exported, or belonging to a rolled-back transaction
            return n


def last_jsonl_seq(path: Path) -> int:
    """The seq of the last complete line of the JSON-lines file (0 if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return 0
            back = min(size, 65536)
            f.seek(size - back)
            tail = f.read()
    except FileNotFoundError:
        return 0
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if tail and not tail.endswith(b"\n"):
        lines = lines[:-1]  # a torn last line (crash mid-write) is rewritten by the next export
        _truncate_torn_tail(path, tail)
    for ln in reversed(lines):
        try:
            return int(json.loads(ln)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _truncate_torn_tail(path: Path, tail: bytes) -> None:
    cut = tail.rfind(b"\n") + 1
    size = path.stat().st_size
    os.truncate(path, size - (len(tail) - cut))
