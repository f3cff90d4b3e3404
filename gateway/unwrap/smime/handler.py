"""S/MIME handler: recognises S/MIME layers, opens one at a time, reports what it proved.

Recognised (RFC 8551): ``multipart/signed`` with protocol application/(x-)pkcs7-signature
(detached), and application/(x-)pkcs7-mime with smime-type enveloped-data,
authEnveloped-data or signed-data (opaque); without smime-type the CMS content type
decides. Policy on top of cms.py/pki.py: the algorithm policy (policy.py: SHA-1, weak
keys) makes a correct signature "untrusted", every SignerInfo must verify, the signed
bytes are the raw part cut from the original in canonical CRLF form. The finding carries
the revocation evidence of every signer's path.

Keys, anchors and CRLs are loaded once by ``SmimeHandler.from_config``; unusable material
raises ConfigError(file, key, problem). Without [smime] the handler still recognises
S/MIME and fails closed (no key, no anchor).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    load_der_private_key,
    load_pem_private_key,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from gateway.errors import ConfigError
from gateway.mime.cut import (
    Entity,
    MimeError,
    canonical_bytes,
    canonical_crlf,
    children,
    decode_body,
)
from gateway.unwrap.layers import LayerKind, LayerOutcome, SignatureFinding, UnwrapEvent
from gateway.unwrap.smime import cms as cmslib
from gateway.unwrap.smime.crlfetch import CrlCache
from gateway.unwrap.smime.pki import Validator
from gateway.unwrap.smime.revocation import CertRevocation, CrlInfo, RevocationMode
from gateway.unwrap.verdict import Scheme, SignatureStatus, worse

if TYPE_CHECKING:
    from gateway.config import SmimeConfig, SmimeIdentityConfig

_SIG_PROTOCOLS = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_MIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_ENCRYPTED_TYPES = ("enveloped-data", "authenveloped-data")
_CMS_KIND: dict[str, LayerKind] = {
    "signed_data": "signed",
    "enveloped_data": "encrypted",
    "authenticated_enveloped_data": "encrypted",
}
_DER = Encoding.DER


@functools.lru_cache(maxsize=1024)
def cert_sha256(cert: x509.Certificate) -> str:
    """Hex sha256 of the DER; cached, as the same certificates come with message after message."""
    return hashlib.sha256(cert.public_bytes(_DER)).hexdigest()


def cert_emails(cert: x509.Certificate) -> tuple[str, ...]:
    """rfc822Name SANs; only without any, the legacy emailAddress of the subject DN.

    RFC 8550 §3 requires receivers to recognise both; the SAN wins when present so a DN
    attribute cannot add an identity the SAN does not list.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = tuple(str(e) for e in san.get_values_for_type(x509.RFC822Name))
    except (x509.ExtensionNotFound, ValueError):
        emails = ()
    if emails:
        return emails
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    except ValueError:
        return ()
    return tuple(str(a.value) for a in attrs)


@dataclass(frozen=True)
class SmimeMaterial:
    """What ``[smime]`` loads: our keys, the anchors, the CRLs, and the policy knobs.

    ``crl_cache`` holds the CRLs fetched from distribution points (``fetch_crls``).
    """

    keys: tuple[cmslib.RecipientKey, ...] = ()
    anchors: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList | CrlInfo, ...] = ()
    min_rsa_bits: int = 2048
    allow_sha1: bool = False
    configured: bool = False
    revocation: RevocationMode = "if-configured"
    crl_grace: timedelta = timedelta(0)
    crl_cache: CrlCache | None = None


