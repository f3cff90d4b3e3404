"""Where the gateway keeps its files: the one owner of paths under state_dir and cases_dir.

The daemon, the CLI, the auditors' tools and the tests ask here, so they agree on the
layout (docs/case-folders.md describes it for people)::

    <state_dir>/
        poststelle.lock         held by the one daemon working on this state directory, with its pid
        ledger.sqlite3
        audit/                  audit-signing.key, audit-signing.pub.pem, audit.jsonl
        quarantine/<entry>/     the case-entry layout, plus reason.json
        staging/<area>/[<mailbox>/]<entry>/   entries being built (area: cases or quarantine)
        certstore/smime/        signer certificates collected from verified mail
        crls/<url hash>/        CRLs fetched from distribution points ([smime] fetch_crls)
        gnupg/                  the OpenPGP home, unless configured elsewhere
        outbox/<id>.eml         queued outgoing documents, the exact bytes to send ([storage] spool_dir)
        outbox.wake             FIFO: a queued document rings it, the daemon's outbox thread listens
        tenants/<name>/         with [[tenant]] blocks: each tenant's own state, laid out as above
    <cases_dir>/<case folder>/<entry>/      cases_dir defaults to <state_dir>/cases
    <cases_dir>/<case folder>/sent/<entry>/ the exact bytes sent, with manifest.json
    <root>/.incoming/[<mailbox>/]<entry>/   staging instead, for a root on another mount than state_dir

The configuration is only a type here, so that the loader can take its defaults from
this module too. Opening the store is ``gateway.records.open``.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config

STAGING = ".incoming"
"""A root's own staging directory, used when ``rename(2)`` from ``state_dir`` cannot reach the root
(another mount); a leading dot keeps it out of every listing. See ``filing.areas``."""


# -- defaults the configuration loader fills in --------------------------------------------
def default_cases_dir(state_dir: Path) -> Path:
    return state_dir / "cases"


def default_gnupg_home(state_dir: Path) -> Path:
    return state_dir / "gnupg"


def tenant_state_dir(state_dir: Path, tenant: str) -> Path:
    """A tenant's own state directory inside the shared one (``config.tenants``)."""
    return state_dir / "tenants" / tenant


# -- the layout ----------------------------------------------------------------------------
def cases_dir(config: Config) -> Path:
    return config.storage.cases_dir


def quarantine_dir(config: Config) -> Path:
    """Quarantined entries: the case-entry layout, never routed anywhere."""
    return config.storage.state_dir / "quarantine"


def certstore_dir(config: Config, scheme: str = "smime") -> Path:
    """Certificates of verified correspondents, one file per certificate."""
    return config.storage.state_dir / "certstore" / scheme


def crl_cache_dir(config: Config) -> Path:
    """CRLs fetched from certificates' distribution points, one directory per URL."""
    return config.storage.state_dir / "crls"


def staging_dir(config: Config, area: str) -> Path:
    """Where entries for ``area`` (``cases`` or ``quarantine``) are built: ``<state_dir>/staging/<area>/``.

    Each mailbox stages in its own bucket below it, so that its crash recovery can sweep
    what it left behind without touching entries another mailbox is writing at that moment.
    Only when the area's root is on another mount (a rename cannot cross it) are its
    entries built in ``share_staging_dir`` instead (``filing.areas.Area.open`` decides).
    """
    return config.storage.state_dir / "staging" / area


def share_staging_dir(root: Path) -> Path:
    """The staging directory inside a root itself: ``<root>/.incoming/``."""
    return root / STAGING


def area_root(config: Config, area: str) -> Path:
    """The directory entries of ``area`` are published in."""
    if area == "cases":
        return cases_dir(config)
    if area == "quarantine":
        return quarantine_dir(config)
    raise ValueError(f"unknown area {area!r}")


def outbox_dir(config: Config) -> Path:
    """The outbox's spool: one file per queued document, written before its row commits.

    ``[storage] spool_dir`` when given: with several nodes on one database every node must
    reach every document's bytes, so the spool is on the shared file system, like the case
    folders; the row records each file's path, so every node mounts it at the same path.
    """
    return config.storage.spool_dir or config.storage.state_dir / "outbox"


def outbox_doorbell(config: Config) -> Path:
    """The FIFO a queueing process writes a byte to, so the daemon drains at once (Postfix's pickup)."""
    return config.storage.state_dir / "outbox.wake"


def ledger_path(config: Config) -> Path:
    return config.storage.state_dir / "ledger.sqlite3"


def audit_dir(config: Config) -> Path:
    return config.storage.state_dir / "audit"


