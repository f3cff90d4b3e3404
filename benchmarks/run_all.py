"""One benchmark command: every scenario, each against its baseline measured in the same run, in one table.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME]... [--skip NAME]... [--json-out FILE]

Each scenario is its own script in ``benchmarks/`` and runs here as a subprocess, one
after the other (they would only slow each other down on a small machine), with
``--json-out`` (and ``--quick`` when asked): it writes its result rows in the format of
``benchmarks/contract.py``. The runner collects them, prints one table (scenario, rate,
baseline, ratio, peak RSS, target, met?) and writes the rows, with the run's circumstances,
to ``benchmarks/results/run_all-<timestamp>.json`` or to ``--json-out``. Each scenario's
own detailed output goes to a log file next to it.

A scenario that crashes, times out or writes no rows becomes a row with ``met: false``
and the error; the runner goes on with the next and exits 1 at the end. A scenario whose
script is not in the tree (yet) is a "skipped" row. Unmet targets alone do not change the
exit status (quick sizes are dominated by start-up and rarely meet a target); ``--strict``
makes them count too.

Peak RSS is the scenario's own figure (the measured process's VmHWM) where it gives
one; otherwise the largest resident set of the script's whole process tree, from
``wait4``'s ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from contract import FIELDS, row  # noqa: E402

RESULTS = HERE / "results"


@dataclass(frozen=True)
class Scenario:
    """A scenario script of ``benchmarks/`` and how the runner calls it."""

    name: str
    script: str
    in_quick: bool = True  # run by ``--quick`` (with the script's own ``--quick``)
    timeout: float = 3600.0  # seconds before the runner gives up on it (full size)


#: Every scenario, in the order they run: the quick ones first, so a broken tree shows early.
REGISTRY: tuple[Scenario, ...] = (
    Scenario("compose", "compose.py"),
    Scenario("pki-validators", "pki_validators.py"),
    Scenario("audit-verify", "audit_verify.py"),
    Scenario("ingest-plain", "ingest.py"),
    Scenario("ingest-smime", "smime_ingest.py"),
    Scenario("ingest-openpgp", "openpgp_ingest.py"),
    Scenario("outbound", "outbound.py"),
    Scenario("receipts", "receipts.py"),
    Scenario("idle-latency", "idle_latency.py"),
    Scenario("many-mailboxes", "many_mailboxes.py"),
    Scenario("hosting", "hosting.py"),
    Scenario("soak", "soak.py", in_quick=False, timeout=3 * 3600.0),
)
QUICK_TIMEOUT = 240.0  # a quick scenario longer than this breaks the five-minute promise anyway


@dataclass
class Outcome:
    """What one scenario produced: its rows (each with ``status`` and ``seconds``) and whether it failed."""

    rows: list[dict[str, Any]]
    crashed: bool


def status_row(name: str, status: str, note: str, seconds: float = 0.0) -> dict[str, Any]:
    """A row for a scenario that gave no figures: skipped, crashed, timed out."""
    r = row(name, "", None, None, peak_rss_mb=None, target="", met=False, notes=note)
    r.update(status=status, seconds=round(seconds, 1))
    return r


def _last_lines(log: Path, n: int = 3) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


def run_scenario(sc: Scenario, *, quick: bool, log_dir: Path, extra: Sequence[str] = ()) -> Outcome:
    """Run one scenario script to its end (or its timeout) and read its rows."""
    script = HERE / sc.script
    if not script.exists():
        return Outcome([status_row(sc.name, "skipped", f"not present ({sc.script})")], crashed=False)
    out = log_dir / f"{sc.name}.json"
    log = log_dir / f"{sc.name}.log"
    cmd = [sys.executable, str(script), "--json-out", str(out), *(["--quick"] if quick else []), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    timeout = QUICK_TIMEOUT if quick else sc.timeout
    start = time.perf_counter()
    with log.open("wb") as log_file:
        # A session of its own: a timeout ends the scenario's whole tree (its Dovecot, its daemon).
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    seconds = time.perf_counter() - start
    tree_peak_mb = usage.ru_maxrss / 1024
    if timed_out.is_set():
        return Outcome([status_row(sc.name, "crashed", f"timed out after {timeout:.0f} s", seconds)], crashed=True)
    rows, error = _read_rows(out)
    if proc.returncode != 0:
        error = f"exit status {proc.returncode}: {_last_lines(log)}"
    for r in rows:
        if r.get("peak_rss_mb") is None:
            r["peak_rss_mb"] = round(tree_peak_mb, 3)
            r["notes"] = (r.get("notes") or "") + "; peak RSS: the script's process tree (wait4)"
        r.update(status="ok", seconds=round(seconds, 1))
    if error:
        rows.append(status_row(sc.name, "crashed", error, seconds))
    elif not rows:
        rows.append(status_row(sc.name, "crashed", "wrote no rows", seconds))
    return Outcome(rows, crashed=bool(error) or not any(r["status"] == "ok" for r in rows))


def _read_rows(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The rows a scenario wrote, and what was wrong with them ("" when nothing)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], "wrote no --json-out file"
    except (OSError, ValueError) as exc:
        return [], f"unreadable rows: {exc}"
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        return [], "rows are not a JSON list of objects"
    bad = [r for r in data if any(k not in r for k in FIELDS)]
    if bad:
        return [], f"a row lacks {[k for k in FIELDS if k not in bad[0]]}"
    return [dict(r) for r in data], ""


# -- the table ----------------------------------------------------------------------------------
def _num(value: Any) -> str:
    if value is None:
        return "-"
    x = float(value)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _met(r: Mapping[str, Any]) -> str:
    status = str(r.get("status", "ok"))
    if status != "ok":
        return status
    return "yes" if r.get("met") else "NO"


def format_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as one fixed-width table, notes (and errors) on a line under their row."""
    head = ("scenario", "unit", "rate", "baseline", "ratio", "peak RSS MB", "target", "met")
    lines = []
    for r in rows:
        lines.append(
            (
                (
                    str(r.get("scenario", "")),
                    str(r.get("unit", "")),
                    _num(r.get("rate")),
                    _num(r.get("baseline")),
                    _num(r.get("ratio")),
                    _num(r.get("peak_rss_mb")),
                    str(r.get("target", "")),
                    _met(r),
                ),
                str(r.get("notes", "")),
            )
        )
    widths = [max([len(h)] + [len(cells[i]) for cells, _ in lines]) for i, h in enumerate(head)]
    right = {2, 3, 4, 5}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [fmt(head), "  ".join("-" * w for w in widths)]
    for cells, notes in lines:
        out.append(fmt(cells))
        if notes:
            out.append(f"    {notes}")
    return "\n".join(out)


