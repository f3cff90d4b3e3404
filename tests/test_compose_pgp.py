"""Composing outgoing documents with PGP/MIME: real gpg and Poststelle's own analysis as oracles.

The authority is ``us`` (poststelle@rathaus.test); Bob is pinned; Erwin's key expired; Rita's
key is revoked (made in a world of its own, so the shared test keys stay unrevoked).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.pgp_keys import GPG, Key, Keys, World, keys

from gateway.config import Config, parse_config
from gateway.inbound.decide import analyse
from gateway.outbound.compose import Attachment, ComposeError, Letter
from gateway.outbound.document import ComposedDocument
from gateway.outbound.protect import OutboundKeys, compose_document
from gateway.unwrap import UnwrapContext

US = "poststelle@rathaus.test"
BOB = "bob@nachbar.test"
CASE = "2 L 77/26"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def k() -> Keys:
    return keys()


@pytest.fixture(scope="module")
def rita() -> Iterator[tuple[World, Key]]:
    w = World()
    key = w.gen("Rita", "rita@nachbar.test")
    w.revoke(key)
    yield w, key
    w.close()


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cpgp-", dir="/tmp") as d:
        yield Path(d)


def make_config(tmp: Path, k: Keys, rita: tuple[World, Key], **outbound: str) -> Config:
    secret = tmp / "us.asc"
    secret.write_bytes(k.world.secret(k.us))
    secret.chmod(0o600)
    corr = tmp / "corr"
    corr.mkdir(exist_ok=True)
    (corr / "people.asc").write_bytes(k.world.public(k.bob, k.bob2, k.expired, k.dave))
    (corr / "rita.asc").write_bytes(rita[0].public(rita[1]))
    pins = [(US, k.us), (BOB, k.bob), (BOB, k.bob2), ("erwin@nachbar.test", k.expired), ("rita@nachbar.test", rita[1])]
    data = {
        "storage": {"state_dir": str(tmp / "state")},
        "openpgp": {
            "gnupg_home": str(tmp / "g"),
            "secret_keys": [str(secret)],
            "correspondents": str(corr),
            "pinned": [{"email": e, "fingerprint": key.fingerprint} for e, key in pins],
        },
        "outbound": {"sign": "openpgp", "encrypt": "auto", **outbound},
    }
    return parse_config(data, file=str(tmp / "poststelle.toml"))


def compose(cfg: Config, letter: Letter) -> ComposedDocument:
    keys_ = OutboundKeys.from_config(cfg)
    try:
        return compose_document(letter, mail_from=US, config=cfg, keys=keys_, at=datetime.now(UTC))
    finally:
        keys_.close()


def letter(tmp: Path, to: tuple[str, ...] = (BOB,)) -> Letter:
    pdf = tmp / "Beschluss.pdf"
    pdf.write_bytes(PDF)
    return Letter(CASE, to, "Beschluss", "Guten Tag,\nanbei der Beschluss.\n", attachments=(Attachment(pdf),))


def world_gpg(k: Keys, *args: str, data: bytes = b"") -> tuple[bytes, str]:
    """gpg in the correspondents' world (it has Bob's and our keys): stdout and status lines."""
    proc = subprocess.run(
        [GPG, "--homedir", str(k.world.home), "--batch", "--status-fd", "2", "--trust-model", "always", *args],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )
    return proc.stdout, proc.stderr.decode(errors="replace")


def verdict(cfg: Config, raw: bytes) -> dict[str, object]:
    ctx = UnwrapContext.from_config(cfg, collect_certificates=False, fetch_crls=False)
    try:
        return analyse(raw, cfg, ctx, at=datetime.now(UTC)).verdict.to_json()
    finally:
        ctx.close()


def test_pgp_signed_letter_verifies_with_gpg(k: Keys, rita: tuple[World, Key], tmp: Path) -> None:
    cfg = make_config(tmp, k, rita, encrypt="never")
    doc = compose(cfg, letter(tmp))
    assert doc.signed == "openpgp" and not doc.encrypted
    b = re.search(rb'boundary="([^"]+)"', doc.raw).group(1)  # type: ignore[union-attr]
    start = doc.raw.index(b"--" + b + b"\r\n") + len(b) + 4
    end = doc.raw.index(b"\r\n--" + b + b"\r\n", start)
    content = doc.raw[start:end]
    sig = re.search(rb"-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----", doc.raw, re.S).group(0)  # type: ignore[union-attr]
    (tmp / "content").write_bytes(content)
    (tmp / "sig.asc").write_bytes(sig)
    _, status = world_gpg(k, "--verify", str(tmp / "sig.asc"), str(tmp / "content"))
    assert "[GNUPG:] GOODSIG" in status and k.us.fingerprint in status
    (tmp / "content").write_bytes(content.replace(b"Beschluss", b"Bescheid"))
    _, status = world_gpg(k, "--verify", str(tmp / "sig.asc"), str(tmp / "content"))
    assert "[GNUPG:] BADSIG" in status


def test_pgp_signed_letter_is_verified_by_poststelle(k: Keys, rita: tuple[World, Key], tmp: Path) -> None:
    cfg = make_config(tmp, k, rita, encrypt="never")
    v = verdict(cfg, compose(cfg, letter(tmp)).raw)
    assert v["verdict"] == "verified", v
    assert v["signature"]["signer"] == US  # type: ignore[index]


def test_pgp_encrypted_letter_decrypts_with_gpg_for_recipient_and_us(
    k: Keys, rita: tuple[World, Key], tmp: Path
) -> None:
    cfg = make_config(tmp, k, rita, encrypt="always")
    doc = compose(cfg, letter(tmp))
    assert doc.encrypted and doc.signed == "openpgp"
    ((addr, source),) = doc.key_sources
    assert addr == BOB and source.split()[:2] == ["openpgp", "pinned"]
    assert source.split()[2] in (k.bob.fingerprint, k.bob2.fingerprint)
    armored = re.search(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", doc.raw, re.S).group(0)  # type: ignore[union-attr]
    plain, status = world_gpg(k, "--decrypt", data=armored)
    assert "DECRYPTION_OKAY" in status and "[GNUPG:] GOODSIG" in status
    assert plain.startswith(b"Content-Type: multipart/mixed")
    enc_to = re.findall(r"ENC_TO ([0-9A-F]{16})", status)
    assert len(enc_to) == 2  # Bob's encryption subkey and ours


def test_archived_pgp_copy_is_verified_by_poststelle(k: Keys, rita: tuple[World, Key], tmp: Path) -> None:
    cfg = make_config(tmp, k, rita, encrypt="always")
    v = verdict(cfg, compose(cfg, letter(tmp)).raw)
    assert v["verdict"] == "verified", v
    assert v["signature"]["signer"] == US  # type: ignore[index]
    assert v["encryption"]["scheme"] == "openpgp"  # type: ignore[index]


@pytest.mark.parametrize(
    "address", ["erwin@nachbar.test", "rita@nachbar.test", "dave@nachbar.test", "carol@nachbar.test"]
)
def test_expired_revoked_unpinned_or_unknown_keys_are_not_used(
    k: Keys, rita: tuple[World, Key], tmp: Path, address: str
) -> None:
    cfg = make_config(tmp, k, rita, encrypt="always")
    with pytest.raises(ComposeError) as exc:
        compose(cfg, letter(tmp, to=(address,)))
    assert exc.value.reason == "recipient-key-unknown" and address in str(exc.value)
