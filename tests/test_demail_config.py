"""``[demail]``: the provider anchors are checked at start-up, naming the file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from support.demail_provider import provider_pki
from test_config import problem, write

from gateway.config import load_config
from gateway.demail.trust import validator_from_files


def test_without_the_section_demail_is_off_and_authoritative_counts(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path))
    assert (cfg.demail.enabled, cfg.demail.provider_trust_anchors) == (False, ())
    assert cfg.demail.treat_authoritative_as_verified is True


def test_the_demail_settings_are_read(tmp_path: Path) -> None:
    anchor = provider_pki().write_anchor(tmp_path)
    cfg = load_config(
        write(
            tmp_path,
            f'[demail]\nenabled = true\nprovider_trust_anchors = ["{anchor}"]\n'
            "treat_authoritative_as_verified = false\n",
        )
    )
    assert cfg.demail.enabled and cfg.demail.provider_trust_anchors == (anchor,)
    assert cfg.demail.treat_authoritative_as_verified is False
    validator = validator_from_files(cfg.demail.provider_trust_anchors, str(cfg.path))
    assert validator.anchors == (provider_pki().ca.cert,)


def test_enabled_without_anchors_is_refused(tmp_path: Path) -> None:
    err = problem(tmp_path, "[demail]\nenabled = true\n")
    assert err.key == "demail.provider_trust_anchors" and "at least one" in err.problem


def test_a_missing_anchor_file_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, f'[demail]\nprovider_trust_anchors = ["{tmp_path}/nope.pem"]\n')
    assert err.key == "demail.provider_trust_anchors[0]" and "not found" in err.problem


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not a certificate\n", "not a PEM certificate file"),
        (None, "is not a CA certificate"),
    ],
)
def test_an_unusable_anchor_file_is_named(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "anchor.pem"
    leaf = provider_pki().rsa.cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(content if content is not None else leaf)
    err = problem(tmp_path, f'[demail]\nprovider_trust_anchors = ["{path}"]\n')
    assert err.key == "demail.provider_trust_anchors[0]" and words in err.problem
    assert err.file.endswith("poststelle.toml")


def test_an_unknown_demail_key_is_named(tmp_path: Path) -> None:
    err = problem(tmp_path, "[demail]\nservice_fiction_days = 3\n")
    assert (err.key, err.problem) == ("demail.service_fiction_days", "unknown key")


def test_the_example_configs_demail_block_is_valid_when_uncommented(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "config" / "poststelle.example.toml").read_text(encoding="utf-8")
    start = text.index("# [demail]")
    block = text[start : text.index("\n\n", start)].splitlines()
    anchor = provider_pki().write_anchor(tmp_path)
    lines = [
        ln[2:].replace("/etc/poststelle/demail-provider-ca.pem", str(anchor))
        for ln in block
        if ln.startswith("# ") and not ln.startswith("#  ")
    ]
    d = load_config(write(tmp_path, "\n".join(lines) + "\n")).demail
    assert (d.enabled, d.provider_trust_anchors, d.treat_authoritative_as_verified) == (False, (anchor,), True)
