"""The gateway's own GnuPG: one home directory, one lock, decisions from status lines only.

Why one module over 500 lines: the status-line parsers only make sense for the recording
result classes defined here, and ``GpgHome`` is their only caller; keeping the home, the
lock and the parsing together keeps every gpg decision in one reviewable place.

Why a wrapper around python-gnupg instead of calling it directly:

* **Status lines only.** gpg prints two streams on stderr: machine-readable ``[GNUPG:]``
  status lines and human-readable text whose wording changes between versions and
  locales. python-gnupg parses the status lines and calls ``handle_status(key, value)``;
  the result classes below record every (key, value) it parsed, and this module decides
  from that record alone. The human text is never looked at.
* **Own GNUPGHOME, created 0700.** Nothing from the operator's ``~/.gnupg`` (trust
  database, ``gpg.conf``, auto-key-retrieve) can change a decision; ``--no-options``
  ignores any config file in the home, ``--no-auto-key-retrieve``/``--no-auto-key-import``
  keep keys carried inside messages out of the keyring.
* **Short socket path.** gpg-agent puts its sockets into the home directory unless
  ``/run/user/UID`` exists; a Unix socket path is limited to ~107 bytes. A long home is
  reached through a symlink in a private 0700 directory under /tmp whose name is a hash
  of the real path (``/tmp/pst-gnupg-<uid>-<sha256[:16]>/h``), so the same home always
  gets the same short path and another user cannot pre-create it (owner and mode are
  checked).
* **Serialised.** One ``threading.Lock`` around every gpg call: mailbox worker threads
  share one keyring and one agent; gpg calls are short, so a lock costs less
  than a home per worker (which would need every key imported N times).
* **Counted.** Every spawned gpg process is counted (``spawns``), for the benchmark and
  the shutdown log line.

The agent is started by gpg on first use and stopped by ``close()`` with
``gpgconf --homedir H --kill gpg-agent`` (also registered with ``atexit``).
"""

from __future__ import annotations

import atexit
import binascii
import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gnupg
import structlog

from gateway.errors import ConfigError, PoststelleError

__all__ = [
    "DecryptOutcome",
    "GpgError",
    "GpgHome",
    "KeyInfo",
    "SignatureStatusLine",
    "VerifyOutcome",
    "parse_signatures",
]

log = structlog.get_logger("poststelle.openpgp")

