"""Checking a published entry against its manifest, for auditors.

Filing writes ``manifest.json`` (``filing.entries``); this reads it back and compares every
file, so ``poststelle audit verify`` can say which file of an entry is missing, altered or
was added after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.filing.entries import sha256_hex


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str
    expected: str | None = None
    found: str | None = None


def verify_entry(entry: Path) -> list[ManifestProblem]:
    """Compare every file of an entry with its manifest: missing, altered, or unlisted files."""
    problems: list[ManifestProblem] = []
    try:
        manifest = json.loads((entry / "manifest.json").read_bytes())
        listed: dict[str, dict[str, Any]] = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [ManifestProblem(str(entry / "manifest.json"), f"unreadable manifest: {exc}")]
    for rel, meta in listed.items():
        p = entry / rel
        try:
            digest = sha256_hex(p.read_bytes())
        except OSError:
            problems.append(ManifestProblem(str(p), "missing", meta.get("sha256"), None))
            continue
        if digest != meta.get("sha256"):
            problems.append(ManifestProblem(str(p), "altered", meta.get("sha256"), digest))
    for p in entry.rglob("*"):
        rel = p.relative_to(entry).as_posix()
        if p.is_file() and rel != "manifest.json" and rel not in listed:
            problems.append(ManifestProblem(str(p), "unlisted file", None, sha256_hex(p.read_bytes())))
    return problems
