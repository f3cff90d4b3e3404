"""Shared by the IDLE benchmarks: a Dovecot for many users, a gateway config for many mailboxes,
the daemon as a child process, and a bare IDLE client as the floor to compare against.

Not a benchmark itself. ``idle_latency.py`` and ``many_mailboxes.py`` import it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import imapclient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.routing.casenames import case_folder_name  # noqa: E402
from gateway.statedir import init_storage  # noqa: E402

INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")


def limits(n: int) -> str:
    """What Dovecot needs for ``n`` IDLE sessions over TLS (docs/operations.md, "Many mailboxes").

    Every IMAPS session keeps its imap-login process (the TLS proxy) and its imap process.
    """
    procs = n + 100
    return f"""
default_process_limit = {procs}
default_client_limit = {4 * procs}
service imap-login {{
  process_limit = {procs}
}}
service imap {{
  process_limit = {procs}
}}
"""


def raise_inotify(n: int) -> str:
    """Dovecot's IDLE watches each mailbox with inotify; past the per-user limit it polls every 30 s."""
    want = 2 * n + 128
    try:
        have = int(INOTIFY.read_text())
    except OSError as exc:
        return f"inotify limit unknown ({exc})"
    if have >= want:
        return f"fs.inotify.max_user_instances={have}"
    try:
        INOTIFY.write_text(str(want))
        return f"fs.inotify.max_user_instances raised {have} -> {want}"
    except OSError as exc:
        return f"fs.inotify.max_user_instances={have} (could not raise to {want}: {exc}); IDLE may poll"


def users(n: int) -> dict[str, str]:
    return {f"mbx{i}": password(f"mbx{i}") for i in range(n)}


def password(name: str) -> str:
    return f"pw-{name.removeprefix('mbx')}"


def start_dovecot(root: Path, n: int) -> Dovecot:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 - Dovecot (user nobody) must reach its dirs
    server = Dovecot(root / "dovecot", users(n), extra_config=limits(n))
    (root / "dovecot").mkdir(exist_ok=True)
    os.chmod(root / "dovecot", 0o755)  # noqa: S103
    server.start()
    return server


ROUTE = r"""
[[route]]
name = "building"
subject = '(?i)\bAz\.?\s*:?\s*(?P<case>\d{2}-BV-\d{4}-\d{3,5})'
case = "{case}"
"""


def case_of(i: int) -> str:
    return f"63-BV-2026-{i:05d}"


def case_dir(cases: Path, i: int) -> Path:
    return cases / case_folder_name(case_of(i))


def write_config(
    root: Path,
    server: Dovecot,
    names: list[str],
    *,
    renewal: float = 300.0,
    extra_mailboxes: str = "",
    timeout: float = 60.0,
) -> Path:
    """A gateway config with one mailbox per user in ``names`` (implicit TLS, password files)."""
    state = root / "state"
    secrets = root / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    lines = ["[storage]", f'state_dir = "{state}"', f'cases_dir = "{state}/cases"', ""]
    for name in names:
        secret = secrets / f"{name}.secret"
        secret.write_text(password(name))
        secret.chmod(0o600)
        lines += [
            "[[mailbox]]",
            f'name = "{name}"',
            'host = "127.0.0.1"',
            f"port = {server.imaps_port}",
            f'username = "{name}"',
            f'password_file = "{secret}"',
            f'ca_file = "{server.ca_file}"',
            f"idle_renewal = {renewal}",
            f"timeout = {timeout}",
            "",
        ]
    lines.append(extra_mailboxes)
    lines.append(ROUTE)
    lines.append('[logging]\nformat = "json"\n')
    path = root / "poststelle.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    from gateway.config import load_config

    init_storage(load_config(path))
    return path


class Daemon:
    """``poststelle run`` as a child; its log is read from a pipe (a log file would count as disk writes)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self._connected = 0
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            if '"event": "connected"' in line:
                self._connected += 1
            self.tail = [*self.tail[-50:], line]

    def connected(self) -> int:
        return self._connected

    def wait_connected(self, n: int, timeout: float) -> float | None:
        """Seconds from start until ``n`` mailboxes logged ``connected`` (None: not within ``timeout``)."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.connected() >= n:
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {''.join(self.tail)[-2000:]}")
            time.sleep(0.02)
        return None

    def proc_status(self) -> dict[str, int]:
        """VmRSS, VmHWM (kB) and Threads of the daemon process."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
        return out

    def write_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> float:
        """SIGTERM; seconds until the process has exited."""
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - sent


def start_daemon(config: Path) -> Daemon:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(config), "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return Daemon(proc)


def wait_first_passes(config: Path, n: int, timeout: float = 300) -> bool:
    """Until ``n`` mailboxes have a ``last_success`` in the ledger: every first pass is done."""
    from gateway.config import load_config
    from gateway.records.open import open_store

    cfg = load_config(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = open_store(cfg, readonly=True)
        try:
            done = sum(1 for s in store.statuses() if s.last_success)
        finally:
            store.close()
        if done >= n:
            return True
        time.sleep(0.2)
    return False


def rss_kb(pid: int | None = None) -> int:
    path = Path(f"/proc/{pid or 'self'}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the floor: a bare IDLE client, one thread per connection ---------------------------------
def bare_client(server: Dovecot, name: str, password: str) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient("127.0.0.1", port=server.imaps_port, ssl_context=server.ssl_context(), timeout=60)
    client.login(name, password)
    client.select_folder("INBOX")
    return client


def bare_fleet(port: int, ca: str, names: list[str], passwords: list[str], in_flight: int = 20) -> dict[str, Any]:
    """In a child process: ``len(names)`` bare IDLE sessions (threads); RSS before and after, and time to all idle."""
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    gate = threading.BoundedSemaphore(in_flight)
    ready = threading.Barrier(len(names) + 1)
    stop = threading.Event()
    before = rss_kb()

    def one(name: str, password: str) -> None:
        with gate:
            client = imapclient.IMAPClient("127.0.0.1", port=port, ssl_context=ctx, timeout=60)
            client.login(name, password)
            client.select_folder("INBOX")
        client.idle()
        ready.wait()
        while not stop.is_set():
            client.idle_check(timeout=1)
        client.idle_done()
        client.logout()

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(n, p), daemon=True) for n, p in zip(names, passwords, strict=True)]
    for t in threads:
        t.start()
    ready.wait()
    took = time.monotonic() - started
    time.sleep(1)
    after = rss_kb()
    stop.set()
    return {"rss_before_kb": before, "rss_after_kb": after, "connect_s": took, "threads": threading.active_count()}


def run_bare_fleet(server: Dovecot, names: list[str]) -> dict[str, Any]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import fleet; "
        f"print(json.dumps(fleet.bare_fleet({server.imaps_port}, {str(server.ca_file)!r}, "
        f"{names!r}, {[password(n) for n in names]!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def write_rows(path: str | None, rows: list[dict[str, Any]]) -> None:
    if path:
        Path(path).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def row(
    scenario: str,
    unit: str,
    rate: float,
    baseline: float | None,
    peak_rss_mb: float | None,
    target: str,
    met: bool,
    notes: str,
) -> dict[str, Any]:
    ratio = rate / baseline if baseline else None
    return {
        "scenario": scenario,
        "unit": unit,
        "rate": round(rate, 4),
        "baseline": round(baseline, 4) if baseline is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "peak_rss_mb": round(peak_rss_mb, 1) if peak_rss_mb is not None else None,
        "target": target,
        "met": met,
        "notes": notes,
    }
