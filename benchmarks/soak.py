"""Soak: the daemon under mixed traffic for half an hour, killed with SIGKILL every few minutes.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--kill-every 180] [--incoming 60] [--outgoing 20]
                                        [--quick] [--json-out FILE] [--seed N] [--no-volume]

A throwaway Dovecot (the authority's mailbox and the correspondent's) and a throwaway
Postfix (relays to Dovecot by LMTP and sends real DSNs back) run for the whole soak;
``poststelle run`` runs against them as the service would. While it runs, this script:

- APPENDs incoming letters one after another (``--incoming`` per minute, in turn: plain,
  S/MIME signed + encrypted to the authority, OpenPGP signed + encrypted to it);
- composes and queues outgoing documents (``--outgoing`` per minute, S/MIME signed and
  encrypted, DSN requested), as ``poststelle send`` does; Postfix's DSNs come back into
  the authority's INBOX and must be taken in as receipts;
- sends SIGKILL to the daemon once in every ``--kill-every`` seconds (±25 %), at a random
  moment while it works through a burst (``--burst`` letters and a third as many
  documents, added just before), and starts it again at once; analysis workers that outlive it are counted as orphans
  and ended, as systemd would end the rest of the unit;
- samples the daemon's resident memory (VmRSS) and its process tree's PSS every few
  seconds.

When the traffic stops, the daemon runs on until everything is drained (INBOX empty,
outbox sent, Postfix's queue empty, every DSN recorded), then gets SIGTERM. Then the
checks of ``soak_checks.py``: every message in exactly one place (server folders, ledger,
case folders or quarantine), every document sent and in the recipient's INBOX (a second
copy only as resent after a crash), every delivery record advanced by its DSN,
``audit verify`` OK, and RSS not growing: the slope within each daemon lifetime after
``--warmup`` seconds, pooled (a kill resets the memory, so a slope across lifetimes would
only measure the restarts). First, last and largest sample are printed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the OpenPGP key world (as openpgp_ingest.py)
sys.path.insert(0, str(REPO / "benchmarks"))

import soak_checks  # noqa: E402
from contract import add_options, row, write_rows  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from ingest import _descendants, _status_kib, work_root  # noqa: E402
from support.pgp_keys import Key, World, headers, pgp_encrypted, text_part  # noqa: E402

from gateway.config import Config, load_config  # noqa: E402
from gateway.demo.dovecot import Dovecot  # noqa: E402
from gateway.demo.pki import RECIPIENT, SENDER, SENDER_NAME, DemoPKI, _encrypted, _inner, _signed, build_demo_pki  # noqa: E402
from gateway.demo.postfix import Postfix  # noqa: E402
from gateway.demo.samples import fake_pdf, letter  # noqa: E402
from gateway.outbound.compose import Attachment, Letter  # noqa: E402
from gateway.outbound.outbox import enqueue  # noqa: E402
from gateway.outbound.protect import OutboundKeys, compose_document  # noqa: E402
from gateway.records.open import open_store  # noqa: E402
from gateway.records.store import EntryFilter, StoreError  # noqa: E402
from gateway.statedir import init_storage  # noqa: E402

#: The authority: its mailbox takes the incoming letters and the DSNs; it signs what it sends.
AUTHORITY, AUTHORITY_USER = RECIPIENT, RECIPIENT.partition("@")[0]
#: The correspondent (the court of the demo PKI): sends S/MIME letters, receives the documents.
COURT, COURT_USER = SENDER, SENDER.partition("@")[0]
PGP_SENDER = "buergeramt@nachbarstadt.example"
UNFINISHED = ("queued", "active", "deferred")


# -- the traffic ---------------------------------------------------------------------------------
class Letters:
    """Incoming letters in turn: plain, S/MIME (signed by the court, encrypted to us), OpenPGP."""

    KINDS = ("plain", "smime", "openpgp")

    def __init__(self, pki: DemoPKI, world: World, us: Key, bob: Key) -> None:
        self.pki, self.world, self.us, self.bob = pki, world, us, bob
        self.pdf = fake_pdf(20_000, seed=5)
        self.sent: Counter[str] = Counter()

    def make(self, i: int) -> tuple[str, bytes]:
        """The i-th letter's Message-ID (without brackets) and bytes."""
        kind = self.KINDS[i % 3]
        message_id = f"soak-{kind}-{i}@soak.example"
        case = f"63-BV-2026-{i % 40:04d}"
        self.sent[kind] += 1
        if kind == "plain":
            raw = letter(
                subject=f"Bauantrag Az.: {case}", message_id=f"<{message_id}>", attachment=(f"Anlage-{i}.pdf", self.pdf)
            )
        elif kind == "smime":
            inner = _inner(
                f"Beschluss Az. {i % 9 + 1} K {i}/25",
                "Sehr geehrte Damen und Herren,\n",
                (f"Beschluss-{i}.pdf", self.pdf),
            )
            envelope = (
                f"From: {SENDER_NAME} <{COURT}>\r\nTo: {AUTHORITY}\r\nSubject: Vertrauliche Nachricht\r\n"
                f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
            ).encode()
            raw = envelope + _encrypted(self.pki.recipient.cert, _signed(self.pki.sender, inner))
        else:
            hdrs = headers(f"Buergeramt <{PGP_SENDER}>", subject=f"Bauantrag Az.: {case}")
            hdrs = hdrs[: hdrs.index("Message-ID: ")] + f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
            raw = pgp_encrypted(self.world, [self.us], text_part(f"Antrag Nr. {i}\r\n"), hdrs, signer=self.bob)
        return message_id, raw


