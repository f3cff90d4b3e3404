"""Outbound benchmark: N documents (~100 KB PDF, S/MIME signed and encrypted, RSA-2048) sent end to end.

    .venv/bin/python benchmarks/outbound.py [--n 500] [--n 2000] [--no-dsn] [--no-volume] [--quick] [--json-out FILE]

Poststelle's path, timed from the first compose to the last document in the recipient's
Dovecot Maildir: a child process composes every letter with ``protect.compose_document``
and queues it with ``outbox.enqueue`` (each one durable before its id is returned, as
``poststelle send`` does), then ``poststelle run --once`` drains the outbox into a
throwaway Postfix, which delivers by LMTP into a throwaway Dovecot. A document counts as
done when its file is in the recipient's ``Maildir/new`` (polled, no fixed waits).
Postfix's DSN success notices (asked for by default, as in production) go to the
sender's own mailbox on the same Dovecot.

The naive baseline, in the same run, to the same relay and mailbox: per document the
same unprotected message, ``openssl cms -sign`` and ``openssl cms -encrypt`` as two
processes, and a new ``smtplib`` connection for ``sendmail`` (no durability, no
records, no DSN), as a shell script would do it.

CPU ms/doc counts the queueing and draining processes (ours) and the openssl processes
plus this script's own drafting and smtplib (naive); the relay's and Dovecot's work is
the same for both and not in it. On a machine shared with others it says more than
documents/s, which depends on what else runs. The relay's and Dovecot's CPU is printed
beside it (their process trees, measured over each run), and with it the ceiling this
machine sets: its cores divided by all the CPU one document costs, ours and theirs.

Peak RSS is each child process's VmHWM (reset at exec), sampled while it runs; two N
show whether it grows with N. Targets (issue 12, 2 cores): >= 150 documents/s end to
end, >= 5x the baseline, RSS flat in N.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import smtplib
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, tree_cpu, write_rows  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from ingest import _status_kib, work_root  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.demo.pki import RECIPIENT, SENDER, DemoPKI, build_demo_pki  # noqa: E402
from gateway.demo.postfix import Postfix  # noqa: E402
from gateway.demo.samples import fake_pdf  # noqa: E402
from gateway.outbound.compose import Attachment, Letter, draft  # noqa: E402
from gateway.outbound.doorbell import ring  # noqa: E402
from gateway.statedir import outbox_doorbell  # noqa: E402

#: The authority (signs, is encrypted to) and the correspondent whose mailbox receives.
FROM, TO = RECIPIENT, SENDER
TO_USER, FROM_USER = TO.split("@")[0], FROM.split("@")[0]
PDF_BYTES = 100_000
MAX_BYTES = 10_000_000


def letter_for(i: int, pdf: Path) -> Letter:
    return Letter(
        f"1 K {i % 400 + 1}/25",
        (TO,),
        f"Bescheid Nr. {i}",
        "Guten Tag,\nanbei der Bescheid über Ihren Antrag.\n",
        attachments=(Attachment(pdf, f"Bescheid-{i}.pdf"),),
    )


def config_text(root: Path, pki: DemoPKI, corr: Path, relay: Postfix, *, dsn: bool, connections: int = 4) -> str:
    return f"""
[storage]
state_dir = "{root}/state"
cases_dir = "{root}/state/cases"

[limits]
max_message_bytes = {MAX_BYTES}

[smime]
identities = [{{ key_file = "{pki.recipient_key_file}", cert_file = "{pki.recipient_cert_file}" }}]
trust_anchors = ["{pki.root_file}"]

[outbound]
sign = "smime"
encrypt = "always"
copy_to_sent_folder = false
correspondents_dir = "{corr}"

[smtp]
host = "127.0.0.1"
port = {relay.port}
security = "plain"
from = "{FROM}"
request_dsn = {"true" if dsn else "false"}
timeout = 60
connections = {connections}

