"""What every fault test checks afterwards: each message in exactly one place, the trail intact.

"One place" is counted three ways, because a fault can break any of them alone: the
ledger (one finished row per message, none left in ``processing``), the case folders
and quarantine (one entry per message, nothing left in staging) and the server's
folders (the INBOX empty, each message once in Processed or Quarantine).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from conftest import Env

from gateway.records.open import open_store


def event_types(env: Env) -> list[str]:
    """The audit trail's event types, in order."""
    store = open_store(env.config, readonly=True)
    try:
        return [e.event for e in store.entries()]
    finally:
        store.close()


def audit_verify_is_green(env: Env) -> None:
    proc = env.cli("audit", "verify", "--json")
    report: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0, f"audit verify failed:\n{proc.stdout}\n{proc.stderr}"
    assert not report.get("breaks"), report


def staging_leftovers(env: Env) -> list[str]:
    """Files left in any staging directory: the state directory's and the roots' own ``.incoming``."""
    dirs = [env.state_dir / "staging", env.cases_dir / ".incoming", env.state_dir / "quarantine" / ".incoming"]
    return sorted(str(p) for d in dirs if d.is_dir() for p in d.rglob("*") if not p.is_dir())


def each_message_once(env: Env, subjects: list[str]) -> None:
    """Every subject filed exactly once, recorded once as stored, and moved once on the server."""
    store = open_store(env.config, readonly=True)
    try:
        rows = list(store.all_messages())
    finally:
        store.close()
    assert sorted(r.state for r in rows) == ["stored"] * len(subjects), [(r.uid, r.state) for r in rows]
    assert Counter(r.subject for r in rows) == Counter(subjects)
    entries = env.entries()
    assert len(entries) == len(subjects), entries
    filed = Counter(json.loads((e / "manifest.json").read_text())["subject"] for e in entries)
    assert filed == Counter(subjects)
    assert env.uids("INBOX") == []
    assert len(env.uids(env.config.mailboxes[0].processed_folder)) == len(subjects)
    assert staging_leftovers(env) == []
