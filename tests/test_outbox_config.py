"""``[smtp]``: the relay's settings, validated at start-up with file, key and problem named."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import problem, write

from gateway.config import load_config

RELAY = '[smtp]\nhost = "smtp.example.org"\nfrom = "rathaus@hofheim.example"\n'


def test_smtp_defaults_are_starttls_on_587_with_dsn_and_postfix_like_backoff(tmp_path: Path) -> None:
    smtp = load_config(write(tmp_path, RELAY)).smtp
    assert smtp is not None
    assert (smtp.security, smtp.port, smtp.request_dsn, smtp.request_mdn) == ("starttls", 587, True, False)
    assert (smtp.min_backoff, smtp.max_backoff, smtp.max_lifetime) == (300.0, 3600.0, 5 * 86400.0)
    assert smtp.username is None and smtp.password is None


def test_smtp_reads_durations_and_the_password_from_its_file(tmp_path: Path) -> None:
    extra = RELAY + (
        f'username = "rathaus"\npassword_file = "{tmp_path}/pw"\nsecurity = "tls"\n'
        'min_backoff = "30s"\nmax_backoff = "2h"\nmax_lifetime = "3d"\n'
    )
    smtp = load_config(write(tmp_path, extra)).smtp
    assert smtp is not None and smtp.port == 465 and smtp.password is not None
    assert smtp.password.reveal() == "secret" and "secret" not in repr(smtp)
    assert (smtp.min_backoff, smtp.max_backoff, smtp.max_lifetime) == (30.0, 7200.0, 3 * 86400.0)


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('security = "plain"\n', "smtp.security", "loopback"),
        ('min_backoff = "soon"\n', "smtp.min_backoff", "duration"),
        ('min_backoff = "2h"\nmax_backoff = "1h"\n', "smtp.max_backoff", "min_backoff"),
        ('username = "x"\n', "smtp.password_file", "together"),
        ('password_file = "/nonexistent/pw"\nusername = "x"\n', "smtp.password_file", "not found"),
        ('hots = "x"\n', "smtp.hots", "unknown key"),
    ],
)
def test_a_bad_smtp_setting_names_the_key_and_the_problem(tmp_path: Path, extra: str, key: str, words: str) -> None:
    err = problem(tmp_path, RELAY + extra)
    assert err.key == key and words in err.problem


def test_a_bad_sender_address_is_refused(tmp_path: Path) -> None:
    err = problem(tmp_path, '[smtp]\nhost = "x"\nfrom = "rathaus@x\\r\\nRCPT TO:<a@b>"\n')
    assert err.key == "smtp.from"
