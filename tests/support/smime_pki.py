"""A throwaway S/MIME PKI made with ``cryptography`` in the test run, plus message builders.

Root CA -> intermediate -> end entities (sender, recipient, expired, wrong EKU, key usage
without signing, revoked with a CRL, RSA-PSS signer, EC P-256 signer, 1024-bit RSA), and an
unrelated "rogue" root. Messages are built with cryptography's PKCS#7 builders and with
``openssl cms``; builders that must produce malformed CMS edit the DER with asn1crypto.
Keys are generated once per process (``build_pki`` is cached).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import subprocess
import tempfile
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.unwrap import UnwrapContext, UnwrapResult, unwrap

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def now() -> dt.datetime:
    """The time of this moment, for checking signatures made now.

    ``cryptography`` stamps a signature with the real time, while ``NOW`` is when the test
    session imported this module; on a slow machine a session outlives the gateway's hour
    of clock skew, so a signature checked "at NOW" would be from the future. ``NOW`` stays
    the anchor of the certificates' and CRLs' validity (days and years wide).
    """
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


DAY = dt.timedelta(days=1)
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER

SENDER = "alice@example.org"
RECIPIENT = "poststelle@rathaus.example"


@dataclass
class Party:
    name: str
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    email: str | None = None
    chain: list[x509.Certificate] = field(default_factory=list)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(PEM)


@dataclass
class TestPKI:
    __test__ = False
    root: Party
    inter: Party
    rogue_root: Party
    parties: dict[str, Party]
    crl: x509.CertificateRevocationList
    root_crl: x509.CertificateRevocationList

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def write(self, directory: Path) -> dict[str, Path]:
        """Write anchors, CRLs and every party's key + cert as PEM files."""
        directory.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        out["root"] = directory / "root.pem"
        out["root"].write_bytes(self.root.cert_pem())
        out["crl"] = directory / "inter.crl.pem"
        out["crl"].write_bytes(self.crl.public_bytes(PEM))
        out["root_crl"] = directory / "root.crl.der"
        out["root_crl"].write_bytes(self.root_crl.public_bytes(DER))
        for name, party in self.parties.items():
            (directory / f"{name}.key").write_bytes(party.key_pem())
            (directory / f"{name}.key").chmod(0o600)  # the loader refuses a private key others may read
            (directory / f"{name}.pem").write_bytes(party.cert_pem())
            out[f"{name}.key"] = directory / f"{name}.key"
            out[f"{name}.pem"] = directory / f"{name}.pem"
        (directory / "inter.pem").write_bytes(self.inter.cert_pem())
        out["inter.pem"] = directory / "inter.pem"
        return out


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Poststelle Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@functools.cache
def _rsa(bits: int, slot: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _ca(name: str, key: rsa.RSAPrivateKey, issuer: Party | None, path_len: int | None) -> Party:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.cert.subject if issuer else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 30 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    signer = issuer.key if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    return Party(name, key, cert)


def _leaf(
    name: str,
    email: str,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    issuer: Party,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    signing: bool = True,
    cert_hash: hashes.HashAlgorithm | None = None,
    pss: bool = False,
) -> Party:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - 10 * DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=signing,
                content_commitment=signing,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=isinstance(key, ec.EllipticCurvePrivateKey),
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    pad = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH) if pss else None
    cert = builder.sign(issuer.key, cert_hash or hashes.SHA256(), rsa_padding=pad)  # type: ignore[arg-type]
    return Party(name, key, cert, email, [issuer.cert])


def _crl(issuer: Party, revoked: list[x509.Certificate]) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - DAY)
        .next_update(NOW + 30 * DAY)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(NOW - 2 * DAY).build()
        )
    return builder.sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]


