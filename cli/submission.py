"""``poststelle submission-user``: who may hand in letters through the submission listener.

Passwords are read from the terminal (twice) or, for scripts, as one line from standard
input with ``--password-stdin``; never from the command line, where ``ps`` and the shell
history would keep them. Every change is recorded in the audit trail with the OS user.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import typer

from cli.common import ConfigOption, JsonOption, fail, get_config, person_decision, print_json, print_table
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.outbound.users import ScryptHash, hash_password, load_users, valid_name, write_users
from gateway.records.actors import Actor
from gateway.records.chain import AuditEvent
from gateway.records.store import Store

app = typer.Typer(help="Users of the SMTP submission listener: add, remove, list.", no_args_is_help=True)
MIN_PASSWORD = 8
PasswordStdin = typer.Option(False, "--password-stdin", help="Read the password as one line from standard input.")


def _users_file(cfg: Config) -> Path:
    if cfg.submission is None:
        fail(f"{cfg.path} has no [submission] section (users_file is set there)")
    return cfg.submission.users_file


def _load(path: Path) -> dict[str, ScryptHash]:
    try:
        return load_users(path)
    except ConfigError as exc:
        fail(str(exc))


def _read_password(from_stdin: bool) -> bytes:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            fail("the passwords differ")
    else:
        fail("no terminal to ask for the password; use --password-stdin")
    if len(password) < MIN_PASSWORD:
        fail(f"the password is too short (at least {MIN_PASSWORD} characters)")
    return password.encode("utf-8")


def _change(cfg: Config, event: str, name: str, users: dict[str, ScryptHash]) -> None:
    path = _users_file(cfg)

    def act(store: Store, actor: Actor) -> None:
        write_users(path, users)
        details = {"user": name, "users_file": str(path), **actor.fields()}
        store.record_events([AuditEvent(event, actor=actor.name, details=details)])

    person_decision(cfg, act)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The clerk's login name."),
    password_stdin: bool = PasswordStdin,
    replace: bool = typer.Option(False, "--replace", help="Set a new password for an existing user."),
    config: Path | None = ConfigOption,
) -> None:
    """Add a user (or, with --replace, set a new password)."""
    cfg = get_config(config)
    if not valid_name(name):
        fail("a user name is 1-64 of A-Z a-z 0-9 . _ @ + - (a letter or digit first)")
    users = _load(_users_file(cfg))
    if name in users and not replace:
        fail(f"user {name!r} exists; use --replace to set a new password")
    if name not in users and replace:
        fail(f"no user {name!r} to replace")
    users[name] = hash_password(_read_password(password_stdin))
    _change(cfg, "submission-user-password-set" if replace else "submission-user-added", name, users)
    typer.echo(f"{'password set for' if replace else 'added'} {name}")


@app.command("remove")
def remove(name: str = typer.Argument(...), config: Path | None = ConfigOption) -> None:
    """Remove a user: their next login fails (sessions already open may finish their letter)."""
    cfg = get_config(config)
    users = _load(_users_file(cfg))
    if name not in users:
        fail(f"no user {name!r}")
    del users[name]
    _change(cfg, "submission-user-removed", name, users)
    typer.echo(f"removed {name}")


@app.command("list")
def list_cmd(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """The users and how their passwords are hashed (never the hashes)."""
    cfg = get_config(config)
    rows = [{"user": name, "hash": f"scrypt ln={h.ln},r={h.r},p={h.p}"} for name, h in _load(_users_file(cfg)).items()]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["user", "hash"])
