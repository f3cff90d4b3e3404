"""Hosting benchmark: plain intake through one node on PostgreSQL against the same run on SQLite.

    .venv/bin/python benchmarks/hosting.py [--n 1000] [--rounds 2] [--fs-ops 200] [--batch-size 50]
                                           [--migrate-entries N] [--quick] [--json-out FILE]

Both runs use the same ~50 KB letters (``ingest.py``'s corpus), the same throwaway Dovecot,
the gateway's state on the same fresh ext4 volume, and ``poststelle run --once`` until the
INBOX is empty. The PostgreSQL server is a throwaway cluster (``gateway/demo/postgres.py``,
fsync on, synchronous_commit on) whose data directory is on that volume too, reached over
TCP on 127.0.0.1 as a node reaches its database. The runs alternate (SQLite, PostgreSQL,
then PostgreSQL, SQLite, …) so that a busy minute on a shared machine hits both.

Measured per message on PostgreSQL: transactions committed (``pg_stat_database.xact_commit``:
every statement outside a transaction counts as one), WAL flushes and WAL bytes
(``pg_stat_wal``), the CPU time of the server (the postmaster, its children alive or
reaped). For both backends: the gateway's CPU time (its processes and analysis workers),
and, in a separate untimed pass under ``strace -f -c`` (``--fs-ops``), the file-system
system calls the gateway makes (fsync, rename, open, mkdir …), for docs/scaling.md.

``--migrate-entries N`` also times ``poststelle migrate-store`` on a ledger of N entries.

Target (issue 16, 2 cores): PostgreSQL's rate >= 0.7x SQLite's in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, tree_cpu, write_rows  # noqa: E402
from ingest import WorkDirs, config_text, corpus, run_gateway, work_root  # noqa: E402

from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.demo.postgres import Postgres, postgres_unavailable  # noqa: E402

TARGET = 0.7
#: The file-system calls counted by the ``--fs-ops`` pass.
FS_CALLS = (
    "fsync", "fdatasync", "syncfs", "rename", "renameat", "renameat2", "openat", "mkdir", "mkdirat",
    "unlink", "unlinkat", "write", "pwrite64", "link", "linkat", "fchmod", "fchown",
)  # fmt: skip


class PgCounters(NamedTuple):
    commits: int
    rollbacks: int
    wal_bytes: int
    wal_records: int
    wal_syncs: int
    busy_ms: float  # time the database's sessions spent in transactions (active or idle in one)
    server_cpu: float


class Run(NamedTuple):
    backend: str
    n: int
    elapsed: float
    steady: float
    gateway_cpu: float
    pg: PgCounters | None  # the difference over the run (PostgreSQL only)
    disk_bytes: int  # what the run left under its work dir (state_dir, cases_dir, an SQLite ledger)
    db_bytes: int  # what the run added to its PostgreSQL database (0 on SQLite)


def server_cpu(pg: Postgres) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster and its backends."""
    return tree_cpu(int((pg.cluster / "postmaster.pid").read_text().split()[0]))


def counters(pg: Postgres, dbname: str) -> PgCounters:
    import psycopg

    # Connected to another database: these reads must not count among the gateway's transactions.
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        db = conn.execute(
            "SELECT xact_commit, xact_rollback, active_time + idle_in_transaction_time FROM pg_stat_database "
            "WHERE datname = %s",
            (dbname,),
        ).fetchone()
        wal = conn.execute("SELECT wal_bytes, wal_records, wal_sync FROM pg_stat_wal").fetchone()
    assert db is not None and wal is not None
    return PgCounters(int(db[0]), int(db[1]), int(wal[0]), int(wal[1]), int(wal[2]), float(db[2]), server_cpu(pg))


def settled(pg: Postgres, dbname: str) -> PgCounters:
    """The counters once the gateway's sessions have ended and reported (backends flush at exit)."""
    last = counters(pg, dbname)
    for _ in range(50):
        time.sleep(0.2)
        now = counters(pg, dbname)
        if now[:6] == last[:6]:
            return now
        last = now
    return last


BATCH = 50  # the mailbox's batch_size (``--batch-size``)


