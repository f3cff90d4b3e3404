"""Secrets named in the configuration: a file others may open stops start-up naming file, key
and problem; a group-readable one is fine; ``credential:NAME`` reads systemd's credentials."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import POSTSTELLE, REPO, Env
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.config.model import Secret
from gateway.config.secrets import SecretError, resolve, valid_name
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

#: (setting as the error names it, TOML to add, the secret file's name, other files it needs)
CASES = {
    "mailbox[0].password_file": ("", "pw", ()),
    "smtp.password_file": (
        '[smtp]\nhost = "relay.example.org"\nfrom = "rathaus@example.org"\nusername = "rathaus"\n'
        'password_file = "{root}/smtp.secret"\n',
        "smtp.secret",
        (),
    ),
    "smime.identities[0].key_file": (
        '[smime]\nidentities = [{{ key_file = "{root}/id.key", cert_file = "{root}/id.pem" }}]\n',
        "id.key",
        ("id.pem",),
    ),
    "smime.identities[0].pkcs12_file": (
        '[smime]\nidentities = [{{ pkcs12_file = "{root}/id.p12" }}]\n',
        "id.p12",
        (),
    ),
    "smime.identities[0].password_file": (
        '[smime]\nidentities = [{{ pkcs12_file = "{root}/id.p12", password_file = "{root}/id.pass" }}]\n',
        "id.pass",
        ("id.p12",),
    ),
    "openpgp.secret_keys[0]": ('[openpgp]\nsecret_keys = ["{root}/us.asc"]\n', "us.asc", ()),
    "openpgp.passphrase_file": (
        '[openpgp]\nsecret_keys = ["{root}/us.asc"]\npassphrase_file = "{root}/us.pass"\n',
        "us.pass",
        ("us.asc",),
    ),
    "audit.key_file": ('[audit]\nkey_file = "{root}/audit.key"\n', "audit.key", ()),
    "submission.users_file": (
        '[submission]\nusers_file = "{root}/submission.users"\nsender = "rathaus@example.org"\n',
        "submission.users",
        (),
    ),
    "submission.tls_key": (
        '[submission]\nusers_file = "{root}/submission.users"\nsender = "rathaus@example.org"\n'
        'tls_cert = "{root}/tls.pem"\ntls_key = "{root}/tls.key"\n',
        "tls.key",
        ("tls.pem",),
    ),
}


def setup(tmp_path: Path, case: str, secret_mode: int) -> tuple[Path, Path]:
    """The config file for ``case``, every other file private; returns (config, the secret)."""
    extra, name, others = CASES[case]
    for other in ("pw", *others):
        (tmp_path / other).write_text("x\n")
        (tmp_path / other).chmod(0o600)
    secret = tmp_path / name
    secret.write_text("secret\n")
    secret.chmod(secret_mode)
    path = tmp_path / "poststelle.toml"
    path.write_text(BASE.format(root=tmp_path) + extra.format(root=tmp_path))
    return path, secret


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_secret_file_open_to_others_stops_loading_naming_file_key_and_problem(tmp_path: Path, case: str) -> None:
    path, secret = setup(tmp_path, case, 0o644)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == case
    assert str(path) in str(exc.value)
    assert f"{secret} is open to others (mode 0644)" in str(exc.value)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o440, 0o400])
def test_a_secret_readable_by_owner_and_group_only_is_accepted(tmp_path: Path, mode: int) -> None:
    path, _ = setup(tmp_path, "openpgp.passphrase_file", mode)
    assert load_config(path).openpgp is not None
    path, _ = setup(tmp_path, "mailbox[0].password_file", mode)
    assert load_config(path).mailboxes[0].password.reveal() == "secret"


def test_any_bit_for_others_counts_not_only_read(tmp_path: Path) -> None:
    path, _ = setup(tmp_path, "audit.key_file", 0o602)
    with pytest.raises(ConfigError, match=r"audit\.key_file: .* open to others \(mode 0602\)"):
        load_config(path)


def test_files_the_gateway_makes_itself_may_be_missing_until_then(tmp_path: Path) -> None:
    path, secret = setup(tmp_path, "audit.key_file", 0o600)
    secret.unlink()
    assert load_config(path).audit.key_file == secret


def credentials(tmp_path: Path, **files: str) -> Path:
    """A directory laid out the way systemd passes credentials: read-only files, owner only."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o400)
    return directory


