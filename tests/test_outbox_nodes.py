"""Several gateway nodes drain one PostgreSQL outbox through a real Postfix: each document goes out once.

Each node is a ``poststelle run`` process with its own ``state_dir`` and node name; they
share the database, the case folders and the spool (``[storage] spool_dir``), as nodes on
one shared file system would. Documents are counted where they arrive: by Message-ID in
the recipient's Dovecot INBOX. A node killed (SIGKILL) or frozen (SIGSTOP) while it holds
claims has them taken over by the other node once they expired; a frozen node that wakes
has its completions refused. Postfix must start as root: the ``postfix`` fixture skips
elsewhere, naming the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTSTELLE, REPO
from support.outbox import document, inbox_message_ids

from gateway.config import Config, load_config
from gateway.demo.dovecot import Dovecot
from gateway.outbound import outbox
from gateway.outbound.drain import RESENT_AFTER_CRASH
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord
from gateway.records.store import EntryFilter, StoreError
from gateway.statedir import init_storage

UNFINISHED = ("queued", "active", "deferred")


@dataclass
class Cluster:
    """Node configurations on one database, one shared file system, one relay."""

    root: Path
    dsn_file: Path
    port: int
    sender: str
    recipient: str
    ttl: str
    configs: dict[str, Config] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    message_ids: dict[str, str] = field(default_factory=dict)  # Message-ID -> outbox id

    def config(self, node: str) -> Config:
        if node not in self.configs:
            shared = self.root / "shared"
            path = self.root / node / "poststelle.toml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                f"""[storage]
state_dir = "{self.root / node / "state"}"
cases_dir = "{shared / "cases"}"
spool_dir = "{shared / "spool"}"
backend = "postgresql"
dsn_file = "{self.dsn_file}"
node = "{node}"

[audit]
key_file = "{shared / "audit-signing.key"}"

[smtp]
host = "127.0.0.1"
port = {self.port}
security = "plain"
from = "{self.sender}@mailbox.test"
request_dsn = false
min_backoff = "1s"
max_backoff = "2s"
timeout = 30

[outbound]
sign = "none"
copy_to_sent_folder = false
claim_ttl = "{self.ttl}"

