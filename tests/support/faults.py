"""Run the real ``poststelle`` command with a fault injected into its ledger, for tests.

    python -m support.faults FAULT[,FAULT...] -- ARGS...

Each FAULT is ``what:mailbox[:times]``: the ledger raises a ``StoreError`` saying
"database is locked" (what SQLite reports when another writer holds it too long) for
that mailbox, the first ``times`` calls (default: every call). ``what`` is one of

* ``plan``: recording the intent for a batch;
* ``finish``: recording the outcome of a batch, after its entries were published;
* ``record``: recording that the mailbox failed (its status and its ``mailbox-error``
  entry), so the failure happens while a failure is being recorded.

``clock:SECONDS`` instead runs the whole program on a wall clock shifted by SECONDS
(``clock:-3600``: an hour behind, as after a bad NTP step), through ``gateway.clock``.

Everything else is the real program against the real Dovecot. The patches are made in
this process only; the analysis workers it spawns import this module but run none of it.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any


def locked(what: str) -> Exception:
    from gateway.records.sqlite.connect import sqlite_errors

    try:
        with sqlite_errors(what):
            raise sqlite3.OperationalError("database is locked")
    except Exception as exc:  # noqa: BLE001 - built to be raised by the caller
        return exc
    raise AssertionError("sqlite_errors swallowed the error")


class Budget:
    """How often a fault still fires: ``None`` is always."""

    def __init__(self, times: int | None) -> None:
        self.left = times

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def install(spec: str) -> None:
    from gateway.records.sqlite.store import SQLiteStore

    what, mailbox, *rest = spec.split(":")
    if what == "clock":
        shift_clock(float(mailbox))
        return
    budget = Budget(int(rest[0]) if rest else None)

    def wrap(name: str, hits: Callable[..., bool]) -> None:
        original = getattr(SQLiteStore, name)

        def faulty(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
            if hits(*args, **kwargs) and budget.take():
                raise locked(name)
            return original(self, *args, **kwargs)

        setattr(SQLiteStore, name, faulty)

    def of_mailbox(records: Sequence[Any], *_: Any, **__: Any) -> bool:
        return any(r.mailbox == mailbox for r in records)

    if what in ("plan", "finish"):
        wrap(what, of_mailbox)
    elif what == "record":
        wrap("set_status", lambda name, **fields: name == mailbox and fields.get("last_error") is not None)
        wrap(
            "record_events",
            lambda events: any(e.type == "mailbox-error" and e.details.get("mailbox") == mailbox for e in events),
        )
    else:
        raise SystemExit(f"unknown fault {what!r}")


def shift_clock(seconds: float) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway import clock

    clock.set_source(lambda: datetime.now(UTC) + timedelta(seconds=seconds))


def main(argv: list[str]) -> None:
    faults, sep, args = argv[0], argv[1], argv[2:]
    if sep != "--":
        raise SystemExit("usage: python -m support.faults FAULT[,FAULT...] -- ARGS...")
    for spec in faults.split(","):
        install(spec)
    from cli.main import app

    app(args=args, prog_name="poststelle")


if __name__ == "__main__":
    main(sys.argv[1:])
