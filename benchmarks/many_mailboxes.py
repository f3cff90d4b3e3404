"""Many idle mailboxes in one daemon: memory per mailbox, threads, disk writes while idle, start-up.

    .venv/bin/python benchmarks/many_mailboxes.py [--mailboxes 300] [--quick] [--json-out FILE]

A throwaway Dovecot with one user per mailbox (process limits raised as docs/operations.md
says), IMAPS, and two more mailboxes that never answer: one on a port that accepts and then
stays silent (a stalled server), one on a closed port (a dead one); the others must not
wait for them. Measured:

- time from start until every working mailbox has logged ``connected`` (logins ramp with
  at most 20 in flight);
- the daemon's RSS with N mailboxes minus its RSS with one, per mailbox; the floor is a
  bare imapclient process holding the same N IDLE sessions (one thread each);
- threads of the daemon while idle;
- disk writes of the daemon process (``/proc/PID/io`` write_bytes) over an idle window in
  which every mailbox renews its IDLE several times (``idle_renewal`` = 10 s here);
- seconds from SIGTERM to exit while everything idles and the stalled login hangs.

Targets (issue 15): >= 300 mailboxes, <= 0.5 MB per idle mailbox, no disk writes while idle,
SIGTERM <= 1 s.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet

RENEWAL = 10.0


def stalled_and_dead(server_ca: Path, root: Path) -> tuple[str, socket.socket]:
    """Config of two mailboxes that never work: a listener that never answers, and a closed port."""
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)  # accepts (kernel), never speaks
    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    secret = root / "secrets" / "nobody.secret"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("no-such-password")
    secret.chmod(0o600)
    text = ""
    for name, port in (("stalled", silent.getsockname()[1]), ("dead", dead_port)):
        text += (
            f'[[mailbox]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\nusername = "nobody"\n'
            f'password_file = "{secret}"\nca_file = "{server_ca}"\ntimeout = 60\n\n'
        )
    return text, silent


def rss_with_one(server: fleet.Dovecot, name: str, root: Path) -> int:
    """The daemon's RSS (kB) with a single idle mailbox: what is not per mailbox."""
    daemon = fleet.start_daemon(fleet.write_config(root, server, [name], renewal=RENEWAL))
    try:
        if daemon.wait_connected(1, 120) is None:
            raise RuntimeError("one mailbox did not connect")
        time.sleep(2)
        return daemon.proc_status()["VmRSS"]
    finally:
        daemon.stop()


def broken_servers(server: fleet.Dovecot, names: list[str], root: Path) -> tuple[float, float]:
    """Healthy mailboxes beside a stalled and a dead server: time until all healthy connected, and SIGTERM."""
    extra, silent = stalled_and_dead(server.ca_file, root)
    try:
        daemon = fleet.start_daemon(fleet.write_config(root, server, names, renewal=RENEWAL, extra_mailboxes=extra))
        try:
            took = daemon.wait_connected(len(names), 120)
            if took is None:
                raise RuntimeError("healthy mailboxes waited for the broken ones")
            time.sleep(1)
        finally:
            stop_s = daemon.stop()
    finally:
        silent.close()
    return took, stop_s


def measure(n: int, window: float, work: Path) -> list[dict[str, object]]:
    inotify = fleet.raise_inotify(n)
    server = fleet.start_dovecot(work, n)
    try:
        names = sorted(fleet.users(n), key=lambda u: int(u[3:]))
        bare = fleet.run_bare_fleet(server, names)
        bare_per = (bare["rss_after_kb"] - bare["rss_before_kb"]) / n / 1024
        rss_one = rss_with_one(server, names[0], work / "one")
        broken_connect, broken_stop = broken_servers(server, names[:20], work / "broken")

        config = fleet.write_config(work / "many", server, names, renewal=RENEWAL)
        daemon = fleet.start_daemon(config)
        try:
            connect_s = daemon.wait_connected(n, 600)
            if connect_s is None or not fleet.wait_first_passes(config, n):
                raise RuntimeError(f"only {daemon.connected()} of {n} mailboxes connected")
            time.sleep(1)  # every worker in IDLE
            status = daemon.proc_status()
            written = daemon.write_bytes()
            time.sleep(window)
            idle_writes = (daemon.write_bytes() - written) / window
            after = daemon.proc_status()
        finally:
            stop_s = daemon.stop()
    finally:
        server.stop()

    per_mailbox = (after["VmRSS"] - rss_one) / (n - 1) / 1024
    peak = after["VmHWM"] / 1024
    renewals = int(window // RENEWAL) * n
    print(
        f"{n} mailboxes: all connected after {connect_s:.1f} s (bare client {bare['connect_s']:.1f} s); "
        f"RSS {after['VmRSS'] / 1024:.0f} MB, with one mailbox {rss_one / 1024:.0f} MB => "
        f"{per_mailbox:.3f} MB per idle mailbox (bare IDLE client {bare_per:.3f} MB); threads "
        f"{status['Threads']}; disk writes while idle {idle_writes:.0f} B/s over {window:.0f} s "
        f"(~{renewals} IDLE renewals); SIGTERM -> exit {stop_s:.2f} s; beside a stalled and a dead "
        f"server 20 mailboxes connected after {broken_connect:.1f} s, SIGTERM -> exit {broken_stop:.2f} s; {inotify}"
    )
    notes = f"{n} mailboxes, IMAPS; {inotify}"
    return [
        fleet.row(
            "many mailboxes: RSS per idle mailbox",
            "MB/mailbox",
            per_mailbox,
            bare_per,
            peak,
            "<= 0.5 MB",
            per_mailbox <= 0.5,
            f"{notes}; baseline: bare imapclient IDLE session (a thread each); RSS {after['VmRSS'] / 1024:.0f} MB"
            f" with {n}, {rss_one / 1024:.0f} MB with one; threads {status['Threads']}",
        ),
        fleet.row(
            "many mailboxes: disk writes while idle",
            "B/s",
            idle_writes,
            None,
            peak,
            "0 B/s (no writes on IDLE renewals)",
            idle_writes == 0,
            f"{notes}; /proc/PID/io write_bytes over {window:.0f} s, idle_renewal {RENEWAL:.0f} s "
            f"(~{renewals} renewals)",
        ),
        fleet.row(
            "many mailboxes: time to all connected",
            "s",
            connect_s,
            bare["connect_s"],
            peak,
            "all connect, 20 logins in flight",
            True,
            f"{notes}; baseline: bare client, same ramp; 20 mailboxes beside a stalled and a dead server: "
            f"{broken_connect:.1f} s",
        ),
        fleet.row(
            "many mailboxes: SIGTERM to exit while idle",
            "s",
            stop_s,
            None,
            peak,
            "<= 1.0 s",
            stop_s <= 1.0,
            f"{notes}; beside a login hanging on a stalled server: {broken_stop:.2f} s",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mailboxes", type=int, default=300)
    ap.add_argument("--window", type=float, default=30.0, help="seconds of idle measured")
    ap.add_argument("--quick", action="store_true", help="30 mailboxes, 10-s window")
    ap.add_argument("--json-out", help="write the result rows as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    n, window = (30, 10.0) if args.quick else (args.mailboxes, args.window)
    work = Path(tempfile.mkdtemp(prefix="pst-many-"))
    try:
        rows = measure(n, window, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    fleet.write_rows(args.json_out, rows)


if __name__ == "__main__":
    main()
