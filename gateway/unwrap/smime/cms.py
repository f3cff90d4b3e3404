"""CMS (RFC 5652) on asn1crypto + cryptography primitives: verify SignedData, open envelopes.

Why one module over 500 lines: it is the only place that parses CMS, and its two halves
(SignedData, EnvelopedData) share the ASN.1 specs, ``CmsError`` reason codes and the
"no policy here" contract; splitting them would spread one RFC's parsing over modules.

``cryptography`` has no CMS signature verification and its ``pkcs7_decrypt_*`` covers only
RSA PKCS#1 v1.5 with AES-CBC, so the small remainder is written here:

* SignedData: every SignerInfo is checked (messageDigest, content-type attribute, the
  signature over the signed attributes *as sent*: the sender's bytes with the [0] tag
  swapped for SET OF, never re-encoded); RSA PKCS#1 v1.5, RSA-PSS, ECDSA, Ed25519.
* EnvelopedData (RFC 5652) and AuthEnvelopedData (RFC 5083, AES-GCM) with RSA PKCS#1
  v1.5, RSA-OAEP and ECDH (RFC 5753 dhSinglePass, X9.63 KDF, AES key wrap) recipients;
  AES-128/192/256-CBC content encryption.

No policy lives here (trust, SHA-1, key sizes): the caller decides what a result means.
Malformed input raises ``CmsError`` with a reason code, never an asn1crypto exception.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import core as a_core
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import SecurityError

_DER = Encoding.DER
#: Bound on SignerInfos / RecipientInfos / certificates we are willing to look at.
MAX_ITEMS = 64

_HASHLIB = {
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3_256": "sha3_256",
    "sha3_384": "sha3_384",
    "sha3_512": "sha3_512",
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha3_256": hashes.SHA3_256,
    "sha3_384": hashes.SHA3_384,
    "sha3_512": hashes.SHA3_512,
}
#: CBC content encryption: key length. 3DES is decrypt-only legacy (old OpenSSL default).
_CBC = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
_GCM = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
_OID_GCM = {
    "2.16.840.1.101.3.4.1.6": 16,
    "2.16.840.1.101.3.4.1.26": 24,
    "2.16.840.1.101.3.4.1.46": 32,
}
_WRAP = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
#: RFC 5753 / SEC 1 ECDH key-agreement schemes -> KDF hash (cofactor = standard on P-curves).
_ECDH_KDF = {
    "1.3.133.16.840.63.0.2": "sha1",
    "1.3.132.1.11.0": "sha224",
    "1.3.132.1.11.1": "sha256",
    "1.3.132.1.11.2": "sha384",
    "1.3.132.1.11.3": "sha512",
    "1.3.133.16.840.63.0.3": "sha1",
    "1.3.132.1.14.0": "sha224",
    "1.3.132.1.14.1": "sha256",
    "1.3.132.1.14.2": "sha384",
    "1.3.132.1.14.3": "sha512",
}


class CmsError(SecurityError):
    """The CMS structure cannot be used; ``reason`` is a verdict reason code."""


class _GCMParameters(a_core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("aes_nonce", a_core.OctetString),
        ("aes_icvlen", a_core.Integer, {"default": 12}),
    ]


class _EccCmsSharedInfo(a_core.Sequence):  # type: ignore[misc]
    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("key_info", a_algos.AlgorithmIdentifier),
        ("entity_u_info", a_core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", a_core.OctetString, {"explicit": 2}),
    ]


# --- content info ----------------------------------------------------------------------


def content_type_of(der: bytes) -> str:
    """``signed_data``, ``enveloped_data``, ``authenticated_enveloped_data``, ... or CmsError."""
    return str(_content_info(der)["content_type"].native)


def _content_info(der: bytes) -> a_cms.ContentInfo:
    try:
        info = a_cms.ContentInfo.load(der)
        _ = info["content_type"].native
        return info
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises many unrelated types
        raise CmsError("malformed-cms", type(exc).__name__) from None


# --- SignedData ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerCheck:
    """One SignerInfo: was its signature cryptographically correct over the content?"""

    status: Literal["ok", "invalid", "error"]
    reason: str | None
    certificate: x509.Certificate | None
    digest_algorithm: str
    signature_algorithm: str
    signing_time: datetime | None


@dataclass(frozen=True)
class SignedContent:
    econtent: bytes | None
    econtent_type: str
    signers: tuple[SignerCheck, ...]
    certificates: tuple[x509.Certificate, ...]


def verify_signed_data(der: bytes, detached: bytes | None = None) -> SignedContent:
    """Check every SignerInfo of a SignedData over ``detached`` or its own eContent.

    A detached signature that carries eContent too is an eContent-confusion attempt and
    raises CmsError("econtent-in-detached-signature").
    """
    info = _content_info(der)
    if info["content_type"].native != "signed_data":
        raise CmsError("unexpected-cms-type", str(info["content_type"].native))
    try:
        return _verify_signed_data(info["content"], detached)
    except CmsError:
        raise
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises many unrelated types
        raise CmsError("malformed-cms", type(exc).__name__) from None


def _verify_signed_data(sd: a_cms.SignedData, detached: bytes | None) -> SignedContent:
    encap = sd["encap_content_info"]
    econtent_type = str(encap["content_type"].native)
    econtent_value = encap["content"]
    econtent: bytes | None = None
    if not isinstance(econtent_value, a_core.Void):
        # eContent is an OCTET STRING (possibly BER-chunked); its value is the content.
        native = econtent_value.native
        if not isinstance(native, bytes):
            raise CmsError("malformed-cms", "eContent")
        econtent = native
    if detached is not None and econtent is not None:
        raise CmsError("econtent-in-detached-signature")
    content = detached if detached is not None else econtent

    facts: list[_CertFacts] = []
    cert_set = sd["certificates"]
    if not isinstance(cert_set, a_core.Void):
        for choice in list(cert_set)[:MAX_ITEMS]:
            if choice.name != "certificate":
                continue
            known = _cert_facts(choice.chosen.dump())
            if known is not None:
                facts.append(known)

    signer_infos = list(sd["signer_infos"])
    if len(signer_infos) > MAX_ITEMS:
        raise CmsError("too-many-signers")
    checks = tuple(_check_signer(si, content, econtent_type, facts) for si in signer_infos)
    return SignedContent(econtent, econtent_type, checks, tuple(f.cert for f in facts))


@dataclass(frozen=True)
class _CertFacts:
    """What signer lookup needs of a certificate, parsed once per distinct certificate."""

    cert: x509.Certificate
    serial: int
    issuer: a_x509.Name
    issuer_der: bytes
    key_identifier: bytes | None


@functools.lru_cache(maxsize=512)
def _cert_facts(der: bytes) -> _CertFacts | None:
    """Parse a certificate's DER (both libraries); None if ``cryptography`` refuses it.

    Keyed by the exact bytes, so a hit is the parse of the same certificate: a
    correspondent's certificate arrives with every message, and parsing it again
    (asn1crypto, in pure Python) is a noticeable part of verifying a signature.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    parsed = a_x509.Certificate.load(der)  # its errors make the CMS malformed
    return _CertFacts(cert, parsed.serial_number, parsed.issuer, parsed.issuer.dump(), parsed.key_identifier)


