"""OpenPGP ingest benchmark: N signed+encrypted ~100 KB messages through ``poststelle run --once``.

    .venv/bin/python benchmarks/openpgp_ingest.py [--n 1000] [--n 3000] [--batch-size 50] [--workers 0]
                                                  [--quick] [--json-out FILE]

Keys: the gateway (ed25519 + cv25519, secret key imported at start-up) and one pinned
correspondent (ed25519). Every message is a PGP/MIME multipart/encrypted whose ciphertext
was signed and encrypted in one gpg call (RFC 3156 §6.2), so the gateway needs exactly one
``gpg --decrypt`` per message. Messages are made with gpg before the clock starts and
dropped into a throwaway Dovecot's Maildir.

Printed per N: wall time of the run, messages/s, gpg processes per message (counted by
the gateway's gpg wrapper, reported in its shutdown log line ``openpgp closed``), peak
RSS (VmHWM of the gateway process) and how many messages were verified.

The baseline, in the same run, on a second copy of the messages: a bare imapclient loop
that FETCHes each message, runs ``gpg --decrypt`` on its armored part (one process per
message, as a script would), requires gpg's GOODSIG and writes the plaintext to one file
with fsync + rename (``ingest.baseline``).

Target (issue 5, 2 cores): >= 80 messages/s; peak RSS flat in N.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from contract import add_options, row, write_rows  # noqa: E402
from ingest import WorkDirs, work_root  # noqa: E402
from ingest import baseline as fetch_and_write  # noqa: E402
from support.pgp_keys import GPG, Key, World, headers, pgp_encrypted  # noqa: E402

from gateway.config import load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.statedir import init_storage  # noqa: E402

SENDER = "buergeramt@nachbarstadt.example"


def plaintext(i: int) -> bytes:
    """A letter with a ~100 KB attachment (base64 of random bytes: compresses only to ~75 %)."""
    att = base64.b64encode(os.urandom(75_000)).decode()
    lines = "\r\n".join(att[j : j + 76] for j in range(0, len(att), 76))
    return (
        b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"Sehr geehrte Damen und Herren,\r\nanbei Antrag Nr. {i}.\r\n".encode()
        + b'--inner\r\nContent-Type: text/plain; name="anlage.txt"\r\n'
        b'Content-Disposition: attachment; filename="anlage.txt"\r\n\r\n' + lines.encode() + b"\r\n--inner--\r\n"
    )


def corpus(world: World, us: Key, bob: Key, n: int) -> list[bytes]:
    def one(i: int) -> bytes:
        hdrs = headers(f"Buergeramt <{SENDER}>", subject=f"Bauantrag Az.: 63-BV-2026-{i % 500:04d}")
        hdrs = hdrs.replace("Message-ID: <t-", f"Message-ID: <b{i}-")
        return pgp_encrypted(world, [us], plaintext(i), hdrs, signer=bob)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(n)))


def config_text(root: Path, server: Dovecot, user: str, batch: int, secret: Path, fpr: str, workers: int | None) -> str:
    processing = "" if workers is None else f"[processing]\nanalysis_workers = {workers}\n"
    return (
        processing
        + f"""
[storage]
state_dir = "{root}/state"

[[mailbox]]
name = "bench"
host = "127.0.0.1"
port = {server.imaps_port}
username = "{user}"
password = "pw"
ca_file = "{server.ca_file}"
batch_size = {batch}

[[route]]
name = "building"
subject = '(?i)\\b(?:Az|Zeichen)\\.?\\s*:?\\s*(?P<case>\\d{{2}}-BV-\\d{{4}}-\\d{{3,5}})'
case = "{{case}}"

[openpgp]
secret_keys = ["{secret}"]
correspondents = "{secret.parent / "correspondents"}"
pinned = [ {{ email = "{SENDER}", fingerprint = "{fpr}" }} ]

