"""`audit verify` benchmark: a provider's trail (1,000,000 entries, 100,000 case folders), built synthetically.

    .venv/bin/python benchmarks/audit_verify.py [--quick] [--entries 1000000] [--folders 100000]
        [--day 30000] [--baseline-rev REV | --no-baseline] [--json-out FILE] [--keep]

The state is built with the gateway's own code, not by hand: the store's ``plan`` /
``finish`` / ``mark_server_done`` (hash chain, Ed25519 checkpoints every 1000 entries,
JSON-lines export) in transactions of ``BATCH`` messages, and the filing code's batch
path (``stage_entry`` without per-file flushes, then ``publish_entries``: one flush per
batch, as the intake does) for the entries with their manifests. Each message gets eight
entries (fetched, key-used, decrypted, verified, verdict, routed, stored, moved), like an
S/MIME letter; messages are spread over the case folders.

Measured, each as a separate ``poststelle audit verify`` process (warm page cache, the code
byte-compiled first as an installed package is, so no run compiles modules it imports):

- the full verify, and as its baseline the same command of the code at ``--baseline-rev``
  (extracted with ``git archive``; the code before streaming verification), on the same state;
- ``audit verify --since HEAD`` with the head ``--day`` entries before the end (an auditor's
  daily run), with the full verify as its baseline.

Targets (issue 15, this 2-core machine): the full verify of 1,000,000 entries and 100,000
case folders in <= 60 s (scaled by size for other sizes), ``--since`` over a day's 30,000
entries in <= 1 s. ``--json-out`` writes the rows for ``benchmarks/run_all.py``.
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
from gateway.filing.entries import EntryFile, StagedEntry, entry_name, publish_entries, stage_entry  # noqa: E402
from gateway.records.chain import AuditEvent  # noqa: E402
from gateway.records.messages import MessageRecord  # noqa: E402
from gateway.records.open import open_store  # noqa: E402
from gateway.records.store import Store  # noqa: E402
from gateway.statedir import cases_dir, init_storage  # noqa: E402

EVENTS_PER_MESSAGE = 8
BATCH = 1000  # messages per transaction (8,000 entries)
#: The code before streaming verification: the full verify's baseline.
BASELINE_REV = "2f29129"
FULL_TARGET_S = 60.0  # for 1,000,000 entries and 100,000 case folders
SINCE_TARGET_S = 1.0  # for a day's 30,000 entries


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


def build(root: Path, n_entries: int, n_folders: int, day: int) -> tuple[Path, str]:
    """Build the state; returns the config path and the head ``day`` entries before the end."""
    cfg_path = root / "poststelle.toml"
    cfg_path.write_text(config_text(root))
    config = load_config(cfg_path)
    init_storage(config)
    store = open_store(config)
    n_messages = n_entries // EVENTS_PER_MESSAGE
    pdf = fake_pdf(6_000, seed=3)
    raw_template = letter(subject="Az. 63-BV-2026-XXXXXX Unterlagen", attachment=("Anlage.pdf", pdf))
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
            raws = [raw_template.replace(b"XXXXXX", f"{i:06d}".encode()) for i in batch]
            staged = list(pool.map(lambda a: _stage(area, *a), zip(recs, raws, strict=True)))
            publish_entries({"cases": area}, staged)
            events: list[AuditEvent] = []
            for rec, entry in zip(recs, staged, strict=True):
                rec.state, rec.manifest_sha256 = "stored", entry.manifest_sha256
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
            print(f"  built {start + len(batch)}/{n_messages} messages", end="\r", flush=True)
    area.close()
    store.seal()
    store.export_jsonl()
    _report_size(store)
    n = store.count()
    old = store.entry(max(1, n - day))
    store.close()
    assert old is not None
    return cfg_path, old.hash


def _record(cases: Path, i: int, n_folders: int, t0: datetime) -> tuple[MessageRecord, AuditEvent]:
    msg_id = f"{i:012x}"
    case = f"63-BV-2026-{i % n_folders:06d}"
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


def _stage(area: Area, rec: MessageRecord, raw: bytes) -> StagedEntry:
    path = Path(rec.path or "")
    files = [
        EntryFile("original.eml", raw),
        EntryFile("body.txt", b"Sehr geehrte Damen und Herren,\n\nanbei die Unterlagen.\n"),
        EntryFile("attachments/Anlage.pdf", raw[-6_000:]),
        EntryFile("verification.json", b'{"verdict": "verified"}\n'),
    ]
    metadata = {"id": rec.id, "case_reference": rec.case_ref}
    return stage_entry(area, path.parent.name, path.name, files, metadata, sync=False)


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


def run_verify(cfg: Path, *args: str, code: Path = REPO) -> tuple[float, float, dict[str, Any]]:
    """One ``audit verify`` process of the code in ``code``: (wall seconds, peak RSS MB, its JSON report).

    The report gains ``cpu_seconds``: user and system time of the process and its workers,
    which says what the wall time would be on an idle machine when the two cores are shared.
    """
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "audit", "verify", "--json", "--config", str(cfg), *args],
            cwd=code,
            env=env,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        print(stdout[-3000:], stderr[-3000:])
        raise SystemExit(f"audit verify {' '.join(args)} reported breaks or failed (code in {code})")
    report: dict[str, Any] = json.loads(stdout)
    report["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    return elapsed, usage.ru_maxrss / 1024, report


def byte_compile(code: Path) -> None:
    """Write the ``.pyc`` files of ``code`` (``PYTHONDONTWRITEBYTECODE`` would make every run compile)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "gateway", "cli"], cwd=code, capture_output=True, check=False
    )


