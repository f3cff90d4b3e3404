"""kill -9 at random moments while 300 documents go out through a real Postfix: none is lost, every duplicate is marked.

The daemon (``poststelle run``) is started again and again and killed with SIGKILL at a
random moment after it has sent something, until the outbox is drained; ``run --once``
finishes. Every document must then be in the recipient's Dovecot INBOX, and a document
found there more than once must have been resent after a crash in the one window the
design allows (the relay's 250 before our commit), with a ``resent`` event and the
``resent-after-crash`` marks for every extra copy. Postfix must start as root: the
``postfix`` fixture skips elsewhere, naming the reason.
"""

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
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO
from support.outbox import document, inbox_message_ids, smtp_config

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import RESENT_AFTER_CRASH
from gateway.records.open import open_store
from gateway.records.store import EntryFilter, StoreError
from gateway.statedir import outbox_dir, staging_dir

DOCUMENTS = 300
MIN_KILLS = 12  # kills that must hit a run with documents left to send
MAX_RUNS = 100  # bounds a failure only: each run sends at least one document before its kill
REFILL = 50  # documents queued again when the outbox drained before MIN_KILLS kills hit it
UNFINISHED = ("queued", "active", "deferred")


def _counts(config: Config) -> dict[str, int] | None:
    """Documents per outbox state; None while the ledger cannot be read (a writer mid-commit)."""
    try:
        store = open_store(config, readonly=True)
    except StoreError:
        return None
    try:
        return store.outbox_counts()
    except StoreError:
        return None
    finally:
        store.close()


def _sent(config: Config) -> int:
    """Documents sent so far; -1 while the ledger cannot be read."""
    counts = _counts(config)
    return -1 if counts is None else counts.get("sent", 0)


def _progressed(config: Config, target: int) -> bool:
    """Whether ``target`` documents are sent, or nothing is left to send."""
    counts = _counts(config)
    if counts is None:
        return False
    return counts.get("sent", 0) >= target or not any(counts.get(s, 0) for s in UNFINISHED)


def _unfinished(config: Config) -> int:
    """Documents not yet sent; -1 (unknown: the next run finds out) while the ledger cannot be read."""
    counts = _counts(config)
    return -1 if counts is None else sum(counts.get(s, 0) for s in UNFINISHED)


def _enough(config: Config, kills: int) -> bool:
    """Whether the runs so far crashed often enough, once at least with a document in hand."""
    if kills < MIN_KILLS:
        return False
    try:
        store = open_store(config, readonly=True)
    except StoreError:
        return False
    try:
        return any(True for _ in store.select(EntryFilter(events=("resent",))))
    except StoreError:
        return False
    finally:
        store.close()


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a condition Postfix and Dovecot fulfil asynchronously; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert found, f"{what} not reached within {timeout:.0f} s"
    return found


