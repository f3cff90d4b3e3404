"""Network faults between the gateway and a real Dovecot, placed at a protocol step by the fault proxy.

Each test cuts (or stalls) the plain-IMAP connection at one step of a pass, then lets the
proxy heal: the worker's backoff retries, and afterwards every message is in exactly one
place (ledger, case folders, server folders), the trail records the failure and the
recovery, and ``audit verify`` is green. The triggers are byte patterns on the wire,
so where the cut falls never depends on timing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Env, mailbox_entry, write_config
from support.exactly_once import audit_verify_is_green, each_message_once, event_types
from support.tcpproxy import TcpProxy

from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter

SUBJECTS = [f"Az. 63-BV-2026-{700 + i:04d}" for i in range(5)]


@pytest.fixture
def proxied(dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]) -> Iterator[tuple[Env, TcpProxy]]:
    """A mailbox reached through the fault proxy over plain IMAP (so patterns are readable), five letters waiting."""
    user = new_user()
    with TcpProxy(dovecot.host, dovecot.imap_port) as proxy:
        entry = mailbox_entry(dovecot, user, tmp_path, port=proxy.port, security="plain", timeout=2, batch_size=2)
        env = Env(dovecot, user, tmp_path, write_config(tmp_path, [entry]))
        env.append(*(letter(subject=s, attachment=("a.pdf", fake_pdf(20_000, seed=i))) for i, s in enumerate(SUBJECTS)))
        yield env, proxy


def failed_then_recovered(env: Env) -> None:
    types = event_types(env)
    assert "mailbox-failing" in types
    assert types.index("mailbox-recovered") > types.index("mailbox-failing")


def test_cut_inside_a_fetch_literal_loses_and_duplicates_nothing(proxied: tuple[Env, TcpProxy]) -> None:
    env, proxy = proxied
    cut = proxy.cut_on(b"BODY[] {", extra=5000)  # 5000 bytes into the first message's literal
    run = env.cli("run", "--once")
    assert run.returncode == 0, run.stderr
    assert cut.fired == 1
    assert "FETCH failed" in run.stderr
    each_message_once(env, SUBJECTS)
    failed_then_recovered(env)
    audit_verify_is_green(env)


def test_move_cut_before_the_server_sees_it_is_moved_at_the_retry(proxied: tuple[Env, TcpProxy]) -> None:
    env, proxy = proxied
    cut = proxy.cut_on(b"UID MOVE", direction="c2s", at="before")
    run = env.cli("run", "--once")
    assert run.returncode == 0, run.stderr
    assert cut.fired == 1
    assert "disposing of" in run.stderr
    each_message_once(env, SUBJECTS)
    assert "already processed" in json.dumps([e for e in _moved_details(env)])
    failed_then_recovered(env)
    audit_verify_is_green(env)


def test_move_whose_answer_is_lost_is_reconciled_not_repeated(proxied: tuple[Env, TcpProxy]) -> None:
    env, proxy = proxied
    # The server has moved the messages; the client never hears it (the reply is cut off).
    cut = proxy.cut_on(b"[COPYUID", at="before")
    run = env.cli("run", "--once")
    assert run.returncode == 0, run.stderr
    assert cut.fired == 1
    each_message_once(env, SUBJECTS)
    failed_then_recovered(env)
    assert any(d.get("reconciled") for d in _moved_details(env))  # found gone, recorded as moved
    audit_verify_is_green(env)


def test_stalled_server_ends_by_the_clients_timeout_and_the_retry_completes(proxied: tuple[Env, TcpProxy]) -> None:
    env, proxy = proxied
    stall = proxy.cut_on(b"BODY[] {", extra=1000, action="stall")
    run = env.cli("run", "--once")
    assert run.returncode == 0, run.stderr
    assert stall.fired == 1
    assert "timed out" in run.stderr or "TimeoutError" in run.stderr or "timeout" in run.stderr
    each_message_once(env, SUBJECTS)
    failed_then_recovered(env)
    audit_verify_is_green(env)


def test_reset_at_connect_fails_the_run_and_the_next_run_catches_up(proxied: tuple[Env, TcpProxy]) -> None:
    env, proxy = proxied
    reset = proxy.cut_on(b"* OK", at="before", times=3)  # every attempt of one `run --once`
    first = env.cli("run", "--once")
    assert first.returncode == 1
    assert reset.fired == 3
    status = json.loads(env.cli("status", "--json", check=True).stdout)
    (mailbox,) = status["mailboxes"]
    assert mailbox["last_error"] and mailbox["state"] == "error"
    assert env.entries() == [] and len(env.uids("INBOX")) == len(SUBJECTS)  # nothing acknowledged
    env.cli("run", "--once", check=True)
    each_message_once(env, SUBJECTS)
    failed_then_recovered(env)
    audit_verify_is_green(env)


def _moved_details(env: Env) -> list[dict[str, object]]:
    from gateway.records.open import open_store

    store = open_store(env.config, readonly=True)
    try:
        return [e.details for e in store.entries() if e.event == "moved"]
    finally:
        store.close()
