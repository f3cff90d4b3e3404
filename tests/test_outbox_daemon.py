"""``run --once`` drains the outbox beside the intake; a relay that is away is no failure of the run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config
from support.outbox import document, smtp_config
from support.smtp_peer import ScriptedPeer

from gateway.config import load_config
from gateway.demo.dovecot import Dovecot
from gateway.demo.postfix import free_port
from gateway.demo.samples import letter
from gateway.outbound import outbox
from gateway.records.open import open_store


def smtp_section(port: int) -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "plain"\nfrom = "rathaus@mailbox.test"\ntimeout = 10\n'
    )


def test_run_once_files_incoming_mail_and_sends_the_queued_documents(env: Env, dovecot: Dovecot) -> None:
    with ScriptedPeer() as peer:
        path = write_config(env.root, [mailbox_entry(dovecot, env.user, env.root)], extra=smtp_section(peer.port))
        env = Env(env.dovecot, env.user, env.root, path)
        store = open_store(env.config)
        doc = document()
        oid = outbox.enqueue(env.config, store, doc)
        store.close()
        env.append(letter(subject="Az. 63-BV-2026-0300 erstes Schreiben"))
        env.cli("run", "--once", check=True)
        assert [r.content for r in peer.received] == [doc.raw]
    assert [p.parent.name for p in env.entries() if p.name != "sent"] == ["63-BV-2026-0300"]
    store = open_store(env.config, readonly=True)
    rec = store.outbox_get(oid)
    store.close()
    assert rec is not None and rec.state == "sent" and rec.sent_path is not None


def test_run_once_with_the_relay_away_defers_and_exits_zero(tmp_path: Path) -> None:
    path = smtp_config(tmp_path, port=free_port())
    config = load_config(path)
    store = open_store(config)
    oid = outbox.enqueue(config, store, document())
    store.close()
    proc = subprocess.run(
        [*POSTSTELLE, "run", "--once"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "POSTSTELLE_CONFIG": str(path)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    store = open_store(config, readonly=True)
    rec = store.outbox_get(oid)
    store.close()
    assert rec is not None and rec.state == "deferred" and rec.attempts == 1


def test_the_running_daemon_sends_a_document_queued_after_it_started_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal

    with ScriptedPeer() as peer:
        path = smtp_config(tmp_path, port=peer.port)
        config = load_config(path)
        proc = subprocess.Popen(
            [*POSTSTELLE, "run"],
            cwd=REPO,
            env={**os.environ, "POSTSTELLE_CONFIG": str(path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            store = open_store(config)
            doc = document()
            outbox.enqueue(config, store, doc)
            store.close()
            assert peer.wait_for(1, timeout=120), "the daemon did not send the queued document"
            assert peer.received[0].content == doc.raw
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
