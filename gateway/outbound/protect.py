"""A letter to a ``ComposedDocument``: built, signed and encrypted as ``[outbound]`` says.

The order is fixed: validate and build (``compose``), sign the entity (``sign``), then
encrypt the signed entity to every recipient and to the authority (``encrypt``), so the
signature is inside the envelope and the recipient sees who signed only after decrypting.
With OpenPGP, signing and encrypting are one gpg call (RFC 3156 §6.2). ``encrypt = "auto"``
encrypts only when every recipient has a usable certificate or key: one message goes to all
of them, and it cannot be encrypted for some and readable for others.

Bcc recipients are in no header (RFC 5322 §3.6.3, as Postfix and Thunderbird do it: the
envelope carries them). An encrypted message names each recipient's certificate in its
RecipientInfos, so a Bcc recipient is never among the recipients of the message To and Cc
get: whenever encryption is involved they get a message of their own, encrypted to them
and the authority only (``bcc_copies``). A certificate found and refused (expired, revoked,
not under the trust anchors, ...) is named with its reason in the document
(``key_refusals``), so the record says why a letter went out unencrypted.

``OutboundKeys`` holds what is loaded once per process (the authority's identity, the
keyring, the lookup); ``compose_document`` does no I/O beyond reading the attachments and
running gpg.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from cryptography import x509

from gateway.config import Config, OutboundConfig
from gateway.errors import ConfigError
from gateway.outbound.compose import ComposeError, Draft, Letter, draft
from gateway.outbound.document import ComposedDocument
from gateway.outbound.encrypt import encrypt_openpgp, encrypt_smime
from gateway.outbound.keys import KeyFinder, PgpRecipient, SmimeRecipient, load_certificates
from gateway.outbound.sign import SmimeSigner, chain_for, sign_openpgp, sign_smime
from gateway.unwrap.openpgp.gpg import GpgHome

if TYPE_CHECKING:
    from gateway.unwrap.smime.pki import Validator

__all__ = ["OutboundKeys", "compose_document", "encryption_scheme"]

Scheme = Literal["smime", "openpgp"]


@dataclass
class OutboundKeys:
    """The authority's own S/MIME identities and OpenPGP key, and the recipients' lookup."""

    finder: KeyFinder
    smime_identities: tuple[SmimeSigner, ...] = ()
    gpg: GpgHome | None = None
    own_pgp: tuple[str, ...] = ()  # secret key fingerprints

    @classmethod
    def from_config(cls, config: Config) -> OutboundKeys:
        """Load ``[smime]`` identities, ``[openpgp]`` keys and the lookup sources; ConfigError on bad material."""
        from gateway.statedir import certstore_dir, crl_cache_dir
        from gateway.unwrap.certstore import CertStore
        from gateway.unwrap.openpgp.handler import OpenPGPHandler
        from gateway.unwrap.smime.handler import _load_certs_from, load_material
        from gateway.unwrap.smime.pki import Validator

        file = str(config.path)
        signers: list[SmimeSigner] = []
        validator: Validator | None = None
        intermediates: list[x509.Certificate] = []
        if config.smime is not None:
            # What the intake fetched from distribution points is read here, never fetched:
            # a CRL that lists a certificate can only stop its use, never enable it.
            material = load_material(config.smime, file, crl_cache_dir=crl_cache_dir(config), fetch=False)
            for i, (ident, rk) in enumerate(zip(config.smime.identities, material.keys, strict=True)):
                pool: list[x509.Certificate] = []
                if ident.cert_file is not None:
                    pool = _load_certs_from(ident.cert_file, file, f"smime.identities[{i}].cert_file")
                signers.append(SmimeSigner(rk.private_key, rk.certificate, chain_for(rk.certificate, pool)))
                intermediates.extend(pool)
            validator = Validator(
                material.anchors,
                material.crls,
                min_rsa_bits=material.min_rsa_bits,
                allow_sha1=material.allow_sha1,
                revocation=material.revocation,
                crl_grace=material.crl_grace,
                crl_cache=material.crl_cache,
            )
        handler = OpenPGPHandler.from_config(
            config.openpgp, config_file=file, max_output=config.limits.max_message_bytes
        )
        outbound = config.outbound or OutboundConfig()
        folder_keys: frozenset[str] = frozenset()
        if config.openpgp is not None and config.openpgp.correspondents_trusted:
            folder_keys = handler.trust.correspondents
        finder = KeyFinder(
            certstore=CertStore(certstore_dir(config, "smime")),
            correspondents=load_certificates(outbound.correspondents_dir) if outbound.correspondents_dir else (),
            validator=validator,
            intermediates=intermediates,
            gpg=handler.home,
            pinned=handler.trust.pinned,
            trusted_folder_keys=folder_keys,
        )
        home = handler.home
        own = home.secret_fingerprints if home is not None else ()
        if outbound.sign == "smime" and not signers:
            raise ConfigError(file, "outbound.sign", "no [smime] identity to sign with")
        if outbound.sign == "openpgp" and not own:
            raise ConfigError(file, "outbound.sign", "no [openpgp] secret key to sign with")
        return cls(finder, tuple(signers), home, own)

    def close(self) -> None:
        if self.gpg is not None:
            self.gpg.close()

    def smime_signer(self, address: str) -> SmimeSigner | None:
        """The identity whose certificate names ``address``, or None.

        Never another identity: a signature by someone other than the From address is not
        verified at the recipient (nor by Poststelle's own rules), so it would only look safe.
        """
        for signer in self.smime_identities:
            try:
                san = signer.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                continue
            if any(e.lower() == address.lower() for e in san.get_values_for_type(x509.RFC822Name)):
                return signer
        return None

    def pgp_signer(self, address: str) -> str | None:
        """The secret key with ``address`` as a user id, or None (see ``smime_signer``)."""
        if self.gpg is None:
            return None
        for fpr in self.own_pgp:
            key = self.gpg.key(fpr)
            if key is not None and address.lower() in (e.lower() for e in key.emails):
                return fpr
        return None


def encryption_scheme(outbound: OutboundConfig, keys: OutboundKeys) -> Scheme | None:
    """The scheme of the signature; unsigned letters: S/MIME when there is an identity, else OpenPGP."""
    if outbound.sign != "none":
        return outbound.sign
    if keys.smime_identities:
        return "smime"
    if keys.own_pgp:
        return "openpgp"
    return None


@dataclass(frozen=True)
class _Keys:
    """What the lookup found for a letter's recipients in the scheme used."""

    smime: dict[str, SmimeRecipient]
    pgp: dict[str, PgpRecipient]
    missing: list[str]
    refused: dict[str, tuple[str, ...]]  # recipient -> "certificate of X refused: …" lines

    def has(self, addr: str) -> bool:
        return addr in self.smime or addr in self.pgp


def _recipient_keys(scheme: Scheme | None, recipients: tuple[str, ...], keys: OutboundKeys, at: datetime) -> _Keys:
    found = _Keys({}, {}, [], {})
    for addr in recipients:
        if scheme == "smime":
            lookup = keys.finder.smime_lookup(addr, at)
            if lookup.recipient is not None:
                found.smime[addr] = lookup.recipient
                continue
            if lookup.refused:
                found.refused[addr] = tuple(r.text() for r in lookup.refused)
        elif scheme == "openpgp" and (key := keys.finder.openpgp(addr, at)) is not None:
            found.pgp[addr] = key
            continue
        found.missing.append(addr)
    return found


def compose_document(
    letter: Letter, *, mail_from: str, config: Config, keys: OutboundKeys, at: datetime
) -> ComposedDocument:
    """Validate, build, sign and encrypt ``letter``; ComposeError and nothing produced on any problem."""
    d = draft(letter, mail_from=mail_from, now=at, max_bytes=config.limits.max_message_bytes)
    return protect_draft(d, config=config, keys=keys, at=at)


def _with_message_id(headers: bytes, message_id: str) -> bytes:
    """``headers`` with its Message-ID field (folded or not) replaced by ``message_id``."""
    out: list[bytes] = []
    skipping = False
    for line in headers.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == b"message-id"
        if not skipping:
            out.append(line)
    out.append(f"Message-ID: <{message_id}>".encode("ascii"))
    return b"".join(x + b"\r\n" for x in out)


def _plan_bcc(
    visible: tuple[str, ...], bcc: tuple[str, ...], can_encrypt: Callable[[tuple[str, ...]], bool]
) -> tuple[tuple[str, ...], bool, list[str]]:
    """(the main message's envelope, whether it is encrypted, the Bcc recipients with a copy of their own).

    A Bcc recipient rides in the main message's envelope only when that message is not
    encrypted and their own copy would not be either: then no byte of the message names
    them. Everyone else gets a separate copy, encrypted to them and the authority only,
    because a RecipientInfo names its recipient's certificate (issuer and serial number)
    to every reader of the envelope.
    """
    main_encrypted = bool(visible) and can_encrypt(visible)
    riding = [a for a in bcc if not main_encrypted and not can_encrypt((a,))]
    separate = [a for a in bcc if a not in riding]
    return (*visible, *riding), main_encrypted, separate


def protect_draft(d: Draft, *, config: Config, keys: OutboundKeys, at: datetime) -> ComposedDocument:
    """Sign and encrypt a built message (from ``send`` or handed in by a mail program) as configured.

    Bcc recipients (``d.bcc``) never appear in a header; see ``_plan_bcc`` for when they get
    a message of their own (``bcc_copies``, each with its own Message-ID).
    """
    outbound = config.outbound or OutboundConfig()
    scheme = encryption_scheme(outbound, keys)
    found = _Keys({}, {}, list(d.recipients), {})
    if outbound.encrypt != "never":
        found = _recipient_keys(scheme, d.recipients, keys, at)
        if outbound.encrypt == "always" and (found.missing or scheme is None):
            names = ", ".join(found.missing) or ", ".join(d.recipients)
            refusals = [t for a in found.missing for t in found.refused.get(a, ())]
            raise ComposeError(
                "recipient-key-unknown",
                f"no usable {scheme or 'S/MIME or OpenPGP'} certificate or key for {names}; "
                'encrypt = "always" sends nothing unencrypted' + "".join(f"; {t}" for t in refusals),
            )

    def can_encrypt(group: tuple[str, ...]) -> bool:
        return outbound.encrypt != "never" and scheme is not None and all(found.has(a) for a in group)

    bcc = tuple(a for a in d.recipients if a in d.bcc)
    visible = tuple(a for a in d.recipients if a not in d.bcc)
    envelope, main_encrypted, separate = _plan_bcc(visible, bcc, can_encrypt)
    signed_entity = _sign(d, outbound.sign, keys) if not (main_encrypted and scheme == "openpgp") else b""
    parts: list[ComposedDocument] = []
    if envelope:
        parts.append(
            _finish(
                d,
                d.message_id,
                d.headers,
                envelope,
                main_encrypted,
                signed_entity,
                scheme,
                found,
                keys,
                config,
                bcc=bcc,
            )
        )
    domain = d.mail_from.rpartition("@")[2]
    for addr in separate:
        mid = f"{secrets.token_hex(16)}@{domain}"
        entity = signed_entity or (_sign(d, outbound.sign, keys) if not can_encrypt((addr,)) else b"")
        parts.append(
            _finish(
                d,
                mid,
                _with_message_id(d.headers, mid),
                (addr,),
                can_encrypt((addr,)),
                entity,
                scheme,
                found,
                keys,
                config,
                bcc=(addr,),
            )
        )
    main, *copies = parts
    if not envelope:
        main = dataclasses.replace(main, bcc=bcc)
    return dataclasses.replace(main, bcc_copies=tuple(copies))


def _sign(d: Draft, signed: str, keys: OutboundKeys) -> bytes:
    """The entity with the authority's detached signature (or as it is, ``sign = "none"``)."""
    if signed == "smime":
        signer = keys.smime_signer(d.mail_from)
        if signer is None:
            raise ComposeError("signing-failed", f"no [smime] identity whose certificate names {d.mail_from}")
        return sign_smime(d.entity, signer)
    if signed == "openpgp":
        own = keys.pgp_signer(d.mail_from)
        if own is None or keys.gpg is None:
            raise ComposeError("signing-failed", f"no [openpgp] secret key with the user id {d.mail_from}")
        return sign_openpgp(d.entity, keys.gpg, own)
    return d.entity


def _finish(
    d: Draft,
    message_id: str,
    headers: bytes,
    envelope: tuple[str, ...],
    encrypt: bool,
    signed_entity: bytes,
    scheme: Scheme | None,
    found: _Keys,
    keys: OutboundKeys,
    config: Config,
    *,
    bcc: tuple[str, ...],
) -> ComposedDocument:
    """One message: the signed entity, encrypted to ``envelope`` and the authority when ``encrypt``."""
    signed = (config.outbound or OutboundConfig()).sign
    entity = signed_entity
    sources: list[tuple[str, str]] = []
    if encrypt and scheme == "openpgp":
        own = keys.pgp_signer(d.mail_from)
        if own is None or keys.gpg is None:
            raise ComposeError(
                "encryption-failed", f"no own OpenPGP key for {d.mail_from} to encrypt the archived copy to"
            )
        fprs = [found.pgp[a].fingerprint for a in envelope]
        entity = encrypt_openpgp(d.entity, keys.gpg, [*fprs, own], signer=own if signed == "openpgp" else None)
        sources = [(a, found.pgp[a].source) for a in envelope]
    elif encrypt:
        me = keys.smime_signer(d.mail_from)
        if me is None:
            raise ComposeError(
                "encryption-failed", f"no own S/MIME certificate for {d.mail_from} to encrypt the archived copy to"
            )
        entity = encrypt_smime(entity, [*(found.smime[a].cert for a in envelope), me.cert])
        sources = [(a, found.smime[a].source) for a in envelope]
    raw = headers + entity
    max_bytes = config.limits.max_message_bytes
    if len(raw) > max_bytes:
        raise ComposeError("too-large", f"{len(raw)} bytes signed/encrypted > [limits] max_message_bytes {max_bytes}")
    return ComposedDocument(
        message_id=message_id,
        case=d.case,
        mail_from=d.mail_from,
        recipients=envelope,
        raw=raw,
        signed=signed,
        encrypted=encrypt,
        key_sources=tuple(sources),
        envid=d.envid,
        demail=d.demail.to_json() if d.demail is not None else None,
        bcc=bcc,
        key_refusals=tuple(t for a in envelope for t in found.refused.get(a, ())),
    )
