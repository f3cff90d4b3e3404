"""IDLE latency: from APPEND on the server to the case-folder entry, with the daemon idling.

    .venv/bin/python benchmarks/idle_latency.py [--mailboxes 100] [--messages 200] [--backlog 5000]
                                                [--quick] [--json-out FILE]

A throwaway Dovecot (IMAPS) with one user per mailbox and ``poststelle run`` watching all of
them with IDLE (renewal at its default, 300 s, so no renewal finds anything). Messages are
appended one by one, every 0.25 s, each to the next mailbox and for its own case; the
latency of each is the time from the end of its APPEND to the moment its entry appears in
the case folder (polled every 5 ms). Then the same while a backlog of letters drains in
one more mailbox (seeded into its Maildir at once): messages every 0.1 s until it is empty.

Baseline, same run: a bare imapclient session in IDLE on one mailbox, time from APPEND to
the EXISTS it receives, which is Dovecot's own notification delay (about 0.5 s).

Targets (issue 15): p99 <= 1.0 s one by one; p99 <= 2.0 s while the backlog drains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet
import imapclient

from gateway.demo.samples import fake_pdf, letter

POLL = 0.005


class Watch:
    """Polls the case folders of the messages in flight; records when each entry appears."""

    def __init__(self, cases: Path) -> None:
        self.cases = cases
        self.pending: dict[int, float] = {}  # message index -> APPEND done (monotonic)
        self.latencies: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, i: int, at: float) -> None:
        with self._lock:
            self.pending[i] = at

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                items = list(self.pending.items())
            now = time.monotonic()
            for i, at in items:
                if _has_entry(fleet.case_dir(self.cases, i)):
                    with self._lock:
                        self.pending.pop(i, None)
                        self.latencies[i] = now - at
            time.sleep(POLL)

    def drain(self, timeout: float) -> int:
        """Wait for the messages in flight; returns how many never arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.pending:
                    return 0
            time.sleep(0.05)
        with self._lock:
            return len(self.pending)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _has_entry(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(".") for e in it)
    except OSError:
        return False


class Appender:
    """One logged-in connection per mailbox, so an APPEND costs only the APPEND."""

    def __init__(self, server: fleet.Dovecot) -> None:
        self.server = server
        self.clients: dict[str, imapclient.IMAPClient] = {}

    def append(self, name: str, raw: bytes) -> float:
        client = self.clients.get(name)
        if client is None:
            client = imapclient.IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False, timeout=60)
            client.login(name, fleet.password(name))
            self.clients[name] = client
        client.append("INBOX", raw)
        return time.monotonic()

    def close(self) -> None:
        for client in self.clients.values():
            client.logout()


def series(
    appender: Appender,
    watch: Watch,
    names: list[str],
    first: int,
    count: int | None,
    interval: float,
    until: threading.Event | None = None,
) -> list[int]:
    """Append messages one by one (mailboxes in turn); stops after ``count`` or when ``until`` is set."""
    sent: list[int] = []
    i = first
    next_at = time.monotonic()
    while (count is None or len(sent) < count) and not (until is not None and until.is_set()):
        name = names[i % len(names)]
        raw = letter(subject=f"Az. {fleet.case_of(i)} Schreiben {i}")
        watch.add(i, appender.append(name, raw))
        sent.append(i)
        i += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def bare_latency(server: fleet.Dovecot, name: str, samples: int) -> list[float]:
    """APPEND -> EXISTS seen by a plain imapclient IDLE: Dovecot's own delay, the floor."""
    idle = fleet.bare_client(server, name, fleet.password(name))
    appender = Appender(server)
    out: list[float] = []
    try:
        for k in range(samples):
            idle.idle()
            at = appender.append(name, letter(subject=f"bare {k}"))
            while True:
                responses = idle.idle_check(timeout=10)
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    out.append(time.monotonic() - at)
                    break
                if not responses:
                    out.append(float("inf"))
                    break
            idle.idle_done()
    finally:
        appender.close()
        idle.logout()
    return out


def backlog_drained(cases: Path, backlog: int, done: threading.Event) -> None:
    folder = fleet.case_dir(cases, 99999)
    while not done.is_set():
        try:
            if sum(1 for e in os.scandir(folder) if not e.name.startswith(".")) >= backlog:
                done.set()
                return
        except OSError:
            pass
        time.sleep(0.25)