def audit_key_path(config: Config) -> Path:
    return config.audit.key_file or audit_dir(config) / "audit-signing.key"


def audit_public_key_path(config: Config) -> Path:
    return audit_key_path(config).with_suffix(".pub.pem")


def audit_jsonl_path(config: Config) -> Path:
    return config.audit.jsonl_file or audit_dir(config) / "audit.jsonl"


def lock_path(config: Config) -> Path:
    """The lock file one daemon holds for as long as it runs (``service.statelock``)."""
    return config.storage.state_dir / "poststelle.lock"


def daemon_status_path(config: Config) -> Path:
    """The running daemon's state snapshot (``service.snapshot``), read by ``poststelle status``."""
    return config.storage.state_dir / "daemon.status.json"


def roots(config: Config) -> list[tuple[str, Path]]:
    """The directories the administrator provides, by their setting's name (the spool when it is elsewhere)."""
    found = [("storage.state_dir", config.storage.state_dir), ("storage.cases_dir", cases_dir(config))]
    if config.storage.spool_dir is not None:
        found.append(("storage.spool_dir", config.storage.spool_dir))
    return found


def layout_dirs(config: Config) -> list[Path]:
    """The directories the gateway keeps inside ``state_dir``, made by ``init`` or on start."""
    state = config.storage.state_dir
    return [
        quarantine_dir(config),
        audit_dir(config),
        state / "staging",
        staging_dir(config, "cases"),
        staging_dir(config, "quarantine"),
    ]


def require_roots(config: Config) -> None:
    """ConfigError unless ``state_dir`` and ``cases_dir`` exist as directories.

    They are never created on start: a share that is not mounted would otherwise receive
    the letters on the root disk, where nobody looks for them. ``poststelle init`` creates
    them once, on purpose.
    """
    from gateway.errors import ConfigError

    if config.tenant is not None:
        _make_tenant_state(config)
    for key, path in roots(config):
        try:
            if stat.S_ISDIR(path.stat().st_mode):
                continue
            problem = "is not a directory"
        except FileNotFoundError:
            problem = "does not exist (create it with `poststelle init`, or mount the share)"
        except OSError as exc:
            problem = f"cannot be reached: {exc.strerror}"
        raise ConfigError(str(config.path), key, f"{path} {problem}")


def _make_tenant_state(config: Config) -> None:
    """A tenant's state directory (and its part of a shared spool) is the gateway's own, made
    inside the shared ``state_dir`` (``spool_dir``) when that exists (the shared ones
    themselves are still never created on start)."""
    state = config.storage.state_dir
    spool = config.storage.spool_dir
    if spool is not None and not spool.is_dir() and spool.parent.is_dir():
        spool.mkdir(exist_ok=True, mode=config.storage.dir_mode)
        if stat.S_IMODE(spool.stat().st_mode) & 0o777 != config.storage.dir_mode:
            spool.chmod(config.storage.dir_mode | (spool.stat().st_mode & stat.S_ISGID))
    shared = state.parent.parent
    if state.is_dir() or not shared.is_dir():
        return
    for d in (state.parent, state):
        if not d.is_dir():
            d.mkdir(exist_ok=True, mode=config.storage.dir_mode)
            if stat.S_IMODE(d.stat().st_mode) & 0o777 != config.storage.dir_mode:
                d.chmod(config.storage.dir_mode | (d.stat().st_mode & stat.S_ISGID))


def prepare_state(config: Config) -> None:
    """Make the state layout inside an existing ``state_dir`` (after ``require_roots``)."""
    require_roots(config)
    for d in layout_dirs(config):
        d.mkdir(exist_ok=True, mode=config.storage.dir_mode)


def init_storage(config: Config) -> list[Path]:
    """Create ``state_dir``, ``cases_dir`` and the state layout with the configured modes; returns what was made.

    What ``poststelle init`` does, and what the demo and the tests use to set up their
    directories. Existing directories keep their modes (an administrator's group and setgid
    bit stay); new ones get exactly ``dir_mode``, whatever the umask.
    """
    made: list[Path] = []
    for d in [*(path for _, path in roots(config)), *layout_dirs(config)]:
        missing = []
        probe = d
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for m in reversed(missing):
            m.mkdir(mode=config.storage.dir_mode)
            # Exactly dir_mode whatever the umask. Only when the umask took bits away: a chmod
            # by a user outside the directory's group would drop the setgid bit inherited
            # from the parent (the clerks' group on a share), which must reach everything below.
            if stat.S_IMODE(m.stat().st_mode) & 0o777 != config.storage.dir_mode:
                m.chmod(config.storage.dir_mode | (m.stat().st_mode & stat.S_ISGID))
            made.append(m)
    return made
