"""Rotating the audit signing key: the old key signs the handover to the new one.

A trail is kept for decades; its signing key may have to change (a suspected leak, a new
HSM, a policy's lifetime). The rotation is an entry in the trail itself,
``audit-key-rotated``, naming the old key's id and the new public key, sealed by a
checkpoint the *old* key signs. ``audit verify`` starts from the auditor's key, accepts
the new key only from that proven handover on, and refuses the old key for anything
after it. An auditor therefore keeps the first public key they were given; the gateway's
public key file lists every key, oldest first.

The steps are ordered so that a crash at any point leaves either the old key in force
(the new one in ``<key>.next`` is discarded by the next attempt) or a recorded handover
whose key is in ``<key>.next``; the daemon refuses to start in that state, and running
``poststelle audit rotate-key`` again finishes the swap. The daemon must not run: it
holds the key in memory and would sign on with the old one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import Config
from gateway.filing.durable import fsync_dir
from gateway.records.chain import AuditEvent
from gateway.records.signing import KEY_ROTATED, key_id, load_public_keys, public_key_pem
from gateway.records.store import AuditReader, EntryFilter
from gateway.statedir import audit_key_path, audit_public_key_path

__all__ = ["Rotation", "pending_rotation", "rotate_audit_key"]


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    seq: int  # the handover entry


def pending_rotation(config: Config) -> Path | None:
    """The new key of a rotation that has not finished (``<key>.next``), if there is one."""
    nxt = _next_path(config)
    return nxt if nxt.exists() else None


def _next_path(config: Config) -> Path:
    key = audit_key_path(config)
    return key.with_name(key.name + ".next")


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def _load_private(path: Path) -> Ed25519PrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, Ed25519PrivateKey) else None


def rotate_audit_key(config: Config, actor: str) -> Rotation:
    """Hand the signing over to a new key (or finish a handover a crash interrupted).

    Raises ``AlreadyRunning`` while a daemon holds the state directory.
    """
    from gateway.records.open import open_store
    from gateway.service.statelock import StateLock

    lock = StateLock.acquire(config)
    try:
        key_path, nxt = audit_key_path(config), _next_path(config)
        store = open_store(config, actor=actor)  # the current key signs what is recorded here
        try:
            old_id = key_id(_current(key_path))
            new = _load_private(nxt)
            recorded = _last_handover(store)
            if new is None or recorded is None or recorded[1] != key_id(new) or recorded[2] != old_id:
                new = Ed25519PrivateKey.generate()
                _write_private(nxt, new)
                store.record_events(
                    [
                        AuditEvent(
                            KEY_ROTATED,
                            details={
                                "old_key_id": old_id,
                                "new_key_id": key_id(new),
                                "public_key": public_key_pem(new).decode("ascii"),
                            },
                            actor=actor,
                        )
                    ]
                )
                recorded = _last_handover(store)
            store.seal()  # the old key signs the handover (again a no-op when it already did)
            store.export_jsonl()
            assert recorded is not None
            seq = recorded[0]
        finally:
            store.close()
        _swap(config, key_path, nxt, old_id, new)
        return Rotation(old_id, key_id(new), seq)
    finally:
        lock.release()


def _current(key_path: Path) -> Ed25519PrivateKey:
    key = _load_private(key_path)
    if key is None:
        raise ValueError(f"{key_path}: no readable Ed25519 audit key")
    return key


def _last_handover(store: AuditReader) -> tuple[int, str, str] | None:
    """(seq, new key id, old key id) of the newest handover entry."""
    last = None
    for e in store.select(EntryFilter(events=(KEY_ROTATED,))):
        last = (e.seq, str(e.details.get("new_key_id", "")), str(e.details.get("old_key_id", "")))
    return last


def _swap(config: Config, key_path: Path, nxt: Path, old_id: str, new: Ed25519PrivateKey) -> None:
    """Retire the old key file, put the new one in its place, and list the new public key."""
    retired = key_path.with_name(f"{key_path.name}.retired-{old_id}")
    if not retired.exists():
        os.link(key_path, retired)  # kept 0600 for the administrator to archive offline or destroy
    os.replace(nxt, key_path)  # the key file is never missing: a crash leaves the old or the new one
    fsync_dir(key_path.parent)
    pub = audit_public_key_path(config)
    known: list[str] = []
    if pub.exists():
        known = [key_id(k) for k in load_public_keys(pub)]
    if key_id(new) not in known:
        data = (pub.read_bytes() if pub.exists() else b"") + public_key_pem(new)
        tmp = pub.with_name(pub.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, pub)
        fsync_dir(pub.parent)
