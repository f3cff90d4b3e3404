"""IDLE (issue 15): news is acted on whenever it arrives, a stop ends the wait at once, and
an idle mailbox costs no ledger writes.

The races are driven by a line proxy (tests/support/lineproxy.py) between the daemon and
the real Dovecot: it changes the mailbox at exactly the command a race needs and decides
which read an ``* N EXISTS`` arrives in. Every daemon here renews IDLE only after 1740 s,
so a message that arrives within the test's wait was fetched because of the EXISTS, not
because of a renewal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from support.lineproxy import LineProxy

from gateway.demo.samples import letter
from gateway.inbound.imap import MailboxSession
from gateway.inbound.intake import Intake
from gateway.records.open import open_store
from gateway.records.store import Store
from gateway.service.daemon import Daemon, RunReport
from gateway.unwrap import UnwrapContext

RENEWAL = 1740  # the longest IDLE the configuration allows: no test waits for it
NEWS_LINE = re.compile(rb"^\* \d+ (EXISTS|RECENT)$")
ARRIVAL_WAIT = 60.0  # generous for a busy machine, and far below RENEWAL


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def proxied_config(env: Env, proxy: LineProxy, **over: Any) -> None:
    entry = mailbox_entry(env.dovecot, env.user, env.root, security="plain", **over)
    entry.update(port=proxy.port, idle_renewal=RENEWAL)
    del entry["ca_file"]
    env.config_path = write_config(env.root, [entry])


@contextmanager
def running(env: Env, reports: list[RunReport] | None = None) -> Iterator[Daemon]:
    """The daemon in a thread of this process, stopped (and joined) at the end; its report into ``reports``."""
    daemon = Daemon(env.config)
    runner = threading.Thread(target=lambda: (reports if reports is not None else []).append(daemon.run()))
    runner.start()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        runner.join(60)
        assert not runner.is_alive(), "the daemon did not stop"


class NewsOnlyFromTheTest:
    """Rewrites the server's lines: once armed, the server's own EXISTS/RECENT *during IDLE*
    are dropped, so only the test's EXISTS (or one outside IDLE) can bring the message in.

    Dovecot announces a change with the answer to the next command, or at once when an
    IDLE starts; dropping the latter is what makes a missed earlier announcement visible.
    """

    def __init__(self) -> None:
        self.armed = False
        self.injected = False
        self.idling = False

    def strip(self, lines: list[bytes]) -> list[bytes]:
        out = []
        for line in lines:
            if line.startswith(b"+ "):
                self.idling = True
            elif not line.startswith(b"* "):
                self.idling = False  # a tagged answer: the IDLE (or another command) ended
            elif self.armed and self.idling and NEWS_LINE.match(line):
                continue
            out.append(line)
        return out


@pytest.mark.parametrize("where", ["after", "before"])
def test_exists_in_the_same_read_as_the_idle_continuation_leads_to_a_fetch(env: Env, where: str) -> None:
    """The message is appended just before the daemon's IDLE; its EXISTS arrives glued to ``+ idling``
    (right after it, or right before it: RFC 3501 allows untagged data before a continuation)."""
    news = NewsOnlyFromTheTest()

    def on_command(line: bytes) -> None:
        if line.endswith(b" IDLE") and not news.armed:
            env.append(letter(subject="Az. 63-BV-2026-1501 mit dem Idling"))
            news.armed = True

    def rewrite(lines: list[bytes]) -> list[bytes]:
        out = news.strip(lines)
        if news.armed and not news.injected and any(ln.startswith(b"+ ") for ln in out):
            at = next(i for i, ln in enumerate(out) if ln.startswith(b"+ ")) + (1 if where == "after" else 0)
            out[at:at] = [b"* 1 EXISTS"]
            news.injected = True
        return out

    with LineProxy(env.dovecot.imap_port, rewrite=rewrite, on_command=on_command) as proxy:
        proxied_config(env, proxy)
        with running(env):
            arrived = wait_for(lambda: len(env.entries()) == 1, ARRIVAL_WAIT)
    assert news.injected, "the proxy saw no IDLE"
    assert arrived, "the EXISTS that came with '+ idling' was not acted on"


def test_exists_in_the_answer_to_an_empty_search_leads_to_another_look(env: Env) -> None:
    """The search answers 'nothing', the EXISTS of a message appended meanwhile rides along with it."""
    news = NewsOnlyFromTheTest()

    def rewrite(lines: list[bytes]) -> list[bytes]:
        out = news.strip(lines)
        if not news.armed and b"* SEARCH" in out:
            env.append(letter(subject="Az. 63-BV-2026-1502 mit der Suche"))
            news.armed = True
            at = out.index(b"* SEARCH") + 1
            out[at:at] = [b"* 1 EXISTS"]
            news.injected = True
        return out

    with LineProxy(env.dovecot.imap_port, rewrite=rewrite) as proxy:
        proxied_config(env, proxy)
        with running(env):
            arrived = wait_for(lambda: len(env.entries()) == 1, ARRIVAL_WAIT)
    assert news.injected, "the proxy saw no empty SEARCH"
    assert arrived, "the EXISTS that came with the SEARCH answer was not acted on"


def test_mail_arriving_during_idle_is_filed_without_waiting_for_the_renewal(env: Env) -> None:
    """No proxy tricks: Dovecot's own IDLE notification brings the message in."""
    idling = threading.Event()

    def on_command(line: bytes) -> None:
        if line.endswith(b" IDLE"):
            idling.set()

    with LineProxy(env.dovecot.imap_port, on_command=on_command) as proxy:
        proxied_config(env, proxy)
        with running(env):
            assert idling.wait(ARRIVAL_WAIT), "the daemon never went into IDLE"
            env.append(letter(subject="Az. 63-BV-2026-1503 während IDLE"))
            arrived = wait_for(lambda: len(env.entries()) == 1, ARRIVAL_WAIT)
    assert arrived


