"""Reason codes in words a clerk understands, and the state of a message's signature.

One table for every place a person reads why a letter is not verified: the manifest, ``cases
show``, ``quarantine show``, the HTML and text audit reports and the intake's log line. The
codes themselves (docs/verdict.md) stay in the record for machines; the words are shown
next to them, never instead of them. Each row carries its German too, so a code added here
cannot lack a translation (``gateway.ui.german`` takes them from ``GERMAN_REASONS``).

"Unsigned" and "badly signed" are different states for a clerk: an unsigned letter is an
ordinary letter, a letter whose signature fails may have been altered or forged. So a
signature whose status is ``invalid``, ``untrusted`` or ``error`` reads "signature invalid:
<why>", where *why* is the reasons about the signature (not those about From or the time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.ui.locale import Locale

#: code -> (English, German). Covers every reason of docs/verdict.md and the pipeline's own.
_WORDS: dict[str, tuple[str, str]] = {
    # -- the signature itself
    "no-signature": ("not signed", "nicht signiert"),
    "partially-signed": ("only part of the message is signed", "nur ein Teil der Nachricht ist signiert"),
    "signature-over-ciphertext": (
        "the signature covers only the encrypted form, not the readable content",
        "die Signatur deckt nur die verschlüsselte Form ab, nicht den lesbaren Inhalt",
    ),
    "inner-signature-invalid": (
        "an inner signature does not match the content",
        "eine innere Signatur passt nicht zum Inhalt",
    ),
    "inner-signature-untrusted": (
        "an inner signature's certificate is not trusted",
        "dem Zertifikat einer inneren Signatur wird nicht vertraut",
    ),
    "inner-signature-error": (
        "an inner signature could not be checked",
        "eine innere Signatur konnte nicht geprüft werden",
    ),
    "inner-signature-none": (
        "an inner signature layer carries no signature",
        "eine innere Signaturebene enthält keine Signatur",
    ),
    "untrusted-chain": ("not issued by a trusted authority", "nicht von einer vertrauenswürdigen Stelle ausgestellt"),
    "no-trust-anchors": ("no trusted authorities are configured", "keine vertrauenswürdigen Stellen eingerichtet"),
    "smime-not-configured": (
        "S/MIME is not set up on this gateway",
        "S/MIME ist auf diesem Gateway nicht eingerichtet",
    ),
    "cert-expired": ("signer certificate expired", "Zertifikat des Unterzeichners abgelaufen"),
    "cert-not-yet-valid": ("signer certificate not yet valid", "Zertifikat des Unterzeichners noch nicht gültig"),
    "cert-revoked": ("signer certificate revoked", "Zertifikat des Unterzeichners gesperrt"),
    "revocation-unknown": (
        "could not be confirmed that the certificate is not revoked",
        "es ließ sich nicht bestätigen, dass das Zertifikat nicht gesperrt ist",
    ),
    "crl-not-current": ("the revocation list is out of date", "die Sperrliste ist nicht aktuell"),
    "wrong-eku": ("the certificate is not meant for e-mail", "das Zertifikat ist nicht für E-Mail bestimmt"),
    "wrong-key-usage": ("the certificate is not meant for signing", "das Zertifikat ist nicht zum Signieren bestimmt"),
    "weak-key": ("the key is too weak", "der Schlüssel ist zu schwach"),
    "unsupported-key": ("the key type is not supported", "der Schlüsseltyp wird nicht unterstützt"),
    "sha1-rejected": ("outdated SHA-1 algorithm refused", "veralteter SHA-1-Algorithmus abgelehnt"),
    "weak-algorithm": (
        "outdated, insecure algorithm in the certificate",
        "veralteter, unsicherer Algorithmus im Zertifikat",
    ),
    "digest-mismatch": ("the content was changed after signing", "der Inhalt wurde nach dem Signieren verändert"),
    "bad-signature": (
        "the signature does not match (altered or forged)",
        "die Signatur passt nicht (verändert oder gefälscht)",
    ),
    "missing-signed-attributes": ("the signature lacks required parts", "der Signatur fehlen notwendige Bestandteile"),
    "duplicate-signed-attribute": (
        "the signature contains a part twice",
        "die Signatur enthält einen Bestandteil doppelt",
    ),
    "content-type-mismatch": (
        "the signature names a different kind of content",
        "die Signatur nennt eine andere Art von Inhalt",
    ),
    "malformed-signed-attributes": ("the signature is not properly encoded", "die Signatur ist nicht korrekt kodiert"),
    "algorithm-mismatch": (
        "the signature's algorithms do not fit together",
        "die Algorithmen der Signatur passen nicht zusammen",
    ),
    "unsupported-algorithm": ("the algorithm is not supported", "der Algorithmus wird nicht unterstützt"),
    "econtent-in-detached-signature": (
        "the signature carries content of its own",
        "die Signatur trägt einen eigenen Inhalt",
    ),
    "no-econtent": ("the signed message has no content", "die signierte Nachricht hat keinen Inhalt"),
    "no-signer-info": ("the signature names no signer", "die Signatur nennt keinen Unterzeichner"),
    "multiple-signers": ("not all of several signatures are valid", "nicht alle von mehreren Signaturen sind gültig"),
    "signer-certificate-missing": (
        "the signer's certificate was not included",
        "das Zertifikat des Unterzeichners fehlt",
    ),
    "malformed-signature": ("the signature is unreadable", "die Signatur ist nicht lesbar"),
    "signature-not-evaluated": ("the signature could not be checked", "die Signatur konnte nicht geprüft werden"),
    "too-many-signers": ("too many signatures", "zu viele Signaturen"),
    "unexpected-cms-type": (
        "the signature does not fit the message type",
        "die Signatur passt nicht zum Nachrichtentyp",
    ),
    "openpgp-not-configured": (
        "OpenPGP is not set up on this gateway",
        "OpenPGP ist auf diesem Gateway nicht eingerichtet",
    ),
    "openpgp-unknown-key": ("the signing key is unknown", "der Signaturschlüssel ist unbekannt"),
    "pinned-key-not-in-keyring": (
        "the expected key of this sender is missing",
        "der erwartete Schlüssel dieses Absenders fehlt",
    ),
    "openpgp-key-not-pinned": (
        "the signing key is not registered as trusted",
        "der Signaturschlüssel ist nicht als vertrauenswürdig hinterlegt",
    ),
    "pinned-address-not-in-key": (
        "the key does not belong to the registered address",
        "der Schlüssel gehört nicht zur hinterlegten Adresse",
    ),
    "key-expired": ("signing key expired", "Signaturschlüssel abgelaufen"),
    "key-revoked": ("signing key revoked", "Signaturschlüssel widerrufen"),
    "signature-expired": ("the signature has expired", "die Signatur ist abgelaufen"),
    "signers-differ": ("several signatures by different people", "mehrere Signaturen von verschiedenen Personen"),
    # -- who signed against who is named as the sender
    "signer-not-from": ("the signer is not the sender", "Unterzeichner und Absender sind verschieden"),
    "inner-signer-not-from": (
        "an inner signature is by someone other than the sender",
        "eine innere Signatur stammt nicht vom Absender",
    ),
    "protected-from-mismatch": (
        "the signed part names a different sender",
        "der signierte Teil nennt einen anderen Absender",
    ),
    "protected-from-ambiguous": ("the signed part's sender is unclear", "der Absender im signierten Teil ist unklar"),
    "no-from": ("no sender address", "keine Absenderadresse"),
    "multiple-from": ("more than one sender address", "mehr als eine Absenderadresse"),
    "from-unparseable": ("the sender address is unreadable", "die Absenderadresse ist nicht lesbar"),
    "from-ambiguous": (
        "the sender address could be shown as a different one",
        "die Absenderadresse kann als eine andere angezeigt werden",
    ),
    "signing-time-in-future": ("signed at a time after arrival", "zu einem Zeitpunkt nach dem Eingang signiert"),
    "signing-time-mismatch": (
        "signing time and date of the letter differ",
        "Signaturzeit und Datum der Nachricht weichen ab",
    ),
    # -- encryption and structure
    "partially-encrypted": ("only part of the message is encrypted", "nur ein Teil der Nachricht ist verschlüsselt"),
    "decryption-failed-no-key": (
        "could not be decrypted: no matching key",
        "nicht entschlüsselbar: kein passender Schlüssel",
    ),
    "decryption-failed-corrupt": (
        "could not be decrypted: the encrypted content is damaged",
        "nicht entschlüsselbar: der verschlüsselte Inhalt ist beschädigt",
    ),
    "decryption-failed-unsupported-algorithm": (
        "could not be decrypted: the method is not supported",
        "nicht entschlüsselbar: das Verfahren wird nicht unterstützt",
    ),
    "decryption-failed-no-integrity": (
        "could not be decrypted safely: no protection against changes",
        "nicht sicher entschlüsselbar: kein Schutz gegen Veränderung",
    ),
    "decryption-failed-too-large": (
        "could not be decrypted: the content is too large",
        "nicht entschlüsselbar: der Inhalt ist zu groß",
    ),
    "too-many-layers": ("too many nested layers", "zu viele verschachtelte Ebenen"),
    "malformed-mime": ("the message structure could not be read", "der Aufbau der Nachricht war nicht lesbar"),
    "unwrap-error": ("internal error while opening the message", "interner Fehler beim Öffnen der Nachricht"),
    "unwrap-failed": ("the message could not be opened", "die Nachricht konnte nicht geöffnet werden"),
    # -- the pipeline: size, structure, routing, policy
    "oversize": ("the message is too large", "die Nachricht ist zu groß"),
    "not-a-message": ("not an e-mail message", "keine E-Mail-Nachricht"),
    "too-many-parts": ("the message has too many parts", "die Nachricht hat zu viele Teile"),
    "mime-too-deep": ("the message is nested too deeply", "die Nachricht ist zu tief verschachtelt"),
    "no-rule-matched": ("no case reference recognised", "kein Aktenzeichen erkannt"),
    "policy-signature-required": (
        "a valid signature is required here",
        "hier ist eine gültige Signatur vorgeschrieben",
    ),
    "policy-encryption-required": ("encryption is required here", "hier ist Verschlüsselung vorgeschrieben"),
    "policy-clean-identity-required": (
        "other addresses than the signer's are named, which is not allowed here",
        "es sind andere Adressen als die des Unterzeichners genannt, was hier nicht erlaubt ist",
    ),
    "unsafe-case-folder": (
        "the case folder could not be written safely",
        "der Aktenordner konnte nicht sicher beschrieben werden",
    ),
    # -- receipts (gateway.receipts): why a DSN, MDN or De-Mail confirmation moved no delivery record
    "unmatched-receipt": (
        "a receipt for none of our sent documents",
        "ein Nachweis zu keinem unserer gesendeten Dokumente",
    ),
    "receipt-for-cancelled-document": (
        "a receipt for a document that was withdrawn",
        "ein Nachweis zu einem zurückgezogenen Dokument",
    ),
    "receipt-names-no-recipient": (
        "a receipt naming none of the document's recipients",
        "ein Nachweis, der keinen Empfänger des Dokuments nennt",
    ),
    "malformed-delivery-status": (
        "an unreadable delivery status notification",
        "eine unlesbare Zustellbenachrichtigung",
    ),
    "malformed-disposition-notification": ("an unreadable return receipt", "eine unlesbare Lesebestätigung"),
    "malformed-demail-confirmation": ("an unreadable De-Mail confirmation", "eine unlesbare De-Mail-Bestätigung"),
    "malformed-receipt": ("an unreadable receipt", "ein unlesbarer Nachweis"),
    "demail-confirmation-unproven": (
        "a De-Mail confirmation without a valid signature of the provider",
        "eine De-Mail-Bestätigung ohne gültige Signatur des Anbieters",
    ),
    # -- De-Mail (gateway.demail): an "absenderbestätigt" claim the provider's signature does not prove
    "demail-authoritative-unproven": (
        "claims to be a sender-confirmed De-Mail, but the provider's signature does not prove it",
        "gibt sich als absenderbestätigte De-Mail aus, die Signatur des Anbieters belegt das nicht",
    ),
    "demail-authoritative-not-covered": (
        "the provider's signature does not cover the sender confirmation",
        "die Signatur des Anbieters deckt die Absenderbestätigung nicht ab",
    ),
    "demail-from-not-single": (
        "a De-Mail must name exactly one sender",
        "eine De-Mail muss genau einen Absender nennen",
    ),
    "demail-sender-mismatch": (
        "the De-Mail sender differs from From",
        "der De-Mail-Absender weicht vom Absender (From) ab",
    ),
    "policy-demail-authoritative-required": (
        "only sender-confirmed De-Mails are accepted here",
        "hier werden nur absenderbestätigte De-Mails angenommen",
    ),
    # -- codes of older records
    "untrusted-signer": (
        "the signer's certificate is not trusted",
        "dem Zertifikat des Unterzeichners wird nicht vertraut",
    ),
    "from-mismatch": ("the signer is not the sender", "Unterzeichner und Absender sind verschieden"),
}

#: Codes with a detail after a colon (``processing-error:KeyError``): the words, then the detail.
_PREFIXED: dict[str, tuple[str, str]] = {
    "processing-error": ("internal processing error", "interner Verarbeitungsfehler"),
    "same-message-id-as": (
        "same Message-ID as an earlier, different message",
        "gleiche Message-ID wie eine frühere, andere Nachricht",
    ),
}

#: Reasons that say something about From, the time or the encryption, not about the signature.
NOT_ABOUT_THE_SIGNATURE = frozenset(
    {
        "no-signature",
        "signer-not-from",
        "inner-signer-not-from",
        "protected-from-mismatch",
        "protected-from-ambiguous",
        "no-from",
        "multiple-from",
        "from-unparseable",
        "from-ambiguous",
        "signing-time-in-future",
        "signing-time-mismatch",
        "partially-encrypted",
        "malformed-mime",
        "too-many-layers",
        "unwrap-error",
        *(c for c in _WORDS if c.startswith(("decryption-failed-", "policy-"))),
        "unmatched-receipt",
        "receipt-for-cancelled-document",
        "receipt-names-no-recipient",
        "malformed-delivery-status",
        "malformed-disposition-notification",
        "malformed-demail-confirmation",
        "malformed-receipt",
        "demail-confirmation-unproven",
    }
)

REASONS: dict[str, str] = {code: en for code, (en, _de) in _WORDS.items()} | {
    code: en for code, (en, _de) in _PREFIXED.items()
}
GERMAN_REASONS: dict[str, str] = {en: de for en, de in (*_WORDS.values(), *_PREFIXED.values())}

#: The states a clerk tells apart, and their words (the key of the German translation).
SIGNATURE_STATES = {
    "valid": "signature valid",
    "invalid": "signature invalid",
    "none": "not signed",
}
GERMAN_REASONS |= {
    "signature valid": "Signatur gültig",
    "signature invalid": "Signatur ungültig",
    "not signed": "nicht signiert",
    "reason not recorded": "Grund nicht erfasst",
}


def _english(code: str) -> str:
    if code in REASONS:
        return REASONS[code]
    prefix, sep, detail = code.partition(":")
    if sep and prefix in _PREFIXED:
        return f"{_PREFIXED[prefix][0]} ({detail})"
    return code


def reason_words(code: str, locale: Locale | None = None) -> str:
    """One code in words (in ``locale``'s language); an unknown code is shown as it is."""
    english = _english(str(code))
    if locale is None:
        return english
    prefix, sep, detail = str(code).partition(":")
    if sep and prefix in _PREFIXED and str(code) not in REASONS:
        return f"{locale.t(_PREFIXED[prefix][0])} ({detail})"
    return locale.t(english)


def reasons_words(codes: Iterable[Any], locale: Locale | None = None) -> str:
    """Several codes in words, ``; ``-separated, each once."""
    return "; ".join(dict.fromkeys(reason_words(str(c), locale) for c in codes))


@dataclass(frozen=True)
class SignatureState:
    """``valid``, ``invalid`` (status invalid, untrusted or error) or ``none``, with the reasons why."""

    state: str
    status: str
    reasons: tuple[str, ...] = ()

    def text(self, locale: Locale | None = None) -> str:
        """``signature invalid: the content was changed after signing`` (in ``locale``'s language)."""
        head = SIGNATURE_STATES[self.state]
        head = locale.t(head) if locale is not None else head
        if self.state != "invalid":
            return head
        why = (
            reasons_words(self.reasons, locale)
            if self.reasons
            else (locale.t("reason not recorded") if locale is not None else "reason not recorded")
        )
        return f"{head}: {why}"

    def to_json(self) -> dict[str, Any]:
        """The manifest's form: the state, the machine reasons and the English words."""
        return {"state": self.state, "status": self.status, "reasons": list(self.reasons), "text": self.text()}


def signature_state(verdict: Mapping[str, Any] | None) -> SignatureState | None:
    """The signature's state from a verdict in its JSON form; ``None`` without a verdict."""
    if not verdict:
        return None
    signature = verdict.get("signature") or {}
    status = str(signature.get("status") or "none") if isinstance(signature, Mapping) else "none"
    reasons = [str(r) for r in verdict.get("reasons") or []]
    if status == "valid":
        return SignatureState("valid", status)
    if status == "none":
        return SignatureState("none", status)
    about = tuple(r for r in reasons if r not in NOT_ABOUT_THE_SIGNATURE)
    return SignatureState("invalid", status, about)
