"""The soak's verdicts: every message in exactly one place, every document sent once (or resent), RSS flat.

The same checks as the kill-9 tests (tests/test_crash_safety.py for the intake,
tests/test_outbox_kill.py for the outbox), written as functions that return what they
found instead of asserting, so that a soak of half an hour reports every failed check
with its figures rather than stopping at the first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.demo.dovecot import Dovecot
from gateway.outbound.drain import RESENT_AFTER_CRASH
from gateway.records.open import open_store
from gateway.records.store import EntryFilter
from gateway.statedir import cases_dir, quarantine_dir, staging_dir

PROCESSED, QUARANTINE = "Poststelle/Processed", "Poststelle/Quarantine"
FETCH_CHUNK = 500


@dataclass(frozen=True)
class Check:
    """One verdict: its name, whether it held, and the figures behind it."""

    name: str
    ok: bool
    detail: str = ""


def mid(value: str | bytes | None) -> str:
    """A Message-ID without its angle brackets and blanks, for comparing the server's with the ledger's."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else (value or "")
    return text.strip().strip("<>").strip()


def message_ids(server: Dovecot, user: str, folder: str) -> Counter[str]:
    """How often each Message-ID is in the user's folder (empty when the folder does not exist)."""
    found: Counter[str] = Counter()
    conn = server.client(user, tls=False)
    try:
        if not conn.folder_exists(folder):
            return found
        conn.select_folder(folder, readonly=True)
        uids = list(conn.search("ALL"))
        for i in range(0, len(uids), FETCH_CHUNK):
            fetched = conn.fetch(uids[i : i + FETCH_CHUNK], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for data in fetched.values():
                header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
                found[mid(header.partition(b":")[2])] += 1
    finally:
        conn.logout()
    return found


def incoming(config: Config, server: Dovecot, user: str, appended: Iterable[str]) -> list[Check]:
    """Every appended message once on the server (Processed or Quarantine), once in the ledger, once on disk."""
    want = set(appended)
    inbox = message_ids(server, user, "INBOX")
    done = message_ids(server, user, PROCESSED) + message_ids(server, user, QUARANTINE)
    checks = [Check("server: INBOX empty", not inbox, f"{sum(inbox.values())} left")]
    missing = sorted(want - set(done))
    twice = sorted(m for m in want if done[m] > 1)
    checks.append(
        Check(
            "server: every appended message once in Processed/Quarantine",
            not missing and not twice,
            f"{len(want)} appended, {len(missing)} missing, {len(twice)} twice; "
            f"{sum(done.values())} messages there in all (with DSNs)",
        )
    )

    store = open_store(config, readonly=True)
    try:
        records = list(store.all_messages())
    finally:
        store.close()
    unfinished = [r.id for r in records if r.state == "processing"]
    checks.append(Check("ledger: nothing left processing", not unfinished, f"{len(unfinished)} processing"))
    counted = Counter(mid(r.message_id) for r in records if r.state != "duplicate")
    checks.append(
        Check(
            "ledger: one row per message on the server",
            counted == done,
            f"{sum(counted.values())} rows, {sum(done.values())} on the server; "
            f"differing ids: {sorted((counted - done) + (done - counted))[:5]}",
        )
    )

    filed = {r.id: r for r in records if r.state in ("stored", "quarantined")}
    manifests = _manifest_ids(config)
    extra = sorted(set(manifests) - set(filed))
    absent = sorted(set(filed) - set(manifests))
    doubled = sorted(i for i, n in manifests.items() if n > 1)
    checks.append(
        Check(
            "files: every stored/quarantined row has exactly one entry",
            not extra and not absent and not doubled,
            f"{len(filed)} rows, {sum(manifests.values())} entries; {len(absent)} without an entry, "
            f"{len(extra)} entries without a row, {len(doubled)} in two places",
        )
    )
    left = [p for area in ("cases", "quarantine") for p in staging_dir(config, area).glob("*/*")]
    checks.append(Check("files: nothing left staged", not left, f"{len(left)} staged"))
    return checks


def _manifest_ids(config: Config) -> Counter[str]:
    """Ledger ids named by the manifests of received entries (case folders, receipts, quarantine; not sent copies)."""
    found: Counter[str] = Counter()
    for root in (cases_dir(config), quarantine_dir(config)):
        for manifest in root.rglob("manifest.json"):
            rel = manifest.relative_to(root).parts
            if any(p.startswith(".") for p in rel) or "sent" in rel[:-2]:
                continue
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if "id" in data and "uid" in data:  # a received message's entry
                found[str(data["id"])] += 1
    return found


def outgoing(
    config: Config, server: Dovecot, recipient: str, queued: Sequence[str]
) -> tuple[list[Check], dict[str, int]]:
    """Every queued document sent and in the recipient's INBOX; a second copy only as resent after a crash."""
    store = open_store(config, readonly=True)
    try:
        records = {r.id: r for r in store.outbox_list()}
        resent_events = list(store.select(EntryFilter(events=("resent",))))
        deliveries = store.deliveries_list()
    finally:
        store.close()
    resent = Counter(e.document for e in resent_events)
    reasons = {e.details.get("reason") for e in resent_events}
    not_sent = [i for i in queued if i not in records or records[i].state != "sent"]
    checks = [
        Check("outbox: every queued document sent", not not_sent, f"{len(queued)} queued, {len(not_sent)} not sent")
    ]
    checks.append(
        Check(
            "outbox: resends only after a crash",
            reasons <= {RESENT_AFTER_CRASH},
            f"reasons {sorted(str(r) for r in reasons)}",
        )
    )
    found = message_ids(server, recipient, "INBOX")
    by_mid = {mid(r.message_id): r for r in records.values()}
    lost = [m for m in by_mid if m not in found]
    strangers = [m for m in found if m not in by_mid]
    unexplained = [
        m for m, n in found.items() if n > 1 and m in by_mid and (resent[by_mid[m].id] < n - 1 or not by_mid[m].resent)
    ]
    duplicates = sum(n - 1 for n in found.values() if n > 1)
    checks.append(
        Check(
            "relay: every document arrived, extra copies only as resent-after-crash",
            not lost and not strangers and not unexplained,
            f"{len(found)} arrived ({duplicates} extra copies), {len(lost)} lost, {len(strangers)} unknown, "
            f"{len(unexplained)} duplicates without a resend",
        )
    )
    advanced = [d for d in deliveries if d.state not in ("queued", "submitted")]
    checks.append(
        Check(
            "receipts: every delivery record advanced by its DSN",
            len(advanced) == len(queued) == len(deliveries),
            f"{len(advanced)} of {len(deliveries)} records advanced; states "
            f"{dict(Counter(d.state for d in deliveries))}",
        )
    )
    return checks, {"resent": sum(resent.values()), "duplicates_delivered": duplicates}


def audit_verify(config_path: Path, repo: Path) -> Check:
    """``poststelle audit verify`` over the whole state: the chain, checkpoints, every entry's manifest."""
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config_path), "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "audit", "verify", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        return Check("audit verify", False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    ok = bool(report.get("ok")) and proc.returncode == 0
    return Check(
        "audit verify",
        ok,
        f"{report.get('entries')} entries, {report.get('case_entries')} case entries; "
        f"breaks {report.get('breaks', [])[:3]}",
    )


def within_slope(samples: Sequence[tuple[int, float, float]]) -> float | None:
    """Growth per minute within each daemon lifetime: (lifetime, seconds, value) samples, pooled.

    A kill resets the daemon's memory, so a slope across lifetimes would only measure the
    restarts. Each lifetime's samples are centred on their own means and one slope is
    fitted through all of them (the "within" estimator): a lifetime contributes its
    growth, not its level. None when no lifetime has two samples at different times.
    """
    groups: dict[int, list[tuple[float, float]]] = {}
    for life, t, v in samples:
        groups.setdefault(life, []).append((t, v))
    num = den = 0.0
    for points in groups.values():
        if len(points) < 2:
            continue
        mt = sum(t for t, _ in points) / len(points)
        mv = sum(v for _, v in points) / len(points)
        num += sum((t - mt) * (v - mv) for t, v in points)
        den += sum((t - mt) ** 2 for t, _ in points)
    return num / den * 60 if den else None
