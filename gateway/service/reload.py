"""What a reloaded configuration (SIGHUP) changes, or why it cannot be applied.

Pure: the old and the new configuration in, a ``ReloadPlan`` out, or ``ReloadRefused``
naming the key and the reason. The daemon then restarts only what the plan names, so a
changed password restarts one mailbox and leaves the others' connections alone.

Some settings cannot change under a running process: the state and case directories
(the lock, the open ledger, the staging areas and the directory descriptors all point
into them), the audit settings (the open store signs and ships with them), and the
listeners' addresses (a port is bound once). A new configuration that changes one of
them is refused as a whole, so the daemon never runs half on the old one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from gateway.config import Config, MailboxConfig
from gateway.config.model import Secret
from gateway.errors import ConfigError

#: Sections only a restart applies, with the reason the refusal gives.
FIXED: dict[str, str] = {
    "storage": "state_dir, cases_dir and the file modes hold for the whole run",
    "audit": "the open ledger signs and ships the trail with these settings",
    "submission": "the submission listener binds its address once",
    "metrics": "the metrics endpoint binds its address once",
    "send_socket": "the send socket is bound once",
}
#: What the analysis (the unwrap context and the worker processes) is built from.
ANALYSIS: tuple[str, ...] = (
    "limits",
    "processing",
    "routes",
    "routing",
    "policy",
    "smime",
    "openpgp",
    "demail",
    "deliveries",
    "ui",
)
#: What the outbox thread reads (besides the first mailbox, for the Sent-folder copy).
OUTBOX: tuple[str, ...] = ("smtp", "outbound", "smime", "openpgp", "deliveries", "demail")
#: Read by nothing that runs (path and hash describe the file; warnings were printed at load).
DESCRIPTIVE: tuple[str, ...] = ("path", "sha256", "warnings")


class ReloadRefused(ConfigError):
    """The new configuration is valid but cannot be applied without a restart."""


@dataclass(frozen=True)
class ReloadPlan:
    """What to restart; ``analysis`` restarts every mailbox (they share the analysis)."""

    analysis: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    outbox: bool = False
    logging: bool = False

    @property
    def nothing(self) -> bool:
        return not (self.analysis or self.added or self.removed or self.changed or self.outbox or self.logging)

    def restarted(self, new: Config) -> tuple[str, ...]:
        """The mailboxes whose workers stop and start again (the added ones only start)."""
        if self.analysis:
            return tuple(mb.name for mb in new.mailboxes if mb.name not in self.added)
        return self.changed

    def summary(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis,
            "mailboxes_added": list(self.added),
            "mailboxes_removed": list(self.removed),
            "mailboxes_changed": list(self.changed),
            "outbox": self.outbox,
            "logging": self.logging,
        }


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two loaded configurations; raises ``ReloadRefused`` for a change only a restart applies."""
    for section, reason in FIXED.items():
        if _plain(getattr(old, section)) != _plain(getattr(new, section)):
            raise ReloadRefused(str(new.path), section, f"changed, which needs a restart: {reason}")
    before = {mb.name: mb for mb in old.mailboxes}
    after = {mb.name: mb for mb in new.mailboxes}
    changed = tuple(n for n in after if n in before and not _same_mailbox(before[n], after[n]))
    first_old = old.mailboxes[0] if old.mailboxes else None
    first_new = new.mailboxes[0] if new.mailboxes else None
    first_changed = (first_old is None) != (first_new is None) or (
        first_old is not None and first_new is not None and not _same_mailbox(first_old, first_new)
    )
    return ReloadPlan(
        analysis=_differs(old, new, ANALYSIS),
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=changed,
        outbox=_differs(old, new, OUTBOX) or first_changed,
        logging=_differs(old, new, ("logging",)),
    )


def _differs(old: Config, new: Config, names: tuple[str, ...]) -> bool:
    return any(_plain(getattr(old, n)) != _plain(getattr(new, n)) for n in names)


def _same_mailbox(a: MailboxConfig, b: MailboxConfig) -> bool:
    return bool(_plain(a) == _plain(b))


def _plain(value: Any) -> Any:
    """A comparable form: a secret by its digest (``Secret`` has no equality), a pattern by text and flags."""
    if isinstance(value, Secret):
        return ("secret", hashlib.sha256(value.reveal().encode("utf-8")).hexdigest())
    if isinstance(value, re.Pattern):
        return ("pattern", value.pattern, value.flags)
    if is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, _plain(getattr(value, f.name))) for f in fields(value) if f.name not in DESCRIPTIVE)
    if isinstance(value, tuple | list):
        return tuple(_plain(v) for v in value)
    return value
