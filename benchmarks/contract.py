"""The one row format every benchmark scenario writes, so that ``run_all.py`` can put them in one table.

Each scenario script accepts ``--quick`` (small N, for ``run_all.py --quick``) and
``--json-out FILE``; with the latter it writes a JSON list of rows, one per measured
size, with exactly the keys of ``FIELDS``. A scenario keeps printing its own detailed
table: the row is the summary a reader compares across runs and machines, not a
replacement for it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The keys of a row, in the order the table shows them.
FIELDS = ("scenario", "unit", "rate", "baseline", "ratio", "peak_rss_mb", "target", "met", "notes")


def row(
    scenario: str,
    unit: str,
    rate: float | None,
    baseline: float | None,
    *,
    peak_rss_mb: float | None,
    target: str,
    met: bool,
    notes: str = "",
    ratio: float | None = None,
) -> dict[str, Any]:
    """One result; ``ratio`` is rate over baseline unless the scenario defines it otherwise.

    Figures that could not be measured (no baseline, a NaN) are ``None``: JSON has no NaN,
    and a reader must see "not measured" rather than a number.
    """
    if ratio is None and rate is not None and baseline:
        ratio = rate / baseline
    return {
        "scenario": scenario,
        "unit": unit,
        "rate": _num(rate),
        "baseline": _num(baseline),
        "ratio": _num(ratio),
        "peak_rss_mb": _num(peak_rss_mb),
        "target": target,
        "met": bool(met),
        "notes": notes,
    }


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(float(value), 3)


def add_options(ap: argparse.ArgumentParser, quick_help: str) -> None:
    """The two options of the contract; ``quick_help`` says what ``--quick`` shrinks to."""
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the result rows (JSON) here")


def write_rows(path: Path | None, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write the rows where ``--json-out`` says; nothing without it."""
    if path is None:
        return
    out = [dict(r) for r in rows]
    for r in out:
        missing = [k for k in FIELDS if k not in r]
        if missing:
            raise ValueError(f"a benchmark row lacks {missing}: {r}")
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def self_peak_mb() -> float:
    """This process's peak RSS (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_cpu(root: int) -> float:
    """CPU seconds a server has used so far: every live process under ``root`` with its reaped children.

    A pre-forking server (Postfix's master, Dovecot, the postmaster) runs short-lived
    workers; an exited one's time is in its parent's cutime/cstime, a live one's in its
    own utime/stime, so the sum over the live tree counts each once.
    """
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo.extend(parents.get(pid, ()))
    return total
