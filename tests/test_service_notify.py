"""systemd's notify protocol, spoken to a real AF_UNIX datagram socket: READY, STATUS with the
queue figures, the watchdog only while the workers live, STOPPING; silent without a socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env

from gateway.demo.samples import letter
from gateway.service.notify import Notifier
from gateway.service.supervise import Supervisor, queue_figures

RECV_TIMEOUT = 60.0  # seconds: a bound for a datagram that never comes, not a synchronisation


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """A bound datagram socket standing in for systemd's notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(RECV_TIMEOUT)
    yield sock
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode("utf-8")
    return dict(line.split("=", 1) for line in data.split("\n"))


def receive_until(sock: socket.socket, wanted: Callable[[dict[str, str]], bool]) -> list[dict[str, str]]:
    """Every message up to and including the first that ``wanted`` accepts."""
    seen = []
    while True:
        message = fields(sock)
        seen.append(message)
        if wanted(message):
            return seen


def test_ready_status_reloading_and_stopping_reach_the_notify_socket(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname()})
    assert notifier.ready("reading 2 mailboxes")
    assert fields(manager) == {"READY": "1", "STATUS": "reading 2 mailboxes"}
    assert notifier.reloading()
    reload = fields(manager)
    assert reload["RELOADING"] == "1" and reload["MONOTONIC_USEC"].isdigit()
    assert notifier.status("messages: stored 3;\nmultiple\tlines")
    assert fields(manager) == {"STATUS": "messages: stored 3; multiple lines"}
    assert notifier.stopping()
    assert fields(manager) == {"STOPPING": "1", "STATUS": "stopping"}


def test_abstract_socket_named_with_an_at_sign_is_reached() -> None:
    name = f"poststelle-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert fields(sock) == {"READY": "1"}


def test_without_a_notify_socket_every_call_is_a_silent_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.status("x") and not notifier.stopping() and not notifier.watchdog()


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled
    assert not notifier.ready()


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_this_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier({}).watchdog_interval is None


def test_watchdog_is_fed_only_while_the_workers_are_alive(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "2000000"})
    workers_alive = [True]
    supervisor = Supervisor(notifier, lambda: workers_alive[0], lambda: "unused")
    supervisor.tick()
    assert fields(manager) == {"WATCHDOG": "1"}
    workers_alive[0] = False
    supervisor.tick()
    supervisor.tick()
    manager.setblocking(False)
    with pytest.raises(BlockingIOError):
        manager.recv(4096)  # nothing was sent for a dead worker


def test_status_figures_are_read_only_after_a_pass(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname()})
    reads: list[int] = []

    def figures() -> str:
        reads.append(1)
        return queue_figures({"stored": 2, "quarantined": 1}, {"queued": 1})

    supervisor = Supervisor(notifier, lambda: True, figures)
    supervisor.tick()
    assert reads == []
    supervisor.passed()
    supervisor.passed()
    supervisor.tick()
    assert fields(manager) == {"STATUS": "messages: quarantined 1, stored 2; outbox: queued 1"}
    supervisor.tick()
    assert reads == [1]


def test_queue_figures_say_none_for_an_empty_ledger() -> None:
    assert queue_figures({}, {}) == "messages: none; outbox: none"


def test_the_supervisor_thread_feeds_the_watchdog_until_closed(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "100000"})
    closed: list[int] = []
    supervisor = Supervisor(notifier, lambda: True, lambda: "figures", on_close=lambda: closed.append(1))
    supervisor.start()
    try:
        got = receive_until(manager, lambda m: m.get("STATUS") == "figures")
        assert {"WATCHDOG": "1"} in got, "the first round pings, then reports the figures"
    finally:
        supervisor.close()
    assert closed == [1]


def test_the_daemon_says_ready_reports_its_queue_feeds_the_watchdog_and_says_stopping(
    env: Env, manager: socket.socket
) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0300 Bauantrag"))
    service_env = {
        **os.environ,
        "POSTSTELLE_CONFIG": str(env.config_path),
        "NOTIFY_SOCKET": manager.getsockname(),
        "WATCHDOG_USEC": "2000000",
    }
    proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=service_env, stderr=subprocess.PIPE, text=True)
    try:
        before_ready = receive_until(manager, lambda m: m.get("READY") == "1")
        assert not any("WATCHDOG" in m for m in before_ready), "no ping before the workers run"
        receive_until(manager, lambda m: "stored 1" in m.get("STATUS", ""))
        receive_until(manager, lambda m: m.get("WATCHDOG") == "1")
    finally:
        proc.send_signal(signal.SIGTERM)
    receive_until(manager, lambda m: m.get("STOPPING") == "1")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
