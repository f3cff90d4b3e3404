"""``python -m cli`` and the ``poststelle`` console script.

Light on purpose: the analysis worker processes are spawned fresh interpreters, and
multiprocessing makes each of them import the parent's main module first (to find
functions defined there). Importing ``cli.main`` (typer and every command's modules) in
every worker cost ~0.15 s of CPU each at start-up, measured; this module imports it
only when it runs as the program.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the app; a failure of the machine or the gateway that no command caught is one line, exit 1.

    The commands report what they expect themselves; this is the last net under them, so an
    administrator never gets a traceback for a full disk or a file they may not read (a bug
    in our code, any other exception, keeps its traceback).
    """
    from gateway.errors import PoststelleError

    try:
        if sys.argv[1:3] == ["audit", "verify"]:  # an auditor's daily check: no typer (cli/verify_run.py)
            from cli.verify_run import quick_verify

            code = quick_verify(sys.argv[3:])
            if code is not None:
                sys.stdout.flush()
                sys.exit(code)
        from cli.main import build_app

        build_app(sys.argv[1:])(prog_name="poststelle")
    except (PoststelleError, OSError) as exc:
        from gateway.display import safe_text
        from gateway.service.startup import describe

        sys.stderr.write(f"error: {safe_text(describe(exc))}\n")
        sys.stderr.flush()
        sys.exit(1)


if __name__ == "__main__":
    main()
