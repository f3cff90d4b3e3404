"""Encryption of an outgoing entity to its recipients and to the authority itself.

Always also to the authority's own certificate or key: the copy filed in the case folder
is the message as sent, and it must stay readable for the authority.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from gateway.outbound.compose import ComposeError, base64_lines, boundary
from gateway.outbound.envelope import enveloped_data
from gateway.unwrap.openpgp.gpg import GpgError, GpgHome

__all__ = ["encrypt_openpgp", "encrypt_smime"]


def encrypt_smime(entity: bytes, recipients: Sequence[x509.Certificate]) -> bytes:
    """``application/pkcs7-mime; smime-type=enveloped-data`` (AES-256-CBC; RSA key transport, EC key agreement).

    When every recipient has an RSA key, ``cryptography``'s envelope builder does it (OpenSSL
    underneath); with any EC recipient, ``envelope.py`` builds the structure, since that
    builder knows RSA only. The DER is base64-encoded here with CRLF lines, so the line-end
    question of the S/MIME text output never arises.
    """
    certs = list(dict.fromkeys(recipients))
    try:
        if all(isinstance(c.public_key(), rsa.RSAPublicKey) for c in certs):
            builder = pkcs7.PKCS7EnvelopeBuilder().set_data(entity).set_content_encryption_algorithm(algorithms.AES256)
            for cert in certs:
                builder = builder.add_recipient(cert)
            der = builder.encrypt(Encoding.DER, [pkcs7.PKCS7Options.Binary])
        else:
            der = enveloped_data(entity, certs)
    except (TypeError, ValueError) as exc:
        raise ComposeError("encryption-failed", str(exc)) from None
    body = base64_lines(der)
    return (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7m\r\n\r\n" + body
    )


def encrypt_openpgp(entity: bytes, gpg: GpgHome, recipients: Sequence[str], *, signer: str | None) -> bytes:
    """PGP/MIME ``multipart/encrypted`` (RFC 3156 §6); with ``signer``, signed and encrypted in one (§6.2)."""
    try:
        armored = gpg.encrypt(entity, list(dict.fromkeys(recipients)), signer=signer)
    except GpgError as exc:
        raise ComposeError("encryption-failed", str(exc)) from None
    armored = armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    b = boundary()
    return (
        (
            f'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n boundary="{b}"\r\n\r\n'
            f"This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n"
            f"--{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            f'--{b}\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n'
            f'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
        ).encode("ascii")
        + armored
        + (b"" if armored.endswith(b"\r\n") else b"\r\n")
        + f"--{b}--\r\n".encode("ascii")
    )