class SmimeHandler:
    """Opens S/MIME layers; stateless per message, safe to share between threads."""

    scheme: Scheme = "smime"

    def __init__(self, material: SmimeMaterial) -> None:
        self.material = material
        self.validator = Validator(
            material.anchors,
            material.crls,
            min_rsa_bits=material.min_rsa_bits,
            allow_sha1=material.allow_sha1,
            revocation=material.revocation,
            crl_grace=material.crl_grace,
            crl_cache=material.crl_cache,
        )

    @classmethod
    def from_config(
        cls,
        config: SmimeConfig | None,
        *,
        config_file: str,
        crl_cache_dir: Path | None = None,
        fetch_crls: bool = True,
    ) -> SmimeHandler:
        """``crl_cache_dir``: where fetched CRLs live (used with ``fetch_crls`` in [smime]);
        ``fetch_crls=False`` reads that cache but never fetches (offline use: ``inspect``).
        """
        if config is None:
            return cls(SmimeMaterial())
        return cls(load_material(config, config_file, crl_cache_dir=crl_cache_dir, fetch=fetch_crls))

    # --- recognising --------------------------------------------------------------------

    def claims(self, entity: Entity) -> LayerKind | None:
        ctype = entity.content_type
        if ctype == "multipart/signed":
            protocol = entity.params.get("protocol", "").strip().lower()
            return "signed" if protocol in _SIG_PROTOCOLS else None
        if ctype not in _MIME_TYPES:
            return None
        smime_type = entity.params.get("smime-type", "").strip().lower()
        if smime_type in _ENCRYPTED_TYPES:
            return "encrypted"
        if smime_type == "signed-data":
            return "signed"
        if smime_type:
            return None  # certs-only, compressed-data, ...: not a protective layer
        # Old clients omit smime-type: the CMS content type decides. Unreadable CMS is
        # treated as encrypted, so that it fails closed instead of passing as plaintext.
        try:
            return _CMS_KIND.get(cmslib.content_type_of(decode_body(entity)), "encrypted")
        except (MimeError, cmslib.CmsError):
            return "encrypted"

    # --- opening ------------------------------------------------------------------------

    def open(self, entity: Entity, *, at: datetime) -> LayerOutcome:
        kind = self.claims(entity)
        if kind == "encrypted":
            return self._decrypt(entity)
        if entity.content_type == "multipart/signed":
            return self._detached(entity, at)
        return self._opaque(entity, at)

    def _decrypt(self, entity: Entity) -> LayerOutcome:
        try:
            der = decode_body(entity)
            result = cmslib.decrypt(der, self.material.keys)
        except (MimeError, cmslib.CmsError) as exc:
            reason = exc.reason if isinstance(exc, cmslib.CmsError) else "malformed-mime"
            if reason in ("malformed-cms", "unexpected-cms-type"):
                reason = "decryption-failed-corrupt"
            if not self.material.keys and reason == "decryption-failed-no-key":
                reason = "decryption-failed-no-key"
            event = UnwrapEvent(
                "decryption-failed",
                {
                    "scheme": "smime",
                    "reason": reason,
                    "configured_keys": len(self.material.keys),
                },
            )
            return LayerOutcome("encrypted", "smime", None, failure=reason, events=(event,))
        cert = result.key.certificate
        events = (
            UnwrapEvent(
                "key-used",
                {
                    "scheme": "smime",
                    "purpose": "decrypt",
                    "certificate_sha256": cert_sha256(cert),
                    "public_key_sha256": cmslib.public_key_sha256(cert),
                    "certificate_serial": format(cert.serial_number, "x"),
                },
            ),
            UnwrapEvent(
                "decrypted",
                {
                    "scheme": "smime",
                    "cms_type": result.cms_type,
                    "content_encryption": result.content_encryption,
                    "key_transport": result.key_transport,
                    "recipient_certificate_sha256": cert_sha256(cert),
                    "content_bytes": len(result.content),
                },
            ),
        )
        return LayerOutcome("encrypted", "smime", canonical_crlf(result.content), events=events)

    def _detached(self, entity: Entity, at: datetime) -> LayerOutcome:
        try:
            parts = children(entity)
            if len(parts) != 2:
                raise MimeError("multipart/signed needs exactly two parts")
            sig_part = parts[1]
            if sig_part.content_type not in _SIG_PROTOCOLS:
                raise MimeError("second part is not a PKCS#7 signature")
            signed_bytes = canonical_bytes(parts[0])
            der = decode_body(sig_part)
        except MimeError:
            finding = SignatureFinding("invalid", ("malformed-signature",))
            return LayerOutcome("signed", "smime", None, signature=finding)
        try:
            content = cmslib.verify_signed_data(der, signed_bytes)
        except cmslib.CmsError as exc:
            reason = "malformed-signature" if exc.reason == "malformed-cms" else exc.reason
            finding = SignatureFinding("invalid", (reason,))
            return LayerOutcome("signed", "smime", signed_bytes, signature=finding)
        return LayerOutcome("signed", "smime", signed_bytes, signature=self._evaluate(content, at))

    def _opaque(self, entity: Entity, at: datetime) -> LayerOutcome:
        try:
            content = cmslib.verify_signed_data(decode_body(entity))
        except (MimeError, cmslib.CmsError) as exc:
            reason = exc.reason if isinstance(exc, cmslib.CmsError) else "malformed-mime"
            reason = "malformed-signature" if reason == "malformed-cms" else reason
            return LayerOutcome("signed", "smime", None, signature=SignatureFinding("invalid", (reason,)))
        if content.econtent is None:
            # RFC 5652 allows SignedData without content; as a message it signs nothing.
            return LayerOutcome("signed", "smime", None, signature=SignatureFinding("none", ("no-econtent",)))
        inner = canonical_crlf(content.econtent)
        return LayerOutcome("signed", "smime", inner, signature=self._evaluate(content, at))

    # --- policy ------------------------------------------------------------------------

    def _evaluate(self, content: cmslib.SignedContent, at: datetime) -> SignatureFinding:
        """Combine every SignerInfo: all must be valid for the layer to be valid."""
        if not content.signers:
            return SignatureFinding("none", ("no-signer-info",))
        status: SignatureStatus = "valid"
        reasons: list[str] = []
        evidence: dict[str, CertRevocation] = {}
        for check in content.signers:
            st, rs, revocation = self._signer_status(check, content.certificates, at)
            reasons.extend(rs)
            status = worse(status, st)
            for item in revocation:
                evidence.setdefault(item.certificate_sha256, item)
        if len(content.signers) > 1 and status != "valid":
            reasons.append("multiple-signers")
        first = content.signers[0]
        cert = first.certificate
        emails: list[str] = []
        for check in content.signers:
            if check.certificate is not None:
                emails.extend(e for e in cert_emails(check.certificate) if e not in emails)
        return SignatureFinding(
            status=status,
            reasons=tuple(dict.fromkeys(reasons)),
            signer_emails=tuple(emails),
            signer_certificate_sha256=cert_sha256(cert) if cert is not None else None,
            signing_time=first.signing_time,
            signer_certificate=cert.public_bytes(_DER) if cert is not None and status == "valid" else None,
            revocation=self._revocation_json(evidence.values()) if evidence else None,
        )

    def _revocation_json(self, evidence: Iterable[CertRevocation]) -> dict[str, Any]:
        """``signature.revocation`` of the verdict: the mode and each certificate's status."""
        return {"mode": self.validator.revocation, "certificates": [item.to_json() for item in evidence]}

    def _signer_status(
        self, check: cmslib.SignerCheck, certs: Sequence[x509.Certificate], at: datetime
    ) -> tuple[SignatureStatus, list[str], tuple[CertRevocation, ...]]:
        if check.status == "invalid":
            return "invalid", [check.reason or "bad-signature"], ()
        if check.status == "error" or check.certificate is None:
            return "error", [check.reason or "signer-certificate-missing"], ()
        reasons = self.validator.policy.digest_problems(check.digest_algorithm)
        if not self.material.configured:
            reasons.append("smime-not-configured")
        path = self.validator.validate(check.certificate, certs, at)
        reasons.extend(path.reasons)
        return ("untrusted" if reasons else "valid"), reasons, path.revocation


