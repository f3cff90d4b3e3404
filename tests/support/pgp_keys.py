"""Test helpers: OpenPGP keys and messages made with the real gpg in a throwaway home.

The "world" keyring (``World``) plays every correspondent: it creates keys (ed25519/cv25519
and RSA), signs and encrypts with them, and exports what the gateway is given by its
configuration. The gateway never sees this home; it gets exported key files only.
Homes live under /tmp with short names (gpg-agent sockets have a ~107 byte path limit).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from gateway.config import OpenPGPConfig, PinnedKey
from gateway.unwrap import UnwrapContext
from gateway.unwrap.openpgp.handler import OpenPGPHandler
from gateway.unwrap.smime.handler import SmimeHandler

GPG = shutil.which("gpg") or "/usr/bin/gpg"
PAST = "20200101T000000!"  # faked system time for keys that must be expired by now


@dataclass(frozen=True)
class Key:
    fingerprint: str
    email: str
    uid: str


class World:
    """A throwaway gpg home holding every correspondent's keys (secret and public)."""

    def __init__(self, passphrase: str = "") -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
        self.home.chmod(0o700)
        self.passphrase = passphrase
        # A cheap key-protection work factor: protected test keys in milliseconds, not seconds.
        (self.home / "gpg-agent.conf").write_text("s2k-count 65536\n")

    def gpg(self, *args: str, data: bytes = b"", faked: str | None = None) -> bytes:
        cmd = [
            GPG,
            "--homedir",
            str(self.home),
            "--batch",
            "--yes",
            "--no-tty",
            "--trust-model",
            "always",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            self.passphrase,
        ]
        if faked:
            cmd += ["--faked-system-time", faked]
        proc = subprocess.run([*cmd, *args], input=data, capture_output=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def _fpr(self, email: str) -> str:
        out = self.gpg("--with-colons", "--list-keys", f"<{email}>").decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def gen(
        self,
        name: str,
        email: str,
        algo: str = "ed25519",
        *,
        expire: str = "never",
        faked: str | None = None,
        signing_subkey: bool = False,
    ) -> Key:
        """A primary key (sign, or cert-only with a signing subkey) plus an encryption subkey."""
        uid = f"{name} <{email}>"
        primary_usage = "cert" if signing_subkey else "sign"
        self.gpg("--quick-gen-key", uid, algo, primary_usage, expire, faked=faked)
        fpr = self._fpr(email)
        if signing_subkey:
            self.gpg("--quick-add-key", fpr, algo, "sign", expire, faked=faked)
        enc_algo = "cv25519" if algo == "ed25519" else algo
        self.gpg("--quick-add-key", fpr, enc_algo, "encr", expire, faked=faked)
        return Key(fpr, email, uid)

    def add_uid(self, key: Key, uid: str) -> None:
        self.gpg("--quick-add-uid", key.fingerprint, uid)

    def revoke(self, key: Key) -> None:
        """Import the revocation certificate gpg stored at key generation."""
        rev = (self.home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_bytes()
        self.gpg("--import", data=rev.replace(b":-----BEGIN PGP PUBLIC KEY BLOCK", b"-----BEGIN PGP PUBLIC KEY BLOCK"))

    def public(self, *keys: Key) -> bytes:
        return self.gpg("--armor", "--export", *(k.fingerprint for k in keys))

    def secret(self, key: Key) -> bytes:
        return self.gpg("--armor", "--export-secret-keys", key.fingerprint)

    def sign_detached(
        self, signer: Key, data: bytes, *, faked: str | None = None, extra: tuple[str, ...] = ()
    ) -> bytes:
        return self.gpg("--armor", "--detach-sign", "--local-user", signer.fingerprint, *extra, data=data, faked=faked)

    def sign_detached_multi(self, signers: list[Key], data: bytes) -> bytes:
        args: list[str] = []
        for s in signers:
            args += ["--local-user", s.fingerprint]
        return self.gpg("--armor", "--detach-sign", *args, data=data)

    def clearsign(self, signer: Key, text: bytes) -> bytes:
        return self.gpg("--clearsign", "--local-user", signer.fingerprint, data=text)

    def encrypt(
        self, recipients: list[Key], data: bytes, *, signer: Key | None = None, extra: tuple[str, ...] = ()
    ) -> bytes:
        args = ["--armor", "--encrypt"]
        for r in recipients:
            args += ["--recipient", r.fingerprint]
        if signer is not None:
            args += ["--sign", "--local-user", signer.fingerprint]
        return self.gpg(*args, *extra, data=data)

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        shutil.rmtree(self.home, ignore_errors=True)


# --- messages ------------------------------------------------------------------------


def headers(
    frm: str = "Bob <bob@nachbar.test>", subject: str = "Bauantrag", date: datetime | None = None, extra: str = ""
) -> str:
    date = date or datetime.now(UTC)
    return (
        f"From: {frm}\r\nTo: poststelle@rathaus.test\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(date)}\r\nMessage-ID: <t-{id(date)}@nachbar.test>\r\nMIME-Version: 1.0\r\n{extra}"
    )


def text_part(text: str = "Sehr geehrte Damen und Herren,\r\nanbei der Antrag.\r\n") -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text.encode()


def pgp_signed(world: World, signer: Key, inner: bytes, hdrs: str | None = None, *, sig: bytes | None = None) -> bytes:
    """RFC 3156 §5 multipart/signed over the exact bytes of ``inner``."""
    sig = sig if sig is not None else world.sign_detached(signer, inner)
    b = "sig-boundary-42"
    return (
        f"{hdrs if hdrs is not None else headers()}Content-Type: multipart/signed; micalg=pgp-sha256; "
        f'protocol="application/pgp-signature"; boundary="{b}"\r\n\r\n'
    ).encode() + (
        f"--{b}\r\n".encode()
        + inner
        + f'\r\n--{b}\r\nContent-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'.encode()
        + sig
        + f"\r\n--{b}--\r\n".encode()
    )


def pgp_encrypted_body(armored: bytes) -> tuple[str, bytes]:
    b = "enc-boundary-7"
    ctype = f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{b}"'
    body = (
        (
            f"--{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            f'--{b}\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
        ).encode()
        + armored
        + f"\r\n--{b}--\r\n".encode()
    )
    return ctype, body


def pgp_encrypted(
    world: World,
    recipients: list[Key],
    inner: bytes,
    hdrs: str | None = None,
    *,
    signer: Key | None = None,
    armored: bytes | None = None,
) -> bytes:
    """RFC 3156 §6 multipart/encrypted; with ``signer``, signed and encrypted in one (§6.2)."""
    armored = armored if armored is not None else world.encrypt(recipients, inner, signer=signer)
    ctype, body = pgp_encrypted_body(armored)
    return f"{hdrs if hdrs is not None else headers()}Content-Type: {ctype}\r\n\r\n".encode() + body


def inline(body: bytes, hdrs: str | None = None, *, cte: str = "8bit", charset: str = "utf-8") -> bytes:
    return (
        f"{hdrs if hdrs is not None else headers()}Content-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode() + body


def mixed(hdrs: str, *parts: bytes) -> bytes:
    b = "mixed-boundary-3"
    out = f'{hdrs}Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n'.encode()
    for p in parts:
        out += f"--{b}\r\n".encode() + p + b"\r\n"
    return out + f"--{b}--\r\n".encode()


# --- the gateway side ------------------------------------------------------------------


def gateway_context(
    root: Path,
    *,
    secrets: list[bytes],
    correspondents: list[bytes] = (),  # type: ignore[assignment]
    pinned: list[tuple[str, str]] = (),
    correspondents_trusted: bool = False,  # type: ignore[assignment]
    passphrase: str | None = None,
) -> tuple[UnwrapContext, OpenPGPHandler]:
    """An UnwrapContext with S/MIME unconfigured and OpenPGP configured from exported key files."""
    root.mkdir(parents=True, exist_ok=True)
    secret_files = []
    for i, data in enumerate(secrets):
        p = root / f"secret-{i}.asc"
        p.write_bytes(data)
        secret_files.append(p)
    corr_dir = root / "correspondents"
    corr_dir.mkdir(exist_ok=True)
    for i, data in enumerate(correspondents):
        (corr_dir / f"c{i}.asc").write_bytes(data)
    pass_file = None
    if passphrase is not None:
        pass_file = root / "pass"
        pass_file.write_text(passphrase + "\n")
    cfg = OpenPGPConfig(
        gnupg_home=root / "gnupg",
        secret_keys=tuple(secret_files),
        passphrase_file=pass_file,
        correspondents=corr_dir,
        correspondents_trusted=correspondents_trusted,
        pinned=tuple(PinnedKey(email=e.lower(), fingerprint=f.upper()) for e, f in pinned),
    )
    handler = OpenPGPHandler.from_config(cfg, config_file="test.toml")
    return UnwrapContext([SmimeHandler.from_config(None, config_file="test.toml"), handler]), handler


# --- the shared test keys -------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    world: World
    us: Key  # the gateway: ed25519 + cv25519
    us_rsa: Key  # the gateway's second identity: RSA
    bob: Key  # pinned, ed25519
    bob2: Key  # a second key of Bob, pinned too
    rsa: Key  # pinned RSA signer
    carol: Key  # unknown to the gateway
    dave: Key  # in the correspondents' folder, not pinned
    expired: Key  # pinned, expired in 2020
    revoked: Key  # pinned, revoked
    sub: Key  # pinned, signs with a signing subkey
    other: Key  # pinned for an address that is not one of its UIDs


@functools.cache
def keys() -> Keys:
    """Generated once per test run (session scope shared by every OpenPGP test module)."""
    w = World()
    atexit.register(w.close)
    k = Keys(
        world=w,
        us=w.gen("Rathaus", "poststelle@rathaus.test"),
        us_rsa=w.gen("Rathaus RSA", "rsa@rathaus.test", "rsa2048"),
        bob=w.gen("Bob", "bob@nachbar.test"),
        bob2=w.gen("Bob neu", "bob@nachbar.test"),
        rsa=w.gen("Renate", "renate@nachbar.test", "rsa2048"),
        carol=w.gen("Carol", "carol@nachbar.test"),
        dave=w.gen("Dave", "dave@nachbar.test"),
        expired=w.gen("Erwin", "erwin@nachbar.test", expire="1d", faked=PAST),
        revoked=w.gen("Rudi", "rudi@nachbar.test"),
        sub=w.gen("Susi", "susi@nachbar.test", signing_subkey=True),
        other=w.gen("Otto", "otto@nachbar.test"),
    )
    return k
