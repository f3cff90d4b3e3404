"""``[[tenant]]`` blocks: several authorities in one file, each a complete configuration of its own.

Isolation by construction: a tenant is a ``Config`` like any other, so every flow (intake,
quarantine, outbox, audit) that is handed one cannot reach another tenant's records. Its
state lives in ``<state_dir>/tenants/<name>/`` (the SQLite ledger, its chain, quarantine,
staging and outbox spool; a shared ``spool_dir`` or ``quarantine_dir`` likewise has a
``tenants/<name>/`` of its own) and, on PostgreSQL, in the schema ``tenant_<name>`` of the
shared database.

What a tenant shares with the top level is what belongs to the machine, not the authority:
the state directory and database (``[storage]``), ``[limits]``, ``[ui]`` and ``[deliveries]``
(inherited unless the tenant gives its own), ``[logging]``, ``[metrics]`` and ``[processing]``
(process-wide, top level only: ``analysis_workers`` sizes the one analysis pool every tenant's
jobs share, ``inbound.pool``), and the relay: a top-level ``[smtp]`` holds
defaults (host, port, security, credentials) that a tenant's own ``[smtp]`` extends; its
``from`` is the authority's address and is only ever the tenant's. Everything that decides
what counts as proven or where a letter lands (mailboxes, keys, trust anchors, routes,
policy, ``cases_dir``, the audit signing key) is per tenant and never inherited: those
sections at the top level are refused, not shared silently.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.config.model import Config
from gateway.errors import ConfigError
from gateway.statedir import default_cases_dir, tenant_state_dir

#: Sections only a tenant may have when the file has tenants.
TENANT_ONLY = (
    "mailbox",
    "route",
    "routing",
    "policy",
    "audit",
    "smime",
    "openpgp",
    "submission",
    "outbound",
    "demail",
    "send_socket",
)
#: Sections a tenant takes from the top level unless it gives its own.
INHERITED = ("limits", "ui", "deliveries")
#: Sections of the whole process: top level only (a tenant's copy is the top level's).
PROCESS_WIDE = ("logging", "metrics", "processing")
#: Shared directories of the nodes (``[storage]``) in which each tenant has ``tenants/<name>/``:
#: one tenant's spool sweep or quarantine must not see another's files.
SHARED_DIRS = ("spool_dir", "quarantine_dir")
#: A tenant's name is a directory, a PostgreSQL schema suffix and a metrics label.
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def parse_tenants(data: Mapping[str, Any], *, file: str, sha256: str) -> Config:
    """The top-level configuration (no mailboxes of its own) with one ``Config`` per tenant."""
    from gateway.config.load import parse_config

    blocks = data["tenant"]
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(file, "tenant", "expected [[tenant]] blocks (an array of tables)")
    for section in TENANT_ONLY:
        if section in data:
            problem = f"with [[tenant]] blocks, [{section}] belongs inside each tenant (nothing of it is shared)"
            raise ConfigError(file, section, problem)
    storage = data.get("storage")
    if isinstance(storage, dict) and "cases_dir" in storage:
        raise ConfigError(file, "storage.cases_dir", "with [[tenant]] blocks, each tenant has its own cases_dir")
    relay = data.get("smtp", {})
    if not isinstance(relay, dict):
        raise ConfigError(file, "smtp", "expected a table")
    if "from" in relay:
        raise ConfigError(file, "smtp.from", "with [[tenant]] blocks, each tenant sends as its own address")
    if relay:
        _check_relay(relay, file)
    shared = {k: v for k, v in data.items() if k not in ("tenant", "smtp")}
    top = parse_config(shared, file=file, sha256=sha256)
    warnings = list(top.warnings)
    tenants: list[Config] = []
    for i, block in enumerate(blocks):
        prefix = f"tenant[{i}]"
        if not isinstance(block, dict):
            raise ConfigError(file, prefix, "expected a table")
        tenant = _tenant(block, data, relay, top, file=file, sha256=sha256, prefix=prefix)
        _check_apart(tenant, tenants, file=file, prefix=prefix)
        warnings += tenant.warnings
        tenants.append(tenant)
    return dataclasses.replace(top, tenants=tuple(tenants), warnings=tuple(warnings))


def _check_relay(relay: Mapping[str, Any], file: str) -> None:
    """The relay defaults alone, checked as an ``[smtp]`` (with a stand-in sender): a typo is an
    error now, even while no tenant sends yet."""
    from gateway.config.load import _Reader, _smtp

    _smtp(_Reader(file, "smtp", {**relay, "from": "relay-defaults@invalid.example"}), [])


def _tenant(
    block: Mapping[str, Any],
    data: Mapping[str, Any],
    relay: Mapping[str, Any],
    top: Config,
    *,
    file: str,
    sha256: str,
    prefix: str,
) -> Config:
    from gateway.config.load import parse_config

    name = block.get("name")
    if not isinstance(name, str):
        raise ConfigError(file, f"{prefix}.name", "is required (a string)")
    if not NAME.fullmatch(name):
        raise ConfigError(
            file, f"{prefix}.name", f"{name!r}: use lower-case letters, digits and '_' (max 40), starting with a letter"
        )
    for section in (*PROCESS_WIDE, "tenant"):
        if section in block:
            raise ConfigError(file, f"{prefix}.{section}", "is set once for the whole process, at the top level")
    own_storage = block.get("storage", {})
    if not isinstance(own_storage, dict):
        raise ConfigError(file, f"{prefix}.storage", "expected a table")
    for key in own_storage:
        if key != "cases_dir":
            problem = (
                "unknown key"
                if key not in ("state_dir", "backend", "dsn_file", "file_mode", "dir_mode", *SHARED_DIRS)
                else ("is shared: set it in the top-level [storage] (a tenant's state is <state_dir>/tenants/<name>)")
            )
            raise ConfigError(file, f"{prefix}.storage.{key}", problem)
    state = tenant_state_dir(top.storage.state_dir, name)
    merged: dict[str, Any] = {k: data[k] for k in (*INHERITED, "processing") if k in data}
    merged.update({k: v for k, v in block.items() if k not in ("name", "storage", "smtp")})
    merged["storage"] = {
        **{k: v for k, v in data["storage"].items() if k != "cases_dir"},
        "state_dir": str(state),
        "cases_dir": own_storage.get("cases_dir") or str(default_cases_dir(state)),
    }
    for key in SHARED_DIRS:
        if isinstance(data["storage"].get(key), str):  # each tenant its own part of the shared directory
            merged["storage"][key] = str(tenant_state_dir(Path(data["storage"][key]), name))
    if "smtp" in block:
        if not isinstance(block["smtp"], dict):
            raise ConfigError(file, f"{prefix}.smtp", "expected a table")
        merged["smtp"] = {**relay, **block["smtp"]}
    cfg = parse_config(merged, file=file, sha256=sha256, prefix=prefix)
    schema = f"tenant_{name}" if cfg.storage.backend == "postgresql" else None
    return dataclasses.replace(
        cfg, tenant=name, storage=dataclasses.replace(cfg.storage, schema=schema), logging=top.logging, metrics=None
    )


def _check_apart(tenant: Config, before: list[Config], *, file: str, prefix: str) -> None:
    """Refuse a name, a case folder tree, a key, a listener or a mailbox another tenant already has."""
    for other in before:
        if other.tenant == tenant.tenant:
            raise ConfigError(file, f"{prefix}.name", f"duplicate tenant name {tenant.tenant!r}")
    mine = tenant.storage.cases_dir
    for other in before:
        theirs = other.storage.cases_dir
        if (
            mine == theirs
            or mine.is_relative_to(theirs)
            or theirs.is_relative_to(mine)
            or mine.is_relative_to(other.storage.state_dir)
        ):
            raise ConfigError(
                file,
                f"{prefix}.storage.cases_dir",
                f"{mine} is (or overlaps) tenant {other.tenant!r}'s case folders or state: each tenant needs its own",
            )
    for key, value in _own(tenant):
        for other in before:
            if value in dict(_own(other)).values():
                problem = f"{value} is already tenant {other.tenant!r}'s: each tenant needs its own"
                raise ConfigError(file, f"{prefix}.{key}", problem)
    for j, mb in enumerate(tenant.mailboxes):
        for other in before:
            for theirs_mb in other.mailboxes:
                if (mb.host.lower(), mb.username) == (theirs_mb.host.lower(), theirs_mb.username):
                    raise ConfigError(
                        file,
                        f"{prefix}.mailbox[{j}].username",
                        f"{mb.username}@{mb.host} is already tenant {other.tenant!r}'s mailbox {theirs_mb.name!r}",
                    )


def _own(cfg: Config) -> list[tuple[str, str]]:
    """What a tenant must not share with another: its trail's key and copy, its OpenPGP
    home (it holds the secret keys), and the addresses its submission listener and send socket bind."""
    from gateway.statedir import audit_jsonl_path, audit_key_path

    out = [("audit.key_file", str(audit_key_path(cfg))), ("audit.jsonl_file", str(audit_jsonl_path(cfg)))]
    if cfg.openpgp is not None:
        out.append(("openpgp.gnupg_home", str(cfg.openpgp.gnupg_home)))
    if cfg.submission is not None:
        out.append(("submission.listen", f"{cfg.submission.host}:{cfg.submission.port}"))
    if cfg.send_socket is not None:
        out.append(("send_socket.path", str(cfg.send_socket.path)))
    return out


def select_tenant(config: Config, tenant: str | None, *, all_tenants: bool = False) -> Config:
    """The configuration a command works on: the named tenant's, or the whole file's."""
    file, known = str(config.path), ", ".join(str(t.tenant) for t in config.tenants)
    if tenant is not None:
        if not config.tenants:
            raise ConfigError(file, "tenant", f"--tenant {tenant}: the configuration has no [[tenant]] blocks")
        try:
            chosen = config.tenant_config(tenant)
        except KeyError:
            raise ConfigError(file, "tenant", f"unknown tenant {tenant!r} (the tenants are: {known})") from None
        return dataclasses.replace(chosen, warnings=config.warnings)
    if config.tenants and not all_tenants:
        raise ConfigError(file, "tenant", f"the configuration has tenants ({known}): name one with --tenant")
    return config