@functools.cache
def build_pki() -> TestPKI:
    root = _ca("Poststelle Test Root", _rsa(2048, "root"), None, None)
    inter = _ca("Poststelle Test Intermediate", _rsa(2048, "inter"), root, 0)
    rogue = _ca("Rogue Root", _rsa(2048, "rogue"), None, None)
    email_eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    shared = _rsa(2048, "leaf")  # leaves share a key where the key is not the point of the test
    parties = {
        "sender": _leaf("Alice", SENDER, _rsa(2048, "sender"), inter, eku=email_eku),
        "recipient": _leaf("Rathaus", RECIPIENT, _rsa(2048, "recipient"), inter, eku=email_eku),
        "recipient2": _leaf("Rathaus alt", RECIPIENT, _rsa(2048, "recipient2"), inter),
        "expired": _leaf(
            "Expired",
            "expired@example.org",
            shared,
            inter,
            not_before=NOW - 400 * DAY,
            not_after=NOW - 5 * DAY,
            eku=email_eku,
        ),
        "wrong_eku": _leaf("Server", "server@example.org", shared, inter, eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "any_eku": _leaf("Any", "any@example.org", shared, inter, eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
        "no_sign": _leaf("NoSign", "nosign@example.org", shared, inter, signing=False),
        "revoked": _leaf("Revoked", "revoked@example.org", shared, inter, eku=email_eku),
        "pss": _leaf("Pss", "pss@example.org", shared, inter, eku=email_eku, pss=True),
        "ec": _leaf("Ec", "ec@example.org", ec.generate_private_key(ec.SECP256R1()), inter, eku=email_eku),
        "weak": _leaf("Weak", "weak@example.org", _rsa(1024, "weak"), inter, eku=email_eku),
        "rogue": _leaf("Mallory", SENDER, shared, rogue, eku=email_eku),
    }
    crl = _crl(inter, [parties["revoked"].cert])
    root_crl = _crl(root, [])
    return TestPKI(root, inter, rogue, parties, crl, root_crl)


# --- message builders ---------------------------------------------------------------------


def mime_text(
    body: str = "Sehr geehrte Damen und Herren,\r\nanbei der Antrag.\r\n", subject: str | None = None
) -> bytes:
    """An inner entity (what gets signed/encrypted), CRLF."""
    head = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    if subject is not None:
        head = f"Subject: {subject}\r\n" + head
    return (head + "\r\n" + body).encode()


def headers(
    from_: str = SENDER, subject: str = "Antrag 2024-17", extra: str = "", date: dt.datetime | None = None
) -> bytes:
    """Outer headers; the Date is this moment's (as the signature's time is), or ``date``."""
    return (
        f"From: Alice Example <{from_}>\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(date or now())}\r\nMessage-ID: <t@example.org>\r\n"
        f"MIME-Version: 1.0\r\n{extra}"
    ).encode()


def _hash(name: str) -> hashes.HashAlgorithm:
    return {
        "sha256": hashes.SHA256(),
        "sha1": hashes.SHA1(),  # noqa: S303 - building SHA-1 test cases
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }[name]


def sign_detached_der(
    party: Party, data: bytes, *, digest: str = "sha256", pss: bool = False, certs: bool = True
) -> bytes:
    """A detached SignedData (DER) over ``data`` exactly."""
    opts = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    if not certs:
        opts.append(pkcs7.PKCS7Options.NoCerts)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data)
    pad = padding.PSS(padding.MGF1(_hash(digest)), padding.PSS.DIGEST_LENGTH) if pss else None
    builder = builder.add_signer(party.cert, party.key, _hash(digest), rsa_padding=pad)  # type: ignore[arg-type]
    for extra in party.chain if certs else []:
        builder = builder.add_certificate(extra)
    return builder.sign(DER, opts)


def sign_opaque_der(party: Party, data: bytes, *, digest: str = "sha256") -> bytes:
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(
            party.cert,
            party.key,
            _hash(digest),  # type: ignore[arg-type]
        )
    )
    for extra in party.chain:
        builder = builder.add_certificate(extra)
    return builder.sign(DER, [pkcs7.PKCS7Options.Binary])


def b64(der: bytes) -> bytes:
    return base64.encodebytes(der).replace(b"\n", b"\r\n")


def multipart_signed(outer_headers: bytes, inner: bytes, sig_der: bytes, boundary: str = "sig-boundary-42") -> bytes:
    return (
        outer_headers
        + f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg=sha-256; boundary="{boundary}"\r\n\r\n'.encode()
        + b"This is an S/MIME signed message.\r\n"
        + f"--{boundary}\r\n".encode()
        + inner
        + f"\r\n--{boundary}\r\n".encode()
        + b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n"
        + b64(sig_der)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def pkcs7_mime(outer_headers: bytes, der: bytes, smime_type: str) -> bytes:
    return (
        outer_headers
        + f"Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=smime.p7m\r\n\r\n".encode()
        + b64(der)
    )


def signed_message(
    party: Party, inner: bytes | None = None, *, from_: str | None = None, digest: str = "sha256", pss: bool = False
) -> bytes:
    inner = inner if inner is not None else mime_text()
    sig = sign_detached_der(party, inner, digest=digest, pss=pss)
    return multipart_signed(headers(from_ or party.email or SENDER), inner, sig)


def encrypt_der(recipients: list[x509.Certificate], inner: bytes) -> bytes:
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(inner)
    for cert in recipients:
        builder = builder.add_recipient(cert)
    return builder.encrypt(DER, [pkcs7.PKCS7Options.Binary])


def encrypted_message(recipients: list[x509.Certificate], inner: bytes, from_: str = SENDER) -> bytes:
    return pkcs7_mime(headers(from_), encrypt_der(recipients, inner), "enveloped-data")


def body_of(message: bytes) -> bytes:
    """The entity below the top-level headers that are not Content-* (for wrapping)."""
    head, _, body = message.partition(b"\r\n\r\n")
    keep = [line for line in _unfold(head) if line.lower().startswith(b"content-")]
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


def _unfold(head: bytes) -> list[bytes]:
    out: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\r\n" + line
        else:
            out.append(line)
    return out


# --- openssl cms ----------------------------------------------------------------------


def openssl(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)


def openssl_cms(pki: TestPKI, workdir: Path, *args: str, stdin: bytes = b"") -> bytes:
    """Run ``openssl cms`` with the PKI files available as {name}; raises on failure."""
    files = pki.write(workdir)
    argv = [a.format(**{k.replace(".", "_"): str(v) for k, v in files.items()}) for a in args]
    res = openssl("cms", *argv, stdin=stdin)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.decode(errors="replace"))
    return res.stdout


