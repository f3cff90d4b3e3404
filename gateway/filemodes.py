"""The modes of everything the gateway writes, whatever the umask of whoever started it.

The ledger, the audit trail and its copy, case folders and the quarantine hold personal
data: the gateway's own user writes them, a group (the records office's clerks, the
auditors) may read them, nobody else sees them. A service manager's umask (often 022) would
make them world-readable, an administrator's 077 would lock the clerks out; so every
process that writes sets its own umask from the configured modes (``[storage] file_mode``
and ``dir_mode``, default 0640 and 0750) before it creates anything, and the explicit modes
the filing code passes come from here too. A umask is inherited by child processes, so the
analysis workers (and SQLite, which creates the ledger, its WAL and its shared-memory file
with 0644 masked by the umask) follow it as well.

Secrets keep their own stricter modes (the audit signing key 0600, the GnuPG home 0700).
"""

from __future__ import annotations

import os

DEFAULT_FILE_MODE = 0o640
DEFAULT_DIR_MODE = 0o750

_file_mode = DEFAULT_FILE_MODE
_dir_mode = DEFAULT_DIR_MODE


def problem(file_mode: int, dir_mode: int) -> str | None:
    """Why this pair of modes cannot be used, or None.

    One umask must yield both (files are created 0666 and directories 0777 before it
    applies), so ``file_mode`` is ``dir_mode`` without the execute bits; the owner must be
    able to read and write, and nobody but owner and group may write.
    """
    if not 0 <= dir_mode <= 0o777 or not 0 <= file_mode <= 0o777:
        return 'modes are three octal digits, e.g. file_mode = "0640", dir_mode = "0750"'
    if dir_mode & 0o700 != 0o700:
        return "dir_mode must give the owner rwx (7 in the first digit)"
    if dir_mode & 0o002:
        return "dir_mode must not let others write"
    if file_mode != dir_mode & 0o666:
        return (
            f"file_mode must be dir_mode without the execute bits ({dir_mode & 0o666:04o} for dir_mode {dir_mode:04o})"
        )
    return None


def umask_for(dir_mode: int) -> int:
    """The umask that creates directories ``dir_mode`` and files ``dir_mode`` without execute."""
    return 0o777 & ~dir_mode


def apply(file_mode: int = DEFAULT_FILE_MODE, dir_mode: int = DEFAULT_DIR_MODE) -> None:
    """Use these modes in this process (and the children it starts from now on)."""
    global _file_mode, _dir_mode
    reason = problem(file_mode, dir_mode)
    if reason is not None:
        raise ValueError(reason)
    _file_mode, _dir_mode = file_mode, dir_mode
    os.umask(umask_for(dir_mode))


def file_mode() -> int:
    """The mode a file the gateway keeps is created with (the umask applied on top)."""
    return _file_mode


def dir_mode() -> int:
    """The mode a directory the gateway makes is created with (the umask applied on top)."""
    return _dir_mode
