"""Where a secret named in the configuration lives, and whether it is kept private.

A setting that names a secret (a password file, a private key, the submission users file)
takes a path, or ``credential:NAME`` for a systemd credential. In the service that is
``$CREDENTIALS_DIRECTORY/NAME``, the private read-only copy systemd makes from
``LoadCredential=``; outside it (an administrator's ``poststelle check``) the same name is
looked up where ``LoadCredential=NAME`` without a path reads it from: ``/etc/credstore``,
``/run/credstore``, ``/usr/lib/credstore``. One syntax, so that a reader of the
configuration sees at once which values come from the service manager; a bare relative
name would depend on the directory the command was started in.

A secret file that others may open (any of the mode's last three bits) is refused, not
warned about: the warning scrolls by and the key stays readable. The group may read, because
that is how the service user reads a ``0640 root:poststelle`` file that root maintains.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

CREDENTIAL_PREFIX = "credential:"
CREDSTORE = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))
# systemd's rule for a credential name: a valid file name, no more than 255 bytes.
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,255}")


class SecretError(ValueError):
    """A secret's setting that does not work; the text is the problem, for a ``ConfigError``."""


def is_credential(value: str) -> bool:
    return value.startswith(CREDENTIAL_PREFIX)


def valid_name(name: str) -> bool:
    """One file name: what ``LoadCredential=`` accepts, and never a way out of the directory."""
    return _NAME.fullmatch(name) is not None and name not in (".", "..")


def resolve(value: str, *, environ: Mapping[str, str] | None = None, credstore: tuple[Path, ...] = CREDSTORE) -> Path:
    """The file a secret's setting names: a path as written, or a credential's file."""
    if not is_credential(value):
        return Path(value)
    name = value.removeprefix(CREDENTIAL_PREFIX)
    if not valid_name(name):
        raise SecretError(f"{value!r}: a credential name is one file name (letters, digits, '.', '_', '-', '@', '+')")
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY", "")
    if directory:
        path = Path(directory) / name
        if not path.is_file():
            problem = f"credential {name!r} was not passed to the service: add LoadCredential={name} to the unit"
            raise SecretError(problem)
        return path
    for store in credstore:
        if (store / name).is_file():
            return store / name
    places = ", ".join(str(s) for s in credstore)
    raise SecretError(
        f"credential {name!r}: $CREDENTIALS_DIRECTORY is not set (not started by systemd) and {places} have no {name}"
    )


def exposure_problem(path: Path) -> str | None:
    """Why ``path`` is not private enough for a secret, or ``None``; group access is allowed."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # missing or unreadable: the caller's read says so in its own words
    if mode & 0o007:
        return (
            f"{path} is open to others (mode {stat.S_IMODE(mode):04o}); a secret must not be:"
            f" chmod o-rwx {path} (0600, or 0640 with group poststelle)"
        )
    return None
