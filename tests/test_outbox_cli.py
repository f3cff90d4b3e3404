"""``poststelle outbox``: listing, showing and a person's decisions, each recorded with the OS user."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import POSTSTELLE, REPO
from support.outbox import document, smtp_config

from gateway.config import load_config
from gateway.demo.postfix import free_port
from gateway.outbound import outbox
from gateway.records.actors import cli_actor
from gateway.records.open import open_store
from gateway.records.store import EntryFilter


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSTSTELLE_CONFIG": str(config)}
    return subprocess.run(
        [*POSTSTELLE, "outbox", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False
    )


def test_outbox_commands_list_show_hold_release_cancel_and_record_the_os_user(tmp_path: Path) -> None:
    path = smtp_config(tmp_path, port=free_port())
    config = load_config(path)
    store = open_store(config)
    first = outbox.enqueue(config, store, document())
    second = outbox.enqueue(config, store, document(to=("a@remote.test", "b@remote.test")))
    store.close()

    listed = json.loads(cli(path, "list", "--json").stdout)
    assert [(r["id"], r["state"]) for r in listed] == [(first, "queued"), (second, "queued")]
    assert first in cli(path, "list").stdout
    shown = cli(path, "show", second)
    assert shown.returncode == 0 and "b@remote.test" in shown.stdout and "pending" in shown.stdout

    held = cli(path, "hold", first, "--note", "check the address", "--json")
    assert held.returncode == 0 and json.loads(held.stdout)["state"] == "hold"
    again = cli(path, "hold", first)
    assert again.returncode == 1 and "is hold" in again.stderr
    assert cli(path, "release", first).returncode == 0
    assert cli(path, "cancel", second).returncode == 0
    assert json.loads(cli(path, "list", "--state", "cancelled", "--json").stdout)[0]["id"] == second
    assert cli(path, "show", "nope").returncode == 1
    env = {**os.environ, "POSTSTELLE_CONFIG": str(path)}
    status = subprocess.run(
        [*POSTSTELLE, "status", "--json"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=True
    )
    assert json.loads(status.stdout)["outbox"] == {"queued": 1, "cancelled": 1}

    store = open_store(config, readonly=True)
    trail = [(e.event, e.actor) for e in store.select(EntryFilter(events=("held", "released", "cancelled")))]
    store.close()
    me = cli_actor().name
    assert trail == [("held", me), ("released", me), ("cancelled", me)]