def _same_name(a: Any, b: Any) -> bool:
    """Byte-equal DER first (the common case, cheap); RFC 5280 name matching otherwise."""
    return bool(a.dump() == b.dump() or a == b)


def _find_cert(sid: a_cms.SignerIdentifier, facts: list[_CertFacts]) -> x509.Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = sid.chosen["serial_number"].native
        for f in facts:
            if f.serial == serial and (f.issuer_der == issuer.dump() or _same_name(f.issuer, issuer)):
                return f.cert
    elif sid.name == "subject_key_identifier":
        ski = sid.chosen.native
        for f in facts:
            if f.key_identifier == ski:
                return f.cert
    return None


def _single_attr(attrs: dict[str, list[Any]], name: str) -> Any:
    values = attrs.get(name)
    if values is None:
        return None
    if len(values) != 1 or len(values[0]) != 1:
        raise CmsError("duplicate-signed-attribute", name)
    return values[0][0]


def _check_signer(
    si: a_cms.SignerInfo, content: bytes | None, econtent_type: str, facts: list[_CertFacts]
) -> SignerCheck:
    digest_name = str(si["digest_algorithm"]["algorithm"].native)
    sig_alg = si["signature_algorithm"]
    sig_name = str(sig_alg["algorithm"].native)
    cert = _find_cert(si["sid"], facts)

    def result(
        status: Literal["ok", "invalid", "error"], reason: str | None, when: datetime | None = None
    ) -> SignerCheck:
        return SignerCheck(status, reason, cert, digest_name, sig_name, when)

    if digest_name not in _HASHLIB:
        return result("error", "unsupported-algorithm")
    if content is None:
        return result("invalid", "no-content")

    signed_attrs = si["signed_attrs"]
    if isinstance(signed_attrs, a_core.Void):
        return result("invalid", "missing-signed-attributes")
    attrs: dict[str, list[Any]] = {}
    for attr in signed_attrs:
        # Only the attributes we need are parsed further: others (S/MIME capabilities,
        # vendor attributes) may hold anything and must not break verification.
        attr_type = attr["type"].native
        if attr_type in ("content_type", "message_digest", "signing_time"):
            attrs.setdefault(str(attr_type), []).append(list(attr["values"]))
    try:
        ctype = _single_attr(attrs, "content_type")
        digest_attr = _single_attr(attrs, "message_digest")
        stime = _single_attr(attrs, "signing_time")
    except CmsError as exc:
        return result("invalid", exc.reason)
    when = _signing_time(stime)
    if ctype is None or digest_attr is None:
        return result("invalid", "missing-signed-attributes", when)
    if ctype.native != econtent_type:
        return result("invalid", "content-type-mismatch", when)
    actual = hashlib.new(_HASHLIB[digest_name], content).digest()
    if not hmac.compare_digest(actual, digest_attr.native or b""):
        return result("invalid", "digest-mismatch", when)

    # The signature is over the attributes as the sender encoded them: DER SET OF.
    raw_attrs = signed_attrs.dump()
    if raw_attrs[:1] != b"\xa0" or raw_attrs[1:2] == b"\x80":
        return result("invalid", "malformed-signed-attributes", when)
    tbs = b"\x31" + raw_attrs[1:]
    if cert is None:
        return result("error", "signer-certificate-missing", when)
    try:
        _verify_signature(cert, sig_alg, digest_name, si["signature"].native, tbs)
    except InvalidSignature:
        return result("invalid", "bad-signature", when)
    except CmsError as exc:
        return result("error" if exc.reason == "unsupported-algorithm" else "invalid", exc.reason, when)
    return result("ok", None, when)