#: Longest home path used directly; beyond it the short symlink is used (socket limit ~107).
MAX_DIRECT_HOME = 80
#: Options on every call: no config files, no network, no keys from messages, no trustdb.
BASE_OPTIONS = (
    "--no-options",
    "--no-permission-warning",
    "--no-greeting",
    "--no-auto-key-retrieve",
    "--no-auto-key-import",
    "--no-auto-key-locate",
    "--no-symkey-cache",
    "--trust-model",
    "always",  # trust is decided by pinning, never by GnuPG's web of trust
    "--display-charset",
    "utf-8",
    "--utf8-strings",
)
#: OpenPGP hash algorithm ids (RFC 4880 §9.4) as PGP/MIME micalg names.
_HASH_NAMES = {"2": "sha1", "8": "sha256", "9": "sha384", "10": "sha512", "11": "sha224"}
_SIG_KEYS = ("GOODSIG", "BADSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "ERRSIG")


class GpgError(PoststelleError):  # the handler turns it into a ConfigError naming file and key
    """gpg could not be run at all (missing binary, unusable home)."""


class _Recorder:
    """Mixin: remember every status line python-gnupg parsed, in order."""

    statuses: list[tuple[str, str]]

    def handle_status(self, key: str, value: str) -> None:
        self.statuses.append((key, value))
        super().handle_status(key, value)  # type: ignore[misc]


class _RecCrypt(_Recorder, gnupg.Crypt):  # type: ignore[misc]
    def __init__(self, gpg: Any) -> None:
        gnupg.Crypt.__init__(self, gpg)
        self.statuses = []


class _RecVerify(_Recorder, gnupg.Verify):  # type: ignore[misc]
    def __init__(self, gpg: Any) -> None:
        gnupg.Verify.__init__(self, gpg)
        self.statuses = []


class _ListKeys(gnupg.ListKeys):  # type: ignore[misc]
    """ListKeys that also keeps each UID's validity per key (revoked UIDs do not count)."""

    def uid(self, args: list[str]) -> None:
        super().uid(args)
        self.curkey.setdefault("uid_validities", []).append(args[1] if len(args) > 1 else "")


class _CountingGPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg's GPG with recording result classes and a spawn counter."""

    spawns = 0

    def _open_subprocess(self, args: Any, passphrase: bool = False) -> Any:
        self.spawns += 1
        return super()._open_subprocess(args, passphrase)


_CountingGPG.result_map = {**gnupg.GPG.result_map, "crypt": _RecCrypt, "verify": _RecVerify, "list": _ListKeys}


# --- parsed results ------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureStatusLine:
    """One signature as gpg reported it (between NEWSIG markers)."""

    kind: str  # GOODSIG | BADSIG | EXPSIG | EXPKEYSIG | REVKEYSIG | ERRSIG | "" (nothing)
    key_id: str = ""
    fingerprint: str | None = None  # the signing (sub)key, from VALIDSIG
    primary_fingerprint: str | None = None  # its primary key, from VALIDSIG field 10
    created: datetime | None = None
    expires: datetime | None = None  # signature expiration, not key expiration
    errsig_rc: str | None = None  # ERRSIG return code: 4 = unsupported algorithm, 9 = no key
    issuer_fingerprint: str | None = None  # ERRSIG field 7 (issuer fingerprint subpacket), if any

    @property
    def cryptographically_good(self) -> bool:
        """The signature matches the data (key expiry and revocation are judged later)."""
        return self.kind in ("GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG") and self.fingerprint is not None


@dataclass(frozen=True)
class VerifyOutcome:
    signatures: tuple[SignatureStatusLine, ...]
    statuses: tuple[tuple[str, str], ...] = field(repr=False, default=())


@dataclass(frozen=True)
class DecryptOutcome:
    """What one ``gpg --decrypt`` reported: plaintext only when everything was right."""

    encrypted: bool  # an encryption layer was seen (ENC_TO / BEGIN_DECRYPTION)
    plaintext: bytes | None
    failure: str | None  # reason code when plaintext is None
    signatures: tuple[SignatureStatusLine, ...] = ()
    decryption_key: str | None = None  # subkey fingerprint used (DECRYPTION_KEY)
    decryption_primary: str | None = None
    cipher_algo: int | None = None
    mdc_method: int | None = None
    aead_algo: int | None = None
    statuses: tuple[tuple[str, str], ...] = field(repr=False, default=())


@dataclass(frozen=True)
class KeyInfo:
    """A primary key in our keyring, from the colon listing (machine-readable)."""

    fingerprint: str
    emails: tuple[str, ...]  # lower-cased addresses of UIDs that are not revoked
    revoked: bool
    expires: datetime | None
    subkeys: dict[str, tuple[datetime | None, bool]]  # fingerprint -> (expires, revoked)
    secret: bool = False
    created: datetime | None = None


def _ts(value: str) -> datetime | None:
    """gpg timestamps: seconds since the epoch, or ISO 8601 ``YYYYMMDDTHHMMSS``; 0/empty = none."""
    if not value or value == "0":
        return None
    try:
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return datetime.fromtimestamp(int(value), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_signatures(statuses: Sequence[tuple[str, str]]) -> tuple[SignatureStatusLine, ...]:
    """Group the signature status lines: gpg 2.2 starts each signature with NEWSIG."""
    sigs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for key, value in statuses:
        if key == "NEWSIG":
            current = {"kind": ""}
            sigs.append(current)
            continue
        if key not in _SIG_KEYS and key != "VALIDSIG":
            continue
        if current is None or (key in _SIG_KEYS and current.get("kind")):
            current = {"kind": ""}
            sigs.append(current)
        parts = value.split()
        if key in _SIG_KEYS:
            current["kind"] = key
            current["key_id"] = parts[0] if parts else ""
            if key == "ERRSIG":
                current["errsig_rc"] = parts[5] if len(parts) > 5 else None
                if len(parts) > 4:
                    current["created"] = _ts(parts[4])
                if len(parts) > 6 and parts[6] != "-":
                    current["fingerprint_hint"] = parts[6]
        elif len(parts) >= 4:  # VALIDSIG fpr date ts expire version reserved pk hash class primary
            current["fingerprint"] = parts[0].upper()
            current["created"] = _ts(parts[2])
            current["expires"] = _ts(parts[3])
            current["primary_fingerprint"] = (parts[9] if len(parts) >= 10 else parts[0]).upper()
    return tuple(
        SignatureStatusLine(
            kind=s.get("kind", ""),
            key_id=s.get("key_id", ""),
            fingerprint=s.get("fingerprint"),
            primary_fingerprint=s.get("primary_fingerprint"),
            created=s.get("created"),
            expires=s.get("expires"),
            errsig_rc=s.get("errsig_rc"),
            issuer_fingerprint=str(s["fingerprint_hint"]).upper() if s.get("fingerprint_hint") else None,
        )
        for s in sigs
    )


def _decrypt_outcome(statuses: list[tuple[str, str]], data: bytes, overflow: bool) -> DecryptOutcome:
    keys = [k for k, _ in statuses]
    encrypted = any(
        k in ("ENC_TO", "BEGIN_DECRYPTION", "DECRYPTION_FAILED", "NO_SECKEY", "NEED_PASSPHRASE_SYM", "DECRYPTION_INFO")
        for k in keys
    )
    sigs = parse_signatures(statuses)
    info = next((v.split() for k, v in statuses if k == "DECRYPTION_INFO"), [])
    mdc = int(info[0]) if info and info[0].isdigit() else None
    cipher = int(info[1]) if len(info) > 1 and info[1].isdigit() else None
    aead = int(info[2]) if len(info) > 2 and info[2].isdigit() else 0
    dkey = next((v.split() for k, v in statuses if k == "DECRYPTION_KEY"), [])
    common: dict[str, Any] = {
        "encrypted": encrypted,
        "signatures": sigs,
        "statuses": tuple(statuses),
        "decryption_key": dkey[0].upper() if dkey else None,
        "decryption_primary": dkey[1].upper() if len(dkey) > 1 else None,
        "cipher_algo": cipher,
        "mdc_method": mdc,
        "aead_algo": aead,
    }

    def fail(reason: str) -> DecryptOutcome:
        return DecryptOutcome(plaintext=None, failure=reason, **common)

    if overflow:
        return fail("decryption-failed-too-large")
    if not encrypted:
        # Signed-only or plain literal data: gpg must have produced output and no error.
        if "PLAINTEXT" not in keys or "NODATA" in keys or "UNEXPECTED" in keys:
            return fail("malformed-openpgp")
        if "FAILURE" in keys and not sigs:
            return fail("malformed-openpgp")
        return DecryptOutcome(plaintext=data, failure=None, **common)
    if "NEED_PASSPHRASE_SYM" in keys or "DECRYPTION_KEY" not in keys:
        # Only public-key decryption with our own keys counts; symmetric (password)
        # encryption is refused rather than tried with any configured passphrase.
        return fail("decryption-failed-no-key")
    if "BADMDC" in keys:
        return fail("decryption-failed-corrupt")
    if mdc in (None, 0) and not aead:
        # EFAIL: CFB without MDC is malleable; gpg 2.2 reports DECRYPTION_INFO 0 ... and
        # DECRYPTION_FAILED, but has already written the plaintext: it is discarded.
        return fail("decryption-failed-no-integrity")
    if "DECRYPTION_FAILED" in keys or "DECRYPTION_OKAY" not in keys:
        return fail("decryption-failed-corrupt")
    if "PLAINTEXT" not in keys:
        return fail("decryption-failed-corrupt")
    return DecryptOutcome(plaintext=data, failure=None, **common)


def _dearmor_head(data: bytes, limit: int = 8192) -> bytes:
    """The first bytes of an armored message's binary form (enough to read packet headers)."""
    text = data.lstrip()
    if not text.startswith(b"-----BEGIN PGP"):
        return data[:limit]
    lines = text.split(b"\n")
    i = 1
    while i < len(lines) and lines[i].strip():  # armor headers up to the blank line
        i += 1
    b64 = bytearray()
    for line in lines[i + 1 :]:
        line = line.strip()
        if line.startswith((b"-----", b"=")) or len(b64) > limit * 4 // 3:
            break
        b64 += line
    try:
        return binascii.a2b_base64(bytes(b64[: len(b64) // 4 * 4]))
    except binascii.Error:
        return b""


def leading_packet_tags(data: bytes) -> list[int]:
    """Tags of the session-key packets at the start of a message (1 = PKESK, 3 = SKESK).

    Reads packet headers only (RFC 4880 §4.2) and stops at the first other packet.
    """
    buf = _dearmor_head(data)
    tags: list[int] = []
    pos = 0
    while pos < len(buf) and len(tags) < 64:
        first = buf[pos]
        if not first & 0x80:
            break
        if first & 0x40:  # new format
            tag = first & 0x3F
            if pos + 1 >= len(buf):
                break
            o = buf[pos + 1]
            if o < 192:
                length, hdr = o, 2
            elif o < 224 and pos + 2 < len(buf):
                length, hdr = ((o - 192) << 8) + buf[pos + 2] + 192, 3
            elif o == 255 and pos + 5 < len(buf):
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 6], "big"), 6
            else:
                break
        else:
            tag = (first >> 2) & 0x0F
            ltype = first & 0x03
            if ltype == 3 or pos + (1 << ltype) >= len(buf):
                break
            size = 1 << ltype
            length, hdr = int.from_bytes(buf[pos + 1 : pos + 1 + size], "big"), 1 + size
        tags.append(tag)
        if tag not in (1, 3):
            break
        pos += hdr + length
    return tags


# --- the home ------------------------------------------------------------------------


def short_home(home: Path) -> Path:
    """A path to ``home`` short enough for gpg-agent's sockets (see the module docstring)."""
    real = home.resolve()
    if len(str(real)) <= MAX_DIRECT_HOME:
        return real
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"pst-gnupg-{os.getuid()}-{digest}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise GpgError(f"{base} exists and is not a private directory of this user")
    link = base / "h"
    if link.is_symlink() and Path(os.readlink(link)) != real:
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(real, target_is_directory=True)
    return link


def _prepare_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = home.stat()
    if st.st_uid != os.getuid():
        raise GpgError(f"{home} is owned by another user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(home, 0o700)


class GpgHome:
    """The gateway's GnuPG home: keys imported once, then decrypt/verify under a lock."""

    def __init__(
        self,
        home: Path,
        *,
        passphrase: str | None = None,
        max_output: int = 50 * 1024 * 1024,
        gpg_binary: str | None = None,
    ) -> None:
        binary = gpg_binary or shutil.which("gpg") or "/usr/bin/gpg"
        _prepare_home(home)
        self.real_home = home.resolve()
        self.home = short_home(home)
        self.passphrase = passphrase
        self.max_output = max_output
        self._lock = threading.Lock()
        self._closed = False
        self._keys: dict[str, KeyInfo] = {}
        self._by_subkey: dict[str, str] = {}
        # Without a passphrase, gpg must never start a pinentry (it would wait for a
        # terminal); with one, python-gnupg passes it by loopback on every call.
        options = list(BASE_OPTIONS) if passphrase is not None else [*BASE_OPTIONS, "--pinentry-mode", "error"]
        try:
            # latin-1 decodes any byte: with utf-8, a non-UTF-8 byte in gpg's stderr (a file
            # name from the literal packet, say) kills python-gnupg's reader thread and the
            # status lines after it would be lost. UIDs are re-decoded as UTF-8 below.
            self._gpg = _CountingGPG(gpgbinary=binary, gnupghome=str(self.home), options=options, encoding="latin-1")
        except (OSError, ValueError) as exc:
            raise GpgError(f"cannot run gpg: {exc}") from None
        self._gpg.buffer_size = 64 * 1024
        atexit.register(self.close)

    @property
    def spawns(self) -> int:
        return int(self._gpg.spawns)

    # --- keys --------------------------------------------------------------------------

    def import_keys(self, data: bytes) -> tuple[str, ...]:
        """Import key material we were given by configuration; returns primary fingerprints.

        Never called with anything from a message: keys attached to mail create no trust.
        """
        with self._lock:
            result = self._gpg.import_keys(data)
        fprs = tuple(dict.fromkeys(str(f).upper() for f in (result.fingerprints or []) if f))
        self.refresh()
        return fprs

    def refresh(self) -> None:
        """Re-read the keyring listing (after imports; keys never change otherwise)."""
        with self._lock:
            public = self._gpg.list_keys()
            secret = self._gpg.list_keys(secret=True)
        secret_fprs = {str(k.get("fingerprint", "")).upper() for k in secret}
        keys: dict[str, KeyInfo] = {}
        by_subkey: dict[str, str] = {}
        for k in public:
            fpr = str(k.get("fingerprint", "")).upper()
            if not fpr:
                continue
            emails = tuple(dict.fromkeys(e for e in (_uid_email(u) for u in _valid_uids(k)) if e))
            subkeys: dict[str, tuple[datetime | None, bool]] = {}
            info = k.get("subkey_info", {})
            for keyid, _caps, sfpr_raw, _grp in k.get("subkeys", []):
                sfpr = str(sfpr_raw or "").upper()
                sub = info.get(keyid, {})
                if sfpr:
                    subkeys[sfpr] = (_ts(str(sub.get("expires") or "")), sub.get("trust") == "r")
                    by_subkey[sfpr] = fpr
            by_subkey[fpr] = fpr
            keys[fpr] = KeyInfo(
                fingerprint=fpr,
                emails=emails,
                revoked=k.get("trust") == "r",
                expires=_ts(str(k.get("expires") or "")),
                subkeys=subkeys,
                secret=fpr in secret_fprs,
                created=_ts(str(k.get("date") or "")),
            )
        self._keys, self._by_subkey = keys, by_subkey

    def key(self, fingerprint: str) -> KeyInfo | None:
        """The primary key for a primary or subkey fingerprint."""
        primary = self._by_subkey.get(fingerprint.upper())
        return self._keys.get(primary) if primary else None

    @property
    def secret_fingerprints(self) -> tuple[str, ...]:
        return tuple(f for f, k in self._keys.items() if k.secret)

    # --- operations --------------------------------------------------------------------

    def decrypt(self, data: bytes) -> DecryptOutcome:
        """``gpg --decrypt``: one call that decrypts and verifies (also clearsigned text).

        Password-encrypted messages (an SKESK packet before the data) are refused before
        gpg runs: only our keys may open mail, and a sender-chosen S2K work factor must not
        cost us CPU time while the lock is held.
        """
        if 3 in leading_packet_tags(data):
            return DecryptOutcome(encrypted=True, plaintext=None, failure="decryption-failed-no-key")
        chunks: list[int] = [0]
        overflow = [False]

        def on_data(chunk: bytes) -> bool:
            chunks[0] += len(chunk)
            if chunks[0] > self.max_output:
                overflow[0] = True  # keep memory bounded under a compression bomb
                return False
            return True

        with self._lock:
            self._gpg.on_data = on_data
            try:
                result = self._gpg.decrypt(data, passphrase=self.passphrase)
            finally:
                self._gpg.on_data = None
        body = result.data if isinstance(result.data, bytes) else b""
        return _decrypt_outcome(result.statuses, body, overflow[0])

    def verify_detached(self, signature: bytes, data: bytes) -> VerifyOutcome:
        """``gpg --verify sig -`` over exactly ``data`` (the signature goes through a 0600 file)."""
        tmpdir = self.real_home / "tmp"
        tmpdir.mkdir(mode=0o700, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmpdir, suffix=".sig")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(signature)
            with self._lock:
                result = self._gpg.verify_data(name, data)
        finally:
            os.unlink(name)
        return VerifyOutcome(parse_signatures(result.statuses), tuple(result.statuses))

    def sign_detached(self, data: bytes, signer: str) -> tuple[bytes, str]:
        """An armored detached signature by ``signer`` (fingerprint) and its hash name (``sha256``).

        For outgoing mail; the result counts only when gpg reported SIG_CREATED for that key.
        """
        with self._lock:
            result = self._gpg.sign(
                data,
                keyid=signer,
                detach=True,
                passphrase=self.passphrase,
                extra_args=["--local-user", signer, "--digest-algo", "SHA256"],
            )
        made = str(getattr(result, "fingerprint", "") or "").upper()
        if not result.data or self._by_subkey.get(made) != self._by_subkey.get(signer.upper(), signer.upper()):
            raise GpgError(f"gpg did not sign with {signer}: {getattr(result, 'status', '')}")
        algo = _HASH_NAMES.get(str(getattr(result, "hash_algo", "")), "sha256")
        return bytes(result.data), algo

    def encrypt(self, data: bytes, recipients: Sequence[str], *, signer: str | None = None) -> bytes:
        """Armored ``gpg --encrypt`` to ``recipients`` (fingerprints), signed in the same call when asked."""
        with self._lock:
            result = self._gpg.encrypt(
                data,
                list(recipients),
                sign=signer,
                passphrase=self.passphrase,
                always_trust=True,
                armor=True,
                extra_args=["--local-user", signer] if signer else None,
            )
        statuses = [k for k, _ in getattr(result, "statuses", [])]
        if not result.ok or not result.data or "END_ENCRYPTION" not in statuses:
            raise GpgError(f"gpg did not encrypt: {getattr(result, 'status', '')}")
        if signer is not None and "SIG_CREATED" not in statuses:
            raise GpgError("gpg did not sign while encrypting")
        return bytes(result.data)

    def close(self) -> None:
        """Stop gpg-agent for this home (idempotent); logs how many gpg processes ran."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        gpgconf = shutil.which("gpgconf") or "/usr/bin/gpgconf"
        try:
            subprocess.run(
                [gpgconf, "--homedir", str(self.home), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            log.warning("could not stop gpg-agent", home=str(self.real_home))
        log.info("openpgp closed", gpg_processes=self.spawns)


def _valid_uids(key: dict[str, Any]) -> list[str]:
    """UIDs that are not revoked, expired or invalid (colon listing validity field)."""
    uids = [str(u) for u in key.get("uids", [])]
    validities = key.get("uid_validities", [])
    if len(validities) != len(uids):
        return []  # cannot tell which UID is valid: none is used
    return [u for u, v in zip(uids, validities, strict=True) if v not in ("r", "e", "i", "d")]


def _uid_email(uid: str) -> str | None:
    """The address of a UID ``Name <addr>`` or a bare ``addr``; the domain lower-cased."""
    try:
        uid = uid.encode("latin-1").decode("utf-8").strip()
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    if uid.endswith(">") and "<" in uid:
        addr = uid[uid.rindex("<") + 1 : -1].strip()
    elif "@" in uid and " " not in uid:
        addr = uid
    else:
        return None
    if addr.count("@") != 1 or any(c.isspace() for c in addr):
        return None
    local, _, domain = addr.partition("@")
    return f"{local}@{domain.lower()}" if local and domain else None


def load_secret_files(home: GpgHome, files: Sequence[Path], config_file: str) -> tuple[str, ...]:
    """Import the configured secret keys; each file must contribute a secret key."""
    fprs: list[str] = []
    for i, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(config_file, f"openpgp.secret_keys[{i}]", f"cannot read {path}: {exc.strerror}") from None
        got = home.import_keys(data)
        if not got or not any(home.key(f) is not None and home.key(f).secret for f in got):  # type: ignore[union-attr]
            raise ConfigError(config_file, f"openpgp.secret_keys[{i}]", f"{path}: no OpenPGP secret key found")
        fprs.extend(got)
    return tuple(fprs)