def gateway_config(work: Path, server: Dovecot, user: str, dsn: str | None) -> Path:
    text = config_text(work, server, user, BATCH)
    if dsn is not None:
        dsn_file = work / "database.dsn"
        dsn_file.write_text(dsn + "\n")
        dsn_file.chmod(0o600)
        text = text.replace("[storage]\n", f'[storage]\nbackend = "postgresql"\ndsn_file = "{dsn_file}"\n', 1)
    cfg = work / "poststelle.toml"
    cfg.write_text(text)
    return cfg


def one_run(backend: str, work: Path, server: Dovecot, pg: Postgres, user: str, n: int, tag: str) -> Run:
    work.mkdir()
    dsn = dbname = None
    if backend == "postgresql":
        dbname = f"bench_{tag}"
        dsn = pg.create_database(dbname)
    cfg = gateway_config(work, server, user, dsn)
    before = settled(pg, dbname) if dbname else None
    empty_db = database_size(pg, dbname) if dbname else 0
    g = run_gateway(cfg, server)
    left = len(server.folder_uids(user, "INBOX"))
    if left:
        raise SystemExit(f"{backend}: {left} messages left in the INBOX")
    diff = None
    if dbname is not None and before is not None:
        after = settled(pg, dbname)
        diff = PgCounters(*(a - b for a, b in zip(after, before, strict=True)))
    db_bytes = database_size(pg, dbname) - empty_db if dbname else 0
    disk = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    return Run(backend, n, g.elapsed, g.steady, g.gateway_cores * g.elapsed, diff, disk, db_bytes)


def database_size(pg: Postgres, dbname: str) -> int:
    import psycopg

    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        found = conn.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()
    return int(found[0]) if found else 0


def fs_ops(backend: str, work: Path, server: Dovecot, pg: Postgres, user: str, tag: str) -> dict[str, int]:
    """The gateway's file-system calls over one ``run --once`` (all its processes), from ``strace -c``."""
    from gateway.config import load_config
    from gateway.statedir import init_storage

    work.mkdir()
    dsn = pg.create_database(f"fsops_{tag}") if backend == "postgresql" else None
    cfg = gateway_config(work, server, user, dsn)
    init_storage(load_config(cfg))
    out = work / "strace.txt"
    cmd = ["strace", "-f", "-c", "-o", str(out), "-e", "trace=" + ",".join(FS_CALLS),
           sys.executable, "-m", "cli", "run", "--once", "--config", str(cfg)]  # fmt: skip
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m:
            calls[m.group(2)] = int(m.group(1))
    return calls


def migrate_pass(root: Path, pg: Postgres, entries: int) -> None:
    """Time ``poststelle migrate-store`` (with its ``audit verify``) on a ledger of ``entries`` entries.

    The ledger is made through the store, its JSON-lines copy in step as a running gateway
    keeps it; its entries are ``fetched`` entries of the size the intake writes.
    """
    import psycopg

    from gateway.config import load_config
    from gateway.records.chain import AuditEvent
    from gateway.records.open import open_store
    from gateway.statedir import init_storage, ledger_path

    root.mkdir()
    cfg_path = root / "poststelle.toml"
    cfg_path.write_text(f'[storage]\nstate_dir = "{root}/state"\ncases_dir = "{root}/state/cases"\n')
    cfg = load_config(cfg_path)
    init_storage(cfg)
    store = open_store(cfg)
    details = {"mailbox": "bench", "folder": "INBOX", "uid": 1, "size": 51234, "sha256": "ab" * 32}
    for i in range(0, entries, 1000):
        store.record_events(
            [AuditEvent("fetched", message=f"m{j}", details=details) for j in range(i, min(i + 1000, entries))]
        )
    store.seal()
    store.export_jsonl()
    store.close()
    dsn = pg.create_database("migrate")
    pg_cfg = root / "pg.toml"
    (root / "database.dsn").write_text(dsn + "\n")
    (root / "database.dsn").chmod(0o600)
    pg_cfg.write_text(
        cfg_path.read_text().replace(
            "[storage]\n", f'[storage]\nbackend = "postgresql"\ndsn_file = "{root / "database.dsn"}"\n', 1
        )
    )
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        found = conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
        wal0 = int(found[0]) if found else 0
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "migrate-store",
        "--from",
        f"sqlite:{ledger_path(cfg)}",
        "--config",
        str(pg_cfg),
    ]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        found = conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
        wal1 = int(found[0]) if found else 0
    size = ledger_path(cfg).stat().st_size
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    print(
        f"migrate-store: {entries} entries ({size / 2**20:.0f} MiB ledger) in {elapsed:.1f} s with its audit verify, "
        f"command CPU {cpu:.1f} s, WAL {(wal1 - wal0) / 2**20:.0f} MiB"
    )


