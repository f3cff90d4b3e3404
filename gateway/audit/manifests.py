"""Checking a published entry against its manifest, for auditors.

Filing writes ``manifest.json`` (``filing.entries``); this reads it back and compares every
file, so ``poststelle audit verify`` can say which file of an entry is missing, altered or
was added after the fact.

Nothing here follows a symbolic link. The gateway never files one, so a link inside an
entry was put there by someone else: it could make a swapped-out file outside the case
folders verify as the filed one (same bytes, different place), or make the check read
anywhere on the machine. A link is reported as a problem of its own and never read, and a
manifest path that is absolute or climbs out of the entry is refused the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.filing.entries import sha256_hex
from gateway.filing.reading import read_inside


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str
    expected: str | None = None
    found: str | None = None


def verify_entry(entry: Path) -> list[ManifestProblem]:
    """Compare every file of an entry with its manifest: missing, altered, linked or unlisted files."""
    problems: list[ManifestProblem] = []
    manifest_path = entry / "manifest.json"
    raw = read_inside(entry, "manifest.json")
    if isinstance(raw, str):
        return [ManifestProblem(str(manifest_path), f"unreadable manifest: {raw}")]
    try:
        manifest = json.loads(raw)
        listed: dict[str, dict[str, Any]] = manifest["files"]
        listed.items()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [ManifestProblem(str(manifest_path), f"unreadable manifest: {exc}")]
    for rel, meta in listed.items():
        expected = meta.get("sha256") if isinstance(meta, dict) else None
        data = read_inside(entry, rel)
        if isinstance(data, str):
            problems.append(ManifestProblem(str(entry / rel), data, expected, None))
            continue
        digest = sha256_hex(data)
        if digest != expected:
            problems.append(ManifestProblem(str(entry / rel), "altered", expected, digest))
    for top, dirs, files in os.walk(entry, followlinks=False):
        for name in (*dirs, *files):
            p = Path(top) / name
            rel = p.relative_to(entry).as_posix()
            if rel in listed:
                continue  # already checked above, a link there included
            if p.is_symlink():
                problems.append(ManifestProblem(str(p), "symlink", None, os.readlink(p)))
            elif name in files and rel != "manifest.json":
                found = read_inside(entry, rel)
                unlisted_sha = sha256_hex(found) if isinstance(found, bytes) else None
                problems.append(ManifestProblem(str(p), "unlisted file", None, unlisted_sha))
    return problems
