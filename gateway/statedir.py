"""Where the gateway keeps its files: the one owner of paths under state_dir and cases_dir.

The daemon, the CLI, the auditors' tools and the tests ask here, so they agree on the
layout (docs/case-folders.md describes it for people)::

    <state_dir>/
        ledger.sqlite3
        audit/                  audit-signing.key, audit-signing.pub.pem, audit.jsonl
        quarantine/<entry>/     the case-entry layout, plus reason.json
        certstore/smime/        signer certificates collected from verified mail
        crls/<url hash>/        CRLs fetched from distribution points ([smime] fetch_crls)
        gnupg/                  the OpenPGP home, unless configured elsewhere
    <cases_dir>/<case folder>/<entry>/      cases_dir defaults to <state_dir>/cases
    <root>/.incoming/[<mailbox>/]<entry>/   staging under either root, invisible until published

The configuration is only a type here, so that the loader can take its defaults from
this module too. Opening the store is ``gateway.records.open``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config

STAGING = ".incoming"
"""Entries are built here under their root; a leading dot keeps it out of every listing."""


# -- defaults the configuration loader fills in --------------------------------------------
def default_cases_dir(state_dir: Path) -> Path:
    return state_dir / "cases"


def default_gnupg_home(state_dir: Path) -> Path:
    return state_dir / "gnupg"


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


def staging_dir(root: Path, bucket: str = "") -> Path:
    """Where entries for ``root`` (cases or quarantine) are built: ``<root>/.incoming/[<bucket>/]``.

    Each mailbox stages in its own bucket, so that its crash recovery can sweep what it
    left behind without touching entries another mailbox is writing at that moment.
    """
    return root / STAGING / bucket if bucket else root / STAGING


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


def prepare_state(config: Config) -> None:
    """Create the state and cases directories (0750) on first start."""
    for d in (config.storage.state_dir, cases_dir(config), quarantine_dir(config), audit_dir(config)):
        d.mkdir(parents=True, exist_ok=True, mode=0o750)
