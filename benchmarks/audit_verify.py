"""`audit verify` benchmark: 100,000 audit entries and 10,000 case folders, built synthetically.

    .venv/bin/python benchmarks/audit_verify.py [--quick] [--entries 100000] [--folders 10000] [--keep]

The state is built with the gateway's own code, not by hand: the store's ``plan`` /
``finish`` / ``mark_server_done`` (hash chain, Ed25519 checkpoints every 1000 entries,
JSON-lines export) and ``filing.entries.write_entry`` (fsynced entries with manifests).
Each message gets eight entries (fetched, key-used, decrypted, verified, verdict, routed,
stored, moved), like an S/MIME letter; messages are spread over the case folders. Then
``poststelle audit verify`` runs as a separate process and is timed (warm page cache: the
files were just written).

Target (issue 3, 2 cores): <= 30 s for 100,000 entries and 10,000 case folders.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.clock import iso  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.demo.samples import fake_pdf, letter  # noqa: E402
from gateway.filing.areas import Area  # noqa: E402
from gateway.filing.entries import EntryFile, entry_name, write_entry  # noqa: E402
from gateway.records.chain import AuditEvent  # noqa: E402
from gateway.records.messages import MessageRecord  # noqa: E402
from gateway.records.open import open_store  # noqa: E402
from gateway.records.store import Store  # noqa: E402
from gateway.statedir import cases_dir, init_storage  # noqa: E402

EVENTS_PER_MESSAGE = 8
BATCH = 50


def config_text(root: Path) -> str:
    return f"""
[storage]
state_dir = "{root}/state"

[[mailbox]]
name = "bench"
host = "127.0.0.1"
username = "bench"
password = "unused"

