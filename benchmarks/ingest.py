"""Ingest benchmark: N realistic ~50 KB messages from a throwaway Dovecot into case folders.

    .venv/bin/python benchmarks/ingest.py [--n 5000] [--n 20000] [--batch-size 50] [--quick] [--json-out FILE]

For each N: seeds the INBOX (Maildir drop), times ``poststelle run --once`` until the
INBOX is empty (durable: fsync + ledger commits + MOVE) and reads the run's peak RSS.
In the same run it measures a baseline on a fresh copy of the same messages: a bare
imapclient loop that FETCHes every message and writes it to one file with fsync + rename
(no parsing, routing, ledger or MOVE), the floor any durable fetcher pays.

Targets (issue 2, 2 cores): >= 400 messages/s end to end; peak RSS <= 150 MB and flat in N.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import imapclient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, write_rows  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.demo.samples import fake_pdf, letter  # noqa: E402
from gateway.filing.durable import fsync_dir, write_file  # noqa: E402
from gateway.statedir import init_storage  # noqa: E402

SUBJECTS = [
    "Bauantrag Az.: 63-BV-2026-{n:04d}",
    "AW: Ihr Zeichen: 63-BV-2026-{n:04d}",
    "Ladung Az. {k} K {n}/25",
    "Rundschreiben Nr. {n}",
]


def corpus(n: int) -> list[bytes]:
    pdf = fake_pdf(36_000, seed=7)  # base64 => ~50 KB messages
    return [
        letter(subject=SUBJECTS[i % 4].format(n=i % 500, k=i % 9 + 1), attachment=(f"Anlage-{i}.pdf", pdf))
        for i in range(n)
    ]


def config_text(root: Path, server: Dovecot, user: str, batch: int, workers: int | None = None) -> str:
    processing = f"[processing]\nanalysis_workers = {workers}\n" if workers is not None else ""
    return f"""
[storage]
state_dir = "{root}/state"
{processing}
[[mailbox]]
name = "bench"
host = "127.0.0.1"
port = {server.imaps_port}
username = "{user}"
password = "pw"
ca_file = "{server.ca_file}"
batch_size = {batch}

[[route]]
name = "building"
subject = '(?i)\\b(?:Az|Zeichen)\\.?\\s*:?\\s*(?P<case>\\d{{2}}-BV-\\d{{4}}-\\d{{3,5}})'
case = "{{case}}"

[[route]]
name = "court"
subject = '(?i)\\bAz\\.?\\s*(?P<case>\\d\\s+K\\s+\\d+/\\d\\d)'
case = "VG {{case}}"

