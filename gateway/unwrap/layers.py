"""Layers: the handler protocol, and the loop that peels a message one layer at a time.

Each scheme handler (S/MIME, OpenPGP) opens one layer and reports what it found; the loop
here opens layers in order (signed-then-encrypted, encrypted-then-signed, triple wrap) up
to a fixed depth, and then looks for protected parts inside the opened content. It decides
nothing about "verified": that is :mod:`gateway.unwrap.rules`. It does decide when a
message is refused outright (an encryption layer that cannot be opened, too many layers,
unreadable content), because nothing partially decrypted may be passed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.mime.cut import Entity, MimeError, parse_entity, walk
from gateway.unwrap.verdict import EncryptionInfo, EncryptionStatus, Scheme, SignatureStatus

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.unwrap.certstore import CertStore

__all__ = [
    "MAX_LAYERS",
    "LayerKind",
    "LayerOutcome",
    "Peeled",
    "Refused",
    "SchemeHandler",
    "SignatureFinding",
    "UnwrapContext",
    "UnwrapEvent",
    "ciphertext_signatures",
    "content_signatures",
    "peel",
]

LayerKind = Literal["signed", "encrypted"]
#: Bound on cryptographic layers (triple wrap needs 3); more is an attack or a loop.
MAX_LAYERS = 8


@dataclass(frozen=True)
class UnwrapEvent:
    """One audit-trail entry; ``details`` is JSON-able and never holds secrets."""

    type: str  # "decrypted" | "signature-checked" | "key-used" | "decryption-failed"
    details: dict[str, Any]


@dataclass(frozen=True)
class SignatureFinding:
    """What one signature layer proved, before the identity and coverage rules."""

    status: SignatureStatus
    reasons: tuple[str, ...] = ()
    signer_emails: tuple[str, ...] = ()
    signer_certificate_sha256: str | None = None
    signer_fingerprint: str | None = None
    signing_time: datetime | None = None
    #: DER of the signer certificate, for the correspondents' store (only when valid).
    signer_certificate: bytes | None = field(default=None, repr=False)
    #: S/MIME: revocation evidence, JSON-able (``signature.revocation`` in docs/verdict.md).
    revocation: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LayerOutcome:
    """The result of opening one layer.

    ``inner`` is the opened entity (headers + body, CRLF) or None when the layer could
    not be opened; an encrypted layer with ``inner is None`` must carry ``failure``
    (a reason code) and sends the message to quarantine.

    An encrypted layer may carry a ``signature``: the signature was inside the encryption
    and covers ``inner`` (OpenPGP sign+encrypt in one, RFC 3156 §6.2); it counts like a
    signed layer directly below this one.

    ``partial`` marks a layer that protects only part of the entity (inline PGP with
    unprotected text around the armored block): peeling stops there and it is treated
    like a nested part (partially signed / partially encrypted, never merged); ``inner``
    is then None and a partial encrypted layer is not a decryption failure.
    """

    kind: LayerKind
    scheme: Scheme
    inner: bytes | None
    signature: SignatureFinding | None = None
    failure: str | None = None
    events: tuple[UnwrapEvent, ...] = ()
    partial: bool = False


class SchemeHandler(Protocol):
    """One cryptographic message format (S/MIME, OpenPGP)."""

    scheme: Scheme

    def claims(self, entity: Entity) -> LayerKind | None:
        """Which kind of layer ``entity`` is in this scheme, or None (headers only, cheap)."""
        ...

    def open(self, entity: Entity, *, at: datetime) -> LayerOutcome:
        """Open one layer; must not raise for malformed input (return a failure outcome)."""
        ...


@dataclass(frozen=True)
class DemailCheck:
    """``[demail]`` when enabled: the provider anchors' validator and the verified-sender policy."""

    validator: Any
    treat_authoritative_as_verified: bool = True


