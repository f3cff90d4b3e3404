"""The audit trail: an append-only, hash-chained, periodically signed record of every action.

Each entry holds the sha256 of the previous entry, so deleting, reordering or editing one
breaks the chain from there on. Every ``checkpoint_every`` entries (and when a run ends)
the head of the chain is signed with a dedicated Ed25519 key, so that someone who can
write the database but does not hold the key cannot rewrite history and re-chain it
unnoticed. Entries are written inside the ledger transaction that changes the state they
describe (see ``Ledger``), then copied to a JSON-lines file for shipping to external log
storage.

One small API for every feature: ``AuditEvent(type, message=..., case=..., details=...)``.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
MAX_CACHED_LINES = 50_000


def daemon_actor() -> str:
    return "daemon"


def cli_actor() -> str:
    """The OS user running the CLI: who released a message is part of the record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    return f"cli:{user}"


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened, before it gets its place in the chain."""

    type: str
    message: str | None = None
    case: str | None = None
    document: str | None = None
    correspondent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """An event with its place in the chain."""

    seq: int
    at: str
    event: str
    actor: str
    message: str | None
    case: str | None
    document: str | None
    correspondent: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The fields covered by ``hash`` (everything except the hash itself)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "event": self.event,
            "actor": self.actor,
            "message": self.message,
            "case": self.case,
            "document": self.document,
            "correspondent": self.correspondent,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> AuditEntry:
        seq, at, event, actor, message, case, document, corr, details, prev, h = tuple(row)
        return cls(seq, at, event, actor, message, case, document, corr, json.loads(details), prev, h)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(
            d["seq"],
            d["at"],
            d["event"],
            d["actor"],
            d.get("message"),
            d.get("case"),
            d.get("document"),
            d.get("correspondent"),
            d.get("details", {}),
            d["prev_hash"],
            d["hash"],
        )


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(obj: Any) -> bytes:
    """The byte form that is hashed: sorted keys, no whitespace, UTF-8.

    One encoder for all calls: ``json.dumps`` with options builds a new encoder each
    time, which cost more than encoding an entry's small dicts (a gateway encodes ~30
    per message).
    """
    return _CANONICAL.encode(obj).encode("utf-8")


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def join_canonical(*objects: bytes) -> bytes:
    """The canonical form of the union of canonical JSON objects, without encoding again.

    Valid when every key of one object sorts before every key of the next (then sorted
    keys and compact separators make the union's form the objects' members joined by
    commas); ``tests/test_audit_chain.py`` checks it against ``canonical``. It lets the
    largest part of an entry, its details, be encoded once and used for the hash, the
    database column and the JSON-lines copy.
    """
    members = [o[1:-1] for o in objects if o != b"{}"]
    return b"{" + b",".join(members) + b"}"


def _entry_forms(
    head: dict[str, Any], details_json: bytes, middle: dict[str, Any], tail: dict[str, Any]
) -> tuple[bytes, Callable[[str], bytes]]:
    """canonical(entry without hash), and a function giving canonical(entry with hash ``h``).

    Keys in order: actor..correspondent | details | document, event | hash | message,
    prev_hash, seq; each group is encoded once for both forms.
    """
    parts = (canonical(head), b'{"details":' + details_json + b"}", canonical(middle))
    last = canonical(tail)

    def with_hash(h: str) -> bytes:
        return join_canonical(*parts, b'{"hash":"' + h.encode("ascii") + b'"}', last)

    return join_canonical(*parts, last), with_hash


def checkpoint_payload(seq: int, head_hash: str, at: str) -> bytes:
    return canonical({"type": "poststelle-audit-checkpoint", "seq": seq, "hash": head_hash, "at": at})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Load the audit signing key, generating it with 0600 permissions on first start."""
    if path.exists():
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The audit public key from a PEM file (SubjectPublicKeyInfo) or from the private key itself.

    Auditors hold the public key separately; the gateway can also hand it out from its
    private key when the ``.pub.pem`` file is missing.
    """
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return private.public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class AuditTrail:
    """Appends events inside a caller's transaction and seals the chain with checkpoints."""

    def __init__(
        self,
        *,
        key: Ed25519PrivateKey | None,
        jsonl_path: Path | None,
        checkpoint_every: int = 1000,
        actor: str = "daemon",
    ) -> None:
        self.key = key
        self.jsonl_path = jsonl_path
        self.checkpoint_every = checkpoint_every
        self.actor = actor
        # seq -> (hash, JSON line) of entries this trail appended and has not exported yet.
        # A rolled-back entry may linger here; its seq then holds another entry in the
        # database, with another hash, so the export recognises it and encodes the row.
        self._lines: dict[int, tuple[str, bytes]] = {}

    def append(self, conn: sqlite3.Connection, events: Sequence[AuditEvent]) -> None:
        """Chain ``events`` after the current head. Call inside BEGIN IMMEDIATE.

        Each entry's details are encoded once (canonical JSON): the hash, the database
        column and, after the commit, the JSON-lines copy (``_lines``) are made from them.
        """
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        at = _now()
        for ev in events:
            seq += 1
            actor = ev.actor or self.actor
            head = {"actor": actor, "at": at, "case": ev.case, "correspondent": ev.correspondent}
            details_json = canonical(ev.details)
            middle = {"document": ev.document, "event": ev.type}
            tail = {"message": ev.message, "prev_hash": prev, "seq": seq}
            body, with_hash = _entry_forms(head, details_json, middle, tail)
            h = hashlib.sha256(body).hexdigest()
            conn.execute(
                "INSERT INTO audit (seq, at, event, actor, message, case_ref, document, correspondent, "
                "details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (seq, at, ev.type, actor, ev.message, ev.case, ev.document, ev.correspondent,
                 details_json.decode("utf-8"), prev, h),
            )
            if self.jsonl_path is not None:
                if len(self._lines) >= MAX_CACHED_LINES:
                    self._lines.clear()  # nobody exports: the database has everything
                self._lines[seq] = (h, with_hash(h))
            prev = h
        if self.key is not None:
            last_cp = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").fetchone()[0]
            if seq - last_cp >= self.checkpoint_every:
                self._checkpoint(conn, seq, prev)

    def _checkpoint(self, conn: sqlite3.Connection, seq: int, head: str) -> None:
        assert self.key is not None
        at = _now()
        sig = self.key.sign(checkpoint_payload(seq, head, at))
        conn.execute(
            "INSERT OR IGNORE INTO audit_checkpoints (seq, at, hash, key_id, signature) VALUES (?,?,?,?,?)",
            (seq, at, head, key_id(self.key), base64.b64encode(sig).decode("ascii")),
        )

    def seal(self, conn: sqlite3.Connection) -> None:
        """Sign the current head (end of a run), so no tail is left unsealed. Inside a transaction."""
        if self.key is None:
            return
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        last_cp = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").fetchone()[0]
        if row[0] > last_cp:
            self._checkpoint(conn, row[0], row[1])

    def export_jsonl(self, conn: sqlite3.Connection) -> int:
        """Append to the JSON-lines file every entry it does not have yet; returns how many.

        Runs after commit, so the file may lag after a crash; it catches up on the next call
        and never holds an entry the database does not. A lock file keeps CLI and daemon
        from interleaving lines.
        """
        if self.jsonl_path is None:
            return 0
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.jsonl_path.with_name(self.jsonl_path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            have = last_jsonl_seq(self.jsonl_path)
            rows = conn.execute(
                "SELECT seq, at, event, actor, message, case_ref, document, correspondent, details, "
                "prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq",
                (have,),
            )
            n = 0
            with open(self.jsonl_path, "ab") as f:
                for row in rows:
                    cached = self._lines.get(row[0])
                    if cached is not None and cached[0] == row[10]:
                        f.write(cached[1] + b"\n")
                    else:
                        f.write(canonical(AuditEntry.from_row(row).to_json()) + b"\n")
                    n += 1
                f.flush()
                os.fsync(f.fileno())
            self._lines.clear()  # exported, or belonging to a rolled-back transaction
            return n


def last_jsonl_seq(path: Path) -> int:
    """The seq of the last complete line of the JSON-lines file (0 if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return 0
            back = min(size, 65536)
            f.seek(size - back)
            tail = f.read()
    except FileNotFoundError:
        return 0
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if tail and not tail.endswith(b"\n"):
        lines = lines[:-1]  # a torn last line (crash mid-write) is rewritten by the next export
        _truncate_torn_tail(path, tail)
    for ln in reversed(lines):
        try:
            return int(json.loads(ln)["seq"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def _truncate_torn_tail(path: Path, tail: bytes) -> None:
    cut = tail.rfind(b"\n") + 1
    size = path.stat().st_size
    os.truncate(path, size - (len(tail) - cut))


def iter_entries(conn: sqlite3.Connection, *, since_seq: int = 0) -> Iterator[AuditEntry]:
    rows = conn.execute(
        "SELECT seq, at, event, actor, message, case_ref, document, correspondent, details, prev_hash, hash "
        "FROM audit WHERE seq > ? ORDER BY seq",
        (since_seq,),
    )
    for row in rows:
        yield AuditEntry.from_row(row)


@dataclass(frozen=True)
class ChainBreak:
    """One place where the record does not hold together, named for the auditor."""

    kind: str
    seq: int | None
    detail: str
    expected: str | None = None
    found: str | None = None
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify_chain(entries: Iterable[AuditEntry]) -> tuple[int, str, list[ChainBreak]]:
    """Recompute every hash and link; returns (entries seen, head hash, breaks)."""
    breaks: list[ChainBreak] = []
    prev = GENESIS
    expected_seq = 1
    n = 0
    for e in entries:
        n += 1
        if e.seq != expected_seq:
            breaks.append(
                ChainBreak("sequence-gap", e.seq, "entry numbers are not consecutive", str(expected_seq), str(e.seq))
            )
        if e.prev_hash != prev:
            breaks.append(
                ChainBreak("broken-link", e.seq, "prev_hash does not match the previous entry", prev, e.prev_hash)
            )
        actual = entry_hash(e.body())
        if actual != e.hash:
            breaks.append(ChainBreak("altered-entry", e.seq, "entry content does not match its hash", e.hash, actual))
        prev = e.hash
        expected_seq = e.seq + 1
    return n, prev, breaks


def verify_checkpoints(
    conn: sqlite3.Connection, public_key: Ed25519PublicKey | None
) -> tuple[int, int, list[ChainBreak]]:
    """Check every checkpoint's signature and that it matches the chain at its seq.

    Returns (checkpoints checked, highest sealed seq, breaks).
    """
    breaks: list[ChainBreak] = []
    hashes = dict(conn.execute("SELECT seq, hash FROM audit").fetchall())
    last_seq = max(hashes) if hashes else 0
    count = 0
    sealed = 0
    for seq, at, h, kid, sig in conn.execute(
        "SELECT seq, at, hash, key_id, signature FROM audit_checkpoints ORDER BY seq"
    ):
        count += 1
        if public_key is None:
            breaks.append(
                ChainBreak("no-public-key", seq, "cannot check checkpoint signatures without the audit public key")
            )
            break
        try:
            public_key.verify(base64.b64decode(sig), checkpoint_payload(seq, h, at))
        except (InvalidSignature, ValueError):
            breaks.append(ChainBreak("bad-checkpoint-signature", seq, f"checkpoint signature invalid (key {kid})"))
            continue
        if seq > last_seq:
            breaks.append(
                ChainBreak(
                    "truncated", seq, "a signed checkpoint covers entries that are missing", str(seq), str(last_seq)
                )
            )
        elif hashes.get(seq) != h:
            breaks.append(
                ChainBreak(
                    "checkpoint-mismatch", seq, "chain head differs from the signed checkpoint", h, hashes.get(seq)
                )
            )
        sealed = max(sealed, seq)
    return count, sealed, breaks
