"""S/MIME ingest benchmark: signed-then-encrypted ~100 KB messages through Dovecot into case folders.

    .venv/bin/python benchmarks/smime_ingest.py [--n 2000 --n 5000] [--batch-size 50] [--no-volume]
                                                [--quick] [--json-out FILE]

For each N: seeds the INBOX of one IMAP user (Maildir drop) with N S/MIME messages
(RSA-2048 sender signature over a multipart/mixed letter with a PDF-ish attachment, then
enveloped to the authority's RSA-2048 certificate with AES-256-CBC) and times
``poststelle run --once`` until every message is decrypted, verified against the test
root + CRLs, routed by its protected Subject and durably filed; the gateway's peak RSS is
read from /proc/<pid>/status (VmHWM) while it runs (benchmarks/ingest.py), and its CPU
time over wall time (1.0 = one core busy throughout).

In the same run, the same messages in a second user's INBOX go through the baseline a
records office would script by hand: imapclient FETCH, ``openssl cms -decrypt``, then
``openssl cms -verify -CAfile <root+CRLs> -crl_check_all`` (two processes per message),
and the verified content written to one file with fsync + rename.

Messages are made once with ``cryptography`` (a handful of distinct signed+encrypted
bodies) and repeated with a different outer Message-ID: the outer headers are outside
the envelope, and every message must differ in bytes (the gateway files identical bytes
once and records the rest as duplicates).

Targets (issue 4, 2 cores): >= 250 messages/s end to end, >= 3x the baseline, peak RSS flat in N.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the test PKI and S/MIME builders
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, write_rows  # noqa: E402
from ingest import WorkDirs, config_text, run_gateway, work_root  # noqa: E402
from ingest import baseline as fetch_and_write  # noqa: E402
from support.smime_pki import (  # noqa: E402
    PEM,
    RECIPIENT,
    SENDER,
    TestPKI,
    b64,
    build_pki,
    encrypt_der,
    multipart_signed,
    sign_detached_der,
)

from gateway.demo.samples import fake_pdf  # noqa: E402

DISTINCT = 8  # distinct signed+encrypted bodies; their cases spread over both routes
SUBJECTS = ["Bauantrag Az.: 63-BV-2026-{n:04d}", "Ladung Az. {k} K {n}/25"]


def inner_letter(i: int) -> bytes:
    """The protected letter (what is signed): routable Subject, text, a ~50 KB PDF."""
    pdf = base64.encodebytes(fake_pdf(50_000, seed=i)).replace(b"\n", b"\r\n")
    subject = SUBJECTS[i % 2].format(n=100 + i, k=i % 9 + 1)
    return (
        (
            f"Subject: {subject}\r\n"
            f'Content-Type: multipart/mixed; boundary="b-{i}"\r\n\r\n'
            f"--b-{i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Sehr geehrte Damen und Herren,\r\n\r\nanbei die Unterlagen.\r\n\r\nMit freundlichen Grüßen\r\n"
            f"--b-{i}\r\nContent-Type: application/pdf; name=Anlage-{i}.pdf\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename=Anlage-{i}.pdf\r\n\r\n"
        ).encode()
        + pdf
        + f"--b-{i}--\r\n".encode()
    )


def envelopes(pki: TestPKI) -> list[bytes]:
    """DISTINCT message bodies (Content-* headers + base64 EnvelopedData), signed then encrypted."""
    out = []
    for i in range(DISTINCT):
        inner = inner_letter(i)
        signed = multipart_signed(b"", inner, sign_detached_der(pki["sender"], inner))
        der = encrypt_der([pki["recipient"].cert], signed)  # a multipart/signed entity, no other headers
        out.append(
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
            b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n"
            + b64(der)
        )
    return out


def messages(bodies: list[bytes], n: int) -> Iterator[bytes]:
    """N messages: the bodies repeated under outer headers that make each one unique."""
    date = format_datetime(datetime.now(UTC))
    for i in range(n):
        yield (
            f"From: Alice Example <{SENDER}>\r\nTo: {RECIPIENT}\r\n"
            "Subject: =?utf-8?q?Verschl=C3=BCsselte_Nachricht?=\r\n"
            f"Date: {date}\r\nMessage-ID: <bench-{i}-{time.time_ns()}@example.org>\r\nMIME-Version: 1.0\r\n"
        ).encode() + bodies[i % len(bodies)]


def smime_section(files: dict[str, Path]) -> str:
    return f"""
