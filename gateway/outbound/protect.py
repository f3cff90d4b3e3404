"""A letter to a ``ComposedDocument``: built, signed and encrypted as ``[outbound]`` says.

The order is fixed: validate and build (``compose``), sign the entity (``sign``), then
encrypt the signed entity to every recipient and to the authority (``encrypt``), so the
signature is inside the envelope and the recipient sees who signed only after decrypting.
With OpenPGP, signing and encrypting are one gpg call (RFC 3156 §6.2). ``encrypt = "auto"``
encrypts only when every recipient has a usable certificate or key: one message goes to all
of them, and it cannot be encrypted for some and readable for others.

``OutboundKeys`` holds what is loaded once per process (the authority's identity, the
keyring, the lookup); ``compose_document`` does no I/O beyond reading the attachments and
running gpg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509

from gateway.config import Config, OutboundConfig
from gateway.errors import ConfigError
from gateway.outbound.compose import ComposeError, Draft, Letter, draft
from gateway.outbound.document import ComposedDocument
from gateway.outbound.encrypt import encrypt_openpgp, encrypt_smime
from gateway.outbound.keys import KeyFinder, PgpRecipient, SmimeRecipient, load_certificates
from gateway.outbound.sign import SmimeSigner, chain_for, sign_openpgp, sign_smime
from gateway.unwrap.openpgp.gpg import GpgHome

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
        from gateway.statedir import certstore_dir
        from gateway.unwrap.certstore import CertStore
        from gateway.unwrap.openpgp.handler import OpenPGPHandler
        from gateway.unwrap.smime.handler import _load_certs_from, _load_identity
        from gateway.unwrap.smime.revocation import CrlInfo

        file = str(config.path)
        signers: list[SmimeSigner] = []
        crls: list[CrlInfo] = []
        if config.smime is not None:
            for i, ident in enumerate(config.smime.identities):
                key = f"smime.identities[{i}]"
                rk = _load_identity(ident, file, key)
                pool: list[x509.Certificate] = []
                if ident.cert_file is not None:
                    pool = _load_certs_from(ident.cert_file, file, f"{key}.cert_file")
                signers.append(SmimeSigner(rk.private_key, rk.certificate, chain_for(rk.certificate, pool)))
            from gateway.unwrap.smime.handler import _load_crl

            crls = [CrlInfo(_load_crl(p, file, f"smime.crl_files[{i}]"), str(p))
                    for i, p in enumerate(config.smime.crl_files)]
            if config.smime.fetch_crls:
                # What the intake fetched from distribution points; read here, never fetched:
                # a CRL that lists a certificate can only stop its use, never enable it.
                from gateway.statedir import crl_cache_dir
                from gateway.unwrap.smime.crlfetch import CrlCache

                crls.extend(CrlCache(crl_cache_dir(config), fetch=False).snapshot())
        handler = OpenPGPHandler.from_config(config.openpgp, config_file=file,
                                             max_output=config.limits.max_message_bytes)
        outbound = config.outbound or OutboundConfig()
        folder_keys: frozenset[str] = frozenset()
        if config.openpgp is not None and config.openpgp.correspondents_trusted:
            folder_keys = handler.trust.correspondents
        finder = KeyFinder(
            certstore=CertStore(certstore_dir(config, "smime")),
            correspondents=load_certificates(outbound.correspondents_dir) if outbound.correspondents_dir else (),
            crls=crls,
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


def _recipient_keys(
    scheme: Scheme | None, recipients: tuple[str, ...], keys: OutboundKeys, at: datetime
) -> tuple[dict[str, SmimeRecipient], dict[str, PgpRecipient], list[str]]:
    smime: dict[str, SmimeRecipient] = {}
    pgp: dict[str, PgpRecipient] = {}
    missing: list[str] = []
    for addr in recipients:
        if scheme == "smime" and (cert := keys.finder.smime(addr, at)) is not None:
            smime[addr] = cert
        elif scheme == "openpgp" and (key := keys.finder.openpgp(addr, at)) is not None:
            pgp[addr] = key
        else:
            missing.append(addr)
    return smime, pgp, missing


def compose_document(
    letter: Letter, *, mail_from: str, config: Config, keys: OutboundKeys, at: datetime
) -> ComposedDocument:
    """Validate, build, sign and encrypt ``letter``; ComposeError and nothing produced on any problem."""
    d = draft(letter, mail_from=mail_from, now=at, max_bytes=config.limits.max_message_bytes)
    return protect_draft(d, config=config, keys=keys, at=at)


def protect_draft(d: Draft, *, config: Config, keys: OutboundKeys, at: datetime) -> ComposedDocument:
    """Sign and encrypt a built message (from ``send`` or handed in by a mail program) as configured."""
    outbound = config.outbound or OutboundConfig()
    max_bytes = config.limits.max_message_bytes
    scheme = encryption_scheme(outbound, keys)
    certs: dict[str, SmimeRecipient] = {}
    pgp_keys: dict[str, PgpRecipient] = {}
    encrypt = False
    if outbound.encrypt != "never":
        certs, pgp_keys, missing = _recipient_keys(scheme, d.recipients, keys, at)
        if outbound.encrypt == "always" and (missing or scheme is None):
            names = ", ".join(missing) or ", ".join(d.recipients)
            raise ComposeError("recipient-key-unknown",
                               f"no usable {scheme or 'S/MIME or OpenPGP'} certificate or key for {names}; "
                               "encrypt = \"always\" sends nothing unencrypted")
        encrypt = not missing and scheme is not None
    entity = d.entity
    signed = outbound.sign
    sources: list[tuple[str, str]] = []
    if encrypt and scheme == "openpgp":
        own = keys.pgp_signer(d.mail_from)
        if own is None or keys.gpg is None:
            raise ComposeError("encryption-failed",
                               f"no own OpenPGP key for {d.mail_from} to encrypt the archived copy to")
        fprs = [pgp_keys[a].fingerprint for a in d.recipients]
        entity = encrypt_openpgp(entity, keys.gpg, [*fprs, own], signer=own if signed == "openpgp" else None)
        sources = [(a, pgp_keys[a].source) for a in d.recipients]
    else:
        if signed == "smime":
            signer = keys.smime_signer(d.mail_from)
            if signer is None:
                raise ComposeError("signing-failed", f"no [smime] identity whose certificate names {d.mail_from}")
            entity = sign_smime(entity, signer)
        elif signed == "openpgp":
            own = keys.pgp_signer(d.mail_from)
            if own is None or keys.gpg is None:
                raise ComposeError("signing-failed", f"no [openpgp] secret key with the user id {d.mail_from}")
            entity = sign_openpgp(entity, keys.gpg, own)
        if encrypt:
            me = keys.smime_signer(d.mail_from)
            if me is None:
                raise ComposeError("encryption-failed",
                                   f"no own S/MIME certificate for {d.mail_from} to encrypt the archived copy to")
            entity = encrypt_smime(entity, [*(certs[a].cert for a in d.recipients), me.cert])
            sources = [(a, certs[a].source) for a in d.recipients]
    raw = d.headers + entity
    if len(raw) > max_bytes:
        raise ComposeError("too-large", f"{len(raw)} bytes signed/encrypted > [limits] max_message_bytes {max_bytes}")
    return ComposedDocument(
        message_id=d.message_id,
        case=d.case,
        mail_from=d.mail_from,
        recipients=d.recipients,
        raw=raw,
        signed=signed,
        encrypted=encrypt,
        key_sources=tuple(sources),
        envid=d.envid,
        demail=d.demail.to_json() if d.demail is not None else None,
    )
