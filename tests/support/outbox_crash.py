"""Run one outbox pass in a process that kills itself with SIGKILL right after the relay's 250.

``python tests/support/outbox_crash.py CONFIG N``: the N-th accepted document never reaches
the ledger's ``sent`` commit, exactly as a ``kill -9`` in the duplicate window would leave it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.outbound.drain import Drain, DrainHooks
from gateway.outbound.smtp import Attempt
from gateway.records.open import open_store
from gateway.records.outbox import OutboxRecord


def main() -> None:
    config = load_config(Path(sys.argv[1]))
    victim = int(sys.argv[2])
    seen = 0

    def kill_after_accept(rec: OutboxRecord, att: Attempt) -> None:
        nonlocal seen
        seen += 1
        if seen == victim:
            os.kill(os.getpid(), signal.SIGKILL)

    Drain(config, open_store(config), hooks=DrainHooks(after_accept=kill_after_accept)).run_once()


if __name__ == "__main__":
    main()