def _signing_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        native = value.native
    except Exception:  # noqa: BLE001 - asn1crypto raises many unrelated types
        return None
    return native if isinstance(native, datetime) else None


def _verify_signature(
    cert: x509.Certificate,
    sig_alg: a_algos.SignedDigestAlgorithm,
    digest_name: str,
    signature: bytes,
    tbs: bytes,
) -> None:
    """Raise InvalidSignature, or CmsError for unsupported/mismatched algorithms."""
    name = str(sig_alg["algorithm"].native)
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CmsError("unsupported-algorithm", "signer key") from None
    if name in ("rsassa_pkcs1v15", "rsaes_pkcs1v15") or name.endswith("_rsa"):
        if name.endswith("_rsa") and name.split("_")[0] != digest_name:
            raise CmsError("algorithm-mismatch")
        if not isinstance(key, rsa.RSAPublicKey):
            raise CmsError("algorithm-mismatch")
        key.verify(signature, tbs, padding.PKCS1v15(), _HASHES[digest_name]())
    elif name == "rsassa_pss":
        if not isinstance(key, rsa.RSAPublicKey):
            raise CmsError("algorithm-mismatch")
        params = sig_alg["parameters"]
        hash_name = str(params["hash_algorithm"]["algorithm"].native)
        mgf = params["mask_gen_algorithm"]
        mgf_hash = str(mgf["parameters"]["algorithm"].native)
        if mgf["algorithm"].native != "mgf1" or hash_name not in _HASHES or mgf_hash not in _HASHES:
            raise CmsError("unsupported-algorithm", "PSS parameters")
        trailer = params["trailer_field"].native
        if hash_name != digest_name or trailer not in (1, "trailer_field_bc"):
            raise CmsError("algorithm-mismatch")
        salt = int(params["salt_length"].native)
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=salt)
        key.verify(signature, tbs, pss, _HASHES[hash_name]())
    elif name == "ecdsa" or name.endswith("_ecdsa"):
        if name.endswith("_ecdsa") and name.rsplit("_", 1)[0] != digest_name:
            raise CmsError("algorithm-mismatch")
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CmsError("algorithm-mismatch")
        key.verify(signature, tbs, ec.ECDSA(_HASHES[digest_name]()))
    elif name == "ed25519":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise CmsError("algorithm-mismatch")
        key.verify(signature, tbs)
    else:
        raise CmsError("unsupported-algorithm", name)


# --- EnvelopedData / AuthEnvelopedData ---------------------------------------------------

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class RecipientKey:
    """One of our own key pairs."""

    private_key: PrivateKey
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        a_cert = a_x509.Certificate.load(self.certificate.public_bytes(_DER))
        object.__setattr__(self, "_asn1", a_cert)

    @property
    def asn1(self) -> a_x509.Certificate:
        value: a_x509.Certificate = object.__getattribute__(self, "_asn1")
        return value

    def matches(self, rid: Any) -> bool:
        if rid.name == "issuer_and_serial_number":
            return bool(
                rid.chosen["serial_number"].native == self.asn1.serial_number
                and _same_name(rid.chosen["issuer"], self.asn1.issuer)
            )
        if rid.name in ("subject_key_identifier", "r_key_id"):
            ski = (
                rid.chosen.native
                if rid.name == "subject_key_identifier"
                else (rid.chosen["subject_key_identifier"].native)
            )
            return bool(ski is not None and ski == self.asn1.key_identifier)
        return False


