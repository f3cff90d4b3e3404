"""A test De-Mail provider: builds messages with ``X-de-mail-*`` fields and an integrity value.

Written apart from ``gateway.demail`` on purpose (its own canonicalisation and signing from
TR 01201 and RFC 6376), so the tests compare two implementations instead of one with itself.
The provider CA and its signing certificates are made in the test run: RSA, ECDSA P-256
(RSASSA-PSS uses the RSA key), an expired signing certificate, and a "rogue" CA with its
own signing certificate that no configuration trusts. Tamper helpers edit the finished
bytes the way an attacker on the path would.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
PROVIDER = "test-provider.de-mail.example"
SENDER = "buerger@test-provider.de-mail.example"
RECIPIENT = "poststelle@stadt.de-mail.example"

#: The covered fields in the order TR 01201 lists them (only those present are listed in h=).
TR_ORDER = (
    "From",
    "Date",
    "Message-ID",
    "Subject",
    "Reply-To",
    "X-de-mail-confirmation-of-dispatch",
    "X-de-mail-confirmation-of-receipt",
    "X-de-mail-confirmation-of-retrieve",
    "X-de-mail-authoritative",
    "X-de-mail-private",
    "X-de-mail-sender",
    "X-de-mail-chosen-recipient",
    "X-de-mail-auth-mechanism",
    "X-de-mail-auth-level",
    "X-de-mail-originator-provider",
    "X-de-mail-message-type",
    "X-de-mail-version",
    "X-de-mail-private-id",
    "X-de-mail-message-id",
    "X-de-mail-account-holder",
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Signer:
    key: Key
    cert: x509.Certificate


@dataclass(frozen=True)
class ProviderPKI:
    ca: Signer
    rsa: Signer
    ec: Signer
    expired: Signer
    rogue_ca: Signer
    rogue: Signer

    def write_anchor(self, directory: Path) -> Path:
        path = directory / "provider-ca.pem"
        path.write_bytes(self.ca.cert.public_bytes(serialization.Encoding.PEM))
        return path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test De-Mail Provider"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    cn: str,
    key: Key,
    issuer: Signer | None,
    *,
    ca: bool,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 365 * DAY,
) -> Signer:
    issuer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return Signer(key, builder.sign(issuer_key, hashes.SHA256()))


@functools.cache
def provider_pki() -> ProviderPKI:
    """The provider's CA and signing certificates (made once per test process)."""
    ca = _cert("Test De-Mail Provider CA", rsa.generate_private_key(65537, 2048), None, ca=True)
    rogue_ca = _cert("Rogue Provider CA", rsa.generate_private_key(65537, 2048), None, ca=True)
    return ProviderPKI(
        ca=ca,
        rsa=_cert("integrity rsa", rsa.generate_private_key(65537, 2048), ca, ca=False),
        ec=_cert("integrity ec", ec.generate_private_key(ec.SECP256R1()), ca, ca=False),
        expired=_cert(
            "integrity expired",
            rsa.generate_private_key(65537, 2048),
            ca,
            ca=False,
            not_before=NOW - 400 * DAY,
            not_after=NOW - 30 * DAY,
        ),
        rogue_ca=rogue_ca,
        rogue=_cert("integrity rogue", rsa.generate_private_key(65537, 2048), rogue_ca, ca=False),
    )


def demail_fields(
    *,
    authoritative: bool = True,
    private: bool = False,
    private_id: str | None = "AZ-2024-17-1",
    message_type: str = "normal",
) -> list[tuple[str, str]]:
    """The header fields a provider delivers with a De-Mail, in a plausible order."""
    yn = {True: "yes", False: "no"}
    fields = [
        ("From", f"Buerger <{SENDER}>"),
        ("To", RECIPIENT),
        ("Date", format_datetime(NOW)),
        ("Message-ID", "<demail-1@test-provider.de-mail.example>"),
        ("Subject", "Widerspruch AZ 2024-17"),
        ("X-de-mail-confirmation-of-dispatch", "no"),
        ("X-de-mail-confirmation-of-receipt", "yes"),
        ("X-de-mail-confirmation-of-retrieve", "no"),
        ("X-de-mail-authoritative", yn[authoritative]),
        ("X-de-mail-private", yn[private]),
        ("X-de-mail-sender", SENDER),
        ("X-de-mail-chosen-recipient", f"to={RECIPIENT}; cc=akte@stadt.de-mail.example"),
        ("X-de-mail-actual-recipient", RECIPIENT),
        ("X-de-mail-auth-mechanism", "nPA"),
        ("X-de-mail-auth-level", "high"),
        ("X-de-mail-originator-provider", PROVIDER),
        ("X-de-mail-message-type", message_type),
        ("X-de-mail-version", "1.8"),
        ("X-de-mail-message-id", "<dm-4711@test-provider.de-mail.example>"),
        ("X-de-mail-account-holder", "Erika Mustermann"),
    ]
    if private_id is not None:
        fields.insert(-2, ("X-de-mail-private-id", private_id))
    return fields


