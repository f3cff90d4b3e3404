"""Receipts benchmark: N sent documents and their DSNs, recognised, matched and recorded by the intake.

    .venv/bin/python benchmarks/receipts.py [--n 2000] [--n 10000] [--batch-size 50] [--no-volume]
                                            [--quick] [--json-out FILE]

For each N: N documents are put into the outbox as the outbox and the drain record them
(``queued`` with their first delivery step, then ``sent`` with the relay's ``submitted``
step, through the store's Protocols), in a few large transactions so that setting up
10,000 documents takes seconds, not the minutes one durable ``enqueue`` each would. Their
DSNs, written the way Postfix 3.7 writes them (``relayed`` or ``delivered``, ENVID and
ORCPT returned, RET=HDRS), are dropped into the gateway's Dovecot INBOX. Then ``poststelle
run --once`` is timed until the INBOX is empty, as in ``ingest.py``: each DSN is
recognised, matched by its ENVID against the outbox (in the analysis worker, read-only),
stored under its document's ``<case>/receipts/`` and its delivery step committed with the
message's final state.

The baseline, in the same run and on the same server: N ordinary letters of about the
same size, routed by their subject into the same case folders, through the same
``run --once``. The ratio receipts/s over letters/s is what recognising, matching and
recording the delivery steps cost on top of plain intake.

At the end of each run the ledger is checked: every receipt stored (none quarantined),
every delivery record in the state its DSN named, its last step's evidence the stored
receipt. Peak RSS as in ``ingest.py`` (the gateway's VmHWM; workers' PSS summed in).

Targets (issue 13, 2 cores): >= 300 receipts/s end to end, at most a third slower than
plain intake (ratio >= 0.75), peak RSS flat in N.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, write_rows  # noqa: E402
from ingest import GatewayRun, WorkDirs, config_text, run_gateway, work_root  # noqa: E402

from gateway.clock import iso, utcnow  # noqa: E402
from gateway.config import Config, load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.demo.samples import fake_pdf, letter  # noqa: E402
from gateway.records.chain import AuditEvent  # noqa: E402
from gateway.records.deliveries import DeliveryStep, Evidence  # noqa: E402
from gateway.records.open import open_store  # noqa: E402
from gateway.records.outbox import OutboxRecord, RecipientStatus  # noqa: E402
from gateway.records.store import OutboxChange, Store, apply_deliveries  # noqa: E402
from gateway.routing.casenames import case_folder_name, case_reference_from_folder  # noqa: E402
from gateway.statedir import init_storage, outbox_dir  # noqa: E402

FROM = "rathaus@stadt.example"
CASES = 500  # documents spread over this many case folders, as the ingest corpus is
SETUP_CHUNK = 1000  # documents per seeding transaction
DSN_DATE = "Wed,  2 Dec 2026 09:00:05 +0100 (CET)"


def case_of(i: int) -> str:
    return f"63-BV-2026-{i % CASES:04d}"


def recipient_of(i: int) -> str:
    return f"empfaenger{i % 97}@nachbarstadt.example"


def action_of(i: int) -> str:
    """Postfix says ``relayed`` when it handed over by LMTP/SMTP, ``delivered`` for a local mailbox."""
    return "delivered" if i % 4 == 0 else "relayed"


# -- the sent documents -------------------------------------------------------------------------
def document(i: int, config: Config, spool: Path, now: str) -> tuple[OutboxRecord, bytes]:
    """A small sent document's outbox row (queued) and its bytes."""
    outbox_id = f"{i:012x}"
    message_id = f"bench{i}.{os.getpid()}@stadt.example"
    folder = case_folder_name(case_of(i), slash=config.routing.folder_slash)
    raw = (
        f"From: Rathaus <{FROM}>\r\nTo: {recipient_of(i)}\r\nSubject: Az. {case_of(i)} Bescheid Nr. {i}\r\n"
        f"Message-ID: <{message_id}>\r\nDate: Wed, 02 Dec 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSehr geehrte Damen und Herren,\r\n"
    ).encode()
    rec = OutboxRecord(
        id=outbox_id,
        message_id=message_id,
        case_ref=case_reference_from_folder(folder),
        case_folder=folder,
        mail_from=FROM,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        path=str(spool / f"{outbox_id}.eml"),
        signed="none",
        encrypted=False,
        envid=f"{outbox_id}.{hashlib.sha256(message_id.encode()).hexdigest()[:16]}",
        recipients=[RecipientStatus(recipient_of(i), updated_at=now)],
        created_at=now,
        updated_at=now,
    )
    return rec, raw