[logging]
level = "warning"
format = "json"
"""


def build(root: Path, n_entries: int, n_folders: int) -> Path:
    cfg_path = root / "poststelle.toml"
    cfg_path.write_text(config_text(root))
    config = load_config(cfg_path)
    init_storage(config)
    store = open_store(config)
    n_messages = n_entries // EVENTS_PER_MESSAGE
    pdf = fake_pdf(6_000, seed=3)
    raw_template = letter(subject="Az. 63-BV-2026-XXXXX Unterlagen", attachment=("Anlage.pdf", pdf))
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    area = Area.open(config, "cases")
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, n_messages, BATCH):
            batch = range(start, min(start + BATCH, n_messages))
            recs, fetched = [], []
            for i in batch:
                rec, event = _record(cases_dir(config), i, n_folders, t0)
                recs.append(rec)
                fetched.append(event)
            store.plan(recs, fetched)
            raws = [raw_template.replace(b"XXXXX", f"{i:05d}".encode()) for i in batch]
            shas = list(pool.map(lambda a: _write(area, *a), zip(recs, raws, strict=True)))
            events: list[AuditEvent] = []
            for rec, sha in zip(recs, shas, strict=True):
                rec.state, rec.manifest_sha256 = "stored", sha
                events += _events(rec)
            store.finish(recs, events)
            store.mark_server_done(
                [r.id for r in recs],
                [
                    AuditEvent("moved", message=r.id, case=r.case_ref, details={"to": "Poststelle/Processed"})
                    for r in recs
                ],
            )
            store.export_jsonl()
            if start % 2000 == 0:
                print(f"  built {start + len(batch)}/{n_messages} messages", end="\r", flush=True)
    area.close()
    store.seal()
    store.export_jsonl()
    _report_size(store)
    store.close()
    return cfg_path


def _record(cases: Path, i: int, n_folders: int, t0: datetime) -> tuple[MessageRecord, AuditEvent]:
    msg_id = f"{i:012x}"
    case = f"63-BV-2026-{i % n_folders:05d}"
    received = t0 + timedelta(seconds=i)
    rec = MessageRecord(
        id=msg_id,
        mailbox="bench",
        folder="INBOX",
        uidvalidity=1,
        uid=i + 1,
        sha256=f"{i:064x}",
        message_id=f"<{i}@bench>",
        size=10_000,
        internaldate=iso(received),
        state="processing",
        target_state="stored",
        case_ref=case,
        case_folder=case,
        path=str(cases / case / entry_name(received, msg_id)),
        route="building permits",
        subject=f"Az. {case} Unterlagen",
        from_addr="buergeramt@nachbarstadt.example",
    )
    event = AuditEvent("fetched", message=msg_id, details={"mailbox": "bench", "uid": i + 1, "sha256": rec.sha256})
    return rec, event


def _write(area: Area, rec: MessageRecord, raw: bytes) -> str:
    path = Path(rec.path or "")
    files = [
        EntryFile("original.eml", raw),
        EntryFile("body.txt", b"Sehr geehrte Damen und Herren,\n\nanbei die Unterlagen.\n"),
        EntryFile("attachments/Anlage.pdf", raw[-6_000:]),
        EntryFile("verification.json", b'{"verdict": "verified"}\n'),
    ]
    _, sha = write_entry(area, path.parent.name, path.name, files, {"id": rec.id, "case_reference": rec.case_ref})
    return sha


def _events(rec: MessageRecord) -> list[AuditEvent]:
    def ev(kind: str, **details: Any) -> AuditEvent:
        return AuditEvent(kind, message=rec.id, case=rec.case_ref, correspondent=rec.from_addr, details=details)

    path = "/".join(Path(rec.path or "").parts[-2:])
    return [
        ev("key-used", scheme="smime", purpose="decrypt", certificate_sha256="ab" * 32),
        ev("decrypted", scheme="smime", cms_type="enveloped-data"),
        ev("signature-checked", scheme="smime", status="valid", verdict="verified"),
        ev("verdict", verdict="verified", reasons=[]),
        ev("routed", rule="building permits", case_reference=rec.case_ref),
        ev("stored", path=path, manifest_sha256=rec.manifest_sha256),
    ]


def _report_size(store: Store) -> None:
    n = store.count()
    cps = len(store.checkpoints())
    print(f"  built {n} audit entries, {cps} checkpoints" + " " * 20)


def time_verify(cfg: Path) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "audit", "verify", "--json", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit("audit verify reported breaks or failed")
    return elapsed, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5,000 entries and 500 folders")
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--folders", type=int, default=10_000)
    ap.add_argument("--keep", action="store_true", help="keep the built state directory")
    ap.add_argument("--json-out", type=Path, default=None, metavar="FILE", help="write the result row (JSON) here")
    args = ap.parse_args()
    n_entries, n_folders = (5_000, 500) if args.quick else (args.entries, args.folders)
    root = Path(tempfile.mkdtemp(prefix="pst-auditbench-"))
    try:
        print(f"building {n_entries} entries over {n_folders} case folders in {root} ...")
        t = time.perf_counter()
        cfg = build(root, n_entries, n_folders)
        print(f"  build took {time.perf_counter() - t:.1f} s")
        elapsed, report = time_verify(cfg)
        print(
            f"audit verify: {elapsed:.1f} s wall (process), {report['seconds']} s inside verify_state; "
            f"{report['entries']} entries, {report['checkpoints']} checkpoints, {report['case_folders']} case folders, "
            f"{report['case_entries']} entries checked, {report['jsonl_lines']} JSON lines, cores={os.cpu_count()}"
        )
        target = 30.0 * max(n_entries / 100_000, n_folders / 10_000)
        print(f"target <= {target:.1f} s: {'met' if elapsed <= target else 'MISSED'}")
        write_contract_row(args.json_out, root, elapsed, target, report)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root)


def write_contract_row(path: Path | None, root: Path, elapsed: float, target: float, report: dict[str, object]) -> None:
    """The run_all row (benchmarks/contract.py): entries/s against reading and hashing every file verify reads.

    The baseline is the floor of any verifier: SHA-256 over every file of the state
    directory (ledger, audit files, case entries), timed just after verify, warm cache.
    """
    if path is None:
        return
    import hashlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    from contract import row, write_rows

    start = time.perf_counter()
    hashed = 0
    for dirpath, _dirs, files in os.walk(root / "state"):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                hashed += len(hashlib.file_digest(f, "sha256").digest())
    floor = time.perf_counter() - start
    entries = float(str(report["entries"]))
    write_rows(path, [row(
        "audit-verify", "entries/s", entries / elapsed, entries / floor, peak_rss_mb=None,
        target=f"<= {target:.1f} s for this size", met=elapsed <= target,
        notes=f"{int(entries)} entries, {report['case_entries']} case entries, {elapsed:.1f} s; "
              "baseline: sha256 over every file of the state directory",
    )])


if __name__ == "__main__":
    main()
