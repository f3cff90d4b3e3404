"""Who acted: every audit entry names the gateway or the person at the command line.

The person is the account of the process's real uid, looked up in the password database.
``$USER`` and ``$LOGNAME`` are never read: they are whatever the caller set, so anybody
could release a letter in somebody else's name. Under ``sudo`` the real uid is root's,
which says nothing about the person; sudo records who called it in ``SUDO_USER``, so that
name is kept as well, marked as sudo's word (it is only believed when the process runs as
root, where nobody without root could have set it).
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from typing import Any

DAEMON = "daemon"

#: What an account name from the environment may look like; anything else is not a name.
_NAME = re.compile(r"[A-Za-z0-9._@$+-]{1,64}")


def daemon_actor() -> str:
    return DAEMON


@dataclass(frozen=True)
class Actor:
    """A person at the command line: the recorded ``name`` and the fields it was made of.

    ``name`` is the audit entry's ``actor`` (``cli:anna``, ``cli:root (sudo by anna)``);
    ``fields()`` go into the entry's details, so a reader need not parse the name.
    """

    os_user: str
    uid: int
    sudo_user: str | None = None

    @property
    def name(self) -> str:
        base = f"cli:{self.os_user}"
        return f"{base} (sudo by {self.sudo_user})" if self.sudo_user else base

    def fields(self) -> dict[str, Any]:
        return {"os_user": self.os_user, "uid": self.uid, "sudo_user": self.sudo_user}


def account_name(uid: int) -> str:
    """The password database's name for ``uid``; ``uid:N`` for an account without an entry."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def cli_actor(environ: dict[str, str] | None = None) -> Actor:
    """The person running the CLI, as the kernel knows them (and sudo, when it ran us)."""
    env = os.environ if environ is None else environ
    uid = os.getuid()
    sudo_user = None
    claimed = env.get("SUDO_USER", "")
    if uid == 0 and claimed:
        sudo_user = claimed if _NAME.fullmatch(claimed) else ascii(claimed)[:80]
    return Actor(os_user=account_name(uid), uid=uid, sudo_user=sudo_user)


def parse_cli_actor(actor: str) -> tuple[str, str | None] | None:
    """``cli:root (sudo by anna)`` -> ``("root", "anna")``; ``None`` for the gateway and others."""
    if not actor.startswith("cli:"):
        return None
    m = re.fullmatch(r"cli:(.*) \(sudo by (.*)\)", actor)
    return (m.group(1), m.group(2)) if m else (actor[4:], None)