def measure(n: int, messages: int, backlog: int, work: Path) -> list[dict[str, object]]:
    inotify = fleet.raise_inotify(n + 2)
    server = fleet.start_dovecot(work, n + 2)
    names = [f"mbx{i}" for i in range(n)]
    drain_box = f"mbx{n}"
    try:
        bare = bare_latency(server, f"mbx{n + 1}", 20 if messages >= 100 else 10)
        config = fleet.write_config(work / "gw", server, [*names, drain_box])
        cases = work / "gw" / "state" / "cases"
        daemon = fleet.start_daemon(config)
        appender = Appender(server)
        watch = Watch(cases)
        try:
            if daemon.wait_connected(n + 1, 600) is None or not fleet.wait_first_passes(config, n + 1):
                raise RuntimeError(f"only {daemon.connected()} of {n + 1} mailboxes connected")
            time.sleep(1)
            sent = series(appender, watch, names, 0, messages, 0.25)
            lost = watch.drain(60)
            quiet = [watch.latencies[i] for i in sent if i in watch.latencies] + [float("inf")] * lost

            pdf = fake_pdf(36_000, seed=7)  # ~50 KB letters, as in benchmarks/ingest.py
            load = [
                letter(subject=f"Az. {fleet.case_of(99999)} Akte {k}", attachment=(f"a{k}.pdf", pdf))
                for k in range(backlog)
            ]
            drained = threading.Event()
            server.seed_maildir(drain_box, load)
            appender.append(drain_box, letter(subject=f"Az. {fleet.case_of(99999)} Anstoß"))  # IDLE wakes up
            started = time.monotonic()
            threading.Thread(target=backlog_drained, args=(cases, backlog + 1, drained), daemon=True).start()
            during = series(appender, watch, names, 50_000, None, 0.1, until=drained)
            drained.wait(1200)
            drain_s = time.monotonic() - started
            lost_b = watch.drain(60)
            busy = [watch.latencies[i] for i in during if i in watch.latencies] + [float("inf")] * lost_b
            if os.environ.get("IDLE_BENCH_DEBUG"):
                print("during:", [round(x, 2) for x in busy])
            peak = daemon.proc_status()["VmHWM"] / 1024
        finally:
            watch.close()
            appender.close()
            daemon.stop()
    finally:
        server.stop()

    p = fleet.percentile
    print(
        f"{n} mailboxes, {len(quiet)} messages one by one: p50 {p(quiet, 50):.3f} s, p99 {p(quiet, 99):.3f} s, "
        f"max {max(quiet):.3f} s; while {backlog} drain ({drain_s:.1f} s), {len(busy)} messages: "
        f"p50 {p(busy, 50):.3f} s, p99 {p(busy, 99):.3f} s; bare IDLE client (Dovecot's delay) p50 "
        f"{p(bare, 50):.3f} s, p99 {p(bare, 99):.3f} s; {inotify}"
    )
    return [
        fleet.row(
            "IDLE latency p99, one by one",
            "s",
            p(quiet, 99),
            p(bare, 99),
            peak,
            "p99 <= 1.0 s",
            p(quiet, 99) <= 1.0,
            f"{n} mailboxes, {len(quiet)} messages (every 0.25 s), p50 {p(quiet, 50):.3f} s; baseline: bare "
            f"imapclient IDLE, APPEND -> EXISTS (Dovecot's delay), p50 {p(bare, 50):.3f} s",
        ),
        fleet.row(
            f"IDLE latency p99, {backlog} backlog draining",
            "s",
            p(busy, 99),
            p(bare, 99),
            peak,
            "p99 <= 2.0 s",
            p(busy, 99) <= 2.0,
            f"{len(busy)} messages (every 0.1 s) while {backlog} x 50 KB drained in {drain_s:.1f} s, "
            f"p50 {p(busy, 50):.3f} s",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailboxes", type=int, default=100)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="10 mailboxes, 40 messages, 500 backlog")
    ap.add_argument("--json-out", help="write the result rows as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    n, messages, backlog = (10, 40, 500) if args.quick else (args.mailboxes, args.messages, args.backlog)
    work = Path(tempfile.mkdtemp(prefix="pst-idle-"))
    try:
        rows = measure(n, messages, backlog, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    fleet.write_rows(args.json_out, rows)


if __name__ == "__main__":
    main()