@contextlib.contextmanager
def postgres_server(dirs: WorkDirs) -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=dirs.root))
    os.chmod(root, 0o755)  # noqa: S103 - the server (user postgres when we are root) must reach its dirs
    with Postgres(root) as pg:
        yield pg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=None, help="messages per run (default 1000; --quick 200; 0: none)")
    ap.add_argument("--rounds", type=int, default=None, help="runs per backend, alternating (default 2; --quick 1)")
    ap.add_argument("--fs-ops", type=int, default=None, help="messages of the strace pass (default 200; 0: none)")
    ap.add_argument("--batch-size", type=int, default=50, help="the mailbox's batch_size (1: mail trickling in)")
    ap.add_argument("--migrate-entries", type=int, default=0, help="also time migrate-store on this many entries")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "N = 200, one round, strace pass over 50")
    args = ap.parse_args()
    if (reason := postgres_unavailable()) is not None:
        raise SystemExit(f"PostgreSQL is needed: {reason}")
    n = args.n if args.n is not None else (200 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 2)
    fs_n = min(n, args.fs_ops if args.fs_ops is not None else (50 if args.quick else 200))
    global BATCH
    BATCH = args.batch_size
    with work_root("pst-host-", volume=not args.no_volume) as dirs:
        if args.migrate_entries:
            with postgres_server(dirs) as pg:
                migrate_pass(dirs.root / "migrate", pg, args.migrate_entries)
        rows = run(dirs, n, rounds, fs_n) if n else []
    write_rows(args.json_out, rows)


def run(dirs: WorkDirs, n: int, rounds: int, fs_n: int) -> list[dict[str, Any]]:
    users = {f"u{i}": "pw" for i in range(2 * rounds + 4)}
    runs: list[Run] = []
    with Dovecot(dirs.server / "dovecot", users) as server, postgres_server(dirs) as pg:
        messages = corpus(n)
        for r in range(rounds):
            order = ("sqlite", "postgresql") if r % 2 == 0 else ("postgresql", "sqlite")
            for backend in order:
                user = f"u{len(runs)}"
                server.seed_maildir(user, messages)
                os.sync()  # the run must not pay for writing back the seeded Maildir
                runs.append(one_run(backend, dirs.root / f"{backend}-{r}", server, pg, user, n, f"r{r}"))
                print(_line(runs[-1]), flush=True)
        calls: dict[str, dict[str, int]] = {}
        if fs_n:
            for i, backend in enumerate(("sqlite", "postgresql")):
                user = f"u{2 * rounds + i}"
                server.seed_maildir(user, messages[:fs_n])
                os.sync()
                full = fs_ops(backend, dirs.root / f"fsops-{backend}", server, pg, user, f"f{i}")
                # The same run over an empty mailbox: start-up (imports, set-up) is not per message.
                empty = f"u{2 * rounds + 2 + i}"
                server.seed_maildir(empty, [])
                idle = fs_ops(backend, dirs.root / f"fsops0-{backend}", server, pg, empty, f"e{i}")
                calls[backend] = {k: v - idle.get(k, 0) for k, v in full.items()}
    return summary(runs, calls, fs_n)


def _line(r: Run) -> str:
    text = (
        f"{r.backend:10} N={r.n:<6} {r.elapsed:7.1f} s {r.n / r.elapsed:7.0f} msg/s (steady {r.steady:5.0f}) "
        f"gateway CPU {r.gateway_cpu / r.n * 1000:6.2f} ms/msg, files {r.disk_bytes / r.n / 1024:5.0f} KiB/msg"
    )
    if r.pg is not None:
        p = r.pg
        text += (
            f"  | commits {p.commits / r.n:5.2f}/msg, WAL flushes {p.wal_syncs / r.n:5.2f}/msg, "
            f"in transactions {p.busy_ms / max(p.commits + p.rollbacks, 1):5.2f} ms/transaction, "
            f"WAL {p.wal_bytes / r.n / 1024:5.1f} KiB/msg, database +{r.db_bytes / r.n / 1024:4.1f} KiB/msg, "
            f"server CPU {p.server_cpu / r.n * 1000:5.2f} ms/msg"
        )
    return text