[smime]
identities = [{{ key_file = "{files["recipient.key"]}", cert_file = "{files["recipient.pem"]}" }}]
trust_anchors = ["{files["root"]}"]
crl_files = ["{files["crl"]}", "{files["root_crl"]}"]
"""


def openssl_cafile(pki: TestPKI, directory: Path) -> Path:
    """Root + both CRLs in one file: ``openssl cms`` reads CRLs from the CAfile."""
    path = directory / "ca+crls.pem"
    path.write_bytes(pki.root.cert_pem() + pki.crl.public_bytes(PEM) + pki.root_crl.public_bytes(PEM))
    return path


def baseline(server: object, user: str, out: Path, files: dict[str, Path], cafile: Path) -> float:
    """FETCH, ``openssl cms -decrypt``, ``openssl cms -verify``, one durable file per message."""
    from gateway.demo.dovecot import Dovecot

    assert isinstance(server, Dovecot)
    decrypt = [
        "openssl",
        "cms",
        "-decrypt",
        "-recip",
        str(files["recipient.pem"]),
        "-inkey",
        str(files["recipient.key"]),
    ]
    verify = ["openssl", "cms", "-verify", "-CAfile", str(cafile), "-crl_check_all", "-purpose", "smimesign"]

    def open_and_check(raw: bytes) -> bytes:
        opened = subprocess.run(decrypt, input=raw, capture_output=True, check=False)
        if opened.returncode != 0:
            raise SystemExit(f"baseline: openssl cms -decrypt failed: {opened.stderr.decode()}")
        checked = subprocess.run(verify, input=opened.stdout, capture_output=True, check=False)
        if checked.returncode != 0:
            raise SystemExit(f"baseline: openssl cms -verify failed: {checked.stderr.decode()}")
        return checked.stdout

    return fetch_and_write(server, user, out, open_and_check)


def check_filed(state: Path, n: int) -> None:
    """Every message filed and verified: otherwise the run measured the wrong path."""
    verdicts = [
        json.loads(p.read_text())["verdict"]
        for p in (state / "cases").glob("*/*/verification.json")
        if not p.parent.parent.name.startswith(".")
    ]
    if len(verdicts) != n or set(verdicts) != {"verified"}:
        counts = {v: verdicts.count(v) for v in set(verdicts)}
        raise SystemExit(f"expected {n} verified case entries, found {counts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, action="append", help="messages (repeatable; default 2000 and 5000)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=None, help="analysis worker processes (default: the gateway's)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (implies --no-volume)")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "N = 150 only")
    args = ap.parse_args()
    sizes = args.n or ([150] if args.quick else [2000, 5000])
    with work_root("pst-smime-bench-", keep=args.keep, volume=not args.no_volume) as work:
        rows = run_all(work, sizes, args.batch_size, args.workers)
    write_rows(args.json_out, rows)


def run_all(dirs: WorkDirs, sizes: list[int], batch_size: int, workers: int | None) -> list[dict[str, Any]]:
    """Run each size and print its line; the contract's rows (benchmarks/contract.py) for them."""
    rows: list[dict[str, Any]] = []
    root = dirs.root
    from gateway.demo.dovecot import Dovecot

    pki = build_pki()
    files = pki.write(root / "pki")
    cafile = openssl_cafile(pki, root / "pki")
    bodies = envelopes(pki)
    users = {f"u{i}": "pw" for i in range(2 * len(sizes))}
    print(f"S/MIME: RSA-2048 signer and recipient, AES-256-CBC, {DISTINCT} distinct bodies; work dir {root}")
    print(
        f"{'N':>6} {'gateway s':>10} {'msg/s':>8} {'steady':>7} {'peak RSS MB':>12} {'+workers PSS':>12} "
        f"{'CPU gw/all':>10} {'imap ms/msg':>11} {'baseline s':>11} {'baseline msg/s':>15} {'ratio':>6}"
    )
    with Dovecot(dirs.server / "dovecot", users) as server:
        for i, n in enumerate(sizes):
            gw_user, base_user = f"u{2 * i}", f"u{2 * i + 1}"
            server.seed_maildir(gw_user, messages(bodies, n))
            server.seed_maildir(base_user, messages(bodies, n))
            os.sync()  # the runs below must not pay for writing back the seeded Maildirs
            avg_kb = sum(len(m) for m in messages(bodies, DISTINCT)) / DISTINCT / 1024
            work = root / f"run{i}"
            work.mkdir()
            cfg = work / "poststelle.toml"
            cfg.write_text(config_text(work, server, gw_user, batch_size, workers) + smime_section(files))
            elapsed, rss_kib, tree_kib, gw_cores, all_cores, steady, server_cpu = run_gateway(cfg, server)
            left = len(server.folder_uids(gw_user, "INBOX"))
            if left:
                raise SystemExit(f"{left} messages left in the INBOX")
            check_filed(work / "state", n)
            base = baseline(server, base_user, work / "baseline", files, cafile)
            rate, brate = n / elapsed, n / base
            print(
                f"{n:>6} {elapsed:>10.1f} {rate:>8.0f} {steady:>7.0f} {rss_kib / 1024:>12.1f} {tree_kib / 1024:>12.1f} "
                f"{gw_cores:>4.2f}/{all_cores:<4.2f} {server_cpu / n * 1000:>11.2f} "
                f"{base:>11.1f} {brate:>15.0f} {rate / brate:>6.2f}   (avg message {avg_kb:.0f} KB)",
                flush=True,
            )
            rows.append(
                row(
                    "ingest-smime",
                    "messages/s",
                    rate,
                    brate,
                    peak_rss_mb=rss_kib / 1024,
                    target="rate >= 250; ratio >= 3",
                    met=rate >= 250 and rate >= 3 * brate,
                    notes=f"N={n}, ~{avg_kb:.0f} KB signed+encrypted; steady {steady:.0f}/s; "
                    f"+workers PSS {tree_kib / 1024:.0f} MB; baseline: fetch + openssl cms decrypt + verify",
                )
            )
    print("targets: >= 250 msg/s end to end; >= 3x the baseline; peak RSS flat in N")
    return rows


if __name__ == "__main__":
    main()