[logging]
level = "warning"
format = "json"
"""


class WorkDirs(NamedTuple):
    root: Path  # the gateway's state, case folders, and the baseline's files
    server: Path  # the throwaway IMAP server's mail (on another file system when it can be)


@contextlib.contextmanager
def work_root(prefix: str, *, keep: bool = False, volume: bool = True) -> Iterator[WorkDirs]:
    """Temporary work directories that are removed afterwards, even when the run fails.

    By default the gateway's side is a fresh ext4 file system (a loop-mounted sparse
    image under ``$POSTSTELLE_BENCH_DIR``, else ``/var/tmp``), made for this run, and the
    IMAP server's Maildirs stay outside it. That is the deployment the README
    recommends (``cases_dir`` on its own volume, since ``syncfs`` flushes the whole file
    system; the mail server is another machine), and the only way to get figures that
    do not depend on what the machine's disk went through before. Measured on this
    machine: creating the ~7 files and directories of a case entry cost 0.15-0.2 ms on a
    fresh ext4 and 0.6-2.1 ms in ``/var/tmp`` after earlier benchmark runs had created
    and deleted millions of files there (ext4 then scans past freed inodes on every
    create). ``--no-volume`` (or no root, or no loop device) puts everything in a plain
    directory there instead and says so. A 20,000-message run writes several GB.
    """
    parent = Path(os.environ.get("POSTSTELLE_BENCH_DIR", "/var/tmp"))
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(fresh_volume(parent, prefix)) if volume and not keep else None
        if base is None:
            print(f"work dir on the disk as it is ({parent}): figures depend on its history")
        else:
            print(f"gateway work dir on a fresh ext4 volume (loop image under {parent}); IMAP server outside it")
        dirs = [Path(tempfile.mkdtemp(prefix=prefix, dir=base or parent))]
        dirs.append(Path(tempfile.mkdtemp(prefix=f"{prefix}imap-", dir=parent)) if base else dirs[0])
        for d in dirs:
            os.chmod(d, 0o755)  # noqa: S103 - Dovecot (user nobody) must reach its dirs
        try:
            yield WorkDirs(dirs[0], dirs[1])
        finally:
            if keep:
                print(f"kept {dirs[0]}")
            else:
                for d in set(dirs):
                    shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def fresh_volume(parent: Path, prefix: str) -> Iterator[Path | None]:
    """Mount a new sparse ext4 image (default mkfs options, with journal); None if impossible.

    Only the set-up's failures mean "no volume"; an error in the caller's block propagates.
    """
    image = parent / f"{prefix}{os.getpid()}.img"
    mountpoint = Path(tempfile.mkdtemp(prefix=f"{prefix}mnt-", dir=parent))
    mounted = False
    try:
        try:
            with open(image, "wb") as f:
                f.truncate(64 * 1024**3)  # sparse: only what the run writes takes space
            for cmd in (["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(mountpoint)]):
                if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
                    break
            else:
                mounted = True
                os.chmod(mountpoint, 0o755)  # noqa: S103 - Dovecot (user nobody) must reach its dirs
        except OSError:
            pass
        yield mountpoint if mounted else None
    finally:
        if mounted and subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            # Something still holds a file there: detach now, the kernel frees it when they close.
            subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()
        with contextlib.suppress(OSError):
            image.unlink()


class GatewayRun(NamedTuple):
    elapsed: float  # seconds, from starting the process until it exited
    main_kib: int  # peak RSS of the gateway process
    tree_kib: int  # peak of the summed PSS of the gateway and its analysis workers
    gateway_cores: float  # CPU seconds of the gateway and its workers per wall second
    machine_cores: float  # CPU seconds of the whole machine (Dovecot too) per wall second
    steady: float  # messages per second once running (from the audit trail; see steady_rate)
    server_cpu: float  # CPU seconds the IMAP server spent during the run


def _machine_busy() -> float:
    """Seconds of CPU time (all cores, everything but idle and iowait) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _status_kib(pid: int, field: str, file: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_gateway(config: Path, server: Dovecot | None = None) -> GatewayRun:
    """Time ``poststelle run --once`` and read its peak memory while it runs.

    VmHWM of /proc/<pid>/status is reset at exec (the ru_maxrss of wait4 would also count
    the benchmark's own pages shared at fork time). The tree figure adds the analysis
    worker processes, sampled every 100 ms, as PSS (proportional set size): a page that
    the processes share (the Python runtime, OpenSSL, cryptography's Rust library) counts
    once in the sum instead of once per process, as summed RSS would count it.
    """
    init_storage(load_config(config))  # what `poststelle init` makes; not part of the timed run
    start = time.perf_counter()
    server0 = server.cpu_seconds() if server else 0.0
    busy0, cpu0 = _machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--once", "--config", str(config)], cwd=REPO)
    main_peak = tree_peak = 0
    tree: list[int] = []
    ticks = 0
    while proc.poll() is None:
        if ticks % 10 == 0:  # walking all of /proc costs real CPU: refresh the tree once a second
            tree = _descendants(proc.pid)
        ticks += 1
        main_peak = max(main_peak, _status_kib(proc.pid, "VmHWM:"))
        tree_peak = max(tree_peak, sum(_status_kib(p, "Pss:", "smaps_rollup") for p in tree))
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    busy1, cpu1 = _machine_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.3)  # the session's imap process exits after the logout; let the master reap it
    server_cpu = server.cpu_seconds() - server0 if server else 0.0
    if proc.returncode != 0:
        raise SystemExit("gateway run failed")
    gateway_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return GatewayRun(
        elapsed,
        main_peak,
        max(tree_peak, main_peak),
        gateway_cpu / elapsed,
        (busy1 - busy0) / elapsed,
        steady_rate(config),
        server_cpu,
    )


def steady_rate(config: Path) -> float:
    """Messages per second between the first batch's commit and the last MOVE.

    Read from the run's own audit trail: the messages fetched after the first commit
    (``fetched`` entries are written when a batch's intent is committed), over the time
    from that commit to the last ``moved`` entry. It leaves out start-up (interpreter,
    worker processes, login: ~0.8 s measured on an empty mailbox) and the first batch,
    which a daemon pays once, not per message; the msg/s column includes them.
    """
    from gateway.config import load_config
    from gateway.records.open import open_store
    from gateway.records.store import EntryFilter

    store = open_store(load_config(config), readonly=True)
    try:
        fetched = [e.at for e in store.select(EntryFilter(events=("fetched",)))]
        last = max(e.at for e in store.select(EntryFilter(events=("moved",))))
    finally:
        store.close()
    first = min(fetched)
    later = sum(1 for at in fetched if at > first)
    span = (_ts(last) - _ts(first)).total_seconds()
    return float(later) / span if span > 0 else 0.0