def summary(runs: list[Run], calls: dict[str, dict[str, int]], fs_n: int) -> list[dict[str, Any]]:
    def total(backend: str, field: str) -> float:
        return sum(float(getattr(r, field)) for r in runs if r.backend == backend)

    n_sq, n_pg = total("sqlite", "n"), total("postgresql", "n")
    rate_sq, rate_pg = n_sq / total("sqlite", "elapsed"), n_pg / total("postgresql", "elapsed")
    steady_sq = total("sqlite", "steady") / sum(1 for r in runs if r.backend == "sqlite")
    steady_pg = total("postgresql", "steady") / sum(1 for r in runs if r.backend == "postgresql")
    pgs = [r.pg for r in runs if r.pg is not None]
    per = {
        "commits": sum(p.commits for p in pgs) / n_pg,
        "wal_syncs": sum(p.wal_syncs for p in pgs) / n_pg,
        "wal_kib": sum(p.wal_bytes for p in pgs) / n_pg / 1024,
        "wal_records": sum(p.wal_records for p in pgs) / n_pg,
        "server_ms": sum(p.server_cpu for p in pgs) / n_pg * 1000,
        "gw_ms_pg": total("postgresql", "gateway_cpu") / n_pg * 1000,
        "gw_ms_sq": total("sqlite", "gateway_cpu") / n_sq * 1000,
        "db_kib": total("postgresql", "db_bytes") / n_pg / 1024,
        "files_kib": total("postgresql", "disk_bytes") / n_pg / 1024,
    }
    ratio = rate_pg / rate_sq
    print()
    print(f"SQLite     {rate_sq:7.0f} msg/s (steady {steady_sq:.0f}); gateway CPU {per['gw_ms_sq']:.2f} ms/msg")
    print(
        f"PostgreSQL {rate_pg:7.0f} msg/s (steady {steady_pg:.0f}); gateway CPU {per['gw_ms_pg']:.2f} ms/msg; "
        f"server CPU {per['server_ms']:.2f} ms/msg"
    )
    print(
        f"PostgreSQL per message: {per['commits']:.2f} transactions committed, {per['wal_syncs']:.2f} WAL flushes, "
        f"{per['wal_records']:.1f} WAL records, {per['wal_kib']:.1f} KiB WAL, database +{per['db_kib']:.1f} KiB; "
        f"files under state_dir/cases_dir {per['files_kib']:.0f} KiB (batch_size {BATCH})"
    )
    print(f"ratio PostgreSQL/SQLite: {ratio:.2f} (target >= {TARGET})   steady: {steady_pg / steady_sq:.2f}")
    for backend, c in calls.items():
        shown = ", ".join(f"{k} {v / fs_n:.2f}" for k, v in sorted(c.items()) if v)
        print(f"file-system calls per message ({backend}, N={fs_n} minus an empty run, strace -f -c): {shown}")
    fs_note = ""
    if "postgresql" in calls:
        c = calls["postgresql"]
        syncs = sum(c.get(k, 0) for k in ("fsync", "fdatasync", "syncfs")) / fs_n
        renames = sum(v for k, v in c.items() if "rename" in k) / fs_n
        fs_note = f"; gateway fsync+syncfs {syncs:.2f}/msg, renames {renames:.2f}/msg"
    return [
        row(
            "hosting",
            "messages/s",
            rate_pg,
            rate_sq,
            peak_rss_mb=None,
            target=f"PostgreSQL >= {TARGET}x SQLite",
            met=ratio >= TARGET,
            notes=(
                f"N={int(n_pg)} over {len(pgs)} run(s); baseline: the same intake on SQLite; per message on "
                f"PostgreSQL: {per['commits']:.2f} commits, {per['wal_syncs']:.2f} WAL flushes, "
                f"{per['wal_kib']:.1f} KiB WAL, server CPU {per['server_ms']:.2f} ms, gateway CPU "
                f"{per['gw_ms_pg']:.2f} ms (SQLite {per['gw_ms_sq']:.2f} ms){fs_note}"
            ),
        )
    ]


if __name__ == "__main__":
    main()