# --- loading configuration ------------------------------------------------------------


def load_material(
    config: SmimeConfig, file: str, *, crl_cache_dir: Path | None = None, fetch: bool = True
) -> SmimeMaterial:
    """Keys, anchors, CRLs and policy of ``[smime]``; ConfigError on unusable material.

    The CRL cache is used only with ``fetch_crls`` and a ``crl_cache_dir``; ``fetch=False``
    reads it without fetching.
    """
    keys = tuple(_load_identity(ident, file, f"smime.identities[{i}]") for i, ident in enumerate(config.identities))
    anchors: list[x509.Certificate] = []
    for i, path in enumerate(config.trust_anchors):
        anchors.extend(_load_certs_from(path, file, f"smime.trust_anchors[{i}]"))
    crls = tuple(
        CrlInfo(_load_crl(path, file, f"smime.crl_files[{i}]"), str(path)) for i, path in enumerate(config.crl_files)
    )
    grace = timedelta(seconds=config.crl_grace)
    cache = None
    if config.fetch_crls and crl_cache_dir is not None:
        cache = CrlCache(
            crl_cache_dir, fetch=fetch, timeout=config.crl_fetch_timeout, max_bytes=config.crl_max_bytes, grace=grace
        )
        cache.refresh_in_background()
    return SmimeMaterial(
        keys,
        tuple(anchors),
        crls,
        config.min_rsa_bits,
        config.allow_sha1,
        configured=True,
        revocation=config.revocation,
        crl_grace=grace,
        crl_cache=cache,
    )


