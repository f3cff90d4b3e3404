"""``python -m cli`` and the ``poststelle`` console script.

Light on purpose: the analysis worker processes are spawned fresh interpreters, and
multiprocessing makes each of them import the parent's main module first (to find
functions defined there). Importing ``cli.main`` (typer and every command's modules) in
every worker cost ~0.15 s of CPU each at start-up, measured; this module imports it
only when it runs as the program.
"""

from __future__ import annotations


def main() -> None:
    from cli.main import app

    app(prog_name="poststelle")


if __name__ == "__main__":
    main()