def _ts(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def baseline(server: Dovecot, user: str, out: Path, transform: Callable[[bytes], bytes] = bytes) -> float:
    """Fetch all + one durable file per message; ``transform`` is what a baseline does in between."""
    out.mkdir()
    start = time.perf_counter()
    client = imapclient.IMAPClient(server.host, port=server.imaps_port, ssl=True, ssl_context=server.ssl_context())
    client.login(user, "pw")
    client.select_folder("INBOX")
    uids = client.search(["ALL"])
    for i in range(0, len(uids), 50):
        for uid, data in client.fetch(uids[i : i + 50], ["BODY.PEEK[]"]).items():
            tmp = out / f".{uid}.tmp"
            write_file(tmp, transform(data[b"BODY[]"]))
            os.rename(tmp, out / f"{uid}.eml")
        fsync_dir(out)
    client.logout()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append", help="messages (repeatable; default 5000 and 20000)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=None, help="analysis worker processes (default: the gateway's)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (implies --no-volume)")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "N = 500 only")
    args = ap.parse_args()
    sizes = args.n or ([500] if args.quick else [5000, 20000])
    with work_root("pst-bench-", keep=args.keep, volume=not args.no_volume) as work:
        rows = run_all(work, sizes, args.batch_size, args.workers)
    print("targets: >= 400 msg/s end to end; peak RSS <= 150 MB and flat in N")
    write_rows(args.json_out, rows)


def run_all(dirs: WorkDirs, sizes: list[int], batch_size: int, workers: int | None) -> list[dict[str, Any]]:
    """Run each size and print its line; the contract's rows (benchmarks/contract.py) for them."""
    rows: list[dict[str, Any]] = []
    root = dirs.root
    users = {f"u{i}": "pw" for i in range(2 * len(sizes))}
    print(
        f"{'N':>6} {'gateway s':>10} {'msg/s':>8} {'steady':>7} {'peak RSS MB':>12} {'+workers PSS':>12} "
        f"{'CPU gw/all':>10} {'imap ms/msg':>11} {'baseline msg/s':>15} {'ratio':>6}"
    )
    with Dovecot(dirs.server / "dovecot", users) as server:
        for i, n in enumerate(sizes):
            messages = corpus(n)
            gw_user, base_user = f"u{2 * i}", f"u{2 * i + 1}"
            server.seed_maildir(gw_user, messages)
            server.seed_maildir(base_user, messages)
            os.sync()  # the runs below must not pay for writing back the seeded Maildirs
            mb = sum(len(m) for m in messages) / n / 1024
            del messages
            work = root / f"run{i}"
            work.mkdir()
            cfg = work / "poststelle.toml"
            cfg.write_text(config_text(work, server, gw_user, batch_size, workers))
            elapsed, rss_kib, tree_kib, gw_cores, all_cores, steady, server_cpu = run_gateway(cfg, server)
            left = len(server.folder_uids(gw_user, "INBOX"))
            if left:
                raise SystemExit(f"{left} messages left in the INBOX")
            base = baseline(server, base_user, work / "baseline")
            rate, brate = n / elapsed, n / base
            print(
                f"{n:>6} {elapsed:>10.1f} {rate:>8.0f} {steady:>7.0f} {rss_kib / 1024:>12.1f} {tree_kib / 1024:>12.1f} "
                f"{gw_cores:>4.2f}/{all_cores:<4.2f} {server_cpu / n * 1000:>11.2f} {brate:>15.0f} {rate / brate:>6.2f}"
                f"   (avg message {mb:.0f} KB)"
            )
            rows.append(
                row(
                    "ingest-plain",
                    "messages/s",
                    rate,
                    brate,
                    peak_rss_mb=rss_kib / 1024,
                    target="rate >= 400; peak RSS <= 150 MB",
                    met=rate >= 400 and rss_kib / 1024 <= 150,
                    notes=f"N={n}, ~{mb:.0f} KB; steady {steady:.0f}/s; +workers PSS {tree_kib / 1024:.0f} MB; "
                    "baseline: IMAP fetch + fsync per message",
                )
            )
    return rows


if __name__ == "__main__":
    main()
