"""``poststelle --version`` names the installed package's version, so a bug report can say which one."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

from conftest import POSTSTELLE, REPO


def test_version_flag_prints_the_installed_version_and_exits_zero() -> None:
    proc = subprocess.run([*POSTSTELLE, "--version"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"poststelle {version('poststelle')}"
