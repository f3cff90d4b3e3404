"""OpenPGP handler: PGP/MIME (RFC 3156) and inline PGP, trust by pinned fingerprint only.

Recognised:

* ``multipart/signed; protocol="application/pgp-signature"`` (§5): the first part's raw
  bytes, cut from the original and put into canonical CRLF form, are verified against the
  detached signature of the second part.
* ``multipart/encrypted; protocol="application/pgp-encrypted"`` (§6): the second part is
  decrypted; when the sender signed and encrypted in one go (§6.2), the same gpg call
  verifies the signature inside. That layer is reported as ONE encrypted layer whose
  ``signature`` covers its plaintext (the dispatcher counts it as a covering signature).
* Inline PGP in ``text/plain``: a clearsigned block or an armored ``PGP MESSAGE``. It
  counts as protecting the whole part only when the block is the whole text (whitespace
  around it aside). Text around it (a mailing-list footer, a quoted reply, an attacker's
  prefix) makes the layer ``partial``: partially signed / partially encrypted, and an
  armored block next to plaintext is never decrypted or merged (EFAIL "direct
  exfiltration"). Armor inside ``text/html`` is always partial (never opened: HTML can hide
  or surround it).
* Other leaf parts whose body is an armored PGP message, ``application/pgp-encrypted``
  parts and ``*.pgp``/``*.gpg`` attachments count as encrypted parts (for the partial
  encryption rule).

Trust (never GnuPG's web of trust): a signature is ``valid`` only when it is
cryptographically good, its primary key is pinned in ``[openpgp] pinned`` for an address
that is also a UID of the key (or, with ``correspondents_trusted``, the key came from the
correspondents' folder), and the key / signing subkey is neither revoked nor expired at
arrival. Keys inside messages are never imported. With several signatures every one must
be valid, and the signer addresses are those common to all of them.

Without ``[openpgp]`` the handler still recognises PGP and fails closed:
``decryption-failed-no-key`` and ``openpgp-not-configured`` (no gpg is run).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from gateway.errors import ConfigError
from gateway.mime.cut import Entity, MimeError, canonical_bytes, canonical_crlf, children, decode_body
from gateway.unwrap.layers import LayerKind, LayerOutcome, SignatureFinding, UnwrapEvent
from gateway.unwrap.openpgp.gpg import DecryptOutcome, GpgError, GpgHome, SignatureStatusLine, load_secret_files
from gateway.unwrap.verdict import Scheme, SignatureStatus, worse

if TYPE_CHECKING:
    from gateway.config import OpenPGPConfig

__all__ = ["OpenPGPHandler", "PgpTrust"]

log = structlog.get_logger("poststelle.openpgp")

_ENCRYPTED_SUFFIXES = (".pgp", ".gpg")
_BEGIN_MESSAGE = b"-----BEGIN PGP MESSAGE-----"
_BEGIN_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
_END_MESSAGE = b"-----END PGP MESSAGE-----"
_END_SIGNATURE = b"-----END PGP SIGNATURE-----"
#: An armor line at the start of a line (quoted ``> -----BEGIN`` in replies does not count).
_ARMOR_START = re.compile(rb"(?m)^[ \t]*-----BEGIN PGP (MESSAGE|SIGNED MESSAGE)-----[ \t]*\r?$")
#: Whitespace around a block that does not make it partial: ASCII space/tab/CR/LF, and NBSP
#: (UTF-8 and Latin-1) that HTML-to-text conversions leave behind.
_WS = b" \t\r\n\xa0\xc2"
_PEEK = 4096


@dataclass(frozen=True)
class PgpTrust:
    """Who may sign: the pinned fingerprints (with their addresses) and the correspondents."""

    pinned: dict[str, tuple[str, ...]]  # primary fingerprint -> pinned addresses (lower-case)
    correspondents: frozenset[str] = frozenset()  # primary fingerprints from the folder
    correspondents_trusted: bool = False


class OpenPGPHandler:
    """Opens OpenPGP layers through one GpgHome; safe to share between threads (it locks)."""

    scheme: Scheme = "openpgp"

    def __init__(self, home: GpgHome | None, trust: PgpTrust | None = None) -> None:
        self.home = home
        self.trust = trust or PgpTrust({})

    @classmethod
    def from_config(
        cls, config: OpenPGPConfig | None, *, config_file: str, max_output: int = 50 * 1024 * 1024
    ) -> OpenPGPHandler:
        """Create the home, import our secret keys and the correspondents' public keys.

        Raises ConfigError when gpg cannot run or a configured file has no usable key.
        """
        if config is None:
            return cls(None)
        passphrase: str | None = None
        if config.passphrase_file is not None:
            try:
                passphrase = config.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(config_file, "openpgp.passphrase_file", f"cannot read: {exc}") from None
        try:
            home = GpgHome(config.gnupg_home, passphrase=passphrase, max_output=max_output)
        except (GpgError, OSError) as exc:
            raise ConfigError(config_file, "openpgp.gnupg_home", str(exc)) from None
        try:
            load_secret_files(home, config.secret_keys, config_file)
            corr: set[str] = set()
            if config.correspondents is not None:
                for path in sorted(config.correspondents.iterdir()):
                    if not path.is_file() or path.name.startswith("."):
                        continue
                    corr.update(_import_public(home, path, config_file))
            home.refresh()
        except BaseException:
            home.close()
            raise
        pinned: dict[str, list[str]] = {}
        for pin in config.pinned:
            pinned.setdefault(pin.fingerprint.upper(), []).append(pin.email.lower())
            if home.key(pin.fingerprint) is None:
                # Pinning names a fingerprint; the key itself comes from the correspondents'
                # folder. Without it every signature by that key is "unknown".
                log.warning(
                    "pinned OpenPGP key not in the keyring: put it into the correspondents folder",
                    fingerprint=pin.fingerprint,
                    email=pin.email,
                )
        trust = PgpTrust({k: tuple(v) for k, v in pinned.items()}, frozenset(corr), config.correspondents_trusted)
        return cls(home, trust)

    def close(self) -> None:
        if self.home is not None:
            self.home.close()

    # --- recognising --------------------------------------------------------------------

    def claims(self, entity: Entity) -> LayerKind | None:
        ctype = entity.content_type
        if ctype == "multipart/signed":
            proto = entity.params.get("protocol", "").strip().lower()
            return "signed" if proto == "application/pgp-signature" else None
        if ctype == "multipart/encrypted":
            proto = entity.params.get("protocol", "").strip().lower()
            return "encrypted" if proto == "application/pgp-encrypted" else None
        if entity.is_multipart or ctype == "message/rfc822":
            return None
        if ctype == "application/pgp-encrypted":
            # The "Version: 1" control part of PGP/MIME is not itself encrypted content.
            return None if _is_control_part(entity) else "encrypted"
        if ctype == "application/pgp-signature" or ctype == "application/pgp-keys":
            return None
        head = _peek(entity)
        if ctype.startswith("text/"):
            if ctype == "text/html":
                return "encrypted" if _BEGIN_MESSAGE in _full(entity) else None
            m = _ARMOR_START.search(_full(entity) if len(entity.body) > _PEEK else head)
            if m is None:
                return None
            return "encrypted" if m.group(1) == b"MESSAGE" else "signed"
        if head.lstrip(_WS).startswith(_BEGIN_MESSAGE):
            return "encrypted"
        name = (entity.params.get("name") or _filename(entity) or "").lower()
        if name.endswith(_ENCRYPTED_SUFFIXES):
            return "encrypted"
        return None

    # --- opening ------------------------------------------------------------------------

    def open(self, entity: Entity, *, at: datetime) -> LayerOutcome:
        try:
            if entity.content_type == "multipart/signed":
                return self._detached(entity, at)
            if entity.content_type == "multipart/encrypted":
                return self._pgp_mime_encrypted(entity, at)
            return self._inline(entity, at)
        except (MimeError, GpgError, OSError, ValueError, UnicodeError):
            kind = self.claims(entity) or "encrypted"
            if kind == "encrypted":
                return self._failed("malformed-openpgp")
            return LayerOutcome(
                "signed", "openpgp", None, signature=SignatureFinding("invalid", ("malformed-signature",))
            )

    def _failed(self, reason: str, extra: dict[str, object] | None = None) -> LayerOutcome:
        if reason == "malformed-openpgp":
            reason = "decryption-failed-corrupt"
        event = UnwrapEvent(
            "decryption-failed",
            {
                "scheme": "openpgp",
                "reason": reason,
                "configured_keys": len(self.home.secret_fingerprints) if self.home else 0,
                **(extra or {}),
            },
        )
        return LayerOutcome("encrypted", "openpgp", None, failure=reason, events=(event,))

    def _detached(self, entity: Entity, at: datetime) -> LayerOutcome:
        try:
            parts = children(entity)
            if len(parts) != 2:
                raise MimeError("multipart/signed needs exactly two parts")
            if parts[1].content_type != "application/pgp-signature":
                raise MimeError("second part is not application/pgp-signature")
            signed = canonical_bytes(parts[0])
            sig = decode_body(parts[1])
        except MimeError:
            return LayerOutcome(
                "signed", "openpgp", None, signature=SignatureFinding("invalid", ("malformed-signature",))
            )
        if self.home is None:
            return LayerOutcome("signed", "openpgp", signed, signature=_not_configured())
        result = self.home.verify_detached(sig, signed)
        return LayerOutcome("signed", "openpgp", signed, signature=self._evaluate(result.signatures, at))

    def _pgp_mime_encrypted(self, entity: Entity, at: datetime) -> LayerOutcome:
        try:
            parts = children(entity)
            if len(parts) != 2 or not _is_control_part(parts[0]):
                raise MimeError("multipart/encrypted needs a Version: 1 part and the ciphertext")
            ciphertext = decode_body(parts[1])
        except MimeError:
            return self._failed("decryption-failed-corrupt")
        if self.home is None:
            return self._failed("decryption-failed-no-key")
        result = self.home.decrypt(ciphertext)
        if result.plaintext is None or not result.encrypted:
            return self._failed(result.failure or "decryption-failed-corrupt")
        return self._decrypted(result, canonical_crlf(result.plaintext), at)

    def _decrypted(self, result: DecryptOutcome, inner: bytes, at: datetime) -> LayerOutcome:
        events = (
            UnwrapEvent(
                "key-used",
                {
                    "scheme": "openpgp",
                    "purpose": "decrypt",
                    "fingerprint": result.decryption_primary,
                    "subkey_fingerprint": result.decryption_key,
                },
            ),
            UnwrapEvent(
                "decrypted",
                {
                    "scheme": "openpgp",
                    "cipher_algo": result.cipher_algo,
                    "mdc_method": result.mdc_method,
                    "aead_algo": result.aead_algo,
                    "recipient_fingerprint": result.decryption_primary,
                    "signed_inside": bool(result.signatures),
                    "content_bytes": len(inner),
                },
            ),
        )
        signature = self._evaluate(result.signatures, at) if result.signatures else None
        return LayerOutcome("encrypted", "openpgp", inner, signature=signature, events=events)

    def _inline(self, entity: Entity, at: datetime) -> LayerOutcome:
        text = decode_body(entity)
        if entity.content_type == "text/html" or not entity.content_type.startswith("text/"):
            if entity.content_type == "text/html":
                return LayerOutcome("encrypted", "openpgp", None, failure="partially-encrypted", partial=True)
            return self._attachment(entity, text, at)
        blocks = list(_ARMOR_START.finditer(text))
        if not blocks:
            return LayerOutcome(
                "signed", "openpgp", None, signature=SignatureFinding("invalid", ("malformed-signature",))
            )
        first = blocks[0]
        is_signed = first.group(1) == b"SIGNED MESSAGE"
        end_marker = _END_SIGNATURE if is_signed else _END_MESSAGE
        end = text.find(end_marker, first.start())
        block_end = len(text) if end < 0 else end + len(end_marker)
        whole = (
            len(blocks) == 1 and not text[: first.start()].strip(_WS) and not text[block_end:].strip(_WS) and end >= 0
        )
        if not is_signed and not whole:
            # Never decrypt an armored block that sits next to plaintext (or several
            # blocks): the result could only be shown merged with attacker text.
            return LayerOutcome("encrypted", "openpgp", None, failure="partially-encrypted", partial=True)
        block = text[first.start() : block_end]
        if self.home is None:
            if is_signed:
                return LayerOutcome("signed", "openpgp", None, signature=_not_configured(), partial=not whole)
            return self._failed("decryption-failed-no-key")
        armor = block if is_signed else _clean_armor(block)
        result = self.home.decrypt(armor)
        charset = _armor_charset(block) or entity.params.get("charset", "utf-8")
        if result.plaintext is None:
            if result.encrypted or not (is_signed or result.signatures):
                return self._failed(result.failure or "decryption-failed-corrupt")
            # A signed (not encrypted) message gpg could not check, e.g. by an unknown key:
            # a signature finding without content, never a decryption failure.
            finding = (
                self._evaluate(result.signatures, at)
                if result.signatures
                else SignatureFinding("invalid", ("malformed-signature",))
            )
            return LayerOutcome("signed", "openpgp", None, signature=finding, partial=not whole)
        inner = _text_entity(result.plaintext, charset)
        if result.encrypted:
            return self._decrypted(result, inner, at)
        # Clearsigned text, or an armored message that was only signed (gpg --sign --armor).
        finding = (
            self._evaluate(result.signatures, at) if result.signatures else SignatureFinding("none", ("no-signature",))
        )
        if not whole:
            return LayerOutcome("signed", "openpgp", None, signature=finding, partial=True)
        return LayerOutcome("signed", "openpgp", inner, signature=finding)

    def _attachment(self, entity: Entity, data: bytes, at: datetime) -> LayerOutcome:
        """A top-level non-text part that is a whole OpenPGP message (rare): decrypt it as such."""
        if self.home is None:
            return self._failed("decryption-failed-no-key")
        armored = data.lstrip(_WS).startswith(_BEGIN_MESSAGE)
        result = self.home.decrypt(_clean_armor(data.strip(_WS)) if armored else data)
        if result.plaintext is None or not result.encrypted:
            return self._failed(result.failure or "decryption-failed-corrupt")
        inner = (
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + binascii.b2a_base64(result.plaintext)
        )
        return self._decrypted(result, canonical_crlf(inner), at)

    # --- policy ------------------------------------------------------------------------

    def _evaluate(self, sigs: Sequence[SignatureStatusLine], at: datetime) -> SignatureFinding:
        """Every signature must be valid; the addresses are those all signers share."""
        if not sigs:
            return SignatureFinding("invalid", ("malformed-signature",))
        status: SignatureStatus = "valid"
        reasons: list[str] = []
        email_sets: list[tuple[str, ...]] = []
        for sig in sigs:
            st, rs, emails = self._one(sig, at)
            reasons.extend(rs)
            email_sets.append(emails)
            status = worse(status, st)
        if len(sigs) > 1 and status != "valid":
            reasons.append("multiple-signers")
        emails = tuple(e for e in email_sets[0] if all(e in s for s in email_sets[1:]))
        if len(sigs) > 1 and not emails and status == "valid":
            status, reasons = "untrusted", [*reasons, "signers-differ"]
        first = sigs[0]
        return SignatureFinding(
            status=status,
            reasons=tuple(dict.fromkeys(reasons)),
            signer_emails=emails or email_sets[0],
            signer_fingerprint=first.primary_fingerprint or first.fingerprint,
            signing_time=first.created,
        )

    def _one(self, sig: SignatureStatusLine, at: datetime) -> tuple[SignatureStatus, list[str], tuple[str, ...]]:
        if sig.kind == "BADSIG":
            return "invalid", ["bad-signature"], ()
        if sig.kind == "ERRSIG":
            if sig.errsig_rc == "9":
                if sig.issuer_fingerprint and sig.issuer_fingerprint in self.trust.pinned:
                    return "error", ["pinned-key-not-in-keyring"], ()
                return "error", ["openpgp-unknown-key"], ()
            if sig.errsig_rc == "4":
                return "error", ["unsupported-algorithm"], ()
            return "error", ["signature-not-evaluated"], ()
        if not sig.cryptographically_good or sig.fingerprint is None:
            return "invalid", ["malformed-signature"], ()
        if self.home is None:
            return "error", ["openpgp-not-configured"], ()
        key = self.home.key(sig.primary_fingerprint or sig.fingerprint)
        if key is None:
            return "error", ["openpgp-unknown-key"], ()
        reasons: list[str] = []
        sub_expires, sub_revoked = key.subkeys.get(sig.fingerprint, (None, False))
        if sig.kind == "REVKEYSIG" or key.revoked or sub_revoked:
            reasons.append("key-revoked")
        expired = [t for t in (key.expires, sub_expires) if t is not None and t <= at]
        if expired or (sig.kind == "EXPKEYSIG" and key.expires is None and sub_expires is None):
            reasons.append("key-expired")
        if sig.kind == "EXPSIG" or (sig.expires is not None and sig.expires <= at):
            reasons.append("signature-expired")
        pinned = self.trust.pinned.get(key.fingerprint)
        emails: tuple[str, ...] = key.emails
        if pinned is not None:
            both = tuple(e for e in key.emails if e.lower() in pinned)
            if both:
                emails = both
            else:
                reasons.append("pinned-address-not-in-key")
        elif key.fingerprint in self.trust.correspondents and self.trust.correspondents_trusted:
            pass
        else:
            reasons.append("openpgp-key-not-pinned")
        return ("untrusted" if reasons else "valid"), reasons, emails


# --- helpers ----------------------------------------------------------------------------


def _not_configured() -> SignatureFinding:
    return SignatureFinding("error", ("openpgp-not-configured",))


def _import_public(home: GpgHome, path: Path, config_file: str) -> tuple[str, ...]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(config_file, "openpgp.correspondents", f"cannot read {path}: {exc.strerror}") from None
    fprs = home.import_keys(data)
    if not fprs:
        raise ConfigError(config_file, "openpgp.correspondents", f"{path}: no OpenPGP key found")
    return fprs


def _is_control_part(entity: Entity) -> bool:
    if entity.content_type != "application/pgp-encrypted":
        return False
    try:
        body = decode_body(entity)
    except MimeError:
        return False
    return body.strip(_WS).lower().startswith(b"version: 1") and len(body) < 200


def _filename(entity: Entity) -> str | None:
    disp = entity.header("content-disposition")
    if not disp:
        return None
    m = re.search(r'filename\*?=\s*"?([^";]+)', disp, re.IGNORECASE)
    return m.group(1).strip() if m else None


def _peek(entity: Entity) -> bytes:
    """The first few KB of the decoded body, cheaply (claims() runs on every part)."""
    cte = (entity.header("content-transfer-encoding") or "7bit").strip().lower()
    head = entity.body[:_PEEK]
    try:
        if cte == "base64":
            compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", head)
            return binascii.a2b_base64(compact[: len(compact) // 4 * 4])
        if cte == "quoted-printable":
            return binascii.a2b_qp(head)
    except binascii.Error:
        return b""
    return head


def _full(entity: Entity) -> bytes:
    try:
        return decode_body(entity)
    except MimeError:
        return _peek(entity)


def _clean_armor(block: bytes) -> bytes:
    """Re-armor an ASCII-armored message that mail clients mangled (NBSP lines, indents).

    Only ciphertext armor is cleaned, never signed text: the armor is base64 plus a
    checksum, so whitespace and NBSP carry no meaning and the result is exactly what the
    sender's gpg produced.
    """
    lines = [ln.strip(_WS) for ln in re.split(rb"\r?\n", block)]
    if not lines or lines[0] != _BEGIN_MESSAGE:
        return block
    out = [_BEGIN_MESSAGE]
    i = 1
    while i < len(lines) and b":" in lines[i] and lines[i] and not lines[i].startswith(b"-----"):
        out.append(lines[i])  # armor headers (Version:, Comment:, Charset:)
        i += 1
    out.append(b"")
    for line in lines[i:]:
        if not line:
            continue
        out.append(line)
        if line.startswith(b"-----END"):
            break
    return b"\n".join(out) + b"\n"


def _armor_charset(block: bytes) -> str | None:
    m = re.search(rb"(?im)^Charset:[ \t]*([A-Za-z0-9._-]{1,40})[ \t]*\r?$", block[:2000])
    return m.group(1).decode("ascii").lower() if m else None


def _text_entity(plaintext: bytes, charset: str) -> bytes:
    """The opened inline text as a MIME entity, so the next layer and the case file see MIME."""
    charset = re.sub(r"[^A-Za-z0-9._-]", "", charset)[:40] or "utf-8"
    head = f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    return head.encode("ascii") + canonical_crlf(plaintext)