[logging]
level = "warning"
format = "json"
"""


def queue_child(config_path: Path, first: int, n: int, pdf: Path) -> None:
    """Compose and queue letters ``first`` .. ``first + n - 1`` (one clerk's process).

    Writes its CPU seconds (start-up, compose, enqueue) to ``clerk-<first>.cpu`` beside
    the configuration, for the breakdown the benchmark prints.
    """
    from gateway.config import load_config
    from gateway.outbound.outbox import enqueue
    from gateway.outbound.protect import OutboundKeys, compose_document
    from gateway.records.open import open_store

    config = load_config(config_path)
    keys = OutboundKeys.from_config(config)
    store = open_store(config)
    started = time.process_time()
    composing = queueing = 0.0
    try:
        for i in range(first, first + n):
            t0 = time.process_time()
            doc = compose_document(letter_for(i, pdf), mail_from=FROM, config=config, keys=keys, at=datetime.now(UTC))
            t1 = time.process_time()
            enqueue(config, store, doc, actor="bench")
            composing, queueing = composing + t1 - t0, queueing + time.process_time() - t1
    finally:
        store.close()
        keys.close()
    (config_path.parent / f"clerk-{first}.cpu").write_text(f"{started} {composing} {queueing}\n")


class Inbox:
    """The recipient's Maildir ``new``, where Dovecot's LMTP puts each delivered message."""

    def __init__(self, server: Dovecot, user: str) -> None:
        self.new = server.root / "home" / user / "Maildir" / "new"

    def count(self) -> int:
        try:
            return sum(1 for _ in os.scandir(self.new))
        except FileNotFoundError:
            return 0

    def wait_for(self, n: int, timeout: float) -> float:
        """Poll until ``n`` messages arrived; the monotonic time they were all there."""
        deadline = time.monotonic() + timeout
        while (got := self.count()) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {got} of {n} documents arrived within {timeout:.0f} s")
            time.sleep(0.02)
        return time.perf_counter()

    def clear(self) -> None:
        for entry in os.scandir(self.new):
            os.unlink(entry.path)


class Figures(NamedTuple):
    total: float
    queue: float
    drain: float
    queue_kib: int
    drain_kib: int
    cpu: float  # CPU seconds of the queueing and draining processes
    split: dict[str, float]  # CPU seconds: clerks' start-up, compose, enqueue; the daemon's sending


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _clerks_cpu(work: Path) -> dict[str, float]:
    split = {"clerk start-up": 0.0, "compose": 0.0, "enqueue": 0.0}
    for f in work.glob("clerk-*.cpu"):
        started, composing, queueing = (float(x) for x in f.read_text().split())
        split["clerk start-up"] += started
        split["compose"] += composing
        split["enqueue"] += queueing
    return split


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def servers_cpu(relay: Postfix, server: Dovecot) -> float:
    """CPU seconds Postfix and Dovecot have used so far (each master's live tree with reaped children)."""
    total = 0.0
    for pid_file in (relay.queue_dir / "pid" / "master.pid", server.root / "run" / "master.pid"):
        total += tree_cpu(int(pid_file.read_text().split()[0]))
    return total


def _wait_until_listening(bell: Path, daemon: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until the daemon's outbox thread holds its doorbell open (a ring finds a reader)."""
    deadline = time.monotonic() + timeout
    while not ring(bell):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start its outbox (exit code {daemon.returncode})")
        time.sleep(0.05)


def poststelle(cfg: Path, pdf: Path, n: int, inbox: Inbox, clerks: int) -> Figures:
    """The daemon runs (as in production); ``clerks`` processes queue side by side; until all arrived.

    Each queued document rings the daemon's doorbell, so sending overlaps queueing, as it
    does when clerks send while the service runs. The daemon's start-up is not timed.
    """
    env = {**os.environ, "POSTSTELLE_CONFIG": str(cfg), "PYTHONPATH": str(REPO)}
    config = load_config(cfg)
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    daemon = subprocess.Popen([sys.executable, "-m", "cli", "run"], cwd=REPO, env=env)
    try:
        _wait_until_listening(outbox_doorbell(config), daemon)
        daemon_cpu0 = _proc_cpu(daemon.pid)
        start = time.perf_counter()
        shares = [n // clerks + (1 if k < n % clerks else 0) for k in range(clerks)]
        firsts = [sum(shares[:k]) for k in range(clerks)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--queue-child", str(cfg), str(first), str(share), str(pdf)], cwd=REPO
            )
            for first, share in zip(firsts, shares, strict=True)
            if share
        ]
        queue_kib = drain_kib = 0
        queued_at = None
        deadline = time.monotonic() + 60 + n
        while inbox.count() < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {inbox.count()} of {n} documents arrived")
            queue_kib = max(queue_kib, *(_status_kib(p.pid, "VmHWM:") for p in procs))
            drain_kib = max(drain_kib, _status_kib(daemon.pid, "VmHWM:"))
            if queued_at is None and all(p.poll() is not None for p in procs):
                queued_at = time.perf_counter()
                for p in procs:
                    if p.returncode != 0:
                        raise SystemExit(f"a queueing process failed with exit code {p.returncode}")
            time.sleep(0.02)
        done = time.perf_counter()
        drain_kib = max(drain_kib, _status_kib(daemon.pid, "VmHWM:"))
        daemon_cpu = _proc_cpu(daemon.pid) - daemon_cpu0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(120)
    for p in procs:
        p.wait()
    queued_at = queued_at or done
    cpu = _cpu(resource.RUSAGE_CHILDREN) - cpu0
    split = {**_clerks_cpu(cfg.parent), "daemon": daemon_cpu}
    return Figures(done - start, queued_at - start, done - start, queue_kib, drain_kib, cpu, split)


def naive(pki: DemoPKI, corr: Path, pdf: Path, n: int, relay: Postfix, inbox: Inbox) -> tuple[float, float]:
    """openssl cms -sign, openssl cms -encrypt, smtplib per document; seconds until all arrived, CPU seconds."""
    start = time.perf_counter()
    cpu0 = _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF)
    for i in range(n):
        d = draft(letter_for(i, pdf), mail_from=FROM, now=datetime.now(UTC), max_bytes=MAX_BYTES)
        signed = subprocess.run(
            [
                "openssl",
                "cms",
                "-sign",
                "-signer",
                str(pki.recipient_cert_file),
                "-inkey",
                str(pki.recipient_key_file),
                "-md",
                "sha256",
                "-binary",
            ],
            input=d.entity,
            capture_output=True,
            check=True,
        ).stdout
        enveloped = subprocess.run(
            ["openssl", "cms", "-encrypt", "-aes256", str(corr / "correspondent.pem"), str(pki.recipient_cert_file)],
            input=signed,
            capture_output=True,
            check=True,
        ).stdout
        headers = d.headers.replace(b"MIME-Version: 1.0\r\n", b"")
        with smtplib.SMTP(relay.host, relay.port) as smtp:
            smtp.sendmail(FROM, [TO], headers + enveloped)
    cpu = _cpu(resource.RUSAGE_CHILDREN) + _cpu(resource.RUSAGE_SELF) - cpu0
    return inbox.wait_for(n, timeout=60 + n) - start, cpu


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--queue-child":
        queue_child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append", help="documents (repeatable; default 500 and 2000)")
    ap.add_argument("--clerks", type=int, default=2, help="processes queueing side by side (default 2, the cores)")
    ap.add_argument("--connections", type=int, default=4, help="[smtp] connections: lanes to the relay (default 4)")
    ap.add_argument("--no-dsn", action="store_true", help="do not ask Postfix for delivery status notices")
    ap.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "N = 100 only")
    args = ap.parse_args()
    sizes = args.n or ([100] if args.quick else [500, 2000])
    rows = []
    with work_root("pst-out-", volume=not args.no_volume) as dirs:
        pki = build_demo_pki(dirs.root / "pki")
        corr = dirs.root / "correspondents"
        corr.mkdir()
        (corr / "correspondent.pem").write_bytes(pki.sender.cert.public_bytes(Encoding.PEM))
        pdf = dirs.root / "Bescheid.pdf"
        pdf.write_bytes(fake_pdf(PDF_BYTES))
        with (
            Dovecot(dirs.server / "dovecot", {TO_USER: "pw", FROM_USER: "pw"}) as server,
            Postfix(
                dirs.server / "postfix",
                lmtp_port=server.lmtp_port,
                mailbox_domain=f"{TO.split('@')[1]} {FROM.split('@')[1]}",
            ) as relay,
        ):
            inbox = Inbox(server, TO_USER)
            print(
                f"documents: ~{PDF_BYTES // 1000} KB PDF each, S/MIME signed + encrypted (RSA-2048, AES-256), "
                f"DSN {'off' if args.no_dsn else 'requested'}; {args.clerks} processes queueing"
            )
            print(
                f"{'N':>6} {'queue s':>8} {'drain s':>8} {'total s':>8} {'docs/s':>7} {'queue RSS MB':>12} "
                f"{'drain RSS MB':>12} {'naive s':>8} {'naive docs/s':>12} {'ratio':>6} "
                f"{'CPU ms/doc ours/naive':>22}"
            )
            for i, n in enumerate(sizes):
                work = dirs.root / f"run{i}"
                work.mkdir()
                cfg = work / "poststelle.toml"
                cfg.write_text(config_text(work, pki, corr, relay, dsn=not args.no_dsn, connections=args.connections))
                subprocess.run(
                    [sys.executable, "-m", "cli", "init", "--config", str(cfg)],
                    cwd=REPO,
                    check=True,
                    capture_output=True,
                )
                os.sync()
                servers0 = servers_cpu(relay, server)
                ours = poststelle(cfg, pdf, n, inbox, args.clerks)
                servers_ours = servers_cpu(relay, server) - servers0
                inbox.clear()
                rate = n / ours.total
                if args.no_baseline:
                    base_s, base_rate, ratio, base_cpu = float("nan"), float("nan"), float("nan"), float("nan")
                    servers_naive = float("nan")
                else:
                    servers0 = servers_cpu(relay, server)
                    base_s, base_cpu = naive(pki, corr, pdf, n, relay, inbox)
                    servers_naive = servers_cpu(relay, server) - servers0
                    base_rate = n / base_s
                    ratio = rate / base_rate
                    inbox.clear()
                print(
                    f"{n:>6} {ours.queue:>8.1f} {ours.drain:>8.1f} {ours.total:>8.1f} {rate:>7.0f} "
                    f"{ours.queue_kib / 1024:>12.1f} {ours.drain_kib / 1024:>12.1f} {base_s:>8.1f} "
                    f"{base_rate:>12.0f} {ratio:>6.1f} {ours.cpu / n * 1000:>10.1f}/{base_cpu / n * 1000:<11.1f}",
                    flush=True,
                )
                split = ", ".join(f"{k} {v / n * 1000:.1f}" for k, v in ours.split.items())
                print(f"       CPU ms/doc of ours: {split}; load average {os.getloadavg()[0]:.1f}", flush=True)
                # What the machine could do at best: every core busy with our work plus the relay's and Dovecot's.
                per_doc = (ours.cpu + servers_ours) / n
                ceiling = (os.cpu_count() or 1) / per_doc
                print(
                    f"       CPU ms/doc of Postfix + Dovecot: {servers_ours / n * 1000:.1f} with ours (DSN "
                    f"{'off' if args.no_dsn else 'requested'}), {servers_naive / n * 1000:.1f} with the naive run; "
                    f"ceiling with every core busy: {ceiling:.0f} docs/s "
                    f"(relay and mailbox alone: {(os.cpu_count() or 1) * n / servers_ours:.0f})",
                    flush=True,
                )
                rows.append(
                    row(
                        "outbound",
                        "documents/s",
                        rate,
                        base_rate,
                        peak_rss_mb=max(ours.queue_kib, ours.drain_kib) / 1024,
                        target="rate >= 150; ratio >= 5",
                        met=rate >= 150 and ratio >= 5,
                        notes=f"N={n}, DSN {'off' if args.no_dsn else 'requested'}; queue RSS "
                        f"{ours.queue_kib / 1024:.0f} MB, daemon {ours.drain_kib / 1024:.0f} MB; CPU ms/doc "
                        f"{ours.cpu / n * 1000:.1f} vs {base_cpu / n * 1000:.1f}; Postfix+Dovecot CPU ms/doc "
                        f"{servers_ours / n * 1000:.1f}, ceiling {ceiling:.0f} docs/s; "
                        "baseline: openssl cms sign+encrypt + smtplib per document",
                    )
                )
    print("targets: >= 150 documents/s end to end, >= 5x the naive baseline, peak RSS flat in N")
    write_rows(args.json_out, rows)


if __name__ == "__main__":
    main()
