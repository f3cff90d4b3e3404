"""The service unit's system call sandbox, applied to ``python -m cli`` processes in a test.

systemd applies ``SystemCallFilter=``, ``RestrictAddressFamilies=``, ``NoNewPrivileges=`` and
``MemoryDenyWriteExecute=`` with seccomp when it starts the unit; where systemd is not PID 1
(containers, CI) the unit cannot be started, but the same kernel mechanisms can be applied
to the gateway's own process. Python imports ``sitecustomize`` at start-up, so a test puts
this directory first on ``PYTHONPATH`` and names the unit in ``$POSTSTELLE_UNIT_SANDBOX``:
every ``python -m cli`` started then (and everything it starts: analysis workers, gpg,
gpg-agent) runs under the unit's filter; other Python processes (pytest, Dovecot's helpers)
are left alone.

The groups (``@system-service`` …) are expanded with ``systemd-analyze syscall-filter``, so
the lists are the installed systemd's. What is applied, and a self-test that a call outside
the filter is refused, are appended to ``$POSTSTELLE_UNIT_SANDBOX_LOG``. Needs libseccomp's
Python binding (Debian: python3-seccomp). Test-only code; nothing here ships.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def _is_gateway() -> bool:
    argv = list(getattr(sys, "orig_argv", []))
    return "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["cli"]


def _settings(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _groups() -> dict[str, list[str]]:
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if line.startswith("@"):
            current = item.split()[0]
            groups[current] = []
        elif current is not None:
            groups[current].append(item.split()[0])
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    todo = list(names)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("@"):
            todo.extend(groups.get(name, []))
        else:
            out.add(name)
    return out


def _apply(unit: Path, log: Path | None) -> None:
    sys.path.append(DIST_PACKAGES)
    try:
        import seccomp  # type: ignore[import-not-found]
    finally:
        sys.path.remove(DIST_PACKAGES)
    settings = _settings(unit)
    groups = _groups()
    allowed = _expand(["@default"], groups)
    for value in settings.get("SystemCallFilter", []):
        if value.startswith("~"):
            allowed -= _expand(value[1:].split(), groups)
        else:
            allowed |= _expand(value.split(), groups)
    number = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[-1])
    families = [getattr(socket, f) for v in settings.get("RestrictAddressFamilies", []) for f in v.split()]
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(number))
    for name in sorted(allowed - ({"socket"} if families else set())):
        with contextlib.suppress(RuntimeError, ValueError):  # a name libseccomp does not know
            rules.add_rule(seccomp.ALLOW, name)
    for family in families:
        rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, int(family)))
    libc = ctypes.CDLL(None, use_errno=True)
    mdwe = settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes"
    if mdwe and libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise SystemExit(f"unit sandbox: PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}")
    rules.load()  # also sets no_new_privs
    try:
        os.setuid(0)
        refused = "NOT refused"
    except PermissionError:
        refused = "refused"
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"pid {os.getpid()}: {len(allowed)} calls allowed, setuid {refused}, families {families}\n")


_unit = os.environ.get("POSTSTELLE_UNIT_SANDBOX")
if _unit and _is_gateway():
    _log = os.environ.get("POSTSTELLE_UNIT_SANDBOX_LOG")
    _apply(Path(_unit), Path(_log) if _log else None)