[logging]
level = "info"
format = "json"
"""
    )


def run_gateway(config: Path) -> tuple[float, int, int | None]:
    """Seconds, peak RSS in KiB, and the gpg process count from the shutdown log line."""
    log_path = config.parent / "gateway.log"  # a file, not a pipe: info logging would fill a pipe
    log_file = log_path.open("wb")
    init_storage(load_config(config))  # what `poststelle init` makes; not part of the timed run
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--once", "--config", str(config)],
        cwd=REPO,
        stderr=log_file,
        stdout=log_file,
    )
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    log_file.close()
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(text[-3000:])
        raise SystemExit("gateway run failed")
    spawns = None
    for line in text.splitlines():
        if "openpgp closed" in line:
            with contextlib.suppress(ValueError, KeyError):
                spawns = int(json.loads(line[line.index("{") :])["gpg_processes"])
    return elapsed, peak, spawns


def verified_count(root: Path) -> int:
    n = 0
    for p in (root / "state" / "cases").rglob("verification.json"):
        if json.loads(p.read_text()).get("verdict") == "verified":
            n += 1
    return n


def baseline(server: Dovecot, user: str, out: Path, world: World) -> float:
    """FETCH, ``gpg --decrypt`` of the armored part (GOODSIG required), one durable file per message."""
    cmd = [
        GPG,
        "--homedir",
        str(world.home),
        "--batch",
        "--no-tty",
        "--trust-model",
        "always",
        "--status-fd",
        "2",
        "--decrypt",
    ]

    def open_and_check(raw: bytes) -> bytes:
        start = raw.index(b"-----BEGIN PGP MESSAGE-----")
        end = raw.index(b"-----END PGP MESSAGE-----") + len(b"-----END PGP MESSAGE-----")
        proc = subprocess.run(cmd, input=raw[start:end], capture_output=True, check=False)
        if proc.returncode != 0 or b"[GNUPG:] GOODSIG" not in proc.stderr:
            raise SystemExit(f"baseline: gpg --decrypt failed: {proc.stderr.decode(errors='replace')[-500:]}")
        return proc.stdout

    return fetch_and_write(server, user, out, open_and_check)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append", help="messages (repeatable; default 1000 and 3000)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="analysis worker processes (default: the gateway's); gpg processes are counted "
        "in the main process only, so gpg/msg is exact with --workers 0",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (implies --no-volume)")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    ap.add_argument("--no-baseline", action="store_true", help="skip the gpg-per-message baseline")
    add_options(ap, "N = 100 only")
    args = ap.parse_args()
    sizes = args.n or ([100] if args.quick else [1000, 3000])
    with work_root("pst-pgpb-", keep=args.keep, volume=not args.no_volume) as work:
        rows = run_all(work, sizes, args.batch_size, args.workers, with_baseline=not args.no_baseline)
    print("targets: >= 80 msg/s end to end; peak RSS flat in N")
    write_rows(args.json_out, rows)


def run_all(
    dirs: WorkDirs, sizes: list[int], batch_size: int, workers: int | None, *, with_baseline: bool = True
) -> list[dict[str, Any]]:
    """Run each size and print its line; the contract's rows (benchmarks/contract.py) for them."""
    rows: list[dict[str, Any]] = []
    root = dirs.root
    world = World()
    us = world.gen("Rathaus", "rathaus@stadt.example")
    bob = world.gen("Buergeramt", SENDER)
    secret = root / "rathaus-secret.asc"
    secret.write_bytes(world.secret(us))
    secret.chmod(0o600)
    (root / "correspondents").mkdir()
    (root / "correspondents" / "buergeramt.asc").write_bytes(world.public(bob))
    users = {f"u{i}": "pw" for i in range(2 * len(sizes))}
    print(
        f"{'N':>6} {'gateway s':>10} {'msg/s':>8} {'gpg/msg':>8} {'peak RSS MB':>12} {'verified':>9} "
        f"{'baseline msg/s':>15} {'ratio':>6}"
    )
    try:
        with Dovecot(dirs.server / "dovecot", users) as server:
            for i, n in enumerate(sizes):
                messages = corpus(world, us, bob, n)
                kb = sum(len(m) for m in messages) / n / 1024
                gw_user, base_user = f"u{2 * i}", f"u{2 * i + 1}"
                server.seed_maildir(gw_user, messages)
                if with_baseline:
                    server.seed_maildir(base_user, messages)
                del messages
                os.sync()  # the run must not pay for writing back the seeded Maildir
                work = root / f"run{i}"
                work.mkdir()
                cfg = work / "poststelle.toml"
                cfg.write_text(config_text(work, server, gw_user, batch_size, secret, bob.fingerprint, workers))
                elapsed, rss_kib, spawns = run_gateway(cfg)
                left = len(server.folder_uids(gw_user, "INBOX"))
                if left:
                    raise SystemExit(f"{left} messages left in the INBOX")
                verified = verified_count(work)
                brate = n / baseline(server, base_user, work / "baseline", world) if with_baseline else None
                per = f"{spawns / n:.2f}" if spawns is not None else "?"
                rate = n / elapsed
                shown = f"{brate:>15.0f} {rate / brate:>6.2f}" if brate else f"{'-':>15} {'-':>6}"
                print(
                    f"{n:>6} {elapsed:>10.1f} {rate:>8.0f} {per:>8} {rss_kib / 1024:>12.1f} "
                    f"{verified:>9} {shown}   (avg message {kb:.0f} KB; gpg total {spawns})",
                    flush=True,
                )
                rows.append(
                    row(
                        "ingest-openpgp",
                        "messages/s",
                        rate,
                        brate,
                        peak_rss_mb=rss_kib / 1024,
                        target="rate >= 80; all verified",
                        met=rate >= 80 and verified == n,
                        notes=f"N={n}, ~{kb:.0f} KB signed+encrypted; verified {verified}; gpg/msg {per}; "
                        "baseline: fetch + gpg --decrypt per message",
                    )
                )
    finally:
        world.close()
    return rows


if __name__ == "__main__":
    main()
