"""Helpers for the audit tests: a filed mailbox, tampering tools, and reading `audit verify`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import Env

from gateway.demo.samples import fake_pdf, letter
from gateway.records.audit import AuditEntry, iter_entries
from gateway.records.ledger import Ledger, MessageRecord
from gateway.statedir import audit_jsonl_path, ledger_path

MALFORMED = (
    b"From: unbekannt@example.org\r\nTo: rathaus@stadt.example\r\nSubject: Az. 63-BV-2026-0147 Nachtrag\r\n"
    b"Message-ID: <malformed@audit.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
    b"--oops\r\nbroken\r\n"
)


def correspondence() -> list[bytes]:
    """Two letters for one case, one for another, one that has to be quarantined (in UID order)."""
    return [
        letter(subject="Bauantrag Az.: 63-BV-2026-0147", attachment=("Bauantrag.pdf", fake_pdf(4000, seed=1))),
        letter(subject="AW: Ihr Zeichen: 63-BV-2026-0147 Nachreichung", attachment=("Plan.pdf", fake_pdf(3000))),
        letter(sender="poststelle@vg-beispielstadt.example", subject="Ladung Az. 1 K 1234/25"),
        MALFORMED,
    ]


def file_correspondence(env: Env, messages: list[bytes] | None = None) -> None:
    env.append(*(messages if messages is not None else correspondence()))
    env.cli("run", "--once", check=True)


def verify(env: Env, *args: str) -> tuple[int, dict[str, Any]]:
    proc = env.cli("audit", "verify", "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return proc.returncode, report


def breaks(report: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(b["kind"], b["seq"]) for b in report["breaks"]]


def the_break(report: dict[str, Any], kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [b for b in report["breaks"] if b["kind"] == kind]
    assert found, f"no {kind} break in {breaks(report)}"
    return found[0]


@contextmanager
def raw_db(env: Env) -> Iterator[sqlite3.Connection]:
    """A writable connection that bypasses the gateway: what an intruder with file access has."""
    conn = sqlite3.connect(ledger_path(env.config), isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def entries(env: Env) -> list[AuditEntry]:
    led = Ledger(ledger_path(env.config), readonly=True)
    try:
        return list(iter_entries(led.conn))
    finally:
        led.close()


def records(env: Env) -> list[MessageRecord]:
    led = Ledger(ledger_path(env.config), readonly=True)
    try:
        return list(led.all_messages())
    finally:
        led.close()


def jsonl(env: Env) -> Path:
    return audit_jsonl_path(env.config)
