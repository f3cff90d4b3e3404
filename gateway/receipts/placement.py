"""Where a matched receipt is kept: ``<cases_dir>/<case folder>/receipts/<entry>``, beside the case's letters."""

from __future__ import annotations

RECEIPTS = "receipts"


def receipts_folder(case_folder: str) -> str:
    """The folder (relative to ``cases_dir``) the receipts of a case's documents go to."""
    return f"{case_folder}/{RECEIPTS}"
