"""A throwaway S/MIME PKI and a few S/MIME letters for ``poststelle demo``.

The demo has to show what S/MIME changes for a records office without any setup: a
letter that is decrypted and *verified*, one whose signature is cryptographically fine
but comes from a CA nobody configured (*unverified*, ``untrusted-chain``), and one
encrypted to somebody else's key (*quarantined*, ``decryption-failed-no-key``). So this
module makes, in well under a second of RSA key generation, a root CA that the demo
configures as trust anchor, the sending court "poststelle@vg-beispielstadt.example"
(emailProtection EKU, rfc822Name SAN: what RFC 8550 asks of a signer certificate) and
the receiving town hall "rathaus@stadt.example", plus an unknown CA and a third party.

Nothing here is fit for production: keys are unencrypted PEM files in the demo directory
and live for a year. Tests have their own, richer PKI (tests/smime_pki.py).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.demo.certs import ca_certificate
from gateway.demo.samples import fake_pdf

SENDER = "poststelle@vg-beispielstadt.example"
SENDER_NAME = "Verwaltungsgericht Beispielstadt"
RECIPIENT = "rathaus@stadt.example"
OTHER = "poststelle@landratsamt.example"
CASE_SUBJECT = "Urteil Az. 1 K 1234/25"

_PEM = serialization.Encoding.PEM
_DER = serialization.Encoding.DER


@dataclass(frozen=True)
class Party:
    """A key with its certificate (issued by ``issuer``, None for a root)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class DemoPKI:
    """The demo's parties and the files the gateway configuration points at."""

    directory: Path
    root: Party
    sender: Party
    recipient: Party
    unknown_root: Party
    unknown_sender: Party
    other: Party

    @property
    def root_file(self) -> Path:
        return self.directory / "demo-root-ca.pem"

    @property
    def recipient_key_file(self) -> Path:
        return self.directory / "rathaus.key"

    @property
    def recipient_cert_file(self) -> Path:
        return self.directory / "rathaus.pem"

    def smime_toml(self) -> str:
        """The ``[smime]`` section for the demo config: the town hall's key, the demo root as anchor."""
        return (
            "[smime]\n"
            f'identities = [{{ key_file = "{self.recipient_key_file}", cert_file = "{self.recipient_cert_file}" }}]\n'
            f'trust_anchors = ["{self.root_file}"]\n'
        )


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _root(org: str, now: datetime) -> Party:
    key = _key()
    name = _name(org, f"{org} Root CA")
    cert = ca_certificate(key, name, now - timedelta(days=1), now + timedelta(days=3650))
    return Party(key, cert)


def _person(issuer: Party, org: str, email: str, now: datetime) -> Party:
    """An S/MIME end-entity certificate: signing + key transport, emailProtection, rfc822Name."""
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(org, email))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Party(key, cert)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # also when the file existed with a wider mode


def build_demo_pki(directory: Path) -> DemoPKI:
    """Generate the demo PKI and write the anchor and the town hall's key + certificate."""
    now = datetime.now(UTC)
    root = _root("Demo-PKI Verwaltung", now)
    unknown_root = _root("Unbekannte CA", now)
    pki = DemoPKI(
        directory=directory,
        root=root,
        sender=_person(root, SENDER_NAME, SENDER, now),
        recipient=_person(root, "Stadt Beispielstadt", RECIPIENT, now),
        unknown_root=unknown_root,
        unknown_sender=_person(unknown_root, SENDER_NAME, SENDER, now),
        other=_person(root, "Landratsamt", OTHER, now),
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write(pki.root_file, root.cert.public_bytes(_PEM), 0o644)
    _write(pki.recipient_cert_file, pki.recipient.cert.public_bytes(_PEM), 0o644)
    key_pem = pki.recipient.key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(pki.recipient_key_file, key_pem, 0o600)
    return pki


# --- letters ------------------------------------------------------------------------------


def _crlf_b64(der: bytes) -> bytes:
    return base64.encodebytes(der).replace(b"\n", b"\r\n")


def _inner(subject: str, body: str, attachment: tuple[str, bytes]) -> bytes:
    """The protected content: Subject (protected header) + text + PDF, CRLF, no envelope headers."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg.set_content(body)
    name, data = attachment
    msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    del msg["MIME-Version"]
    return msg.as_bytes(policy=SMTP)


def _signed(signer: Party, inner: bytes) -> bytes:
    """A multipart/signed entity over ``inner`` exactly (detached, SHA-256)."""
    sig = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(inner)
        .add_signer(signer.cert, signer.key, hashes.SHA256())
        .sign(_DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )
    boundary = "----=_smime_" + os.urandom(8).hex()
    return (
        (
            f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; '
            f'boundary="{boundary}"\r\n\r\nThis is an S/MIME signed message.\r\n--{boundary}\r\n'
        ).encode()
        + inner
        + (
            f"\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n"
        ).encode()
        + _crlf_b64(sig)
        + f"--{boundary}--\r\n".encode()
    )


def _encrypted(recipient: x509.Certificate, entity: bytes) -> bytes:
    der = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(entity)
        .add_recipient(recipient)
        .encrypt(_DER, [pkcs7.PKCS7Options.Binary])
    )
    return (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n"
        + _crlf_b64(der)
    )


def _envelope(subject: str) -> bytes:
    return (
        f"From: {SENDER_NAME} <{SENDER}>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: {make_msgid(domain='vg-beispielstadt.example')}\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()


def smime_letters(pki: DemoPKI) -> list[tuple[str, bytes]]:
    """(description, message) pairs: verified, unverified (unknown CA), quarantined (not for us).

    The outer Subject of the encrypted letters says nothing ("Vertrauliche Nachricht"): the
    case reference is in the protected inner Subject, which the gateway routes by.
    """
    pdf = fake_pdf(20_000, seed=42)
    judgment = _inner(
        f"Verwaltungsgericht: {CASE_SUBJECT}",
        "Sehr geehrte Damen und Herren,\n\nanbei das Urteil in der Verwaltungsstreitsache.\n",
        ("Urteil.pdf", pdf),
    )
    order = _inner(
        "Beschluss Az. 1 K 1234/25",
        "Sehr geehrte Damen und Herren,\n\nanbei der Beschluss.\n",
        ("Beschluss.pdf", pdf),
    )
    misdirected = _inner(
        "Anhörung Az. 63-BV-2026-0147",
        "Sehr geehrte Damen und Herren,\n\nanbei die Anhörung.\n",
        ("Anhoerung.pdf", pdf),
    )
    return [
        (
            "S/MIME: signed + encrypted by the administrative court (verified; protected subject)",
            _envelope("Vertrauliche Nachricht") + _encrypted(pki.recipient.cert, _signed(pki.sender, judgment)),
        ),
        (
            "S/MIME: signed with a certificate from an unknown CA (unverified: untrusted-chain)",
            _envelope("Beschluss Az. 1 K 1234/25") + _signed(pki.unknown_sender, order),
        ),
        (
            "S/MIME: encrypted to another authority's key (quarantined: decryption-failed-no-key)",
            _envelope("Vertrauliche Nachricht") + _encrypted(pki.other.cert, _signed(pki.sender, misdirected)),
        ),
    ]