class UnwrapContext:
    """Handlers and limits, built once at start-up."""

    def __init__(
        self,
        handlers: Sequence[SchemeHandler] = (),
        *,
        certstore: CertStore | None = None,
        max_depth: int = 20,
        max_parts: int = 500,
        demail: DemailCheck | None = None,
    ) -> None:
        self.handlers = tuple(handlers)
        self.certstore = certstore
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.demail = demail

    @classmethod
    def from_config(
        cls, config: Config, *, collect_certificates: bool = True, fetch_crls: bool = True
    ) -> UnwrapContext:
        """Load keys, anchors and CRLs; raises ConfigError on unusable material.

        ``config.smime`` may be None: S/MIME messages are then still recognised and fail
        closed (no key, no anchor) instead of passing as plain mail.
        ``collect_certificates=False`` is for read-only use such as ``inspect``;
        ``fetch_crls=False`` uses fetched CRLs from the cache but fetches none (offline).
        """
        from gateway.statedir import certstore_dir, crl_cache_dir
        from gateway.unwrap.certstore import CertStore
        from gateway.unwrap.openpgp.handler import OpenPGPHandler
        from gateway.unwrap.smime.handler import SmimeHandler

        store = CertStore(certstore_dir(config, "smime")) if collect_certificates else None
        demail = None
        if config.demail is not None and config.demail.enabled:
            from gateway.demail.trust import validator_from_files

            demail = DemailCheck(
                validator_from_files(config.demail.provider_trust_anchors, str(config.path)),
                config.demail.treat_authoritative_as_verified,
            )
        return cls(
            [
                SmimeHandler.from_config(
                    config.smime,
                    config_file=str(config.path),
                    crl_cache_dir=crl_cache_dir(config),
                    fetch_crls=fetch_crls,
                ),
                OpenPGPHandler.from_config(
                    config.openpgp, config_file=str(config.path), max_output=config.limits.max_message_bytes
                ),
            ],
            certstore=store,
            max_depth=config.limits.max_mime_depth,
            max_parts=config.limits.max_mime_parts,
            demail=demail,
        )

    def close(self) -> None:
        """Release what handlers hold (the OpenPGP handler stops its gpg-agent)."""
        for handler in self.handlers:
            close = getattr(handler, "close", None)
            if callable(close):
                close()

    def handler_for(self, entity: Entity) -> tuple[SchemeHandler, LayerKind] | None:
        for handler in self.handlers:
            kind = handler.claims(entity)
            if kind is not None:
                return handler, kind
        return None


# --- which signatures cover what -----------------------------------------------------


def _innermost_encryption(layers: Sequence[LayerOutcome]) -> int:
    """Index of the innermost encryption layer, or -1."""
    for i in range(len(layers) - 1, -1, -1):
        if layers[i].kind == "encrypted":
            return i
    return -1


def content_signatures(layers: Sequence[LayerOutcome]) -> tuple[LayerOutcome, ...]:
    """The layers whose signature covers the opened content, outermost first.

    Those are the signed layers below the innermost encryption layer, led by that
    encryption layer itself when a signature came inside it (OpenPGP sign+encrypt in one
    covers its own plaintext).
    """
    last = _innermost_encryption(layers)
    below = tuple(lay for lay in layers[last + 1 :] if lay.kind == "signed")
    if last >= 0 and layers[last].signature is not None:
        return (layers[last], *below)
    return below


def ciphertext_signatures(layers: Sequence[LayerOutcome]) -> tuple[LayerOutcome, ...]:
    """The layers whose signature covers ciphertext, outermost first.

    Signed layers above the innermost encryption layer, and signatures inside an outer
    encryption layer (they cover the next layer's ciphertext): encrypt-then-sign proves
    who sent the ciphertext, not who wrote the plaintext.
    """
    last = _innermost_encryption(layers)
    return tuple(
        lay
        for i, lay in enumerate(layers[: last + 1])
        if lay.kind == "signed" or (lay.signature is not None and i != last)
    )


# --- the peeling loop ----------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """The message cannot be passed on at all: quarantine the original bytes with ``reason``."""

    reason: str
    events: tuple[UnwrapEvent, ...] = ()
    encryption: EncryptionStatus = "none"
    scheme: Scheme | None = None


@dataclass(frozen=True)
class Peeled:
    """A message with its layers opened, outermost first: what the rules derive facts from."""

    top: Entity
    #: The innermost opened content; ``top`` itself when no layer was opened.
    final: Entity
    layers: tuple[LayerOutcome, ...]
    events: tuple[UnwrapEvent, ...]
    encryption: EncryptionInfo
    #: A signature over part of the content only: the partial layer, else the first signed
    #: part nested in the content. Only looked for when no layer signature covers the content.
    part_signature: LayerOutcome | None = None
    #: The content below the top could not be walked for nested parts.
    nested_unreadable: bool = False