def document_letter(i: int, pdf: Path) -> Letter:
    return Letter(
        f"1 K {i % 40 + 1}/25",
        (COURT,),
        f"Bescheid Nr. {i}",
        "Guten Tag,\nanbei der Bescheid.\n",
        attachments=(Attachment(pdf, f"Bescheid-{i}.pdf"),),
    )


# -- the set-up ----------------------------------------------------------------------------------
def config_text(root: Path, server: Dovecot, relay: Postfix, pki: DemoPKI, corr: Path, pgp: Path, fpr: str) -> str:
    secret = root / "mailbox.secret"
    secret.write_text("pw")
    secret.chmod(0o600)
    return f"""
[storage]
state_dir = "{root}/state"
cases_dir = "{root}/state/cases"

[limits]
max_message_bytes = 10000000

[[mailbox]]
name = "rathaus"
host = "127.0.0.1"
port = {server.imaps_port}
username = "{AUTHORITY_USER}"
password_file = "{secret}"
ca_file = "{server.ca_file}"
batch_size = 20

[[route]]
name = "building"
subject = '(?i)\\b(?:Az|Zeichen)\\.?\\s*:?\\s*(?P<case>\\d{{2}}-BV-\\d{{4}}-\\d{{3,5}})'
case = "{{case}}"

[[route]]
name = "court"
subject = '(?i)\\bAz\\.?\\s*(?P<case>\\d\\s+K\\s+\\d+/\\d\\d)'
case = "VG {{case}}"

[smime]
identities = [{{ key_file = "{pki.recipient_key_file}", cert_file = "{pki.recipient_cert_file}" }}]
trust_anchors = ["{pki.root_file}"]

[openpgp]
secret_keys = ["{pgp}"]
correspondents = "{pgp.parent / "correspondents"}"
pinned = [ {{ email = "{PGP_SENDER}", fingerprint = "{fpr}" }} ]

[smtp]
host = "127.0.0.1"
port = {relay.port}
security = "plain"
from = "{AUTHORITY}"
request_dsn = true
timeout = 30
min_backoff = "1s"
max_backoff = "5s"

[outbound]
sign = "smime"
encrypt = "always"
copy_to_sent_folder = false
correspondents_dir = "{corr}"

[logging]
level = "warning"
format = "json"
"""