def seed_outbox(config: Config, n: int) -> list[OutboxRecord]:
    """N documents queued, then accepted by the relay, as ``enqueue`` and the drain record them.

    The same rows, events and delivery steps as those two write, committed a thousand
    documents per transaction; the spool files are written without fsync (nothing reads
    them here).
    """
    spool = outbox_dir(config)
    spool.mkdir(parents=True, exist_ok=True)
    store = open_store(config, actor="bench")
    docs: list[OutboxRecord] = []
    try:
        for first in range(0, n, SETUP_CHUNK):
            now = iso(utcnow())
            chunk = [document(i, config, spool, now) for i in range(first, min(n, first + SETUP_CHUNK))]
            for rec, raw in chunk:
                Path(rec.path).write_bytes(raw)
            _enqueue_all(store, [rec for rec, _ in chunk], now)
            _mark_sent(store, [rec for rec, _ in chunk])
            docs.extend(rec for rec, _ in chunk)
        # Exported as the processes that queued and sent them would have: the timed run
        # exports only what the intake adds to the trail.
        store.export_jsonl()
    finally:
        store.close()
    return docs


def _enqueue_all(store: Store, recs: list[OutboxRecord], now: str) -> None:
    with store.unit_of_work() as uow:
        for rec in recs:
            uow.insert_outbox(rec)
            uow.append(
                [
                    AuditEvent(
                        "queued",
                        case=rec.case_ref,
                        document=rec.id,
                        actor="bench",
                        details={"message_id": rec.message_id, "recipients": [r.address for r in rec.recipients]},
                    )
                ]
            )
            evidence = Evidence("outbox", None, rec.sha256, f"Message-ID <{rec.message_id}>")
            apply_deliveries(uow, [DeliveryStep(rec.id, r.address, "queued", now, evidence) for r in rec.recipients])


def _mark_sent(store: Store, recs: list[OutboxRecord]) -> None:
    changes: list[OutboxChange] = []
    for rec in recs:
        at = iso(utcnow())
        steps = []
        for r in rec.recipients:
            r.state, r.reply, r.queue_id, r.updated_at = "sent", "250 2.0.0 Ok: queued as 4ABCDEF123", "4ABCDEF123", at
            steps.append(DeliveryStep(rec.id, r.address, "submitted", at, Evidence("relay", None, None, r.reply)))
        rec.state, rec.attempts, rec.last_reply = "sent", 1, "250 2.0.0 Ok: queued as 4ABCDEF123"
        event = AuditEvent(
            "submitted",
            case=rec.case_ref,
            document=rec.id,
            details={
                "message_id": rec.message_id,
                "recipients": [r.address for r in rec.recipients],
                "dsn_requested": True,
                "envid": rec.envid,
                "attempt": 1,
            },
        )
        changes.append(OutboxChange(rec, [event], ["queued"], None, steps))
    if not all(store.outbox_save_many(changes)):
        raise SystemExit("seeding: an outbox document was not in the state it was queued in")


