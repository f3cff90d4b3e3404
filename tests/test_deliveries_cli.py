"""``poststelle deliveries``: list and show per recipient, with evidence, served date and overdue flag."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import POSTSTELLE, REPO
from support.outbox import smtp_config

from gateway.config import load_config
from gateway.demo.postfix import free_port
from gateway.records.chain import AuditEvent
from gateway.records.deliveries import DeliveryStep, Evidence
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord, RecipientStatus

CASE = "63-BV-2026-0412"
DELIVERIES = '\n[deliveries]\nservice_fiction_days = 4\npublic_holidays = [2018-12-25, "2018-12-26"]\n'


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config)}
    return subprocess.run(
        [*POSTSTELLE, "deliveries", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False
    )


def doc(oid: str, *recipients: str, case: str = CASE) -> OutboxRecord:
    return OutboxRecord(
        id=oid,
        message_id=f"{oid}@rathaus.test",
        case_ref=case,
        case_folder=case,
        mail_from="rathaus@mailbox.test",
        sha256="cd" * 32,
        size=10,
        path=f"/nowhere/{oid}.eml",
        signed="none",
        encrypted=False,
        envid=f"{oid}.e",
        state="sent",
        recipients=[RecipientStatus(r, "sent") for r in recipients],
        created_at="2018-12-20T09:00:00.000000Z",
    )


def step(oid: str, rcpt: str, state: str, at: str, kind: str = "demail", path: str | None = None) -> DeliveryStep:
    return DeliveryStep(oid, rcpt, state, at, Evidence(kind, path, "ab" * 32 if path else None, state))  # type: ignore[arg-type]


def ledger(tmp_path: Path, extra: str = "") -> Path:
    """Two documents queued in December 2018 (long overdue by now unless delivered):

    ``demail01``: dispatched on Friday 21 December 2018 to ``buerger@de-mail.test`` (deemed
    served after Christmas), ``smtp0002``: one recipient delivered (DSN), one still submitted.
    """
    path = smtp_config(tmp_path, port=free_port())
    with path.open("a", encoding="utf-8") as f:
        f.write(DELIVERIES + extra)
    store = open_store(load_config(path))
    for rec in (
        doc("demail01", "buerger@de-mail.test"),
        doc("smtp0002", "a@remote.test", "b@remote.test", case="OTHER-7"),
    ):
        queued = [step(rec.id, r.address, "queued", "2018-12-20T09:00:00.000000Z", "outbox") for r in rec.recipients]
        store.outbox_enqueue(rec, [AuditEvent("queued", case=rec.case_ref, document=rec.id)], deliveries=queued)
    store.delivery_apply(
        [
            step(
                "demail01",
                "buerger@de-mail.test",
                "dispatched",
                "2018-12-21T10:30:00.000000Z",
                "demail",
                f"{CASE}/receipts/versand.eml",
            ),
            step("smtp0002", "a@remote.test", "submitted", "2018-12-20T09:01:00.000000Z", "relay"),
            step("smtp0002", "b@remote.test", "submitted", "2018-12-20T09:01:00.000000Z", "relay"),
            step(
                "smtp0002",
                "a@remote.test",
                "delivered",
                "2018-12-20T09:02:00.000000Z",
                "dsn",
                "OTHER-7/receipts/dsn.eml",
            ),
        ],
        [],
    )
    store.close()
    return path


def test_list_shows_each_recipient_with_state_served_date_and_overdue_flag(tmp_path: Path) -> None:
    path = ledger(tmp_path)
    listed = json.loads(cli(path, "list", "--json").stdout)
    assert [(v["document_id"], v["recipient"], v["state"], v["overdue"]) for v in listed] == [
        ("demail01", "buerger@de-mail.test", "dispatched", False),
        ("smtp0002", "a@remote.test", "delivered", False),
        ("smtp0002", "b@remote.test", "submitted", True),
    ]
    assert listed[0]["service"]["deemed_served_on"] == "2018-12-27" and listed[0]["service"]["basis"] == "fiction"
    overdue = json.loads(cli(path, "list", "--overdue", "--json").stdout)
    assert [v["recipient"] for v in overdue] == ["b@remote.test"]
    assert [v["recipient"] for v in json.loads(cli(path, "list", "--case", "OTHER-7", "--json").stdout)] == [
        "a@remote.test",
        "b@remote.test",
    ]
    assert [v["recipient"] for v in json.loads(cli(path, "list", "--state", "delivered", "--json").stdout)] == [
        "a@remote.test"
    ]
    table = cli(path, "list").stdout
    assert "2018-12-27 (deemed served)" in table and "yes" in table.splitlines()[-1]
    bad = cli(path, "list", "--state", "lost")
    assert bad.returncode == 1 and "unknown state 'lost'" in bad.stderr


def test_show_gives_the_timeline_with_evidence_files_per_recipient(tmp_path: Path) -> None:
    path = ledger(tmp_path)
    shown = cli(path, "show", "smtp0002")
    assert shown.returncode == 0
    assert "OTHER-7/receipts/dsn.eml" in shown.stdout and "b@remote.test" in shown.stdout
    assert shown.stdout.index("a@remote.test") < shown.stdout.index("b@remote.test")
    data = json.loads(cli(path, "show", "demail01", "--json").stdout)
    (view,) = data["deliveries"]
    assert [t["state"] for t in view["timeline"]] == ["queued", "dispatched"]
    assert view["timeline"][1]["evidence"]["path"] == f"{CASE}/receipts/versand.eml"
    missing = cli(path, "show", "nope")
    assert missing.returncode == 1 and "no delivery records" in missing.stderr


def test_the_tables_speak_german_when_configured(tmp_path: Path) -> None:
    path = ledger(tmp_path, '\n[ui]\nlanguage = "de"\n')
    table = cli(path, "list").stdout
    assert "EMPFÄNGER" in table and "ÜBERFÄLLIG" in table and "2018-12-27 (gilt als zugestellt)" in table
    shown = cli(path, "show", "demail01").stdout
    assert "SCHRITT" in shown and "zugestellt_am" in shown and "21.12.2018 11:30:00 MEZ" in shown
