"""What a reloaded configuration restarts, what it refuses, and when the status file is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.service.reload import ReloadRefused, plan_reload
from gateway.service.snapshot import StatusBoard, read_status

MAILBOX = """
[[mailbox]]
name = "{name}"
host = "imap.example.org"
username = "{name}"
password_file = "{root}/{secret}"
"""


def config(
    tmp_path: Path,
    *,
    state: str = "state",
    mailboxes: tuple[str, ...] = ("rathaus", "bauamt"),
    bauamt_file: str = "pw",
    extra: str = "",
) -> Config:
    for name, text in (("pw", "secret\n"), ("pw2", "other\n")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    text = f'[storage]\nstate_dir = "{tmp_path}/{state}"\n'
    for n in mailboxes:
        text += MAILBOX.format(name=n, root=tmp_path, secret=bauamt_file if n == "bauamt" else "pw")
    path = tmp_path / "poststelle.toml"
    path.write_text(text + extra)
    return load_config(path)


def test_unchanged_configuration_restarts_nothing(tmp_path: Path) -> None:
    assert plan_reload(config(tmp_path), config(tmp_path)).nothing


def test_changed_password_restarts_only_that_mailbox(tmp_path: Path) -> None:
    old, new = config(tmp_path), config(tmp_path, bauamt_file="pw2")
    plan = plan_reload(old, new)
    assert (plan.changed, plan.added, plan.removed, plan.analysis) == (("bauamt",), (), (), False)
    assert plan.restarted(new) == ("bauamt",)


def test_added_and_removed_mailboxes_start_and_stop_alone(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path), config(tmp_path, mailboxes=("rathaus", "ordnungsamt")))
    assert (plan.added, plan.removed, plan.changed) == (("ordnungsamt",), ("bauamt",), ())


def test_changed_route_restarts_every_mailbox_with_a_new_analysis(tmp_path: Path) -> None:
    route = '[[route]]\nname = "neu"\nsubject = "Neu-(?P<case>\\\\d+)"\ncase = "NEU-{case}"\n'
    old, new = config(tmp_path), config(tmp_path, extra=route)
    plan = plan_reload(old, new)
    assert plan.analysis and plan.restarted(new) == ("rathaus", "bauamt")
    assert not plan.outbox, "the outbox reads no routes"


@pytest.mark.parametrize(
    ("change", "section"),
    [
        ({"state": "elsewhere"}, "storage"),
        ({"extra": "[audit]\ncheckpoint_every = 5\n"}, "audit"),
        ({"extra": "[metrics]\n"}, "metrics"),
    ],
)
def test_change_only_a_restart_applies_is_refused_naming_the_section(
    tmp_path: Path, change: dict[str, str], section: str
) -> None:
    old = config(tmp_path)
    with pytest.raises(ReloadRefused) as info:
        plan_reload(old, config(tmp_path, **change))  # type: ignore[arg-type]
    assert info.value.key == section and "needs a restart" in info.value.problem


def test_status_file_is_written_on_changes_and_not_on_quiet_polls(tmp_path: Path) -> None:
    path = tmp_path / "daemon.status.json"
    board = StatusBoard(path, pid=4242, config_sha256="abc", version="0.1.0")
    board.mailbox("rathaus")
    board.polled("rathaus", idle=True, worked=False)
    first = read_status(path)
    assert first is not None and first["mailboxes"]["rathaus"]["state"] == "ok"
    written = path.stat().st_ino
    for _ in range(5):
        board.polled("rathaus", idle=True, worked=False)
    assert path.stat().st_ino == written, "a quiet poll does not rewrite the file"
    assert board.view()["mailboxes"]["rathaus"]["last_success"] >= first["mailboxes"]["rathaus"]["last_success"]
    board.polled("rathaus", idle=True, worked=True)
    assert path.stat().st_ino != written, "a poll that filed mail refreshes it"
    board.failed("rathaus", "error", "TransientError: connection reset")
    board.stopped("signal SIGTERM")
    final = json.loads(path.read_text())
    assert final["running"] is False and final["stopped_because"] == "signal SIGTERM"
    assert final["mailboxes"]["rathaus"]["last_error"] == "TransientError: connection reset"
    assert final["mailboxes"]["rathaus"]["connected"] is False