# -- the daemon ----------------------------------------------------------------------------------
@dataclass
class Sample:
    life: int  # which daemon lifetime (0 = the first start)
    age: float  # seconds since that start
    at: float  # seconds since the soak began
    rss_mb: float  # the daemon's VmRSS
    tree_mb: float  # PSS of the daemon and its workers


@dataclass
class Daemon:
    """``poststelle run`` as the service runs it, started again after every kill."""

    config_path: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    life: int = -1
    kills: int = 0
    self_exits: list[int] = field(default_factory=list)
    orphans: int = 0

    def start(self) -> None:
        env = {**os.environ, "POSTSTELLE_CONFIG": str(self.config_path), "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "run"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        self.started = time.monotonic()
        self.life += 1

    def check_alive(self) -> None:
        """A daemon that ended by itself is counted (the soak must never see one) and started again."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            self.self_exits.append(self.proc.returncode)
            self.start()

    def kill9(self) -> None:
        """SIGKILL to the daemon; workers that outlive it are counted and ended (systemd ends the unit's rest)."""
        assert self.proc is not None
        tree = [(pid, _start_time(pid)) for pid in _descendants(self.proc.pid) if pid != self.proc.pid]
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1
        deadline = time.monotonic() + 5
        alive = tree
        while alive and time.monotonic() < deadline:
            alive = [(pid, st) for pid, st in alive if _start_time(pid) == st]
            if alive:
                time.sleep(0.1)  # the workers notice their parent's death on their next read
        for pid, _ in alive:
            self.orphans += 1
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> tuple[int, float]:
        """SIGTERM, as systemd stops the service; its exit status and how long it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - t0

    def sample(self, t0: float) -> Sample | None:
        assert self.proc is not None
        pid = self.proc.pid
        rss = _status_kib(pid, "VmRSS:")
        if not rss:
            return None
        tree = sum(_status_kib(p, "Pss:", "smaps_rollup") for p in _descendants(pid))
        now = time.monotonic()
        return Sample(self.life, now - self.started, now - t0, rss / 1024, tree / 1024)


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): tells a live process from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# -- the run -------------------------------------------------------------------------------------
def _ledger(config: Config, fn: Callable[[Any], Any], default: Any) -> Any:
    """Read the ledger (read-only); ``default`` while a writer holds it mid-commit."""
    try:
        store = open_store(config, readonly=True)
    except StoreError:
        return default
    try:
        return fn(store)
    except StoreError:
        return default
    finally:
        store.close()


def drained(config: Config, server: Dovecot, relay: Postfix, documents: int) -> bool:
    """Whether the daemon has nothing left: INBOX empty, outbox sent, relay idle, every DSN recorded."""
    if server.folder_uids(AUTHORITY_USER, "INBOX") or not relay.queue_is_empty():
        return False
    counts = _ledger(config, lambda s: s.outbox_counts(), None)
    if counts is None or any(counts.get(s, 0) for s in UNFINISHED):
        return False
    deliveries = _ledger(config, lambda s: s.deliveries_list(), None)
    if deliveries is None:
        return False
    advanced = sum(1 for d in deliveries if d.state not in ("queued", "submitted"))
    processing = _ledger(config, lambda s: s.counts_by_state().get("processing", 0), 1)
    return advanced >= documents and not processing


@dataclass
class Options:
    minutes: float
    kill_every: float
    incoming: float
    outgoing: float
    warmup: float
    sample_every: float
    drain_timeout: float
    max_rss_slope: float
    seed: int
    burst: int


def soak(opts: Options, volume: bool) -> tuple[list[soak_checks.Check], dict[str, Any]]:
    rng = random.Random(opts.seed)
    figures: dict[str, Any] = {"seed": opts.seed}
    with work_root("pst-soak-", volume=volume) as dirs:
        root = dirs.root
        pki = build_demo_pki(root / "pki")
        corr = root / "correspondents"
        corr.mkdir()
        (corr / "court.pem").write_bytes(pki.sender.cert.public_bytes(Encoding.PEM))
        pdf = root / "Bescheid.pdf"
        pdf.write_bytes(fake_pdf(30_000))
        world = World()
        try:
            us = world.gen("Rathaus", AUTHORITY)
            bob = world.gen("Buergeramt", PGP_SENDER)
            pgp = root / "pgp" / "rathaus-secret.asc"
            (pgp.parent / "correspondents").mkdir(parents=True)
            pgp.write_bytes(world.secret(us))
            pgp.chmod(0o600)
            (pgp.parent / "correspondents" / "buergeramt.asc").write_bytes(world.public(bob))
            users = {AUTHORITY_USER: "pw", COURT_USER: "pw"}
            domains = f"{AUTHORITY.partition('@')[2]} {COURT.partition('@')[2]}"
            with (
                Dovecot(dirs.server / "dovecot", users) as server,
                Postfix(dirs.server / "postfix", lmtp_port=server.lmtp_port, mailbox_domain=domains) as relay,
            ):
                cfg = root / "poststelle.toml"
                cfg.write_text(config_text(root, server, relay, pki, corr, pgp, bob.fingerprint))
                config = load_config(cfg)
                init_storage(config)
                checks = _run(opts, rng, config, cfg, server, relay, Letters(pki, world, us, bob), pdf, root, figures)
        finally:
            world.close()
    return checks, figures


def _run(
    opts: Options,
    rng: random.Random,
    config: Config,
    cfg: Path,
    server: Dovecot,
    relay: Postfix,
    letters: Letters,
    pdf: Path,
    root: Path,
    figures: dict[str, Any],
) -> list[soak_checks.Check]:
    daemon = Daemon(cfg, root / "daemon.log")
    keys = OutboundKeys.from_config(config)
    appended: list[str] = []
    queued: list[str] = []
    samples: list[Sample] = []
    daemon.start()
    t0 = time.monotonic()
    end = t0 + opts.minutes * 60
    next_kill = t0 + opts.kill_every * rng.uniform(0.75, 1.25)
    next_sample = t0
    last_report = t0
    try:
        while (now := time.monotonic()) < end:
            minutes = (now - t0) / 60
            due_in = int(minutes * opts.incoming) + 1 - len(appended)
            if due_in > 0:
                batch = [letters.make(len(appended) + k) for k in range(due_in)]
                server.append(AUTHORITY_USER, "INBOX", [raw for _, raw in batch])
                appended += [m for m, _ in batch]
            due_out = int(minutes * opts.outgoing) + 1 - len(queued)
            if due_out > 0:
                _queue(config, keys, pdf, len(queued), due_out, queued)
            if now >= next_kill:
                # A burst first (letters and documents), then the kill while the daemon works
                # through it: at a random moment of a quiet minute it would mostly hit an idle
                # daemon, and the crash windows (intent committed, entry filed, MOVE pending;
                # relay's 250 before the sent commit) would go untried.
                burst = [letters.make(len(appended) + k) for k in range(opts.burst)]
                server.append(AUTHORITY_USER, "INBOX", [raw for _, raw in burst])
                appended += [m for m, _ in burst]
                _queue(config, keys, pdf, len(queued), max(1, opts.burst // 3), queued)
                time.sleep(rng.uniform(0.5, 2.5))  # the kill's moment within the burst, not a synchronisation
                daemon.kill9()
                daemon.start()
                next_kill = now + opts.kill_every * rng.uniform(0.75, 1.25)
            daemon.check_alive()
            if now >= next_sample:
                if (s := daemon.sample(t0)) is not None:
                    samples.append(s)
                next_sample = now + opts.sample_every
            if now - last_report >= 60:
                last_report = now
                print(
                    f"  {minutes:5.1f} min: {len(appended)} letters in, {len(queued)} documents queued, "
                    f"{daemon.kills} kills, daemon RSS {samples[-1].rss_mb if samples else 0:.0f} MB",
                    flush=True,
                )
            time.sleep(0.2)  # the traffic's pace: a tick, not a synchronisation
        figures["traffic_seconds"] = round(time.monotonic() - t0, 1)
        drain_start = time.monotonic()
        while not drained(config, server, relay, len(queued)):
            if time.monotonic() - drain_start > opts.drain_timeout:
                figures["drain"] = f"not drained within {opts.drain_timeout:.0f} s"
                break
            daemon.check_alive()
            if (s := daemon.sample(t0)) is not None and time.monotonic() >= next_sample:
                samples.append(s)
                next_sample = time.monotonic() + opts.sample_every
            time.sleep(0.5)
        else:
            figures["drain"] = f"drained {time.monotonic() - drain_start:.1f} s after the traffic stopped"
        code, took = daemon.stop()
        figures["sigterm"] = f"exit {code} after {took:.1f} s"
    finally:
        keys.close()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        gnupg = Path(config.openpgp.gnupg_home) if config.openpgp else None
        if gnupg is not None:
            subprocess.run(
                ["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
                timeout=30,
            )
    figures.update(_figures(config, daemon, letters, appended, queued, samples, opts))
    checks = soak_checks.incoming(config, server, AUTHORITY_USER, appended)
    out_checks, out_figures = soak_checks.outgoing(config, server, COURT_USER, queued)
    figures.update(out_figures)
    checks += out_checks
    checks.append(
        soak_checks.Check("daemon: never ended by itself", not daemon.self_exits, f"exit codes {daemon.self_exits}")
    )
    checks.append(
        soak_checks.Check(
            "daemon: drained after the traffic",
            str(figures.get("drain", "")).startswith("drained"),
            str(figures.get("drain")),
        )
    )
    slope = figures.get("rss_slope_mb_per_min")
    checks.append(
        soak_checks.Check(
            "RSS not growing",
            slope is not None and slope <= opts.max_rss_slope,
            f"slope {slope} MB/min (limit {opts.max_rss_slope}) "
            f"over {figures.get('rss_samples')} samples after warm-up",
        )
    )
    checks.append(soak_checks.audit_verify(cfg, REPO))
    return checks


def _queue(config: Config, keys: OutboundKeys, pdf: Path, first: int, n: int, queued: list[str]) -> None:
    """Compose and queue documents as ``poststelle send`` does (each one durable, the doorbell rung)."""
    store = open_store(config, actor="soak")
    try:
        for i in range(first, first + n):
            doc = compose_document(
                document_letter(i, pdf), mail_from=AUTHORITY, config=config, keys=keys, at=datetime.now(UTC)
            )
            queued.append(enqueue(config, store, doc, actor="soak"))
    finally:
        store.close()


def _figures(
    config: Config,
    daemon: Daemon,
    letters: Letters,
    appended: list[str],
    queued: list[str],
    samples: list[Sample],
    opts: Options,
) -> dict[str, Any]:
    warm = [s for s in samples if s.age >= opts.warmup]
    slope = soak_checks.within_slope([(s.life, s.age, s.rss_mb) for s in warm])
    tree_slope = soak_checks.within_slope([(s.life, s.age, s.tree_mb) for s in warm])

    def events(store: Any) -> dict[str, int]:
        entries = list(store.select(EntryFilter(events=("processing-abandoned",))))
        recovered = sum(1 for e in store.entries() if e.details.get("recovered"))
        return {"abandoned": len(entries), "recovered": recovered}

    recovery = _ledger(config, events, {})
    return {
        "letters_in": len(appended),
        "letters_by_kind": dict(letters.sent),
        "documents_queued": len(queued),
        "kills": daemon.kills,
        "lifetimes": daemon.life + 1,
        "orphans_ended": daemon.orphans,
        "rss_samples": len(warm),
        "rss_first_mb": round(warm[0].rss_mb, 1) if warm else None,
        "rss_last_mb": round(warm[-1].rss_mb, 1) if warm else None,
        "rss_max_mb": round(max(s.rss_mb for s in samples), 1) if samples else None,
        "rss_slope_mb_per_min": round(slope, 3) if slope is not None else None,
        "tree_pss_max_mb": round(max(s.tree_mb for s in samples), 1) if samples else None,
        "tree_pss_slope_mb_per_min": round(tree_slope, 3) if tree_slope is not None else None,
        **recovery,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the traffic runs (default 30)")
    ap.add_argument("--kill-every", type=float, default=180.0, help="seconds between kills, ±25%% (default 180)")
    ap.add_argument("--incoming", type=float, default=60.0, help="letters appended per minute (default 60)")
    ap.add_argument("--outgoing", type=float, default=20.0, help="documents queued per minute (default 20)")
    ap.add_argument("--warmup", type=float, default=45.0, help="seconds after each start left out of the RSS slope")
    ap.add_argument("--sample-every", type=float, default=3.0, help="seconds between RSS samples (default 3)")
    ap.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the final drain")
    ap.add_argument("--max-rss-slope", type=float, default=0.5, help="MB per minute the RSS may grow (default 0.5)")
    ap.add_argument("--burst", type=int, default=20, help="letters appended just before each kill (default 20)")
    ap.add_argument("--seed", type=int, default=None, help="the kill schedule's random seed (default: the time)")
    ap.add_argument("--no-volume", action="store_true", help="run on the disk as it is, not on a fresh volume")
    add_options(ap, "2 minutes, a kill every 40 s")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.kill_every, args.warmup = 2.0, 40.0, 15.0
    seed = args.seed if args.seed is not None else int(time.time())
    opts = Options(
        args.minutes,
        args.kill_every,
        args.incoming,
        args.outgoing,
        args.warmup,
        args.sample_every,
        args.drain_timeout,
        args.max_rss_slope,
        seed,
        args.burst,
    )
    print(
        f"soak: {opts.minutes:g} min, kill every ~{opts.kill_every:g} s, {opts.incoming:g} letters and "
        f"{opts.outgoing:g} documents per minute, seed {seed}",
        flush=True,
    )
    checks, figures = soak(opts, volume=not args.no_volume)
    print("figures:")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    print("checks:")
    for c in checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    met = all(c.ok for c in checks)
    print(f"soak {'passed' if met else 'FAILED'}")
    minutes = figures.get("traffic_seconds", opts.minutes * 60) / 60
    failed = [c.name for c in checks if not c.ok]
    write_rows(
        args.json_out,
        [
            row(
                "soak",
                "letters/min",
                figures["letters_in"] / minutes if minutes else None,
                None,
                peak_rss_mb=figures.get("rss_max_mb"),
                target=f"nothing lost/doubled, all sent, audit OK, RSS slope <= {opts.max_rss_slope} MB/min",
                met=met,
                notes=(
                    f"{minutes:.1f} min, {figures['letters_in']} letters, {figures['documents_queued']} documents, "
                    f"{figures['kills']} kills (seed {seed}); RSS first/last/max {figures.get('rss_first_mb')}/"
                    f"{figures.get('rss_last_mb')}/{figures.get('rss_max_mb')} MB, slope "
                    f"{figures.get('rss_slope_mb_per_min')} MB/min; resent {figures.get('resent')}"
                    + (f"; FAILED: {', '.join(failed)}" if failed else "")
                ),
            )
        ],
    )
    # Under run_all a failed check is a row with met=false, not a crash; alone, the status says it.
    sys.exit(0 if met or args.json_out else 1)


if __name__ == "__main__":
    main()
