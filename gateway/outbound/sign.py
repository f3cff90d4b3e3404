"""The authority's signature on an outgoing entity: S/MIME or PGP/MIME, detached.

Detached (``multipart/signed``) so that a recipient without S/MIME or OpenPGP still reads
the letter. The signature covers exactly the entity bytes built by ``compose`` (CRLF,
7-bit): they are put into the first part unchanged, never re-serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from gateway.outbound.compose import ComposeError, base64_lines, boundary
from gateway.unwrap.openpgp.gpg import GpgError, GpgHome

__all__ = ["SmimeSigner", "sign_openpgp", "sign_smime"]


@dataclass(frozen=True)
class SmimeSigner:
    """The authority's S/MIME identity: key, certificate and the chain sent along with it."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _signed(entity: bytes, protocol: str, micalg: str, signature_part: bytes) -> bytes:
    b = boundary()
    return (
        (
            f'Content-Type: multipart/signed; protocol="{protocol}"; micalg={micalg};\r\n'
            f' boundary="{b}"\r\n\r\n'
            f"This is a digitally signed message.\r\n--{b}\r\n"
        ).encode("ascii")
        + entity.removesuffix(b"\r\n")
        + f"\r\n--{b}\r\n".encode("ascii")
        + signature_part
        + (f"--{b}--\r\n".encode("ascii"))
    )


def sign_smime(entity: bytes, signer: SmimeSigner) -> bytes:
    """``multipart/signed`` (RFC 8551 §3.5) with a detached SHA-256 CMS signature.

    The signed bytes are the entity without its last CRLF, which belongs to the boundary
    delimiter after it (RFC 2046 §5.1.1): exactly what a verifier cuts out.
    """
    content = entity.removesuffix(b"\r\n")
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(signer.cert, signer.key, hashes.SHA256())
    for cert in signer.chain:
        builder = builder.add_certificate(cert)
    der = builder.sign(Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    part = (
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n" + base64_lines(der)
    )
    return _signed(entity, "application/pkcs7-signature", "sha-256", part)


def sign_openpgp(entity: bytes, gpg: GpgHome, signer: str) -> bytes:
    """PGP/MIME ``multipart/signed`` (RFC 3156 §5) by the key ``signer`` (fingerprint)."""
    content = entity.removesuffix(b"\r\n")
    try:
        signature, algo = gpg.sign_detached(content, signer)
    except GpgError as exc:
        raise ComposeError("signing-failed", str(exc)) from None
    signature = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    part = (
        b'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
        b'Content-Disposition: attachment; filename="signature.asc"\r\n\r\n'
        + signature
        + (b"" if signature.endswith(b"\r\n") else b"\r\n")
    )
    return _signed(entity, "application/pgp-signature", f"pgp-{algo}", part)


def chain_for(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The certificates of ``pool`` that issued ``cert``, upwards (without ``cert`` itself)."""
    chain: list[x509.Certificate] = []
    current = cert
    while len(chain) < 8:
        issuer = next((c for c in pool if c.subject == current.issuer and c != current and c not in chain), None)
        if issuer is None or issuer.subject == issuer.issuer:
            break
        chain.append(issuer)
        current = issuer
    return tuple(chain)
