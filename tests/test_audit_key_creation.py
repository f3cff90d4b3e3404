"""The audit signing key of a fresh state directory: created once, whole, even when several
threads and processes start on it at the same moment."""

from __future__ import annotations

import multiprocessing
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.records.signing import key_id, load_or_create_key


def _key_id_in_a_process(path: str) -> str:
    return key_id(load_or_create_key(Path(path)))


def test_threads_starting_on_a_fresh_state_directory_all_get_the_one_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.key"
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(pool.map(lambda _: key_id(load_or_create_key(path)), range(64)))
    assert ids == {key_id(load_or_create_key(path))}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["audit.key"], "no temporary file is left behind"


def test_processes_starting_on_a_fresh_state_directory_all_get_the_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = set(pool.map(_key_id_in_a_process, [str(path)] * 16))
    assert ids == {key_id(load_or_create_key(path))}
    assert sorted(os.listdir(tmp_path)) == ["audit.key"]