def openssl_verify(pki: TestPKI, message: bytes, *, crl: bool = True, at: dt.datetime | None = None) -> bool:
    """``openssl cms -verify`` against the test root (+CRL, purpose smimesign)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = pki.write(Path(tmp))
        cafile = files["root"]
        args = ["cms", "-verify", "-purpose", "smimesign", "-out", "/dev/null"]
        if crl:
            # openssl cms reads CRLs from the CAfile.
            cafile = Path(tmp) / "ca+crls.pem"
            cafile.write_bytes(pki.root.cert_pem() + pki.crl.public_bytes(PEM) + pki.root_crl.public_bytes(PEM))
            args += ["-crl_check_all"]
        args += ["-CAfile", str(cafile)]
        if at is not None:
            args += ["-attime", str(int(at.timestamp()))]
        return openssl(*args, stdin=message).returncode == 0


# --- hand-made CMS for attack cases (asn1crypto) ------------------------------------------


def raw_signer_info(
    party: Party,
    content: bytes,
    *,
    attrs: tuple[str, ...] = ("signing_time", "message_digest", "content_type"),
    digest: bytes | None = None,
    content_type: str = "data",
    signed_at: dt.datetime = NOW,
) -> object:
    """A SignerInfo with chosen signed attributes, in the given (possibly non-DER) order."""
    import hashlib

    from asn1crypto import cms as ac
    from asn1crypto import x509 as ax

    items = []
    for name in attrs:
        if name == "content_type":
            items.append(ac.CMSAttribute({"type": "content_type", "values": [content_type]}))
        elif name == "message_digest":
            value = digest if digest is not None else hashlib.sha256(content).digest()
            items.append(ac.CMSAttribute({"type": "message_digest", "values": [value]}))
        elif name == "signing_time":
            when = ac.Time({"utc_time": signed_at.astimezone(dt.UTC)})
            items.append(ac.CMSAttribute({"type": "signing_time", "values": [when]}))
    cert = ax.Certificate.load(party.cert.public_bytes(DER))
    is_ec = isinstance(party.key, ec.EllipticCurvePrivateKey)
    si = ac.SignerInfo(
        {
            "version": "v1",
            "sid": ac.SignerIdentifier(
                {
                    "issuer_and_serial_number": ac.IssuerAndSerialNumber(
                        {"issuer": cert.issuer, "serial_number": cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": ac.CMSAttributes(items),
            "signature_algorithm": {"algorithm": "sha256_ecdsa" if is_ec else "rsassa_pkcs1v15"},
            "signature": b"",
        }
    )
    tbs = b"\x31" + si["signed_attrs"].dump()[1:]
    if is_ec:
        sig = party.key.sign(tbs, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, arg-type]
    else:
        sig = party.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg, arg-type]
    si["signature"] = sig
    return si


def raw_signed_data(
    content: bytes,
    signer_infos: list[object],
    *,
    detached: bool,
    certs: list[x509.Certificate],
    econtent: bytes | None = None,
) -> bytes:
    from asn1crypto import cms as ac
    from asn1crypto import x509 as ax

    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = econtent if econtent is not None else content
    sd = ac.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": encap,
            "certificates": [ax.Certificate.load(c.public_bytes(DER)) for c in certs],
            "signer_infos": signer_infos,
        }
    )
    return ac.ContentInfo({"content_type": "signed_data", "content": sd}).dump()


def sign_detached_as_of(party: Party, data: bytes, signed_at: dt.datetime | None = None) -> bytes:
    """A detached SignedData over ``data`` whose signing time is ``signed_at``, not the real time.

    For tests that model time from ``NOW`` (CRL validity, a clock moved by days): a
    signature stamped with the real time drifts away from ``NOW`` as a slow session goes on.
    """
    signer = raw_signer_info(party, data, signed_at=signed_at or NOW)
    return raw_signed_data(data, [signer], detached=True, certs=[party.cert, *party.chain])


def make_context(
    pki: TestPKI,
    *,
    identities: tuple[str, ...] = ("recipient",),
    crl: bool = True,
    allow_sha1: bool = False,
    anchors: bool = True,
) -> object:
    """An UnwrapContext with the test PKI loaded directly (no files)."""

    from gateway.unwrap.smime.cms import RecipientKey
    from gateway.unwrap.smime.handler import SmimeHandler, SmimeMaterial

    keys = tuple(RecipientKey(pki[n].key, pki[n].cert) for n in identities)
    material = SmimeMaterial(
        keys=keys,
        anchors=(pki.root.cert,) if anchors else (),
        crls=(pki.crl, pki.root_crl) if crl else (),
        allow_sha1=allow_sha1,
        configured=True,
    )
    return UnwrapContext([SmimeHandler(material)])


def run_unwrap(raw: bytes, ctx: UnwrapContext) -> UnwrapResult:
    """Unwrap as of the PKI's reference time (certificates are valid then)."""
    return unwrap(raw, ctx, at=now())
