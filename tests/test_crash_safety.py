"""kill -9 at random moments never loses a message and never files one twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env, mailbox_entry, write_config

from gateway.config import Config
from gateway.demo.dovecot import Dovecot
from gateway.demo.samples import fake_pdf, letter
from gateway.records.chain import ChainHead, verify_chain
from gateway.records.open import open_store
from gateway.records.store import StoreError
from gateway.statedir import ledger_path

MESSAGES = 500
DUPLICATES = 10
KILLS = 22


def corpus() -> list[bytes]:
    out = []
    for i in range(MESSAGES):
        if i % 50 == 7:  # malformed: goes to quarantine
            out.append(
                f"From: x@example.org\r\nMessage-ID: <seq-{i}@crash.test>\r\nSubject: Az. 63-BV-2026-{i:04d}\r\n"
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--nope\r\nbroken\r\n".encode()
            )
        else:
            out.append(
                letter(
                    subject=f"Az. 63-BV-2026-{i % 40:04d} Schreiben {i}",
                    message_id=f"<seq-{i}@crash.test>",
                    attachment=("anlage.pdf", fake_pdf(20_000, seed=i)),
                )
            )
    return out


def _rows(config: Config) -> int:
    """Messages the ledger holds a row for (planned or finished); -1 while it cannot be read."""
    if not ledger_path(config).exists():
        return -1
    try:
        store = open_store(config, readonly=True)
    except StoreError:
        return -1
    try:
        return sum(store.counts_by_state().values())
    except StoreError:
        return -1
    finally:
        store.close()


@pytest.mark.slow
def test_random_kill_9_during_a_500_message_backlog_leaves_every_message_in_exactly_one_place(
    dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    seed = int(os.environ.get("CRASH_SEED", time.time()))
    rng = random.Random(seed)
    print(f"CRASH_SEED={seed}")
    user = new_user()
    messages = corpus()
    dovecot.seed_maildir(user, messages + messages[100 : 100 + DUPLICATES])
    cfg = write_config(tmp_path, [mailbox_entry(dovecot, user, tmp_path, batch_size=7)])
    env = Env(dovecot, user, tmp_path, cfg)
    environ = {**os.environ, "POSTSTELLE_CONFIG": str(cfg)}

    # Kill at random moments until at least KILLS of them hit a run with work left to do.
    # A moment is drawn after the run has committed its first batch intent: start-up (the
    # worker processes, gpg, the trust store) takes a varying while, and a moment drawn
    # from the start, or from the first commit (the config-loaded event), fell before any
    # batch once start-up had grown slower than the drawn delay.
    config = env.config
    effective = 0
    for _ in range(KILLS * 3):
        before = _rows(config)
        proc = subprocess.Popen(
            [*POSTSTELLE, "run"], cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while _rows(config) <= before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.06))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not env.uids("INBOX"):
            break
        effective += 1
        if effective >= KILLS:
            break
    assert effective >= 20, f"only {effective} kills hit a run with a backlog"

    env.cli("run", "--once", check=True, timeout=300)

    assert env.uids("INBOX") == []
    assert len(env.uids("Poststelle/Processed")) + len(env.uids("Poststelle/Quarantine")) == MESSAGES + DUPLICATES
    places: Counter[str] = Counter()
    for entry in env.entries() + env.quarantined():
        manifest = json.loads((entry / "manifest.json").read_text())
        places[manifest["message_id"]] += 1
    assert len(places) == MESSAGES, "every message is somewhere"
    assert set(places.values()) == {1}, "no message is in two places"
    staging = env.state_dir / "staging"
    assert sorted(p.name for p in staging.iterdir()) == ["cases", "quarantine"]
    for area in staging.iterdir():
        # Each mailbox stages in its own bucket; recovery leaves the buckets empty.
        assert not any(area.glob("*/*")), "nothing staged is left behind"
        assert all(p.is_dir() for p in area.glob("*"))
    for root in (env.cases_dir, env.state_dir / "quarantine"):
        assert not (root / ".incoming").exists(), "on one mount, nothing is staged in the share"

    store = open_store(env.config, readonly=True)
    try:
        counts = store.counts_by_state()
        assert counts == {"stored": MESSAGES - MESSAGES // 50, "quarantined": MESSAGES // 50, "duplicate": DUPLICATES}
        events = Counter(e.event for e in store.entries())
        recovered = sum(1 for e in store.entries() if e.details.get("recovered"))
        print(f"kills={effective} abandoned={events['processing-abandoned']} recovered={recovered}")
        assert events["processing-abandoned"] + recovered > 0, "no kill hit a batch between its intent and its commit"
        n, _, breaks = verify_chain(store.entries())
        assert breaks == []
        last = list(store.entries())[-1]
        assert store.head() == ChainHead(last.seq, last.hash), "the head row names the last entry"
        assert n > MESSAGES * 4
    finally:
        store.close()