# -- the DSNs (the layout of tests/support/receipts.py's postfix_dsn, copied: benchmarks do not import tests) ----
def postfix_dsn(rec: OutboxRecord, action: str, *, mta: str = "mail.nachbarstadt.example") -> bytes:
    """A success DSN the way Postfix 3.7's bounce daemon writes it, with RET=HDRS."""
    rcpt = rec.recipients[0].address
    queue_id = hashlib.sha256(rec.id.encode()).hexdigest()[:10].upper()
    boundary = f"{queue_id}.1796198405/{mta}"
    status = (
        f"Reporting-MTA: dns; {mta}\r\nOriginal-Envelope-Id: {rec.envid}\r\nX-Postfix-Queue-ID: {queue_id}\r\n"
        f"X-Postfix-Sender: rfc822; {rec.mail_from}\r\nArrival-Date: {DSN_DATE}\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{rcpt}\r\nAction: {action}\r\n"
        f"Status: 2.0.0\r\nRemote-MTA: dns; mx.nachbarstadt.example\r\n"
        f"Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as {queue_id}\r\n"
    )
    returned = (
        f"Return-Path: <{rec.mail_from}>\r\nReceived: from stadt.example (localhost [127.0.0.1])\r\n"
        f"\tby {mta} (Postfix) with ESMTP id {queue_id}\r\nFrom: Rathaus <{rec.mail_from}>\r\nTo: {rcpt}\r\n"
        f"Subject: Az. {rec.case_ref} Bescheid\r\nMessage-ID: <{rec.message_id}>\r\n"
        "Date: Wed, 02 Dec 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    )
    parts = [
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {mta}.\r\n\r\n"
        "Your message was successfully delivered to the destination(s)\r\nlisted below.\r\n",
        "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n" + status,
        "Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n" + returned,
    ]
    header = (
        f"Return-Path: <>\r\nDate: {DSN_DATE}\r\nFrom: MAILER-DAEMON@{mta} (Mail Delivery System)\r\n"
        f"Subject: Successful Mail Delivery Report\r\nTo: {rec.mail_from}\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        f"Content-Transfer-Encoding: 8bit\r\nMessage-Id: <20261202080005.{queue_id}@{mta}>\r\n\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    return (header + "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n").encode()


def dsns(docs: list[OutboxRecord]) -> Iterator[bytes]:
    for i, rec in enumerate(docs):
        yield postfix_dsn(rec, action_of(i))


def letters(n: int, size: int) -> Iterator[bytes]:
    """Ordinary letters of about ``size`` bytes (text and a small PDF), routed into the documents' case folders.

    Multipart like the DSNs (and like most letters an authority receives), so that both
    runs cut, store and record the same number of parts of about the same size.
    """
    body = "Sehr geehrte Damen und Herren,\n\nanbei erhalten Sie die Unterlagen.\n"
    plain = letter(subject="Bauantrag Az.: 63-BV-2026-0000", body=body, attachment=("Anlage.pdf", fake_pdf(0)))
    pdf = fake_pdf(max(0, size - len(plain)) * 3 // 4, seed=7)  # base64 makes it a third larger
    for i in range(n):
        yield letter(subject=f"Bauantrag Az.: {case_of(i)}", body=body, attachment=(f"Anlage-{i}.pdf", pdf))


# -- checking -----------------------------------------------------------------------------------
def check(config_path: Path, n: int, *, receipts: bool) -> None:
    """Everything stored, nothing quarantined; for receipts, every record in its DSN's state."""
    store = open_store(load_config(config_path), readonly=True)
    try:
        counts = store.counts_by_state()
        if counts.get("stored", 0) != n or any(counts.get(s, 0) for s in ("quarantined", "processing", "duplicate")):
            raise SystemExit(f"expected {n} stored, found {counts}")
        if not receipts:
            return
        records = store.deliveries_list()
        if len(records) != n:
            raise SystemExit(f"expected {n} delivery records, found {len(records)}")
        wrong = 0
        for rec in records:
            last = rec.timeline[-1]
            expected = action_of(int(rec.document_id, 16))
            if (
                rec.state != expected
                or last.evidence.kind != "dsn"
                or last.outcome != "advanced"
                or "/receipts/" not in (last.evidence.path or "")
            ):
                wrong += 1
        if wrong:
            raise SystemExit(f"{wrong} of {n} delivery records were not advanced by their DSN")
    finally:
        store.close()


# -- the runs -----------------------------------------------------------------------------------
def one_run(work: Path, server: Dovecot, user: str, batch: int, workers: int | None) -> tuple[Path, Config]:
    work.mkdir()
    cfg = work / "poststelle.toml"
    cfg.write_text(config_text(work, server, user, batch, workers))
    config = load_config(cfg)
    init_storage(config)
    return cfg, config


def run_all(dirs: WorkDirs, sizes: list[int], batch: int, workers: int | None) -> list[dict[str, Any]]:
    """Run each size and print its line; the contract's rows (benchmarks/contract.py) for them."""
    rows: list[dict[str, Any]] = []
    users = {f"u{i}": "pw" for i in range(2 * len(sizes))}
    print(
        f"{'N':>6} {'setup s':>8} {'receipts s':>10} {'rcpt/s':>7} {'steady':>7} {'peak RSS MB':>12} "
        f"{'+workers PSS':>12} {'letters s':>10} {'letter/s':>9} {'steady':>7} {'RSS MB':>7} {'ratio':>6}"
    )
    with Dovecot(dirs.server / "dovecot", users) as server:
        for i, n in enumerate(sizes):
            rcpt_user, base_user = f"u{2 * i}", f"u{2 * i + 1}"
            cfg, config = one_run(dirs.root / f"receipts{i}", server, rcpt_user, batch, workers)
            t0 = time.perf_counter()
            docs = seed_outbox(config, n)
            setup = time.perf_counter() - t0
            server.seed_maildir(rcpt_user, dsns(docs))
            size = len(postfix_dsn(docs[0], "relayed"))
            del docs
            base_cfg, _ = one_run(dirs.root / f"letters{i}", server, base_user, batch, workers)
            server.seed_maildir(base_user, letters(n, size))
            os.sync()  # the runs below must not pay for writing back the seeded Maildirs
            ours: GatewayRun = run_gateway(cfg, server)
            _inbox_empty(server, rcpt_user)
            check(cfg, n, receipts=True)
            base: GatewayRun = run_gateway(base_cfg, server)
            _inbox_empty(server, base_user)
            check(base_cfg, n, receipts=False)
            rate, brate = n / ours.elapsed, n / base.elapsed
            print(
                f"{n:>6} {setup:>8.1f} {ours.elapsed:>10.1f} {rate:>7.0f} {ours.steady:>7.0f} "
                f"{ours.main_kib / 1024:>12.1f} {ours.tree_kib / 1024:>12.1f} {base.elapsed:>10.1f} {brate:>9.0f} "
                f"{base.steady:>7.0f} {base.main_kib / 1024:>7.1f} {rate / brate:>6.2f}   (messages ~{size} B)",
                flush=True,
            )
            rows.append(
                row(
                    "receipts",
                    "receipts/s",
                    rate,
                    brate,
                    peak_rss_mb=ours.main_kib / 1024,
                    target="rate >= 300; ratio >= 0.75",
                    met=rate >= 300 and rate >= 0.75 * brate,
                    notes=f"N={n}, DSNs ~{size} B; steady {ours.steady:.0f}/s; "
                    "baseline: as many plain letters through the same run --once",
                )
            )
    return rows


def _inbox_empty(server: Dovecot, user: str) -> None:
    left = len(server.folder_uids(user, "INBOX"))
    if left:
        raise SystemExit(f"{left} messages left in the INBOX")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append", help="sent documents and DSNs (repeatable; default 2000, 10000)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=None, help="analysis worker processes (default: the gateway's)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (implies --no-volume)")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "N = 200 only")
    args = ap.parse_args()
    sizes = args.n or ([200] if args.quick else [2000, 10000])
    with work_root("pst-rcpt-", keep=args.keep, volume=not args.no_volume) as work:
        rows = run_all(work, sizes, args.batch_size, args.workers)
    print("targets: >= 300 receipts/s end to end, ratio to plain intake >= 0.75, peak RSS flat in N")
    write_rows(args.json_out, rows)


if __name__ == "__main__":
    main()