def results_document(
    rows: Sequence[Mapping[str, Any]], *, quick: bool, started: datetime, seconds: float
) -> dict[str, Any]:
    """What the JSON file holds: the rows and the circumstances a reader needs to compare runs."""
    return {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
        "quick": quick,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in _loadavg()],
        "python": sys.version.split()[0],
        "rows": [dict(r) for r in rows],
    }


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def write_results(doc: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def select(registry: Sequence[Scenario], *, quick: bool, only: Sequence[str], skip: Sequence[str]) -> list[Scenario]:
    """The scenarios to run, in registry order; an unknown name is an error, not a silent no-op."""
    known = {sc.name for sc in registry}
    unknown = sorted((set(only) | set(skip)) - known)
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(unknown)}; known: {', '.join(sc.name for sc in registry)}")
    chosen = [sc for sc in registry if (not only or sc.name in only) and sc.name not in skip]
    # --only names a scenario explicitly: it runs even in --quick (the soak then with its own --quick).
    return [sc for sc in chosen if not quick or sc.in_quick or sc.name in only]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, no soak: under five minutes")
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this scenario (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME", help="leave this scenario out (repeatable)")
    ap.add_argument(
        "--json-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="where the results go (default benchmarks/results/run_all-<timestamp>.json)",
    )
    ap.add_argument("--soak-minutes", type=float, default=None, help="the soak's --minutes (default: its own, 30)")
    ap.add_argument("--strict", action="store_true", help="exit 1 also when a target is not met")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args(argv)
    if args.list:
        for sc in REGISTRY:
            present = "" if (HERE / sc.script).exists() else "  (not present)"
            print(f"{sc.name:16} {sc.script:20} {'quick' if sc.in_quick else 'full only'}{present}")
        return 0
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    json_out = args.json_out or RESULTS / f"run_all-{stamp}.json"
    log_dir = RESULTS / f"run_all-{stamp}"
    log_dir.mkdir(parents=True, exist_ok=True)
    chosen = select(REGISTRY, quick=args.quick, only=args.only, skip=args.skip)
    rows: list[dict[str, Any]] = []
    crashed = False
    t0 = time.perf_counter()
    print(f"{len(chosen)} scenarios{' (quick)' if args.quick else ''}; logs in {log_dir}", flush=True)
    for i, sc in enumerate(chosen, 1):
        extra = ["--minutes", str(args.soak_minutes)] if sc.name == "soak" and args.soak_minutes else []
        print(f"[{i}/{len(chosen)}] {sc.name} ...", end=" ", flush=True)
        outcome = run_scenario(sc, quick=args.quick, log_dir=log_dir, extra=extra)
        crashed |= outcome.crashed
        rows.extend(outcome.rows)
        took = max((r.get("seconds", 0.0) for r in outcome.rows), default=0.0)
        print(f"{_met(outcome.rows[-1]) if outcome.crashed else 'done'} ({took:.0f} s)", flush=True)
    if args.quick and not args.only:
        rows += [status_row(sc.name, "skipped", "not in --quick") for sc in REGISTRY if not sc.in_quick]
    seconds = time.perf_counter() - t0
    print()
    print(format_table(rows))
    write_results(results_document(rows, quick=args.quick, started=started, seconds=seconds), json_out)
    print(f"\n{seconds:.0f} s in all; results in {json_out}")
    unmet = any(r.get("status") == "ok" and not r.get("met") for r in rows)
    return 1 if crashed or (args.strict and unmet) else 0


if __name__ == "__main__":
    sys.exit(main())
