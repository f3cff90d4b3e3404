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
from collections.abc import Iterable, Mapping
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


def verify_checkpoints(
    checkpoints: Iterable[Checkpoint], hashes: Mapping[int, str], public_key: Ed25519PublicKey | None
) -> tuple[int, int, list[ChainBreak]]:
    """Check every checkpoint's signature and that it matches the chain at its seq.

    ``hashes``: each entry's stored hash by seq. Returns (checkpoints checked, highest
    sealed seq, breaks).
    """
    breaks: list[ChainBreak] = []
    last_seq = max(hashes) if hashes else 0
    count = 0
    sealed = 0
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        count += 1
        if public_key is None:
            breaks.append(
                ChainBreak("no-public-key", cp.seq, "cannot check checkpoint signatures without the audit public key")
            )
            break
        try:
            public_key.verify(base64.b64decode(cp.signature), checkpoint_payload(cp.seq, cp.hash, cp.at))
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
        sealed = max(sealed, cp.seq)
    return count, sealed, breaks