@dataclass(frozen=True)
class Decrypted:
    content: bytes
    cms_type: str
    content_encryption: str
    key_transport: str
    key: RecipientKey


def decrypt(der: bytes, keys: Sequence[RecipientKey]) -> Decrypted:
    """Open an EnvelopedData or AuthEnvelopedData with one of ``keys``.

    Raises CmsError with decryption-failed-no-key (no RecipientInfo for any of our keys),
    decryption-failed-unsupported-algorithm or decryption-failed-corrupt.
    """
    info = _content_info(der)
    ctype = str(info["content_type"].native)
    if ctype not in ("enveloped_data", "authenticated_enveloped_data"):
        raise CmsError("unexpected-cms-type", ctype)
    try:
        return _decrypt(info["content"], ctype, keys)
    except CmsError:
        raise
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises many unrelated types
        raise CmsError("decryption-failed-corrupt", type(exc).__name__) from None


def _decrypt(env: Any, ctype: str, keys: Sequence[RecipientKey]) -> Decrypted:
    eci = env["auth_encrypted_content_info" if ctype == "authenticated_enveloped_data" else "encrypted_content_info"]
    alg = eci["content_encryption_algorithm"]
    alg_name = str(alg["algorithm"].native)
    alg_oid = alg["algorithm"].dotted
    ciphertext = eci["encrypted_content"].native
    if not isinstance(ciphertext, bytes):
        raise CmsError("decryption-failed-corrupt", "no encrypted content")
    if ctype == "authenticated_enveloped_data":
        key_len = _GCM.get(alg_name) or _OID_GCM.get(alg_oid)
        if key_len is None:
            raise CmsError("decryption-failed-unsupported-algorithm", alg_name)
        params = _GCMParameters.load(alg["parameters"].dump())
        nonce = params["aes_nonce"].native
        tag_len = int(params["aes_icvlen"].native)
        tag = env["mac"].native
        if not (12 <= tag_len <= 16) or len(tag) != tag_len or not (8 <= len(nonce) <= 64):
            raise CmsError("decryption-failed-corrupt", "GCM parameters")
        auth_attrs = env["auth_attrs"]
        aad = b""
        if not isinstance(auth_attrs, a_core.Void):
            raw = auth_attrs.dump()
            aad = b"\x31" + raw[1:]
        enc_name = f"aes-{key_len * 8}-gcm"
    else:
        key_len = _CBC.get(alg_name)
        if key_len is None:
            raise CmsError("decryption-failed-unsupported-algorithm", alg_name)
        block = 8 if alg_name == "tripledes_3key" else 16
        iv = alg["parameters"].native
        if not isinstance(iv, bytes) or len(iv) != block or len(ciphertext) % block or not ciphertext:
            raise CmsError("decryption-failed-corrupt", "CBC parameters")
        enc_name = "des-ede3-cbc" if block == 8 else f"aes-{key_len * 8}-cbc"

    matched = False
    unsupported: str | None = None
    ris = list(env["recipient_infos"])
    if len(ris) > MAX_ITEMS:
        raise CmsError("decryption-failed-corrupt", "too many recipients")
    for ri in ris:
        for kt_name, key, cek in _candidate_ceks(ri, keys):
            matched = True
            if cek is None:
                continue
            if isinstance(cek, str):
                unsupported = cek
                continue
            if len(cek) != key_len:
                continue
            try:
                if ctype == "authenticated_enveloped_data":
                    gcm = modes.GCM(nonce, tag, min_tag_length=tag_len)
                    aead = Cipher(algorithms.AES(cek), gcm).decryptor()
                    aead.authenticate_additional_data(aad)
                    plain = aead.update(ciphertext) + aead.finalize()
                else:
                    cipher = TripleDES(cek) if block == 8 else algorithms.AES(cek)
                    dec = Cipher(cipher, modes.CBC(iv)).decryptor()
                    plain = _unpad(dec.update(ciphertext) + dec.finalize(), block)
            except (InvalidTag, ValueError):
                continue
            return Decrypted(plain, ctype, enc_name, kt_name, key)
    if not matched:
        raise CmsError("decryption-failed-no-key")
    if unsupported is not None:
        raise CmsError("decryption-failed-unsupported-algorithm", unsupported)
    raise CmsError("decryption-failed-corrupt")