def _read(path: Path, file: str, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(file, key, f"cannot read {path}: {exc.strerror}") from None


def _load_identity(ident: SmimeIdentityConfig, file: str, key: str) -> cmslib.RecipientKey:
    password: bytes | None = None
    if ident.password_file is not None:
        password = _read(ident.password_file, file, f"{key}.password_file").rstrip(b"\r\n")
    if ident.pkcs12_file is not None:
        data = _read(ident.pkcs12_file, file, f"{key}.pkcs12_file")
        try:
            bundle = pkcs12.load_pkcs12(data, password)
        except ValueError as exc:
            raise ConfigError(file, f"{key}.pkcs12_file", f"{ident.pkcs12_file}: cannot open PKCS#12 ({exc})") from None
        priv = bundle.key
        candidates = [c.certificate for c in bundle.additional_certs]
        if bundle.cert is not None:
            candidates.insert(0, bundle.cert.certificate)
        where = f"{key}.pkcs12_file"
    else:
        if ident.key_file is None or ident.cert_file is None:
            raise ConfigError(file, f"{key}.key_file", "give key_file and cert_file, or pkcs12_file")
        data = _read(ident.key_file, file, f"{key}.key_file")
        try:
            loader = load_pem_private_key if b"-----BEGIN" in data else load_der_private_key
            priv = loader(data, password)
        except (ValueError, TypeError) as exc:
            raise ConfigError(file, f"{key}.key_file", f"{ident.key_file}: cannot load private key ({exc})") from None
        candidates = _load_certs_from(ident.cert_file, file, f"{key}.cert_file")
        where = f"{key}.cert_file"
    if not isinstance(priv, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(file, where, "only RSA and EC keys can decrypt S/MIME")
    # A PKCS#12 may hold the CA too, in any order: take the certificate of this key.
    for cert in candidates:
        if cert.public_key() == priv.public_key():
            return cmslib.RecipientKey(priv, cert)
    raise ConfigError(file, where, "no certificate matches the private key")


def _load_certs_from(path: Path, file: str, key: str) -> list[x509.Certificate]:
    """Certificates from a PEM/DER file, or from every regular file in a directory."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        certs: list[x509.Certificate] = []
        for p in files:
            if p.suffix.lower() in (".crl", ".key", ".txt", ".md"):
                continue
            certs.extend(_parse_certs(_read(p, file, key), p, file, key))
        if not certs:
            raise ConfigError(file, key, f"{path}: no certificates found")
        return certs
    return _parse_certs(_read(path, file, key), path, file, key)


def _parse_certs(data: bytes, path: Path, file: str, key: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ConfigError(file, key, f"{path}: not a PEM or DER certificate") from None
    return certs


def _load_crl(path: Path, file: str, key: str) -> x509.CertificateRevocationList:
    data = _read(path, file, key)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        raise ConfigError(file, key, f"{path}: not a PEM or DER CRL") from None
