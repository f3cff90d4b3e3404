"""CMS EnvelopedData for RSA and elliptic-curve recipients (RFC 5652, RFC 5753, RFC 8418 style).

Why built here: ``cryptography``'s PKCS#7 envelope builder encrypts to RSA certificates only,
and correspondents increasingly hold P-256 or P-384 certificates. An EC recipient gets a
``KeyAgreeRecipientInfo`` with ECDH ephemeral-static (a fresh key pair per recipient, so no
two recipients share a key-encryption key), the ``dhSinglePass-stdDH-sha*kdf`` scheme with
the X9.63 KDF over ``ECC-CMS-SharedInfo``, and the content key wrapped with AES key wrap
(RFC 3394); an RSA recipient gets a ``KeyTransRecipientInfo`` (PKCS #1 v1.5, what every
mail program decrypts). The content is AES-256-CBC. Recipients are named by issuer and
serial number, the form every mail program looks for.

The KDF hash follows the curve's strength (SHA-256 for P-256, SHA-384 for P-384, SHA-512
for P-521) as RFC 5753 §7.2 and RFC 5008 pair them; the wrap is always AES-256, since the
content key it protects is an AES-256 key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import keys as a_keys
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.unwrap.smime.cms import _EccCmsSharedInfo

__all__ = ["EC_CURVES", "UnsupportedRecipient", "enveloped_data"]

#: Curve name -> (dhSinglePass-stdDH-*kdf-scheme OID, KDF hash).
EC_CURVES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("1.3.132.1.11.1", hashes.SHA256),
    "secp384r1": ("1.3.132.1.11.2", hashes.SHA384),
    "secp521r1": ("1.3.132.1.11.3", hashes.SHA512),
}
_AES256_WRAP = "2.16.840.1.101.3.4.1.45"
_KEK_BYTES = 32


class UnsupportedRecipient(ValueError):
    """A certificate whose key cannot be encrypted to (neither RSA nor a supported curve)."""


def _issuer_serial(cert: x509.Certificate) -> a_cms.IssuerAndSerialNumber:
    asn1 = a_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    return a_cms.IssuerAndSerialNumber({"issuer": asn1.issuer, "serial_number": asn1.serial_number})


def _key_transport(cert: x509.Certificate, key: rsa.RSAPublicKey, cek: bytes) -> a_cms.RecipientInfo:
    return a_cms.RecipientInfo(
        name="ktri",
        value=a_cms.KeyTransRecipientInfo(
            {
                "version": "v0",
                "rid": a_cms.RecipientIdentifier(name="issuer_and_serial_number", value=_issuer_serial(cert)),
                "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
                "encrypted_key": key.encrypt(cek, padding.PKCS1v15()),
            }
        ),
    )


def _key_agreement(cert: x509.Certificate, key: ec.EllipticCurvePublicKey, cek: bytes) -> a_cms.RecipientInfo:
    scheme = EC_CURVES.get(key.curve.name)
    if scheme is None:
        raise UnsupportedRecipient(f"curve {key.curve.name} is not supported for encryption")
    scheme_oid, kdf_hash = scheme
    ephemeral = ec.generate_private_key(key.curve)
    shared = ephemeral.exchange(ec.ECDH(), key)
    wrap = a_algos.AlgorithmIdentifier({"algorithm": _AES256_WRAP})
    info = _EccCmsSharedInfo({"key_info": wrap, "supp_pub_info": (_KEK_BYTES * 8).to_bytes(4, "big")})
    kek = X963KDF(kdf_hash(), _KEK_BYTES, info.dump()).derive(shared)
    point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    # RFC 5753 §3.1.1: id-ecPublicKey with the parameters absent (the recipient's curve).
    originator = a_keys.PublicKeyInfo({"algorithm": {"algorithm": "ec"}, "public_key": a_keys.ECPointBitString(point)})
    return a_cms.RecipientInfo(
        name="kari",
        value=a_cms.KeyAgreeRecipientInfo(
            {
                "version": "v3",
                "originator": a_cms.OriginatorIdentifierOrKey(name="originator_key", value=originator),
                "key_encryption_algorithm": a_cms.KeyEncryptionAlgorithm(
                    {
                        "algorithm": scheme_oid,
                        "parameters": a_core.Any.load(wrap.dump()),
                    }
                ),
                "recipient_encrypted_keys": [
                    a_cms.RecipientEncryptedKey(
                        {
                            "rid": a_cms.KeyAgreementRecipientIdentifier(
                                name="issuer_and_serial_number", value=_issuer_serial(cert)
                            ),
                            "encrypted_key": keywrap.aes_key_wrap(kek, cek),
                        }
                    )
                ],
            }
        ),
    )


def recipient_info(cert: x509.Certificate, cek: bytes) -> a_cms.RecipientInfo:
    """The RecipientInfo that lets ``cert``'s key holder recover ``cek``; UnsupportedRecipient else."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return _key_transport(cert, key, cek)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _key_agreement(cert, key, cek)
    raise UnsupportedRecipient(f"{type(key).__name__} keys are not supported for encryption")


def enveloped_data(content: bytes, recipients: Sequence[x509.Certificate]) -> bytes:
    """DER ``ContentInfo`` of EnvelopedData: ``content`` under AES-256-CBC, its key to each recipient."""
    cek = os.urandom(32)
    iv = os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = enc.update(padded) + enc.finalize()
    infos = [recipient_info(c, cek) for c in dict.fromkeys(recipients)]
    # RFC 5652 §6.1: version 2 once any RecipientInfo is not a version 0 KeyTransRecipientInfo.
    version = "v0" if all(i.name == "ktri" for i in infos) else "v2"
    env = a_cms.EnvelopedData(
        {
            "version": version,
            "recipient_infos": infos,
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": a_core.OctetString(iv)},
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(a_cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump())