def test_sigterm_ends_the_daemon_while_it_idles_without_waiting_out_the_idle(env: Env) -> None:
    idling = threading.Event()

    def on_command(line: bytes) -> None:
        if line.endswith(b" IDLE"):
            idling.set()

    with LineProxy(env.dovecot.imap_port, on_command=on_command) as proxy:
        proxied_config(env, proxy)
        proc = subprocess.Popen(
            [*POSTSTELLE, "run"],
            cwd=REPO,
            env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert idling.wait(ARRIVAL_WAIT), "the daemon never went into IDLE"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=ARRIVAL_WAIT)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    print(f"SIGTERM during IDLE: exited after {took:.2f} s")
    assert proc.returncode == 0, stderr
    # The IDLE would last RENEWAL seconds: ending well before that shows it was cut short.
    assert took < ARRIVAL_WAIT


def count_commits(store: Store) -> list[int]:
    """Count the store's units of work (each one commit) from now on."""
    calls = [0]
    original = store.unit_of_work

    @contextmanager
    def counted() -> Iterator[Any]:
        calls[0] += 1
        with original() as uow:
            yield uow

    store.unit_of_work = counted  # type: ignore[method-assign]
    return calls


def test_idle_renewals_of_an_empty_mailbox_write_nothing_to_the_ledger(env: Env) -> None:
    config = env.config
    (mb,) = config.mailboxes
    store = open_store(config)
    ctx = UnwrapContext.from_config(config)
    intake = Intake(config, mb, store, ctx)
    wal = config.storage.state_dir / "ledger.sqlite3-wal"
    try:
        with MailboxSession(mb) as session:
            intake.run(session)  # the first look writes the status
            commits = count_commits(store)
            size = wal.stat().st_size if wal.exists() else 0
            before = [s for s in store.statuses() if s.mailbox == mb.name]
            for _ in range(5):  # five renewals: IDLE ends at once (renew=0), then the look at the folder
                assert session.wait_for_mail(0.0) == "renew"
                session.forget_news()
                assert intake.run(session).stored == 0
            assert commits[0] == 0, f"{commits[0]} commits while idle"
            assert (wal.stat().st_size if wal.exists() else 0) == size
            assert [s for s in store.statuses() if s.mailbox == mb.name] == before
            env.append(letter(subject="Az. 63-BV-2026-1504 nach der Ruhe"))
            session.noop()
            assert intake.run(session).stored == 1
            assert commits[0] > 0, "a pass that files a message commits"
    finally:
        intake.close()
        ctx.close()
        store.close()