@dataclass(frozen=True)
class _Stack:
    final: Entity
    layers: tuple[LayerOutcome, ...]
    events: tuple[UnwrapEvent, ...]
    partial: LayerOutcome | None


@dataclass(frozen=True)
class _Nested:
    encrypted: bool
    signed: tuple[tuple[SchemeHandler, Entity], ...]
    unreadable: bool


def peel(top: Entity, ctx: UnwrapContext, at: datetime) -> Peeled | Refused:
    """Open every layer of ``top`` and find what is protected inside; never merges parts."""
    stack = _open_layers(top, ctx, at)
    if isinstance(stack, Refused):
        return stack
    nested = _scan_nested(stack.final, ctx)
    events = list(stack.events)
    part_signature = None
    if not content_signatures(stack.layers):
        part_signature = _part_signature(stack.partial, nested, at, events)
    encrypted_part = nested.encrypted or (stack.partial is not None and stack.partial.kind == "encrypted")
    return Peeled(
        top=top,
        final=stack.final,
        layers=stack.layers,
        events=tuple(events),
        encryption=_encryption(stack.layers, encrypted_part, ctx),
        part_signature=part_signature,
        nested_unreadable=nested.unreadable,
    )


def _open_layers(top: Entity, ctx: UnwrapContext, at: datetime) -> _Stack | Refused:
    """Open layer after layer while a handler claims the content."""
    layers: list[LayerOutcome] = []
    events: list[UnwrapEvent] = []
    entity = top
    for _ in range(MAX_LAYERS + 1):
        found = ctx.handler_for(entity)
        if found is None:
            break
        if len(layers) == MAX_LAYERS:
            return Refused("too-many-layers", tuple(events))
        outcome = found[0].open(entity, at=at)
        events.extend(outcome.events)
        if outcome.partial:
            # Like a nested part: reported by the rules, never opened further.
            return _Stack(entity, tuple(layers), tuple(events), outcome)
        layers.append(outcome)
        if outcome.kind == "encrypted" and outcome.inner is None:
            # Never pass partially decrypted content on: quarantine the original bytes.
            return Refused(
                outcome.failure or "decryption-failed", tuple(events), encryption="failed", scheme=outcome.scheme
            )
        if outcome.inner is None:
            break
        try:
            entity = parse_entity(outcome.inner, crlf=True)  # inner is CRLF (LayerOutcome)
        except MimeError:
            return Refused("malformed-mime", tuple(events))
    return _Stack(entity, tuple(layers), tuple(events), None)


def _scan_nested(final: Entity, ctx: UnwrapContext) -> _Nested:
    """Protected parts inside the content (partial encryption or partial signing).

    Encrypted parts are never opened: no decryption oracle, and their plaintext is never
    merged with the attacker-controllable text around them.
    """
    encrypted = False
    signed: list[tuple[SchemeHandler, Entity]] = []
    try:
        for part in walk(final, max_depth=ctx.max_depth, max_parts=ctx.max_parts):
            found = ctx.handler_for(part)
            if found is None:
                continue
            if found[1] == "encrypted":
                encrypted = True
            else:
                signed.append((found[0], part))
    except MimeError:
        return _Nested(encrypted, tuple(signed), unreadable=True)
    return _Nested(encrypted, tuple(signed), unreadable=False)


def _part_signature(
    partial: LayerOutcome | None, nested: _Nested, at: datetime, events: list[UnwrapEvent]
) -> LayerOutcome | None:
    """The signature to report for a partially signed message (opens a nested part)."""
    if partial is not None and partial.kind == "signed":
        return partial  # an inline signature with unsigned text around it
    if not nested.signed:
        return None
    handler, part = nested.signed[0]
    outcome = handler.open(part, at=at)
    events.extend(outcome.events)
    return outcome


def _encryption(layers: Sequence[LayerOutcome], encrypted_part: bool, ctx: UnwrapContext) -> EncryptionInfo:
    opened = [lay for lay in layers if lay.kind == "encrypted"]
    scheme = opened[-1].scheme if opened else None
    if encrypted_part:
        return EncryptionInfo("partial", scheme if scheme is not None else ctx.handlers[0].scheme)
    return EncryptionInfo("decrypted" if opened else "none", scheme)
