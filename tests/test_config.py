"""A bad configuration stops start-up naming the file, the key and the problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO

from gateway.config import load_config
from gateway.errors import ConfigError

BASE = """
[storage]
state_dir = "{root}/state"

[[mailbox]]
name = "rathaus"
host = "imap.example.org"
username = "rathaus"
password_file = "{root}/pw"
"""


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)
    p = tmp_path / "poststelle.toml"
    p.write_text(base.format(root=tmp_path) + extra)
    return p


def problem(tmp_path: Path, extra: str = "", base: str = BASE) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra, base))
    return info.value


def test_minimal_config_gets_safe_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path))
    mb = cfg.mailboxes[0]
    assert (mb.security, mb.port, mb.folder, mb.processed_folder) == ("tls", 993, "INBOX", "Poststelle/Processed")
    assert cfg.storage.cases_dir == tmp_path / "state" / "cases"
    assert mb.password.reveal() == "secret"
    assert "secret" not in repr(cfg)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, 'hots = "x"\n')
    assert (err.key, err.problem) == ("mailbox[0].hots", "unknown key")
    assert err.file.endswith("poststelle.toml")


def test_wrong_type_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, "port = true\n")
    assert err.key == "mailbox[0].port" and "boolean" in err.problem


def test_bad_regex_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, '[[route]]\nname = "x"\nsubject = "(unclosed"\ncase = "x"\n')
    assert err.key == "route[0].subject" and "regular expression" in err.problem


def test_template_field_must_be_a_named_group(tmp_path: Path) -> None:
    err = problem(tmp_path, '[[route]]\nname = "x"\nsubject = "Az (?P<nr>\\\\d+)"\ncase = "{case}"\n')
    assert err.key == "route[0].case" and "{case}" in err.problem


def test_missing_password_file_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, base=BASE.replace("{root}/pw", "{root}/missing"))
    assert err.key == "mailbox[0].password_file" and "not found" in err.problem


def test_plain_imap_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    err = problem(tmp_path, 'security = "plain"\n')
    assert err.key == "mailbox[0].security" and "loopback" in err.problem


def test_plain_imap_to_loopback_is_allowed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'security = "plain"\n', BASE.replace("imap.example.org", "127.0.0.1")))
    assert cfg.mailboxes[0].port == 143


def test_inline_password_works_but_is_warned_about(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base=BASE.replace('password_file = "{root}/pw"', 'password = "inline"')))
    assert any("password stored in the config file" in w for w in cfg.warnings)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[storage\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_mailbox_names_are_refused(tmp_path: Path) -> None:
    mb = BASE[BASE.index("[[mailbox]]") :].format(root=tmp_path)
    err = problem(tmp_path, mb)
    assert err.key == "mailbox[1].name"


def test_smime_revocation_mode_must_be_one_of_the_three(tmp_path: Path) -> None:
    err = problem(tmp_path, '[smime]\nrevocation = "sometimes"\n')
    assert err.key == "smime.revocation"
    assert "require, if-configured, off" in err.problem


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("crl_fetch_timeout = 0", "smime.crl_fetch_timeout"),
        ("crl_grace = -1", "smime.crl_grace"),
        ("crl_max_bytes = 10", "smime.crl_max_bytes"),
        ('fetch_crls = "yes"', "smime.fetch_crls"),
    ],
)
def test_bad_crl_settings_are_named(tmp_path: Path, line: str, key: str) -> None:
    assert problem(tmp_path, f"[smime]\n{line}\n").key == key


def test_smime_revocation_settings_are_read(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            '[smime]\nrevocation = "require"\nfetch_crls = true\n'
            "crl_grace = 3600\ncrl_fetch_timeout = 5\ncrl_max_bytes = 65536\n",
        )
    )
    assert cfg.smime is not None
    smime = cfg.smime
    assert (smime.revocation, smime.fetch_crls, smime.crl_grace) == ("require", True, 3600.0)
    assert (smime.crl_fetch_timeout, smime.crl_max_bytes) == (5.0, 65536)
    assert load_config(write(tmp_path, "[smime]\n")).smime == type(smime)()  # defaults


def test_the_shipped_example_config_is_valid(tmp_path: Path) -> None:
    text = (REPO / "config" / "poststelle.example.toml").read_text()
    (tmp_path / "pw").write_text("x")
    (tmp_path / "pw").chmod(0o600)
    p = tmp_path / "example.toml"
    p.write_text(text.replace("/etc/poststelle/rathaus.secret", str(tmp_path / "pw")))
    cfg = load_config(p)
    assert [r.name for r in cfg.routes] == ["reply with our reference", "building permits", "administrative court"]


def test_run_with_a_bad_config_exits_non_zero_naming_file_and_key(tmp_path: Path) -> None:
    p = write(tmp_path, 'idle = "yes"\n')
    proc = subprocess.run(
        [*POSTSTELLE, "run", "--once", "--config", str(p)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert str(p) in proc.stderr and "mailbox[0].idle" in proc.stderr


def test_outbound_settings_are_read(tmp_path: Path) -> None:
    (tmp_path / "corr").mkdir()
    cfg = load_config(
        write(
            tmp_path,
            f'[openpgp]\nsecret_keys = []\n[outbound]\nsign = "none"\nencrypt = "never"\n'
            f'copy_to_sent_folder = false\ncorrespondents_dir = "{tmp_path}/corr"\n',
        )
    )
    assert cfg.outbound is not None
    assert (cfg.outbound.sign, cfg.outbound.encrypt, cfg.outbound.copy_to_sent_folder) == ("none", "never", False)
    assert cfg.outbound.correspondents_dir == tmp_path / "corr"
    assert load_config(write(tmp_path)).outbound is None


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('[outbound]\nsign = "pgp"\n', "outbound.sign", "one of smime, openpgp, none"),
        ('[outbound]\nencrypt = "sometimes"\n', "outbound.encrypt", "one of auto, always, never"),
        ('[outbound]\nsign = "smime"\n', "outbound.sign", "[smime] identities"),
        ('[outbound]\nsign = "openpgp"\n', "outbound.sign", "[openpgp] secret_keys"),
        ('[outbound]\nsign = "none"\nencrypt = "always"\n', "outbound.encrypt", "[smime] or [openpgp]"),
        (
            '[outbound]\nsign = "none"\ncorrespondents_dir = "/nonexistent/corr"\n',
            "outbound.correspondents_dir",
            "directory not found",
        ),
        ('[outbound]\nsign = "none"\ncopy_to_sent_folder = "yes"\n', "outbound.copy_to_sent_folder", "true or false"),
        ('[outbound]\nsign = "none"\nrelay = "x"\n', "outbound.relay", "unknown key"),
    ],
)
def test_bad_outbound_settings_are_named(tmp_path: Path, extra: str, key: str, words: str) -> None:
    err = problem(tmp_path, extra)
    assert err.key == key and words in err.problem and str(tmp_path) in err.file