def test_a_credential_is_read_from_the_services_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials(tmp_path, **{"imap-rathaus": "from-systemd\n"})))
    path = tmp_path / "poststelle.toml"
    path.write_text(BASE.format(root=tmp_path).replace(f"{tmp_path}/pw", "credential:imap-rathaus"))
    assert load_config(path).mailboxes[0].password.reveal() == "from-systemd"


def test_a_credential_the_unit_does_not_pass_names_the_loadcredential_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials(tmp_path)))
    path = tmp_path / "poststelle.toml"
    path.write_text(BASE.format(root=tmp_path).replace(f"{tmp_path}/pw", "credential:imap-rathaus"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "mailbox[0].password_file"
    assert "LoadCredential=imap-rathaus" in str(exc.value)


def test_a_private_key_list_takes_credentials_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = credentials(tmp_path, **{"pgp-key": "key", "pgp-pass": "pass"})
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    path, _ = setup(tmp_path, "openpgp.passphrase_file", 0o600)
    text = path.read_text().replace(f"{tmp_path}/us.asc", "credential:pgp-key")
    path.write_text(text.replace(f"{tmp_path}/us.pass", "credential:pgp-pass"))
    openpgp = load_config(path).openpgp
    assert openpgp is not None
    assert (openpgp.secret_keys, openpgp.passphrase_file) == ((directory / "pgp-key",), directory / "pgp-pass")


def test_outside_the_service_a_credential_is_read_where_loadcredential_reads_it(tmp_path: Path) -> None:
    first, second = tmp_path / "etc-credstore", tmp_path / "run-credstore"
    second.mkdir()
    (second / "imap-rathaus").write_text("x")
    assert resolve("credential:imap-rathaus", environ={}, credstore=(first, second)) == second / "imap-rathaus"
    with pytest.raises(SecretError, match=r"CREDENTIALS_DIRECTORY is not set"):
        resolve("credential:smtp", environ={}, credstore=(first, second))


def test_a_plain_path_is_taken_as_written() -> None:
    assert resolve("/etc/poststelle/rathaus.secret", environ={}) == Path("/etc/poststelle/rathaus.secret")


@given(st.text(min_size=0, max_size=40))
def test_a_credential_name_never_leads_out_of_the_credentials_directory(name: str) -> None:
    directory = Path("/run/credentials/poststelle.service")
    if valid_name(name):
        assert (directory / name).parent == directory and (directory / name).name == name
    else:
        with pytest.raises(SecretError):
            resolve("credential:" + name, environ={"CREDENTIALS_DIRECTORY": str(directory)})


def test_run_refuses_to_start_with_a_key_open_to_others_exit_2(tmp_path: Path) -> None:
    path, secret = setup(tmp_path, "openpgp.secret_keys[0]", 0o644)
    proc = subprocess.run(
        [*POSTSTELLE, "run", "--once", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"},
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "openpgp.secret_keys[0]" in proc.stderr and str(secret) in proc.stderr


def test_the_audit_key_the_gateway_made_stops_start_up_once_opened_to_others(env: Env) -> None:
    env.cli("init", check=True)
    key = env.state_dir / "audit" / "audit-signing.key"
    assert key.exists()
    key.chmod(0o644)
    proc = env.cli("run", "--once")
    assert proc.returncode == 2
    assert "audit.key_file" in proc.stderr and f"{key} is open to others (mode 0644)" in proc.stderr


def test_a_long_secret_is_masked_wherever_it_appears_in_an_error_text() -> None:
    secret = Secret("hunter2-correct-horse")
    assert secret.mask("LOGIN clerk hunter2-correct-horse refused; xhunter2-correct-horsey") == (
        "LOGIN clerk *** refused; x***y"
    )


def test_a_short_secret_is_masked_only_as_a_word_so_the_text_stays_readable() -> None:
    """A one-letter password must not turn every 'e' of a message into '***'."""
    assert Secret("e").mask("LOGIN clerk e refused: server error") == "LOGIN clerk *** refused: server error"
    assert Secret("a1b").mask("auth a1b\x00 rejected; ba1bc stays") == "auth ***\x00 rejected; ba1bc stays"
    assert Secret("").mask("nothing to hide") == "nothing to hide"
