"""Whose certificate or key encrypts to a recipient, and where it came from.

S/MIME certificates come from the certificate store (signers of verified incoming mail,
``unwrap/certstore.py``) and from the configured correspondents directory
(``[outbound] correspondents_dir``, certificates people put there); OpenPGP keys from the
gateway's keyring, pinned in ``[openpgp] pinned`` for the address (or from the
correspondents' folder when ``correspondents_trusted``). A certificate is used only when
it chains to the configured trust anchors and passes the inbound path validation (so an
attacker who slips a certificate into the store or the directory gains nothing); a
certificate or key that is expired, not yet valid or revoked at the moment of sending is
never used; among the usable ones the newest wins (a correspondent who renewed their
certificate gets mail for the new one). Every answer says where it came from, and every
certificate found and refused says why, for the audit record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gateway.outbound.envelope import EC_CURVES
from gateway.unwrap.certstore import CertStore
from gateway.unwrap.openpgp.gpg import GpgHome, KeyInfo
from gateway.unwrap.smime.pki import Validator

__all__ = ["KeyFinder", "PgpRecipient", "Refusal", "SmimeLookup", "SmimeRecipient", "load_certificates"]


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
            certs = (
                x509.load_pem_x509_certificates(data)
                if b"-----BEGIN" in data
                else [x509.load_der_x509_certificate(data)]
            )
        except (OSError, ValueError):
            continue
        out.extend((c, path) for c in certs)
    return out


@dataclass(frozen=True)
class Refusal:
    """A recipient certificate that was found and not used, and why (reason codes of ``pki``)."""

    address: str
    source: str
    reasons: tuple[str, ...]

    def text(self) -> str:
        """``certificate of X refused: expired (source)``: the line for the outbox record and the audit trail."""
        why = ", ".join(REFUSAL_WORDS.get(r, r) for r in self.reasons) or "not usable"
        return f"certificate of {self.address} refused: {why} ({self.source})"


#: Reason codes of path validation and of this module, in an administrator's words.
REFUSAL_WORDS = {
    "cert-expired": "expired",
    "cert-not-yet-valid": "not yet valid",
    "cert-revoked": "revoked",
    "ca-revoked": "an issuing CA is revoked",
    "revocation-unknown": "revocation status unknown",
    "untrusted-chain": "does not chain to the configured trust anchors",
    "no-trust-anchors": "no [smime] trust_anchors are configured",
    "wrong-eku": "its extended key usage does not allow email protection",
    "wrong-key-usage": "its key usage allows neither key encipherment nor key agreement",
    "wrong-address": "its subjectAltName does not name the recipient",
    "unsupported-key": "its key can not be encrypted to (RSA or P-256/P-384/P-521 only)",
    "weak-key": "its key is too weak for the algorithm policy",
}


@dataclass(frozen=True)
class SmimeLookup:
    """The certificate to use for an address (or None) and every one found and refused."""

    recipient: SmimeRecipient | None
    refused: tuple[Refusal, ...] = ()


def _subject_emails(cert: x509.Certificate) -> list[str]:
    try:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    except ValueError:
        return []


def _names(cert: x509.Certificate, address: str) -> bool:
    """Names ``address`` anywhere (subjectAltName or the subject's emailAddress): a candidate to judge."""
    return _has_address(cert, address) or any(_same_address(e, address) for e in _subject_emails(cert))


def _is_ca(cert: x509.Certificate) -> bool:
    """Only CA certificates can be part of a path; leaves would only enlarge the cache key and the search."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


class KeyFinder:
    """Looks up recipients' S/MIME certificates and OpenPGP keys as of a moment.

    A recipient certificate is judged like a signer's (``pki.Validator``: a path to the
    configured trust anchors, validity, revocation per ``[smime] revocation``, the
    algorithm policy), with the key usage of encryption, and it must name the recipient in
    its subjectAltName. ``intermediates`` are the CA certificates paths may be built with
    (the correspondents directory's, the identities' ``cert_file``).
    """

    def __init__(
        self,
        *,
        certstore: CertStore | None = None,
        correspondents: Sequence[tuple[x509.Certificate, Path]] = (),
        validator: Validator | None = None,
        intermediates: Sequence[x509.Certificate] = (),
        gpg: GpgHome | None = None,
        pinned: Mapping[str, Sequence[str]] | None = None,
        trusted_folder_keys: frozenset[str] = frozenset(),
    ) -> None:
        self.certstore = certstore
        self.correspondents = tuple(correspondents)
        self.validator = validator
        self.intermediates = tuple(
            dict.fromkeys(c for c in (*intermediates, *(c for c, _ in self.correspondents)) if _is_ca(c))
        )
        self.gpg = gpg
        self.pinned = {f.upper(): tuple(a.lower() for a in v) for f, v in (pinned or {}).items()}
        self.trusted_folder_keys = trusted_folder_keys

    # --- S/MIME ----------------------------------------------------------------------

    def refusal_reasons(self, cert: x509.Certificate, address: str, at: datetime) -> tuple[str, ...]:
        """Why ``cert`` may not encrypt to ``address`` at ``at``; empty when it may."""
        if not _has_address(cert, address):
            return ("wrong-address",)
        key = cert.public_key()
        if not (
            isinstance(key, rsa.RSAPublicKey)
            or (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_CURVES)
        ):
            return ("unsupported-key",)
        if self.validator is None or not self.validator.anchors:
            return ("no-trust-anchors",)
        result = self.validator.validate(cert, self.intermediates, at, purpose="encryption")
        return result.reasons

    def smime_lookup(self, address: str, at: datetime) -> SmimeLookup:
        """The newest usable certificate for ``address`` and the ones refused (with their reasons)."""
        found: list[SmimeRecipient] = []
        if self.certstore is not None:
            for cert in self.certstore.for_address(address):
                found.append(SmimeRecipient(address, cert, f"smime certstore sha256={_sha256(cert)}"))
        for cert, path in self.correspondents:
            if _names(cert, address):
                found.append(
                    SmimeRecipient(address, cert, f"smime correspondents_dir {path.name} sha256={_sha256(cert)}")
                )
        usable: list[SmimeRecipient] = []
        refused: list[Refusal] = []
        for r in dict.fromkeys(found):
            reasons = self.refusal_reasons(r.cert, address, at)
            if reasons:
                refused.append(Refusal(address, r.source, reasons))
            else:
                usable.append(r)
        if not usable:
            return SmimeLookup(None, tuple(refused))
        best = max(usable, key=lambda r: (r.cert.not_valid_before_utc, r.cert.not_valid_after_utc))
        return SmimeLookup(best, tuple(refused))

    def smime(self, address: str, at: datetime) -> SmimeRecipient | None:
        """The newest usable certificate for ``address``, or None."""
        return self.smime_lookup(address, at).recipient

    # --- OpenPGP ---------------------------------------------------------------------

    def _key_usable(self, key: KeyInfo, at: datetime) -> bool:
        if key.revoked or (key.expires is not None and key.expires <= at):
            return False
        subkeys_ok = [fpr for fpr, (exp, rev) in key.subkeys.items() if not rev and (exp is None or exp > at)]
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
