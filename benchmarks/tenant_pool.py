"""Tenants' analysis: processes, memory and intake rate of one gateway serving several authorities.

    .venv/bin/python benchmarks/tenant_pool.py [--tenants 3] [--n 300] [--workers 2]
        [--code DIR --label NAME] [--no-volume]

Each tenant has one mailbox on a throwaway Dovecot holding N signed and encrypted S/MIME
letters (benchmarks/smime_ingest.py's corpus: analysis is the CPU-bound part). Two runs
per code tree: ``poststelle run`` idling over empty mailboxes (processes and summed RSS and
PSS of the gateway and its workers, sampled once every tenant's trail says it started), and
``poststelle run --once`` over all tenants' mail (wall time, msg/s, CPU of the gateway and
its workers, peak processes and PSS). ``--code`` runs another checkout's code (for
before/after figures on one machine in one sitting); ``--workers`` sets the top-level
``[processing] analysis_workers`` (omitted: the code's default).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from ingest import _descendants, _status_kib, work_root  # noqa: E402
from smime_ingest import envelopes, messages, smime_section  # noqa: E402
from support.smime_pki import build_pki  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.statedir import init_storage  # noqa: E402

ROUTE = """
[[tenant.route]]
name = "building"
subject = '(?i)\\bAz\\.?\\s*:?\\s*(?P<case>\\d{2}-BV-\\d{4}-\\d{3,5})'
case = "{case}"
"""


def config_text(root: Path, server: Dovecot, users: list[str], smime: str, workers: int | None) -> str:
    processing = f"[processing]\nanalysis_workers = {workers}\n" if workers is not None else ""
    out = [f'[storage]\nstate_dir = "{root}/state"\n{processing}\n[logging]\nlevel = "warning"\nformat = "json"\n']
    for user in users:
        out.append(
            f'[[tenant]]\nname = "{user}"\n[tenant.storage]\ncases_dir = "{root}/cases-{user}"\n'
            f'[[tenant.mailbox]]\nname = "post"\nhost = "127.0.0.1"\nport = {server.imaps_port}\n'
            f'username = "{user}"\npassword = "pw"\nca_file = "{server.ca_file}"\nbatch_size = 50\n'
            + smime.replace("[smime]", "[tenant.smime]")
            + ROUTE
        )
    return "\n".join(out)


def sample(pid: int) -> tuple[int, int, int]:
    """Processes in the gateway's tree, their summed RSS and PSS (KiB)."""
    tree = _descendants(pid)
    return (
        len(tree),
        sum(_status_kib(p, "VmRSS:") for p in tree),
        sum(_status_kib(p, "Pss:", "smaps_rollup") for p in tree),
    )


def started(config: Path, tenants: int) -> bool:
    from gateway.records.open import open_store
    from gateway.records.store import EntryFilter

    cfg = load_config(config)
    for t in cfg.tenants:
        try:
            store = open_store(t, readonly=True)
            try:
                if not list(store.select(EntryFilter(events=("daemon-started",)))):
                    return False
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - not created yet, or still being created
            return False
    return len(cfg.tenants) == tenants


def idle(config: Path, code: Path, tenants: int) -> tuple[int, int, int]:
    """A daemon over empty mailboxes: its processes and memory once every tenant runs."""
    proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "--config", str(config)], cwd=code, env=_env(code))
    try:
        deadline = time.monotonic() + 120
        while not started(config, tenants):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not start")
            time.sleep(0.2)
        time.sleep(3.0)  # the workers' interpreters finish starting
        return sample(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def once(config: Path, code: Path) -> tuple[float, float, int, int]:
    """``run --once``: wall seconds, CPU seconds (gateway and workers), peak processes and peak PSS (KiB)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--once", "--config", str(config)], cwd=code, env=_env(code)
    )
    procs = pss = 0
    while proc.poll() is None:
        n, _rss, p = sample(proc.pid)
        procs, pss = max(procs, n), max(pss, p)
        time.sleep(0.25)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"gateway run failed ({proc.returncode})")
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return elapsed, cpu, procs, pss


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--n", type=int, default=300, help="messages per tenant")
    ap.add_argument("--workers", type=int, default=None, help="top-level analysis_workers (default: the code's)")
    ap.add_argument("--code", type=Path, default=REPO, help="the checkout whose gateway runs")
    ap.add_argument("--label", default="this tree")
    ap.add_argument("--no-volume", action="store_true")
    args = ap.parse_args()
    pki = build_pki()
    bodies = envelopes(pki)
    users = [f"t{i}" for i in range(args.tenants)]
    with work_root("pst-tenants-", volume=not args.no_volume) as work:
        files = pki.write(work.root / "pki")
        with Dovecot(work.server / "dovecot", {u: "pw" for u in users}) as server:
            config = work.root / "poststelle.toml"
            config.write_text(config_text(work.root, server, users, smime_section(files), args.workers))
            cfg = load_config(config)
            for t in cfg.tenants:
                init_storage(t)
            procs, rss, pss = idle(config, args.code, args.tenants)
            for user in users:
                server.seed_maildir(user, list(messages(bodies, args.n)))
            os.sync()
            elapsed, cpu, peak_procs, peak_pss = once(config, args.code)
            left = sum(len(server.folder_uids(u, "INBOX")) for u in users)
            if left:
                raise SystemExit(f"{left} messages left in the INBOXes")
    total = args.n * args.tenants
    workers = "default" if args.workers is None else str(args.workers)
    print(
        f"{args.label}: {args.tenants} tenants, analysis_workers={workers}\n"
        f"  idle daemon: {procs} processes, RSS {rss / 1024:.0f} MB, PSS {pss / 1024:.0f} MB\n"
        f"  run --once, {total} S/MIME messages: {elapsed:.1f} s, {total / elapsed:.0f} msg/s, "
        f"CPU {cpu:.1f} s ({cpu / total * 1000:.1f} ms/msg), peak {peak_procs} processes, "
        f"peak PSS {peak_pss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
