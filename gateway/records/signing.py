"""Signed checkpoints: the chain's head, signed with a dedicated Ed25519 key.

Someone who can write the database but does not hold the key cannot rewrite history
and re-chain it unnoticed: the checkpoints covering the old entries no longer verify.
Key files live here; checking checkpoints is a pure function over checkpoint rows and
the entries' hashes, so it works on whatever store they were read from.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.records.chain import ChainBreak, canonical, now_iso


@dataclass(frozen=True)
class Checkpoint:
    """A signature over the chain's head at ``seq`` (signature base64)."""

    seq: int
    at: str
    hash: str
    key_id: str
    signature: str


def checkpoint_payload(seq: int, head_hash: str, at: str) -> bytes:
    return canonical({"type": "poststelle-audit-checkpoint", "seq": seq, "hash": head_hash, "at": at})


class Signer:
    """Signs checkpoints with the audit key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.key_id = key_id(key)

    def checkpoint(self, seq: int, head_hash: str) -> Checkpoint:
        at = now_iso()
        sig = self.key.sign(checkpoint_payload(seq, head_hash, at))
        return Checkpoint(seq, at, head_hash, self.key_id, base64.b64encode(sig).decode("ascii"))


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Load the audit signing key, generating it with 0600 permissions on first start.

    The new key is written whole under a temporary name and linked into place: a link fails
    when the name exists, so of two processes (or threads) starting on a fresh state
    directory one key wins, the other loads it, and nobody ever reads a half-written file.
    """
    if path.exists():
        return _load_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _load_key(path)
    finally:
        tmp.unlink()
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return key


def _load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
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


#: The audit event that hands the signing over to a new key (``audit.rotate``).
KEY_ROTATED = "audit-key-rotated"


@dataclass(frozen=True)
class Handover:
    """A key rotation recorded in the trail: from entry ``seq`` on, ``new_key`` signs instead of ``old_key_id``."""

    seq: int
    old_key_id: str
    new_key: Ed25519PublicKey | None  # None: the entry's public key does not load

    @property
    def new_key_id(self) -> str | None:
        return key_id(self.new_key) if self.new_key is not None else None


def handover_of(seq: int, details: Mapping[str, object]) -> Handover:
    """The handover an ``audit-key-rotated`` entry records (its key unusable when malformed)."""
    pem = details.get("public_key")
    new: Ed25519PublicKey | None = None
    if isinstance(pem, str):
        try:
            loaded = serialization.load_pem_public_key(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            loaded = None
        new = loaded if isinstance(loaded, Ed25519PublicKey) else None
    return Handover(seq, str(details.get("old_key_id", "")), new)


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every audit public key in a PEM file, oldest first (the gateway appends each new key)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return [load_public_key(path)]
    marker = b"-----BEGIN PUBLIC KEY-----"
    blocks = [marker + part for part in data.split(marker)[1:]]
    if not blocks:
        raise ValueError(f"{path}: no PEM public key")
    keys = []
    for block in blocks:
        key = serialization.load_pem_public_key(block)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: not an Ed25519 public key")
        keys.append(key)
    return keys


class _KeysInForce:
    """Which keys may sign the next checkpoint: the auditor's, then each one a proven handover names."""

    def __init__(self, keys: Sequence[Ed25519PublicKey], handovers: Sequence[Handover], proven_up_to: int) -> None:
        self.trusted = {key_id(k): k for k in keys}
        self.retired: set[str] = set()
        self.pending = sorted(handovers, key=lambda h: h.seq)
        self.breaks: list[ChainBreak] = []
        while self.pending and self.pending[0].seq <= proven_up_to:  # proven by the run that found that head
            self._switch(self.pending.pop(0))

    def _switch(self, h: Handover) -> None:
        self.retired.update(self.trusted)
        self.trusted = {h.new_key_id: h.new_key} if h.new_key is not None and h.new_key_id else {}

    def sealed(self, seq: int, signer: str) -> None:
        """A checkpoint at ``seq`` signed by ``signer`` held: the handovers it covers take effect."""
        while self.pending and self.pending[0].seq <= seq:
            h = self.pending.pop(0)
            if h.old_key_id != signer:
                self.breaks.append(
                    ChainBreak(
                        "bad-key-handover",
                        h.seq,
                        "a key rotation not sealed by the key it replaces",
                        h.old_key_id,
                        signer,
                    )
                )
            self._switch(h)


def verify_checkpoints(
    checkpoints: Iterable[Checkpoint],
    hashes: Mapping[int, str],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None,
    handovers: Sequence[Handover] = (),
    proven_up_to: int = 0,
) -> tuple[int, int, list[ChainBreak]]:
    """Check every checkpoint's signature and that it matches the chain at its seq.

    ``hashes``: each entry's stored hash by seq. ``public_key``: the auditor's key(s).
    ``handovers``: the trail's key rotations; one takes effect once a checkpoint signed by
    the key it replaces covers it, and from then on only the new key may sign (the old
    one is retired, so a stolen old key cannot seal later entries). Handovers up to
    ``proven_up_to`` count as proven (``--since``: by the run that found that head).
    Returns (checkpoints checked, highest sealed seq, breaks).
    """
    breaks: list[ChainBreak] = []
    last_seq = max(hashes) if hashes else 0
    count = 0
    sealed = 0
    keys = [] if public_key is None else [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    in_force = _KeysInForce(keys, handovers, proven_up_to)
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        count += 1
        if public_key is None:
            breaks.append(
                ChainBreak("no-public-key", cp.seq, "cannot check checkpoint signatures without the audit public key")
            )
            break
        key = in_force.trusted.get(cp.key_id)
        if key is None:
            why = "signed with a retired audit key" if cp.key_id in in_force.retired else "signed with an unknown key"
            breaks.append(ChainBreak("bad-checkpoint-signature", cp.seq, f"checkpoint {why} ({cp.key_id})"))
            continue
        try:
            key.verify(base64.b64decode(cp.signature), checkpoint_payload(cp.seq, cp.hash, cp.at))
        except (InvalidSignature, ValueError):
            breaks.append(
                ChainBreak("bad-checkpoint-signature", cp.seq, f"checkpoint signature invalid (key {cp.key_id})")
            )
            continue
        if cp.seq > last_seq:
            breaks.append(
                ChainBreak(
                    "truncated",
                    cp.seq,
                    "a signed checkpoint covers entries that are missing",
                    str(cp.seq),
                    str(last_seq),
                )
            )
        elif hashes.get(cp.seq) != cp.hash:
            breaks.append(
                ChainBreak(
                    "checkpoint-mismatch",
                    cp.seq,
                    "chain head differs from the signed checkpoint",
                    cp.hash,
                    hashes.get(cp.seq),
                )
            )
        else:
            in_force.sealed(cp.seq, cp.key_id)
        sealed = max(sealed, cp.seq)
    breaks.extend(in_force.breaks)
    return count, sealed, breaks