@pytest.mark.slow
def test_random_kill_9_while_300_documents_are_sent_loses_none_and_marks_every_duplicate(
    postfix: Any, dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str]
) -> None:
    seed = int(os.environ.get("CRASH_SEED", time.time()))
    rng = random.Random(seed)
    print(f"CRASH_SEED={seed}")
    sender, recipient = new_user(), new_user()
    path = smtp_config(
        tmp_path,
        port=postfix.port,
        # A relay's 4xx under load defers a document; it is due again within a second.
        extra={"from": f"{sender}@mailbox.test", "request_dsn": False, "min_backoff": "1s", "max_backoff": "2s"},
    )
    config = load_config(path)
    ids: dict[str, str] = {}

    def enqueue(count: int) -> None:
        """Queue ``count`` more documents for the recipient."""
        queue = open_store(config)
        try:
            for _ in range(count):
                doc = document(
                    to=(f"{recipient}@mailbox.test",),
                    mail_from=f"{sender}@mailbox.test",
                    body=f"Bescheid {len(ids)}\r\n".encode(),
                )
                ids[doc.message_id] = outbox.enqueue(config, queue, doc)
        finally:
            queue.close()

    enqueue(DOCUMENTS)
    environ = {**os.environ, "POSTSTELLE_CONFIG": str(path)}

    # Each run is killed after it has sent a random number of documents (counted in the
    # ledger, so a slow start-up or a busy machine changes nothing), plus a random fraction
    # of the next one: the kill lands anywhere in a document's cycle (claim, SMTP, the
    # commit after the relay's 250, filing the sent copy). A kill that finds the outbox
    # already drained is still a valid crash; only kills with documents left are counted.
    # How many documents a run sends before its kill lands depends on the machine's speed,
    # and so does whether a kill lands while a document is claimed: a drained outbox with
    # too few kills, or without a resend yet, gets more documents rather than failing.
    kills = 0
    for _ in range(MAX_RUNS):
        if not _enough(config, kills) and _unfinished(config) == 0:
            enqueue(REFILL)
        target = _sent(config) + rng.randint(1, 25)
        with (tmp_path / "run.stderr").open("wb") as err:
            proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while not _progressed(config, target) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        assert proc.poll() is None, f"the daemon exited by itself:\n{(tmp_path / 'run.stderr').read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if _unfinished(config) == 0:
            if _enough(config, kills):
                break
            continue
        kills += 1
    print(f"kills with documents left: {kills}")
    assert kills >= MIN_KILLS, f"only {kills} kills hit a run with documents left"

    for _ in range(5):  # a document the relay deferred is due again after min_backoff
        proc = subprocess.run(
            [*POSTSTELLE, "run", "--once"], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        if _unfinished(config) == 0:
            break

    store = open_store(config, readonly=True)
    try:
        records = {rec.message_id: rec for rec in store.outbox_list()}
        assert sorted(rec.id for rec in records.values()) == sorted(ids.values())
        assert {rec.state for rec in records.values()} == {"sent"}, "every document is sent"
        resent = Counter(e.document for e in store.select(EntryFilter(events=("resent",))))
        reasons = {e.details["reason"] for e in store.select(EntryFilter(events=("resent",)))}
    finally:
        store.close()
    print(f"resends after a crash: {sum(resent.values())}")
    assert reasons <= {RESENT_AFTER_CRASH}
    assert resent, "no kill hit a document between its claim and its sent commit"

    # Postfix delivers asynchronously; a copy accepted in the crash window is delivered too,
    # so wait until every document has arrived and Postfix's queue is empty.
    def arrived() -> Counter[str] | None:
        found = inbox_message_ids(dovecot, recipient)
        return found if set(ids) <= set(found) and postfix.queue_is_empty() else None

    found = _wait_for(arrived, 120, "every document in the recipient's INBOX")
    assert set(found) == set(ids), "nothing but the queued documents arrived"
    duplicates = {mid: n for mid, n in found.items() if n > 1}
    print(f"duplicates delivered: {sum(n - 1 for n in duplicates.values())} of {len(duplicates)} documents")
    for mid, n in duplicates.items():
        rec = records[mid]
        assert resent[rec.id] >= n - 1, f"{mid} arrived {n} times but was resent {resent[rec.id]} times"
        assert rec.resent, f"{mid} arrived {n} times, its row is not marked resent"
        assert rec.sent_path is not None
        manifest = json.loads((Path(rec.sent_path) / "manifest.json").read_text())
        assert manifest["resent_after_crash"] is True

    # The design keeps each spool file after sending (the sent copy is filed, and copied to
    # the Sent folder, from it): one per document, still its queued bytes, nothing else.
    spool = outbox_dir(config)
    assert sorted(p.name for p in spool.iterdir()) == sorted(f"{oid}.eml" for oid in ids.values())
    for rec in records.values():
        assert rec.sent_path is not None, f"{rec.id} has no sent copy"
        assert (Path(rec.sent_path) / "message.eml").read_bytes() == outbox.spool_bytes(rec)
    # A kill between staging a sent copy and publishing it left it staged; the retry removed it.
    assert list(staging_dir(config, "cases").iterdir()) == [], "no sent copy is left staged"

    proc = subprocess.run(
        [*POSTSTELLE, "audit", "verify", "--json"], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
    )
    report = json.loads(proc.stdout)
    assert report["ok"] and proc.returncode == 0, report["breaks"]