def test_an_idle_mailbox_keeps_no_second_thread(env: Env) -> None:
    config = env.config
    (mb,) = config.mailboxes
    env.append(letter(subject="Az. 63-BV-2026-1505 eins"))
    store = open_store(config)
    ctx = UnwrapContext.from_config(config)
    intake = Intake(config, mb, store, ctx)
    try:
        with MailboxSession(mb) as session:
            assert intake.run(session).stored == 1
            names = [t.name for t in threading.enumerate()]
            assert not [n for n in names if n.startswith(f"imap-{mb.name}")], names
    finally:
        intake.close()
        ctx.close()
        store.close()


class SlowLogin:
    """A session whose login blocks until released, counting how many are under way at once."""

    def __init__(self, gate: threading.Event, counter: dict[str, int], lock: threading.Lock) -> None:
        self.gate, self.counter, self.lock = gate, counter, lock

    def connect(self) -> None:
        with self.lock:
            self.counter["now"] += 1
            self.counter["max"] = max(self.counter["max"], self.counter["now"])
        assert self.gate.wait(60)
        with self.lock:
            self.counter["now"] -= 1
            self.counter["done"] += 1


def test_logins_ramp_up_with_at_most_twenty_in_flight(env: Env) -> None:
    from gateway.service.daemon import LOGINS_IN_FLIGHT, _Halt

    env.config_path = write_config(
        env.root, [mailbox_entry(env.dovecot, env.user, env.root)], extra="[processing]\nanalysis_workers = 0\n"
    )
    daemon = Daemon(env.config)
    gate, lock = threading.Event(), threading.Lock()
    counter = {"now": 0, "max": 0, "done": 0}
    try:
        logins = [
            threading.Thread(target=daemon._connect, args=(SlowLogin(gate, counter, lock), _Halt()))
            for _ in range(LOGINS_IN_FLIGHT + 15)
        ]
        for t in logins:
            t.start()
        assert wait_for(lambda: counter["now"] == LOGINS_IN_FLIGHT, ARRIVAL_WAIT)
        gate.set()
        for t in logins:
            t.join(60)
    finally:
        daemon.analyser.close()
        daemon.ctx.close()
        daemon.state_lock.release()
        daemon._close_pipe()
    assert counter["done"] == LOGINS_IN_FLIGHT + 15
    assert counter["max"] == LOGINS_IN_FLIGHT


def test_a_stop_after_a_failure_that_has_recovered_reports_success(env: Env) -> None:
    """The first connection is cut before the greeting; the retry works and files the letter."""
    env.append(letter(subject="Az. 63-BV-2026-1506 nach dem Fehler"))
    reports: list[RunReport] = []
    with LineProxy(env.dovecot.imap_port, cut_first=1) as proxy:
        proxied_config(env, proxy)
        with running(env, reports):
            assert wait_for(lambda: len(env.entries()) == 1, ARRIVAL_WAIT)
    (report,) = reports
    assert report.ok, report.failures
    store = open_store(env.config, readonly=True)
    try:
        assert {s.mailbox: s.state for s in store.statuses()}["rathaus"] == "ok"
    finally:
        store.close()


def test_a_connection_closed_during_idle_is_noticed_and_the_mailbox_read_again(env: Env) -> None:
    idling = threading.Event()

    def on_command(line: bytes) -> None:
        if line.endswith(b" IDLE"):
            idling.set()

    with LineProxy(env.dovecot.imap_port, on_command=on_command) as proxy:
        proxied_config(env, proxy)
        with running(env):
            assert idling.wait(ARRIVAL_WAIT), "the daemon never went into IDLE"
            proxy.cut()
            env.append(letter(subject="Az. 63-BV-2026-1507 nach dem Abbruch"))
            arrived = wait_for(lambda: len(env.entries()) == 1, ARRIVAL_WAIT)
    assert arrived, "the closed connection was not noticed before the renewal"