[logging]
format = "json"
""",
                encoding="utf-8",
            )
            self.configs[node] = load_config(path)
            init_storage(self.configs[node])
        return self.configs[node]

    def enqueue(self, count: int) -> list[str]:
        """Queue ``count`` documents for the recipient (through the first node's configuration)."""
        config = self.config("alpha")
        store = open_store(config)
        made = []
        try:
            for _ in range(count):
                doc = document(
                    to=(f"{self.recipient}@mailbox.test",),
                    mail_from=f"{self.sender}@mailbox.test",
                    body=f"Bescheid {len(self.message_ids)}\r\n".encode(),
                )
                self.message_ids[doc.message_id] = outbox.enqueue(config, store, doc)
                made.append(self.message_ids[doc.message_id])
        finally:
            store.close()
        return made

    def start(self, node: str) -> subprocess.Popen[bytes]:
        config = self.config(node)
        environ = {**os.environ, "POSTSTELLE_CONFIG": str(config.path)}
        with self.log(node).open("ab") as err:
            proc = subprocess.Popen([*POSTSTELLE, "run"], cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=err)
        self.procs[node] = proc
        return proc

    def log(self, node: str) -> Path:
        return self.root / node / "run.stderr"

    def log_events(self, node: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log(node).read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
        for node, proc in self.procs.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"node {node} did not stop on SIGTERM")

    def records(self) -> list[OutboxRecord] | None:
        """Every document as the database has it; None while it cannot be read."""
        try:
            store = open_store(self.config("alpha"), readonly=True)
        except StoreError:
            return None
        try:
            return store.outbox_list()
        except StoreError:
            return None
        finally:
            store.close()

    def all_sent(self) -> bool:
        recs = self.records()
        return recs is not None and len(recs) == len(self.message_ids) and all(r.state == "sent" for r in recs)

    def all_filed(self) -> bool:
        recs = self.records()
        return bool(recs) and all(r.sent_path is not None for r in recs or ())

    def events(self, *kinds: str) -> list[Any]:
        store = open_store(self.config("alpha"), readonly=True)
        try:
            return list(store.select(EntryFilter(events=kinds)))
        finally:
            store.close()


@pytest.fixture
def cluster(
    postgres: Any, postfix: Any, dovecot: Dovecot, tmp_path: Path, new_user: Callable[[], str], request: Any
) -> Iterator[Cluster]:
    name = f"nodes_{os.getpid()}_{request.node.name[-40:].lower()}".replace("-", "_")
    dsn_file = tmp_path / "database.dsn"
    dsn_file.write_text(postgres.create_database(re.sub(r"[^a-z0-9_]", "_", name)))
    dsn_file.chmod(0o600)
    c = Cluster(tmp_path, dsn_file, postfix.port, new_user(), new_user(), "2m")
    try:
        yield c
    finally:
        c.stop_all()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    """Poll a condition other processes fulfil; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    assert found, f"{what} not reached within {timeout:.0f} s"
    return found


def delivered(c: Cluster, dovecot: Dovecot, postfix: Any) -> Counter[str]:
    """The recipient's INBOX once every queued document has arrived and Postfix's queue is empty."""

    def arrived() -> Counter[str] | None:
        found = inbox_message_ids(dovecot, c.recipient)
        return found if set(c.message_ids) <= set(found) and postfix.queue_is_empty() else None

    found: Counter[str] = wait_for(arrived, 180, "every document in the recipient's INBOX")
    assert set(found) == set(c.message_ids), "nothing but the queued documents arrived"
    return found


def node_of(rec: OutboxRecord) -> str:
    assert rec.claimed_by is not None
    return rec.claimed_by.partition(":")[0]


@pytest.mark.slow
def test_two_nodes_draining_one_outbox_at_once_send_each_document_exactly_once(
    cluster: Cluster, dovecot: Dovecot, postfix: Any
) -> None:
    cluster.enqueue(100)
    cluster.config("beta")
    # Both take part: a round in which one node was done before the other got going is
    # followed by another with more documents, both nodes already running.
    for _ in range(5):
        for node in ("alpha", "beta"):
            if node not in cluster.procs:
                cluster.start(node)
        wait_for(cluster.all_sent, 300, "every document sent")
        recs = cluster.records()
        assert recs is not None
        senders = Counter(node_of(r) for r in recs)
        if len(senders) == 2 and min(senders.values()) >= 10:
            break
        cluster.enqueue(100)
    print(f"documents sent per node: {dict(senders)}")
    assert set(senders) == {"alpha", "beta"} and min(senders.values()) >= 10
    assert all(r.attempts == 1 and not r.resent and r.claim_token == 1 for r in recs), "claimed once each"
    assert cluster.events("resent", "completion-refused") == []
    found = delivered(cluster, dovecot, postfix)
    assert {mid: n for mid, n in found.items() if n != 1} == {}, "each document arrived exactly once"
    submitted = Counter(e.document for e in cluster.events("submitted"))
    assert set(submitted.values()) == {1} and len(submitted) == len(cluster.message_ids)
    # Each sent copy is filed once, by the node that sent the document (batched: after the send).
    wait_for(cluster.all_filed, 120, "every sent copy filed")
    filed = Counter(e.document for e in cluster.events("filed-sent"))
    assert set(filed.values()) == {1} and len(filed) == len(cluster.message_ids)
    entries = Counter(p.name.rsplit("_", 1)[-1] for p in (cluster.root / "shared" / "cases").glob("*/sent/*"))
    assert entries == Counter(cluster.message_ids.values())


def _in_transaction(cluster: Cluster) -> bool:
    """Whether another session on the cluster's database is inside a transaction."""
    import psycopg

    config = cluster.config("alpha")
    assert config.storage.dsn is not None
    with psycopg.connect(config.storage.dsn.reveal(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
        ).fetchone()
    return bool(row and row[0])


def _held_by(cluster: Cluster, node: str) -> dict[str, OutboxRecord]:
    recs = cluster.records() or []
    return {r.id: r for r in recs if r.state == "active" and r.claimed_by and node_of(r) == node}


def _freeze_holding_claims(cluster: Cluster, sig: signal.Signals) -> dict[str, OutboxRecord]:
    """Start alpha alone and hit it with ``sig`` while it holds claims; the claims it kept.

    Whether a signal lands while a document is claimed depends on the machine's speed, so
    more documents are queued and alpha is started again until one did.
    """
    for _ in range(20):
        cluster.enqueue(20)
        proc = cluster.start("alpha")
        wait_for(lambda: _held_by(cluster, "alpha") or cluster.all_sent(), 120, "alpha holding a claim", poll=0.002)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait()
        else:
            # Frozen inside a transaction, alpha would hold the chain head's lock and stall every
            # writer until it wakes: let it run on a little until it froze between transactions.
            while _in_transaction(cluster):
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.001)
                proc.send_signal(sig)
                time.sleep(0.05)  # the stop has landed before the server is asked again
        held = _held_by(cluster, "alpha")  # read after the signal: these stay claimed
        if held:
            return held
        if sig != signal.SIGKILL:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        del cluster.procs["alpha"]
    pytest.fail("alpha never held a claim when the signal came")


@pytest.mark.slow
def test_a_killed_nodes_claims_are_taken_over_after_expiry_by_the_other_and_marked_resent(
    cluster: Cluster, dovecot: Dovecot, postfix: Any
) -> None:
    cluster.ttl = "3s"
    held = _freeze_holding_claims(cluster, signal.SIGKILL)
    print(f"claims alpha held when killed: {len(held)}")
    cluster.start("beta")
    wait_for(cluster.all_sent, 300, "every document sent")
    recs = {r.id: r for r in cluster.records() or []}
    resent = {e.document: e for e in cluster.events("resent")}
    assert set(resent) == set(held), "exactly alpha's claims were taken over"
    for oid, was in held.items():
        event = resent[oid]
        assert event.details["reason"] == RESENT_AFTER_CRASH
        assert event.details["taken_over_from"] == was.claimed_by
        assert was.claim_expires_at is not None and event.at >= was.claim_expires_at, "not before the claim expired"
        assert recs[oid].resent and node_of(recs[oid]) == "beta" and recs[oid].claim_token == was.claim_token + 1
    found = delivered(cluster, dovecot, postfix)
    for mid, n in found.items():
        oid = cluster.message_ids[mid]
        assert n == 1 or (n == 2 and oid in held), f"{oid} arrived {n} times"


@pytest.mark.slow
def test_a_frozen_node_that_wakes_after_the_take_over_has_its_completion_refused(
    cluster: Cluster, dovecot: Dovecot, postfix: Any
) -> None:
    cluster.ttl = "2s"
    held = _freeze_holding_claims(cluster, signal.SIGSTOP)
    print(f"claims alpha held when frozen: {len(held)}")
    cluster.start("beta")
    wait_for(cluster.all_sent, 300, "every document sent by beta")
    os.kill(cluster.procs["alpha"].pid, signal.SIGCONT)

    def alpha_gave_up() -> set[str] | None:
        """The documents alpha has let go since it woke: claim lost before sending, or completion refused."""
        # The lane's own word, not the claim keeper's (which may notice the loss first).
        messages = ("outbox claim lost before sending", "outbox completion refused")
        given_up = {e.get("id") for e in cluster.log_events("alpha") if str(e.get("event", "")).startswith(messages)}
        return given_up if set(held) <= given_up else None

    wait_for(alpha_gave_up, 120, "alpha letting go of every claim it held")
    recs = {r.id: r for r in cluster.records() or []}
    refused = Counter(e.document for e in cluster.events("completion-refused"))
    submitted = Counter(e.document for e in cluster.events("submitted"))
    for oid, was in held.items():
        rec = recs[oid]
        assert rec.state == "sent" and node_of(rec) == "beta" and rec.claim_token == was.claim_token + 1
        assert submitted[oid] == 1, "the document's record is beta's send alone"
    assert set(refused) <= set(held)
    found = delivered(cluster, dovecot, postfix)
    print(f"completions refused: {sum(refused.values())}, copies arrived twice: {sum(n > 1 for n in found.values())}")
    for mid, n in found.items():
        oid = cluster.message_ids[mid]
        # Alpha's relay may have taken the copy before the freeze: then its completion was refused.
        assert n == 1 or (n == 2 and refused[oid] == 1), f"{oid} arrived {n} times, refused {refused[oid]}"
    assert cluster.procs["alpha"].poll() is None, "alpha keeps running as a node"
