"""Helpers for the audit tests: a filed mailbox, reading the record, and reading `audit verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import Env

from gateway.demo.samples import fake_pdf, letter
from gateway.records.chain import AuditEntry
from gateway.records.messages import MessageRecord
from gateway.records.open import open_store
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


def store_path(env: Env) -> Path:
    return ledger_path(env.config)


def entries(env: Env) -> list[AuditEntry]:
    store = open_store(env.config, readonly=True)
    try:
        return list(store.entries())
    finally:
        store.close()


def records(env: Env) -> list[MessageRecord]:
    store = open_store(env.config, readonly=True)
    try:
        return list(store.all_messages())
    finally:
        store.close()


def jsonl(env: Env) -> Path:
    return audit_jsonl_path(env.config)