def _canonical_body(body: bytes) -> bytes:
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if body in (b"", b"\r\n"):
        return b"\r\n"
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _fold(data: str) -> str:
    return "\r\n ".join(data[i : i + 64] for i in range(0, len(data), 64))


def _sign(signer: Signer, sig: str, hash_name: str, data: bytes) -> bytes:
    algorithm = _HASHES[hash_name]()
    key = signer.key
    if sig == "rsa":
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if sig == "rsassa-pss":
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PSS(padding.MGF1(_HASHES[hash_name]()), algorithm.digest_size), algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(data, ec.ECDSA(algorithm))


def build_message(
    *,
    sig: str | None = "rsa",
    hash_name: str = "sha256",
    signer: Signer | None = None,
    certificate: x509.Certificate | None = None,
    fields: list[tuple[str, str]] | None = None,
    body: bytes = b"Sehr geehrte Damen und Herren,\r\nhiermit lege ich Widerspruch ein.\r\n",
    covered: tuple[str, ...] | None = None,
    extra_tags: str = "",
) -> bytes:
    """A De-Mail as the provider delivers it; ``sig=None`` makes a hash-only value.

    ``signer`` signs (default: the RSA, or for ``ec-dsa`` the EC, signing certificate);
    ``certificate`` is what the message carries (default: the signer's). ``covered`` are
    the names for ``h=`` (default: the present fields in TR 01201 order).
    """
    pki = provider_pki()
    fields = fields if fields is not None else demail_fields()
    if signer is None:
        signer = pki.ec if sig == "ec-dsa" else pki.rsa
    present = {n.lower() for n, _ in fields}
    names = covered if covered is not None else tuple(n for n in TR_ORDER if n.lower() in present)
    lines = [f"{n}: {v}\r\n".encode() for n, v in fields]
    # The n-th listing of a name covers its n-th occurrence from the top (none: nothing).
    occurrences: dict[str, list[bytes]] = {}
    for (n, _), line in zip(fields, lines, strict=True):
        occurrences.setdefault(n.lower(), []).append(line)
    taken: dict[str, int] = {}
    covered_bytes = []
    for n in names:
        i = taken.get(n.lower(), 0)
        taken[n.lower()] = i + 1
        found = occurrences.get(n.lower(), [])
        covered_bytes.append(found[i] if i < len(found) else b"")
    bh = base64.b64encode(hashlib.new(hash_name, _canonical_body(body)).digest()).decode()
    a = f"{hash_name}/{sig}" if sig else hash_name
    q = "q=x-header/x-de-mail-signature-certificate; " if sig else ""
    tags = (
        f"v=1; a={a}; c=simple/simple; d={PROVIDER}; {q}{extra_tags}"
        f"h={':'.join(n.lower() for n in names)};\r\n bh={bh};\r\n b="
    )
    own = f"X-de-mail-integrity: {tags}".encode()
    header_data = b"".join(covered_bytes) + own
    value = hashlib.new(hash_name, header_data).digest() if sig is None else _sign(signer, sig, hash_name, header_data)
    integrity = own + _fold(base64.b64encode(value).decode()).encode() + b"\r\n"
    out = integrity
    if sig is not None:
        cert = certificate or signer.cert
        der = cert.public_bytes(serialization.Encoding.DER)
        out += f"X-de-mail-signature-certificate: {_fold(base64.b64encode(der).decode())}\r\n".encode()
    return out + b"".join(lines) + b"\r\n" + body


# --- tampering (what an attacker on the path does to the finished bytes) ---------------------


def _split(message: bytes) -> tuple[bytes, bytes]:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def tamper_header(message: bytes, name: str, value: str) -> bytes:
    """Replace the value of the first (unfolded) ``name`` field."""
    head, body = _split(message)
    out = []
    done = False
    for line in head.split(b"\r\n")[:-1]:
        if not done and line.lower().startswith(name.lower().encode() + b":"):
            line = f"{name}: {value}".encode()
            done = True
        out.append(line)
    assert done, name
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def add_header(message: bytes, name: str, value: str, *, first: bool = False) -> bytes:
    """Add a field: at the end of the header block, or (``first``) before all others."""
    head, body = _split(message)
    line = f"{name}: {value}\r\n".encode()
    head = line + head if first else head + line
    return head + b"\r\n" + body


def tamper_body(message: bytes, extra: bytes = b"P.S. Bitte ueberweisen Sie an DE00 0000.\r\n") -> bytes:
    return message + extra


def integrity_value(message: bytes) -> bytes:
    """The raw value of the first X-de-mail-integrity field, folding included."""
    head, _ = _split(message)
    start = head.lower().index(b"x-de-mail-integrity:") + len(b"x-de-mail-integrity:")
    end = start
    while True:
        nl = head.index(b"\r\n", end)
        end = nl + 2
        if head[end : end + 1] not in (b" ", b"\t"):
            return head[start:nl]


def replace_integrity_value(message: bytes, value: bytes) -> bytes:
    """The message with its integrity field's value replaced (for hostile-value tests)."""
    old = integrity_value(message)
    return message.replace(b"X-de-mail-integrity:" + old, b"X-de-mail-integrity:" + value, 1)
