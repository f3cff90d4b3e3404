"""Whose certificate or key encrypts to a recipient, and where it came from.

S/MIME certificates come from the certificate store (signers of verified incoming mail,
``unwrap/certstore.py``) and from the configured correspondents directory
(``[outbound] correspondents_dir``, certificates people put there); OpenPGP keys from the
gateway's keyring, pinned in ``[openpgp] pinned`` for the address (or from the
correspondents' folder when ``correspondents_trusted``). A certificate or key that is
expired, not yet valid or revoked at the moment of sending is never used; among the
usable ones the newest wins (a correspondent who renewed their certificate gets mail
for the new one). Every answer says where it came from, for the audit record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.unwrap.certstore import CertStore
from gateway.unwrap.openpgp.gpg import GpgHome, KeyInfo
from gateway.unwrap.smime.revocation import CrlInfo

__all__ = ["KeyFinder", "PgpRecipient", "SmimeRecipient", "load_certificates"]


@dataclass(frozen=True)
class SmimeRecipient:
    address: str
    cert: x509.Certificate
    source: str  # e.g. "smime certstore sha256=…" or "smime correspondents_dir <file> sha256=…"


@dataclass(frozen=True)
class PgpRecipient:
    address: str
    fingerprint: str
    source: str  # e.g. "openpgp pinned <fingerprint>"


def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _same_address(a: str, b: str) -> bool:
    """Local parts exactly, domains without case (as the certificate store matches)."""
    al, _, ad = a.rpartition("@")
    bl, _, bd = b.rpartition("@")
    return al == bl and ad.lower() == bd.lower()


def _has_address(cert: x509.Certificate, address: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return any(_same_address(e, address) for e in san.get_values_for_type(x509.RFC822Name))


def load_certificates(directory: Path) -> list[tuple[x509.Certificate, Path]]:
    """Every certificate in the directory's regular files (PEM, several per file, or DER).

    Files that hold no certificate are skipped: the directory is maintained by people and
    a stray README must not stop sending to everyone else.
    """
    out: list[tuple[x509.Certificate, Path]] = []
    if not directory.is_dir():
        return out
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            data = path.read_bytes()
            certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [
                x509.load_der_x509_certificate(data)]
        except (OSError, ValueError):
            continue
        out.extend((c, path) for c in certs)
    return out


class KeyFinder:
    """Looks up recipients' S/MIME certificates and OpenPGP keys as of a moment."""

    def __init__(
        self,
        *,
        certstore: CertStore | None = None,
        correspondents: Sequence[tuple[x509.Certificate, Path]] = (),
        crls: Sequence[CrlInfo] = (),
        gpg: GpgHome | None = None,
        pinned: Mapping[str, Sequence[str]] | None = None,
        trusted_folder_keys: frozenset[str] = frozenset(),
    ) -> None:
        self.certstore = certstore
        self.correspondents = tuple(correspondents)
        self.crls = tuple(crls)
        self.gpg = gpg
        self.pinned = {f.upper(): tuple(a.lower() for a in v) for f, v in (pinned or {}).items()}
        self.trusted_folder_keys = trusted_folder_keys

    # --- S/MIME ----------------------------------------------------------------------

    def revoked(self, cert: x509.Certificate, at: datetime) -> bool:
        """Listed as revoked (at or before ``at``) in any loaded CRL of its issuer."""
        for crl in self.crls:
            entry = crl.entry(cert)
            if crl.issuer == cert.issuer and entry is not None and entry.revocation_date <= at:
                return True
        return False

    def usable_for_encryption(self, cert: x509.Certificate, at: datetime) -> bool:
        """Valid now, not revoked, an RSA key (what the envelope builder supports) meant for mail."""
        if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
            return False
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            return False
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_encipherment:
                return False
        except x509.ExtensionNotFound:
            pass
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if not {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku):
                return False
        except x509.ExtensionNotFound:
            pass
        return not self.revoked(cert, at)

    def smime(self, address: str, at: datetime) -> SmimeRecipient | None:
        """The newest usable certificate for ``address``, or None."""
        found: list[SmimeRecipient] = []
        if self.certstore is not None:
            for cert in self.certstore.for_address(address):
                found.append(SmimeRecipient(address, cert, f"smime certstore sha256={_sha256(cert)}"))
        for cert, path in self.correspondents:
            if _has_address(cert, address):
                found.append(SmimeRecipient(address, cert, f"smime correspondents_dir {path.name} "
                                                           f"sha256={_sha256(cert)}"))
        usable = [r for r in found if self.usable_for_encryption(r.cert, at)]
        if not usable:
            return None
        return max(usable, key=lambda r: (r.cert.not_valid_before_utc, r.cert.not_valid_after_utc))

    # --- OpenPGP ---------------------------------------------------------------------

    def _key_usable(self, key: KeyInfo, at: datetime) -> bool:
        if key.revoked or (key.expires is not None and key.expires <= at):
            return False
        subkeys_ok = [fpr for fpr, (exp, rev) in key.subkeys.items()
                      if not rev and (exp is None or exp > at)]
        return bool(subkeys_ok)

    def openpgp(self, address: str, at: datetime) -> PgpRecipient | None:
        """The newest usable key pinned for ``address`` that also carries it as a UID."""
        if self.gpg is None:
            return None
        wanted = address.lower()
        found: list[tuple[KeyInfo, str]] = []
        candidates = {f: "pinned" for f, addrs in self.pinned.items() if wanted in addrs}
        for fpr in self.trusted_folder_keys:
            candidates.setdefault(fpr, "correspondents")
        for fpr, how in candidates.items():
            key = self.gpg.key(fpr)
            if key is None or key.fingerprint != fpr or wanted not in (e.lower() for e in key.emails):
                continue
            if self._key_usable(key, at):
                found.append((key, how))
        if not found:
            return None
        key, how = max(found, key=lambda kh: kh[0].created or datetime.min.replace(tzinfo=at.tzinfo))
        return PgpRecipient(address, key.fingerprint, f"openpgp {how} {key.fingerprint}")
