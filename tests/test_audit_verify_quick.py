"""``audit verify`` without typer: the quick path reads what typer would, or leaves the line to typer.

An auditor's ``audit verify --since HEAD_HASH`` skips typer's start-up (``cli/verify_run.py``).
The quick path must never answer differently: the same state verified through it and
through typer (a form of the options only typer reads) gives the same report, and every
line it does not understand in full goes to typer, whose usage errors stay the only ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from cli.verify_run import parse_quick

sys.path.insert(0, str(REPO / "benchmarks"))
import audit_verify as bench


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], {}),
        (["--since", "ab", "--json"], {"since": "ab", "as_json": True}),
        (["--since=ab", "-c", "/p.toml", "--tenant", "t"], {"since": "ab", "config": "/p.toml", "tenant": "t"}),
        (["--public-key", "k.pem", "--jsonl=x"], {"public_key": "k.pem", "jsonl": "x"}),
    ],
)
def test_the_plain_forms_of_the_options_are_read(args: list[str], expected: dict[str, Any]) -> None:
    assert parse_quick(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--sinc", "ab"],  # a typing error: typer names the option
        ["--since"],  # no value
        ["--since", "--json"],  # an option where the value belongs
        ["--since", "ab", "--since", "cd"],  # twice
        ["--json", "--json"],
        ["-cp.toml"],  # short option with its value attached: typer's form
        ["--since="],
        ["extra"],
        ["--", "--json"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert parse_quick(args) is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTSTELLE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A trail of 1,600 entries (200 filed messages) built with the gateway's code; the head 800 entries back."""
    return bench.build(tmp_path_factory.mktemp("quick"), 1_600, 20, 800)


def _same(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "seconds"}


@pytest.mark.parametrize("since", [True, False])
def test_the_quick_path_reports_what_typer_reports(state: tuple[Path, str], since: bool) -> None:
    cfg, head = state
    extra = ["--since", head] if since else []
    quick = _cli("audit", "verify", "--json", "--config", str(cfg), *extra)
    typer = _cli("audit", "verify", "--json", f"-c{cfg}", *extra)  # a form only typer reads
    assert quick.returncode == typer.returncode == 0, quick.stderr + typer.stderr
    assert quick.stderr == typer.stderr  # the config's warnings, worded alike
    assert _same(json.loads(quick.stdout)) == _same(json.loads(typer.stdout))
    text_quick = _cli("audit", "verify", "--config", str(cfg), *extra).stdout.splitlines()
    text_typer = _cli("audit", "verify", f"-c{cfg}", *extra).stdout.splitlines()
    assert text_quick[1:] == text_typer[1:] and text_quick[0].startswith("audit verify: OK")


def test_refusals_and_breaks_exit_alike(state: tuple[Path, str], tmp_path: Path) -> None:
    cfg, _ = state
    for args in (["--since", "not-a-hash"], ["--since", "ab" * 32], ["--public-key", str(tmp_path / "none.pem")]):
        quick = _cli("audit", "verify", "--config", str(cfg), *args)
        typer = _cli("audit", "verify", f"-c{cfg}", *args)
        assert quick.returncode == typer.returncode == 1, args
        assert quick.stderr == typer.stderr, args
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nstate_dir = 3\n")
    quick, typer = _cli("audit", "verify", "--config", str(bad)), _cli("audit", "verify", f"-c{bad}")
    assert quick.returncode == typer.returncode == 2
    assert quick.stderr == typer.stderr and "configuration error" in quick.stderr


def test_help_and_typing_errors_come_from_typer() -> None:
    assert "--since" in _cli("audit", "verify", "--help").stdout
    wrong = _cli("audit", "verify", "--sinc", "ab")
    assert wrong.returncode == 2 and "No such option" in wrong.stderr


def test_the_quick_path_loads_neither_typer_nor_pydantic(state: tuple[Path, str]) -> None:
    """What the quick path saves is typer's start-up: a run through it must not import typer after all."""
    cfg, head = state
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sorted({m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] in ('typer', 'click', 'pydantic', 'rich', 'concurrent')})) + '\\n'))\n"
        f"sys.argv = ['poststelle', 'audit', 'verify', '--json', '--config', {str(cfg)!r}, '--since', {head!r}]\n"
        "from cli.__main__ import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"]
    assert "MODULES \n" in out.stderr, out.stderr


def test_the_quick_path_knows_exactly_the_options_the_typer_command_declares() -> None:
    """An option added to ``audit verify`` must be added to the quick path too, or lines using it
    would still go to typer (safe) while plain ones silently ignored it (not): this keeps them equal."""
    import typer.main

    from cli.main import build_app
    from cli.verify_run import _FLAGS, _VALUED

    group = typer.main.get_command(build_app(["audit", "verify"]))
    verify = group.commands["audit"].commands["verify"]  # type: ignore[attr-defined]
    declared = {opt for p in verify.params for opt in p.opts if opt != "--help"}
    assert declared == set(_VALUED) | set(_FLAGS)