def baseline_tree(rev: str, into: Path) -> Path | None:
    """The code at ``rev`` extracted into ``into`` (None when git cannot give it)."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=False)
    if archive.returncode != 0:
        print(f"  no baseline: git archive {rev}: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    byte_compile(into)
    return into


def row(
    scenario: str,
    unit: str,
    rate: float,
    baseline: float | None,
    ratio: float | None,
    rss: float,
    target: float,
    met: bool,
    notes: str,
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "unit": unit,
        "rate": round(rate, 3),
        "baseline": None if baseline is None else round(baseline, 3),
        "ratio": None if ratio is None else round(ratio, 2),
        "peak_rss_mb": round(rss, 1),
        "target": target,
        "met": met,
        "notes": notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20,000 entries, 2,000 folders, a day of 3,000")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--folders", type=int, default=100_000)
    ap.add_argument("--day", type=int, default=30_000, help="entries added since the kept head (--since)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision whose verify is the baseline")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline run (it is slow at full size)")
    ap.add_argument("--json-out", type=Path, help="write the result rows as a JSON list")
    ap.add_argument("--keep", action="store_true", help="keep the built state directory")
    args = ap.parse_args()
    n_entries, n_folders, day = (20_000, 2_000, 3_000) if args.quick else (args.entries, args.folders, args.day)
    root = Path(tempfile.mkdtemp(prefix="pst-auditbench-"))
    rows: list[dict[str, Any]] = []
    try:
        print(f"building {n_entries} entries over {n_folders} case folders in {root} ...")
        t = time.perf_counter()
        cfg, head = build(root, n_entries, n_folders, day)
        print(f"  build took {time.perf_counter() - t:.1f} s")
        byte_compile(REPO)
        elapsed, rss, report = run_verify(cfg)
        inside = report["seconds"]
        print(
            f"audit verify: {elapsed:.1f} s wall (process), {inside} s inside verify_state, "
            f"{report['cpu_seconds']} s CPU (process and workers), peak RSS {rss:.0f} MB; "
            f"{report['entries']} entries, {report['checkpoints']} checkpoints, {report['case_folders']} case folders, "
            f"{report['case_entries']} entries checked, {report['jsonl_lines']} JSON lines, cores={os.cpu_count()}"
        )
        base: float | None = None
        if not args.no_baseline and (code := baseline_tree(args.baseline_rev, root / "baseline")) is not None:
            base, base_rss, base_report = run_verify(cfg, code=code)
            print(
                f"baseline ({args.baseline_rev}): {base:.1f} s wall, {base_report['cpu_seconds']} s CPU, "
                f"peak RSS {base_rss:.0f} MB"
            )
        scale = max(n_entries / 1_000_000, n_folders / 100_000)
        target_s = FULL_TARGET_S * scale
        rate, target_rate = report["entries"] / elapsed, 1_000_000 / FULL_TARGET_S
        met = elapsed <= target_s
        print(f"target <= {target_s:.1f} s ({target_rate:.0f} entries/s): {'met' if met else 'MISSED'}")
        rows.append(
            row(
                "audit verify (full)",
                "entries/s",
                rate,
                None if base is None else report["entries"] / base,
                None if base is None else base / elapsed,
                rss,
                round(target_rate),
                met,
                f"{report['entries']} entries, {report['case_folders']} case folders, {report['case_entries']} case "
                f"entries in {elapsed:.1f} s, {report['cpu_seconds']} s CPU (target {target_s:.1f} s); "
                "baseline: the code at "
                f"{args.baseline_rev if base is not None else '(not run)'}",
            )
        )
        s_elapsed, s_rss, s_report = run_verify(cfg, "--since", head)
        s_met = s_elapsed <= SINCE_TARGET_S * max(1.0, day / 30_000)
        print(
            f"audit verify --since: {s_elapsed:.2f} s wall (process), {s_report['seconds']} s inside, "
            f"{s_report['cpu_seconds']} s CPU; "
            f"{s_report['entries']} entries, {s_report['checkpoints']} checkpoints, {s_report['case_entries']} case "
            f"entries; baseline (full verify) {elapsed:.1f} s; target <= {SINCE_TARGET_S:.1f} s: "
            f"{'met' if s_met else 'MISSED'}"
        )
        rows.append(
            row(
                "audit verify --since (a day)",
                "s",
                s_elapsed,
                elapsed,
                elapsed / s_elapsed,
                s_rss,
                SINCE_TARGET_S,
                s_met,
                f"{s_report['entries']} entries after the kept head, {s_report['case_entries']} case entries; "
                f"{s_report['seconds']} s inside the command (the rest is starting Python), "
                f"{s_report['cpu_seconds']} s CPU; baseline: the full verify",
            )
        )
    finally:
        if args.json_out is not None:
            args.json_out.write_text(json.dumps(rows, indent=2) + "\n")
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
