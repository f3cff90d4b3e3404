"""Who may submit letters: the users file of the submission listener, with scrypt hashes.

One user a line, ``name:$scrypt$ln=15,r=8,p=1$<salt>$<key>``: ``ln`` is log2 of scrypt's
cost N, ``r`` the block size, ``p`` the parallelism, salt and key standard base64 without
padding (the layout passlib and others use for scrypt, so the file stays readable by other
tools). Blank lines and lines starting with ``#`` are ignored. scrypt comes with Python's
``hashlib``, so no new dependency guards the passwords.

The file is read again at every login: a clerk added or removed with
``poststelle submission-user`` counts at once, without a restart. A file that cannot be
read or parsed lets nobody in (fail closed), and a line with parameters outside the bounds
below is an error, not a slow login: the bounds keep a hostile or mistyped line from
costing the listener gigabytes of memory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigError
from gateway.filing.durable import fsync_dir, write_file

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"
_NAME = re.compile(NAME_PATTERN)
_HASH = re.compile(
    r"\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,2}),p=([0-9])\$([A-Za-z0-9+/]{16,88})\$([A-Za-z0-9+/]{43,88})"
)
DEFAULT_LN = 15
MIN_LN, MAX_LN = 10, 20
MAX_R, MAX_P = 16, 4
MAX_MEMORY = 256 * 1024 * 1024  # 128 * N * r bytes: what one scrypt run may take
SALT_BYTES = 16
KEY_BYTES = 32
FILE_MODE = 0o640
_DECOY_SALT = secrets.token_bytes(SALT_BYTES)


@dataclass(frozen=True)
class ScryptHash:
    """One stored password: the parameters, the salt and the derived key."""

    ln: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        return f"$scrypt$ln={self.ln},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.key)}"

    def matches(self, password: bytes) -> bool:
        """Derive with the stored parameters and compare in constant time."""
        return hmac.compare_digest(_derive(password, self.salt, self.ln, self.r, self.p, len(self.key)), self.key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: bytes, salt: bytes, ln: int, r: int, p: int, dklen: int) -> bytes:
    n = 1 << ln
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=2 * 128 * n * r + (1 << 20))


def hash_password(password: bytes, *, ln: int = DEFAULT_LN, r: int = 8, p: int = 1) -> ScryptHash:
    """A new hash with a fresh random salt."""
    _check_parameters(ln, r, p)
    salt = secrets.token_bytes(SALT_BYTES)
    return ScryptHash(ln, r, p, salt, _derive(password, salt, ln, r, p, KEY_BYTES))


def _check_parameters(ln: int, r: int, p: int) -> None:
    if not MIN_LN <= ln <= MAX_LN or not 1 <= r <= MAX_R or not 1 <= p <= MAX_P:
        raise ValueError(f"scrypt parameters out of bounds: ln={ln}, r={r}, p={p}")
    if 128 * (1 << ln) * r > MAX_MEMORY:
        raise ValueError(f"scrypt parameters need more than {MAX_MEMORY // (1 << 20)} MiB: ln={ln}, r={r}")


def parse_hash(text: str) -> ScryptHash:
    """One ``$scrypt$...`` value; raises ValueError naming what is wrong."""
    m = _HASH.fullmatch(text)
    if m is None:
        raise ValueError("expected $scrypt$ln=N,r=N,p=N$<salt>$<key>")
    ln, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    _check_parameters(ln, r, p)
    try:
        salt, key = _unb64(m.group(4)), _unb64(m.group(5))
    except (binascii.Error, ValueError):
        raise ValueError("salt or key is not base64") from None
    if len(salt) < 12 or len(key) < 32:
        raise ValueError("salt (at least 12 bytes) or key (at least 32 bytes) too short")
    return ScryptHash(ln, r, p, salt, key)


def parse_users(text: str, *, source: str) -> dict[str, ScryptHash]:
    """The users of one file's text, in file order; raises ConfigError(source, "line N", problem)."""
    users: dict[str, ScryptHash] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        name, colon, encoded = line.partition(":")
        where = f"line {number}"
        if not colon:
            raise ConfigError(source, where, "expected name:$scrypt$...")
        if not _NAME.fullmatch(name):
            raise ConfigError(source, where, "a user name is 1-64 of A-Z a-z 0-9 . _ @ + - (a letter or digit first)")
        if name in users:
            raise ConfigError(source, where, f"user {name!r} appears twice")
        try:
            users[name] = parse_hash(encoded)
        except ValueError as exc:
            raise ConfigError(source, where, f"user {name!r}: {exc}") from None
    return users


def format_users(users: Mapping[str, ScryptHash]) -> str:
    """The file text for ``users`` (what ``parse_users`` reads back)."""
    lines = ["# Poststelle submission users: name:$scrypt$... (poststelle submission-user add|remove|list)"]
    lines += [f"{name}:{h.encode()}" for name, h in users.items()]
    return "\n".join(lines) + "\n"


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def load_users(path: Path) -> dict[str, ScryptHash]:
    """The users of ``path`` (a missing file has none); ConfigError when unreadable or malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(str(path), "-", f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), "-", "not UTF-8") from None
    return parse_users(text, source=str(path))


def write_users(path: Path, users: Mapping[str, ScryptHash]) -> None:
    """Replace ``path`` atomically with mode 0640, keeping the owner and group of the old file.

    The group is how the listener's service user gets to read the file; a rewrite by root
    must not take that away.
    """
    owner: tuple[int, int] | None = None
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        owner = (st.st_uid, st.st_gid)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    write_file(tmp, format_users(users).encode("utf-8"), mode=FILE_MODE)
    try:
        os.chmod(tmp, FILE_MODE)  # the umask may have taken bits from the mode given to open
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


class UsersFile:
    """Password checks against the users file, read afresh at every login."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> int:
        """The number of users; raises ConfigError when the file is unusable (start-up check)."""
        return len(load_users(self.path))

    def authenticate(self, name: str, password: bytes) -> bool:
        """True only for a listed user with the right password.

        An unusable file raises ConfigError: the listener answers with a temporary failure
        and lets nobody in until the file is fixed.
        """
        users = load_users(self.path)
        stored = users.get(name)
        if stored is None:
            # An unknown name costs as much as a wrong password (the parameters of a listed
            # user), so that the answer time does not tell which names exist.
            like = next(iter(users.values()), None)
            ln, r, p = (like.ln, like.r, like.p) if like else (DEFAULT_LN, 8, 1)
            _derive(password, _DECOY_SALT, ln, r, p, KEY_BYTES)
            return False
        return stored.matches(password)
