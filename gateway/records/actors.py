"""Who acted: every audit entry names the gateway or the person at the command line."""

from __future__ import annotations

import getpass
import os

DAEMON = "daemon"


def daemon_actor() -> str:
    return DAEMON


def cli_actor() -> str:
    """The OS user running the CLI: who released a message is part of the record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    return f"cli:{user}"