def _unpad(data: bytes, block: int) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise ValueError("bad padding")
    return data[:-n]


def _candidate_ceks(
    ri: a_cms.RecipientInfo, keys: Sequence[RecipientKey]
) -> list[tuple[str, RecipientKey, bytes | str | None]]:
    """(key transport name, our key, CEK | unsupported-alg-name | None on failure)."""
    out: list[tuple[str, RecipientKey, bytes | str | None]] = []
    if ri.name == "ktri":
        kt = ri.chosen
        for key in keys:
            if not key.matches(kt["rid"]):
                continue
            out.append(_key_transport(kt, key))
    elif ri.name == "kari":
        kari = ri.chosen
        for rek in list(kari["recipient_encrypted_keys"])[:MAX_ITEMS]:
            for key in keys:
                is_ec = isinstance(key.private_key, ec.EllipticCurvePrivateKey)
                if is_ec and key.matches(rek["rid"]):
                    out.append(_key_agreement(kari, rek, key))
    return out


def _key_transport(kt: Any, key: RecipientKey) -> tuple[str, RecipientKey, bytes | str | None]:
    alg = kt["key_encryption_algorithm"]
    name = str(alg["algorithm"].native)
    priv = key.private_key
    if not isinstance(priv, rsa.RSAPrivateKey):
        return ("unknown", key, None)
    ek = kt["encrypted_key"].native
    try:
        if name == "rsaes_pkcs1v15":
            return ("rsaes-pkcs1-v1_5", key, priv.decrypt(ek, padding.PKCS1v15()))
        if name == "rsaes_oaep":
            params = alg["parameters"]
            h = str(params["hash_algorithm"]["algorithm"].native)
            mgf = params["mask_gen_algorithm"]
            mgf_h = str(mgf["parameters"]["algorithm"].native)
            label = params["p_source_algorithm"]["parameters"].native or None
            if h not in _HASHES or mgf_h not in _HASHES or mgf["algorithm"].native != "mgf1":
                return ("rsaes-oaep", key, f"oaep-{h}-{mgf_h}")
            oaep = padding.OAEP(mgf=padding.MGF1(_HASHES[mgf_h]()), algorithm=_HASHES[h](), label=label)
            return ("rsaes-oaep", key, priv.decrypt(ek, oaep))
    except ValueError:
        return (name, key, None)
    return (name, key, name)


def _key_agreement(kari: Any, rek: Any, key: RecipientKey) -> tuple[str, RecipientKey, bytes | str | None]:
    kea = kari["key_encryption_algorithm"]
    oid = kea["algorithm"].dotted
    kdf_hash = _ECDH_KDF.get(oid)
    if kdf_hash is None:
        return ("ecdh", key, oid)
    wrap = a_cms.KeyEncryptionAlgorithm.load(kea["parameters"].dump())
    wrap_name = str(wrap["algorithm"].native)
    kek_len = _WRAP.get(wrap_name)
    if kek_len is None:
        return ("ecdh", key, wrap_name)
    originator = kari["originator"]
    priv = key.private_key
    if not isinstance(priv, ec.EllipticCurvePrivateKey):
        return ("ecdh", key, None)
    if originator.name != "originator_key":
        return ("ecdh", key, "originator-not-a-key")
    point = originator.chosen["public_key"].native
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(priv.curve, point)
        shared = priv.exchange(ec.ECDH(), peer)
        ukm = kari["ukm"].native
        info = _EccCmsSharedInfo(
            {
                "key_info": a_algos.AlgorithmIdentifier.load(wrap.dump()),
                "entity_u_info": ukm,
                "supp_pub_info": (kek_len * 8).to_bytes(4, "big"),
            }
        )
        kek = X963KDF(_HASHES[kdf_hash](), kek_len, info.dump()).derive(shared)
        cek = keywrap.aes_key_unwrap(kek, rek["encrypted_key"].native)
    except (ValueError, keywrap.InvalidUnwrap):
        return ("ecdh", key, None)
    return (f"ecdh-{kdf_hash}-kdf", key, cek)


def public_key_sha256(key: PrivateKey | x509.Certificate) -> str:
    """SHA-256 over the SubjectPublicKeyInfo: names a key without revealing it."""
    pub = key.public_key()
    return hashlib.sha256(pub.public_bytes(_DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


__all__ = [
    "CmsError",
    "Decrypted",
    "RecipientKey",
    "SignedContent",
    "SignerCheck",
    "content_type_of",
    "decrypt",
    "public_key_sha256",
    "verify_signed_data",
]
