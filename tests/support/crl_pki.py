"""CRLs, CAs and signers for revocation tests, made with ``cryptography`` in the test run.

Builds on the test PKI of smime_pki.py (its root and intermediate), adding what the
revocation rules need: leaves with distribution points, CAs without cRLSign, an indirect
CRL issuer, CRLs with chosen scope / extensions / dates, delta CRLs, and re-signing with
SHA-1 (which ``cryptography`` no longer signs with) through asn1crypto.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import algos as a_algos
from asn1crypto import crl as a_crl
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from support.smime_pki import DAY, DER, NOW, Party, _name, _rsa

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")


def key_usage(*, sign: bool = False, cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def dp(
    url: str | None = None, *, crl_issuer: x509.Name | None = None, reasons: frozenset[x509.ReasonFlags] | None = None
) -> x509.DistributionPoint:
    return x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)] if url else None,
        relative_name=None,
        reasons=reasons,
        crl_issuer=[x509.DirectoryName(crl_issuer)] if crl_issuer is not None else None,
    )


def certificate(
    name: str,
    key: Key,
    issuer: Party | None,
    *,
    ca: bool = False,
    usage: x509.KeyUsage | None = None,
    email: str | None = None,
    dps: Sequence[x509.DistributionPoint] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    issuer_key: Key | None = None,
) -> Party:
    """A CA (``ca=True``) or an S/MIME signer certificate issued by ``issuer`` (None: self-signed)."""
    signer = issuer_key or (issuer.key if issuer else key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.cert.subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - 20 * DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            usage or (key_usage(cert_sign=True, crl_sign=True) if ca else key_usage(sign=True)), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    if email is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    if dps:
        builder = builder.add_extension(x509.CRLDistributionPoints(list(dps)), critical=False)
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    chain = [*(issuer.chain if issuer else []), issuer.cert] if issuer is not None else []
    # The message carries the chain up to (not including) the root.
    return Party(name, key, cert, email, [c for c in chain if c.issuer != c.subject])  # type: ignore[arg-type]


def signer(
    name: str, email: str, issuer: Party, *, dps: Sequence[x509.DistributionPoint] = (), key: Key | None = None
) -> Party:
    return certificate(name, key or _rsa(2048, "crl-tests-leaf"), issuer, email=email, dps=dps)


def revoked(
    cert: x509.Certificate,
    *,
    reason: x509.ReasonFlags | None = None,
    when: dt.datetime | None = None,
    cert_issuer: x509.Name | None = None,
    critical_unknown: bool = False,
) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(when or NOW - 2 * DAY)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    if cert_issuer is not None:
        builder = builder.add_extension(x509.CertificateIssuer([x509.DirectoryName(cert_issuer)]), critical=True)
    if critical_unknown:
        builder = builder.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    return builder.build()


def crl(
    issuer: Party,
    entries: Sequence[x509.RevokedCertificate] = (),
    *,
    number: int = 1,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    idp: x509.IssuingDistributionPoint | None = None,
    delta_of: int | None = None,
    issuer_name: x509.Name | None = None,
    key: Key | None = None,
    critical_unknown: bool = False,
) -> x509.CertificateRevocationList:
    """A CRL in ``issuer``'s name, signed with its key unless ``key``/``issuer_name`` say otherwise."""
    sign_key = key or issuer.key
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name or issuer.cert.subject)
        .last_update(this_update or NOW - DAY)
        .next_update(next_update or NOW + 30 * DAY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(sign_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if idp is not None:
        builder = builder.add_extension(idp, critical=True)
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if critical_unknown:
        builder = builder.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(sign_key, hashes.SHA256())  # type: ignore[arg-type]


def idp(
    url: str | None = None,
    *,
    user: bool = False,
    ca: bool = False,
    attributes: bool = False,
    reasons: frozenset[x509.ReasonFlags] | None = None,
    indirect: bool = False,
) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)] if url else None,
        relative_name=None,
        only_contains_user_certs=user,
        only_contains_ca_certs=ca,
        only_some_reasons=reasons,
        indirect_crl=indirect,
        only_contains_attribute_certs=attributes,
    )


# --- SHA-1 (cryptography refuses to sign with it): re-sign the DER with asn1crypto ---------


def _sha1_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - building old hierarchies


def sha1_certificate(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """``cert`` re-signed by ``issuer_key`` with sha1WithRSAEncryption."""
    parsed = a_x509.Certificate.load(cert.public_bytes(DER))
    alg = a_algos.SignedDigestAlgorithm({"algorithm": "sha1_rsa"})
    tbs = a_x509.TbsCertificate.load(parsed["tbs_certificate"].dump())
    tbs["signature"] = alg
    tbs_der = tbs.dump(force=True)
    new = a_x509.Certificate(
        {
            "tbs_certificate": a_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": alg,
            "signature_value": _sha1_sign(issuer_key, tbs_der),
        }
    )
    return x509.load_der_x509_certificate(new.dump())


def sha1_crl(crl_: x509.CertificateRevocationList, issuer_key: rsa.RSAPrivateKey) -> x509.CertificateRevocationList:
    parsed = a_crl.CertificateList.load(crl_.public_bytes(DER))
    alg = a_algos.SignedDigestAlgorithm({"algorithm": "sha1_rsa"})
    tbs = a_crl.TbsCertList.load(parsed["tbs_cert_list"].dump())
    tbs["signature"] = alg
    tbs_der = tbs.dump(force=True)
    new = a_crl.CertificateList(
        {
            "tbs_cert_list": a_crl.TbsCertList.load(tbs_der),
            "signature_algorithm": alg,
            "signature": _sha1_sign(issuer_key, tbs_der),
        }
    )
    return x509.load_der_x509_crl(new.dump())
