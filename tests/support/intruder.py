"""An unprivileged local user who owns the clerks' share and plants links, as an attacker would.

The tests run as root (the gateway too); a link made by root proves nothing about what a
clerk can do. So every link is made by a separate process running as ``pst-intruder`` (or
``nobody`` where no user can be added), started in the directory it changes, so that it
needs no access to the directories above the share.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

NAME = "pst-intruder"


@dataclass(frozen=True)
class Intruder:
    name: str
    uid: int
    gid: int

    def run(self, cwd: Path, *argv: str) -> None:
        """Run ``argv`` as the intruder in ``cwd`` (no root, no supplementary groups)."""
        subprocess.run(
            argv,
            cwd=cwd,
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
            check=True,
            capture_output=True,
        )

    def own(self, *paths: Path) -> None:
        """Give ``paths`` to the intruder: the share (or a folder in it) is theirs."""
        for p in paths:
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, self.uid, self.gid)

    def link(self, cwd: Path, name: str, target: Path) -> None:
        """Plant ``cwd/name -> target`` (``name`` may be ``sub/name`` below ``cwd``)."""
        self.run(cwd, "ln", "-s", str(target), name)

    def swap_for_link(self, cwd: Path, name: str, target: Path) -> None:
        """Rename ``cwd/name`` aside (``name.old``) and put a link to ``target`` in its place."""
        self.run(cwd, "mv", name, f"{name}.old")
        self.link(cwd, name, target)


def get_intruder() -> Intruder:
    """The intruder user, added if missing; skips the test when not running as root."""
    if os.geteuid() != 0:
        pytest.skip("planting links as another user needs root to become that user")
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        made = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
            capture_output=True,
            check=False,
        )
        entry = pwd.getpwnam(NAME) if made.returncode == 0 else pwd.getpwnam("nobody")
    return Intruder(entry.pw_name, entry.pw_uid, entry.pw_gid)
