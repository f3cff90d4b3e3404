"""What must hold before the daemon touches a mailbox, and one line for each way it can fail.

A daemon that starts half-way (a key it cannot read, a state directory it cannot write) is
worse than one that does not start: it looks alive and files nothing, or fails later with
a traceback nobody reads. Everything the daemon will need from the machine is tried here,
in the order an administrator fixes it, and each failure is a ``ConfigError`` (a setting
names a path that does not work) or a ``StartupError`` (the machine refused), each
reducible to one line by ``describe``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.config import Config
from gateway.config.secrets import exposure_problem
from gateway.diskfull import disk_full_code
from gateway.errors import ConfigError, StartupError
from gateway.filemodes import apply as apply_modes
from gateway.service.statelock import StateLock
from gateway.statedir import audit_jsonl_path, audit_key_path, cases_dir, ledger_path, require_roots


def start(config: Config) -> StateLock:
    """Check the machine and take the state directory's lock; the caller releases it.

    Order: the modes (before anything is created), the two roots (never created here),
    the lock (which is also the test that ``state_dir`` is writable), then every file the
    configuration names, read once as the daemon will read it.
    """
    apply_modes(config.storage.file_mode, config.storage.dir_mode)
    require_roots(config)
    state = config.storage.state_dir
    try:
        lock = StateLock.acquire(config)
    except OSError as exc:
        raise StartupError(f"state directory {state} (storage.state_dir): {_cause(exc)}") from None
    try:
        if not os.access(cases_dir(config), os.W_OK | os.X_OK):
            raise StartupError(f"case folders {cases_dir(config)} (storage.cases_dir): not writable")
        check_files(config)
        _check_audit_key(config)
    except BaseException:
        lock.release()
        raise
    return lock


def check_ledger_complete(config: Config) -> None:
    """``StartupError`` when the shipped copy of the trail has entries the ledger lacks.

    SQLite takes a write-ahead log cut short (a disk that lied about a flush, a copy of the
    state directory made without its ``-wal`` file) as the end of the log: the newest
    commits vanish without an error. The JSON-lines copy is written after each commit, so
    it may lag the ledger but never lead it; when it leads, the ledger has lost
    transactions, and a daemon writing on would reuse their numbers. The ledger is only
    read here (read-only, so SQLite checkpoints nothing): both files stay as they are for
    the administrator's restore.
    """
    from gateway.records.export import last_jsonl_seq
    from gateway.records.open import open_store, store_exists, store_name

    copy = audit_jsonl_path(config)
    shipped = last_jsonl_seq(copy)
    if shipped == 0:
        return
    if not store_exists(config):
        head = 0
    else:
        store = open_store(config, readonly=True)
        try:
            found = store.head()
        finally:
            store.close()
        head = found.seq if found is not None else 0
    if head < shipped:
        if config.storage.backend == "postgresql":
            cause = "the database was restored from an older backup, or is not the one the copy came from?"
        else:
            cause = f"a truncated or missing write-ahead log {ledger_path(config).name}-wal?"
        raise StartupError(
            f"the ledger {store_name(config)} ends at audit entry {head} but its shipped copy {copy} goes on to "
            f"{shipped}: the ledger has lost its newest transactions ({cause}); nothing was written. Restore the "
            "state directory from the newest backup and run `poststelle audit verify`; to accept the loss, move "
            "the copy aside"
        )


def check_shared_audit_key(config: Config) -> None:
    """On a PostgreSQL store: ``ConfigError`` unless this node's audit key is the one the trail is sealed with.

    Several nodes extend one chain and each signs its checkpoints. A node with another key
    (a fresh one made because the file was not copied, or one retired by ``audit
    rotate-key`` on another node) would seal entries that ``audit verify`` then finds
    "signed with an unknown key" or "with a retired audit key", long after the fact. The
    key in force is the new key of the trail's last rotation, else the key of its last
    checkpoint; a trail with neither accepts any key (the first node's starts it). Read
    before anything is written, so a refused node leaves no entry and makes no key.
    """
    if config.storage.backend != "postgresql":
        return  # one node per SQLite ledger: its key is the one it sealed with
    from gateway.records.open import open_store, store_exists, store_name
    from gateway.records.signing import KEY_ROTATED, handover_of, key_id, load_public_key
    from gateway.records.store import EntryFilter

    if not store_exists(config):
        return
    store = open_store(config, readonly=True)
    try:
        rotations = [handover_of(e.seq, e.details) for e in store.select(EntryFilter(events=(KEY_ROTATED,)))]
        checkpoints = store.checkpoints()
    finally:
        store.close()
    if rotations:
        in_force, source = rotations[-1].new_key_id, f"the key rotation at audit entry {rotations[-1].seq}"
    elif checkpoints:
        in_force, source = checkpoints[-1].key_id, f"its last checkpoint, at audit entry {checkpoints[-1].seq}"
    else:
        return
    path = audit_key_path(config)
    copy = "copy audit-signing.key (0600) and audit-signing.pub.pem from a node that holds it (docs/hosting.md)"
    if in_force is None:
        problem = f"the trail of {store_name(config)} names no readable key at {source}: run `poststelle audit verify`"
        raise ConfigError(str(config.path), "audit.key_file", problem)
    if not path.exists():
        problem = (
            f"{path} is missing, and the trail this node shares ({store_name(config)}) is sealed with audit key "
            f"{in_force} ({source}): {copy}"
        )
        raise ConfigError(str(config.path), "audit.key_file", problem)
    try:
        mine = key_id(load_public_key(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(config.path), "audit.key_file", f"{path}: not a readable Ed25519 key ({exc})") from None
    if mine == in_force:
        return
    retired = next((h for h in reversed(rotations) if h.old_key_id == mine), None)
    if retired is not None:
        problem = (
            f"{path} holds audit key {mine}, retired by the key rotation at audit entry {retired.seq}; the trail "
            f"this node shares ({store_name(config)}) is sealed with audit key {in_force} now: {copy}"
        )
    else:
        problem = (
            f"{path} holds audit key {mine}, but the trail this node shares ({store_name(config)}) is sealed with "
            f"audit key {in_force} ({source}); every node must sign with the same key: {copy}"
        )
    raise ConfigError(str(config.path), "audit.key_file", problem)


def configured_files(config: Config) -> Iterator[tuple[str, Path]]:
    """Every file the configuration names that the daemon reads, with its setting's name."""
    for i, mb in enumerate(config.mailboxes):
        if mb.ca_file is not None:
            yield f"mailbox[{i}].ca_file", mb.ca_file
    if config.smime is not None:
        for i, ident in enumerate(config.smime.identities):
            for name in ("key_file", "cert_file", "pkcs12_file", "password_file"):
                value: Path | None = getattr(ident, name)
                if value is not None:
                    yield f"smime.identity[{i}].{name}", value
        for i, p in enumerate(config.smime.trust_anchors):
            yield f"smime.trust_anchors[{i}]", p
        for i, p in enumerate(config.smime.crl_files):
            yield f"smime.crl_files[{i}]", p
    if config.openpgp is not None:
        for i, p in enumerate(config.openpgp.secret_keys):
            yield f"openpgp.secret_keys[{i}]", p
        for name in ("passphrase_file", "correspondents"):
            value = getattr(config.openpgp, name)
            if value is not None:
                yield f"openpgp.{name}", value
    for i, p in enumerate(config.demail.provider_trust_anchors):
        yield f"demail.provider_trust_anchors[{i}]", p
    if config.audit.key_file is not None and config.audit.key_file.exists():
        yield "audit.key_file", config.audit.key_file


def _check_audit_key(config: Config) -> None:
    """The audit key the gateway made itself (0600) must not have been opened to others since.

    A configured ``key_file`` was checked when the configuration was read; the default one
    under ``state_dir`` is only known here.
    """
    problem = exposure_problem(audit_key_path(config))
    if problem is not None:
        raise ConfigError(str(config.path), "audit.key_file", problem)
    from gateway.audit.rotate import pending_rotation

    pending = pending_rotation(config)
    if pending is not None:
        raise ConfigError(
            str(config.path),
            "audit.key_file",
            f"a key rotation did not finish ({pending} exists): run `poststelle audit rotate-key` again",
        )


def check_files(config: Config) -> None:
    """Read every configured file once as the daemon will; the first that fails is a ``ConfigError``."""
    for key, path in configured_files(config):
        _try_read(config, key, path)


def _try_read(config: Config, key: str, path: Path) -> None:
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError as exc:
        raise ConfigError(str(config.path), key, f"cannot read {path}: {exc.strerror}") from None


def _cause(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not writable ({exc.strerror})"
    code = disk_full_code(exc)
    if code is not None:
        return f"disk full ({code}): {exc.strerror}"
    return exc.strerror or str(exc)


def describe(exc: BaseException) -> str:
    """One line for a start-up failure: the OS's words and the path, never a Python repr."""
    if isinstance(exc, OSError) and exc.strerror:
        where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        return f"{_cause(exc)}: {where}" if where else _cause(exc)
    code = disk_full_code(exc)
    text = str(exc).strip().splitlines()
    if code is not None and text and not text[0].startswith("disk full"):
        return f"disk full ({code}): {text[0]}"
    return text[0] if text else type(exc).__name__
