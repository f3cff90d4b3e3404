"""The long-running daemon: new mail is picked up while it waits, SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import POSTSTELLE, REPO, Env

from gateway.demo.samples import letter
from gateway.records.open import open_store


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_mail_arriving_while_the_daemon_idles_is_filed_and_sigterm_seals_the_trail(env: Env) -> None:
    env.append(letter(subject="Az. 63-BV-2026-0300 erstes Schreiben"))
    proc = subprocess.Popen(
        [*POSTSTELLE, "run"],
        cwd=REPO,
        env={**os.environ, "POSTSTELLE_CONFIG": str(env.config_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: len(env.entries()) == 1, 20), "backlog not processed"
        env.append(letter(subject="Az. 63-BV-2026-0300 zweites Schreiben"))
        # IDLE (or the 1 s poll interval of the test config) brings it in without a restart.
        assert wait_for(lambda: len(env.entries()) == 2, 20), "new mail not picked up"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("{")]
    assert any('"mailbox": "rathaus"' in ln and '"case": "63-BV-2026-0300"' in ln for ln in lines), (
        "context bound to log lines"
    )
    store = open_store(env.config, readonly=True)
    try:
        last = list(store.entries())[-1]
        sealed = max(cp.seq for cp in store.checkpoints())
        assert sealed == last.seq, "the end of the run is sealed by a signed checkpoint"
    finally:
        store.close()
