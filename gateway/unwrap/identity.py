"""Who a message is from, and whether a signer is that sender: one parser for every scheme.

A signature only says who signed; the clerk reads the From header. "Verified" therefore
needs the two to be the same address, and S/MIME, OpenPGP (and De-Mail) must agree on what
"the same" means and on what the header says, so all of them go through the functions here.

"What the header says" is what a mail program shows, not what one parser makes of it.
CPython reads ``From: eve@example.org <boss@example.org>`` as ``eve@example.org`` (and
records a defect) where mail programs show ``boss@example.org``; a display name such as
``"boss@example.org" <eve@example.org>`` shows an address that is not the one signed for
(the "ID attacks" of the Johnny research). Such a header names no clear address: the
address it yields is None with the reason ``from-ambiguous``, whatever the signature says.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.errors import ObsoleteHeaderDefect
from email.policy import default as _default_policy
from typing import Literal

from gateway.mime.cut import Entity
from gateway.mime.headers import decode_header_text

__all__ = [
    "Identity",
    "Reading",
    "from_values",
    "identity_of",
    "matching_signer",
    "read_addresses",
    "read_identity",
    "same_address",
    "single_from",
]

#: How clearly one address header names its addresses.
Reading = Literal["clear", "ambiguous", "unparseable"]

# Something a reader takes for an address: text, "@", text, without the characters that
# delimit addresses in a header. Run over the decoded, NFKC-folded value, so a full-width
# or small "@" (U+FF20, U+FE6B) and encoded words count as well.
_ADDRESS_LIKE = re.compile(r"[^\s@<>()\[\]\",;:\\]+@[^\s@<>()\[\]\",;:\\]+")
_TRAILING_PUNCTUATION = ".!?"


@dataclass(frozen=True)
class Identity:
    """What the identity headers of one header block say (the message, or an opened layer).

    ``sender`` and ``reply_to`` hold one entry per address named, in order; None stands for
    a header value that names no clear address (it cannot be shown to be anybody).
    """

    from_addr: str | None
    #: Why there is no single clear From address (empty exactly when ``from_addr`` is set).
    from_reasons: tuple[str, ...] = ()
    sender: tuple[str | None, ...] = ()
    reply_to: tuple[str | None, ...] = ()


def read_identity(entity: Entity) -> Identity:
    """The From, Sender and Reply-To of ``entity``'s own header block (one pass over it)."""
    found: dict[str, list[str]] = {"from": [], "sender": [], "reply-to": []}
    for key, value in entity.headers:
        values = found.get(key.lower())
        if values is not None:
            values.append(value)
    return _identity(tuple(found["from"]), tuple(found["sender"]), tuple(found["reply-to"]))


def identity_of(from_: Sequence[str], sender: Sequence[str] = (), reply_to: Sequence[str] = ()) -> Identity:
    """The identity that these From, Sender and Reply-To header values state."""
    return _identity(tuple(from_), tuple(sender), tuple(reply_to))


@functools.lru_cache(maxsize=1024)
def _identity(from_: tuple[str, ...], sender: tuple[str, ...], reply_to: tuple[str, ...]) -> Identity:
    """Cached by the values, as :func:`read_addresses`: the same correspondents write again."""
    from_addr, from_reasons = from_values(from_)
    return Identity(from_addr=from_addr, from_reasons=from_reasons, sender=_named(sender), reply_to=_named(reply_to))


def _named(values: Sequence[str]) -> tuple[str | None, ...]:
    out: list[str | None] = []
    for value in values:
        reading, addresses = read_addresses(value)
        out.extend(addresses if reading == "clear" and addresses else (None,))
    return tuple(out)


def single_from(entity: Entity) -> tuple[str | None, tuple[str, ...]]:
    """The one From address (addr-spec) of ``entity``, or None with reasons."""
    return from_values(entity.header_all("from"))


def from_values(values: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """The one clear address of the From header values, or None with reasons.

    A message with several From headers or several addresses in one is not from anybody
    alone, so it can never be verified as from one of them; nor is one whose From a mail
    program may show differently from how it is read here (``from-ambiguous``).
    """
    if not values:
        return None, ("no-from",)
    if len(values) > 1:
        return None, ("multiple-from",)
    reading, addresses = read_addresses(values[0])
    if len(addresses) > 1:
        return None, ("multiple-from",)
    if reading == "unparseable" or not addresses:
        return None, ("from-unparseable",)
    if reading == "ambiguous":
        return None, ("from-ambiguous",)
    return addresses[0], ()


@functools.lru_cache(maxsize=1024)
def read_addresses(value: str) -> tuple[Reading, tuple[str, ...]]:
    """The addr-specs of one address header value (From, Sender, Reply-To) and how clearly it names them.

    Parsed by ``email`` (RFC 5322 address lists, groups, comments, RFC 2047 display names).
    ``ambiguous``: the parser recorded a defect other than an obsolete but unambiguous form
    (``Dr. Alice <…>`` has an unquoted period, an obsolete route is ignored by everyone),
    an address contains a control or format character, or the value shows an address other
    than the ones it names (in a display name, a comment, or beside an angle address).
    ``unparseable``: no address at all, or not of the form local@domain.

    Cached by the value: correspondents write again and again, and the parse is not cheap
    next to the rest of the verdict. A pure function of the string, so a hit is exact.
    """
    try:
        header = _default_policy.header_factory("From", value)
        addresses = tuple(str(a.addr_spec) for a in header.addresses)
        defects = tuple(header.defects)
    except Exception:  # noqa: BLE001 - the email parser has no single error type
        return "unparseable", ()
    if not addresses or not all(_is_mailbox(addr) for addr in addresses):
        return "unparseable", addresses
    if any(not isinstance(d, ObsoleteHeaderDefect) for d in defects):
        return "ambiguous", addresses
    if any(_has_hidden_characters(addr) for addr in addresses):
        return "ambiguous", addresses
    named = [unicodedata.normalize("NFKC", addr) for addr in addresses]
    if any(not any(same_address(shown, addr) for addr in named) for shown in _addresses_shown(value)):
        return "ambiguous", addresses
    return "clear", addresses


def _is_mailbox(addr: str) -> bool:
    local, at_sign, domain = addr.rpartition("@")
    return bool(at_sign and local and domain) and not any(c.isspace() for c in addr)


def _has_hidden_characters(addr: str) -> bool:
    """Control, format (zero-width, bidi) or unassigned characters: what a reader cannot see."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in addr)


def _addresses_shown(value: str) -> list[str]:
    """Every address-like text a reader sees in the header value, anywhere in it."""
    text = unicodedata.normalize("NFKC", decode_header_text(value))
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return [m.group().rstrip(_TRAILING_PUNCTUATION) for m in _ADDRESS_LIKE.finditer(text)]


def same_address(a: str, b: str) -> bool:
    """Local parts compared exactly, domains case-insensitively (RFC 5321 §2.4)."""
    la, _, da = a.rpartition("@")
    lb, _, db = b.rpartition("@")
    return la == lb and da.lower() == db.lower()


def matching_signer(signer_emails: Sequence[str], from_addr: str | None) -> str | None:
    """The signer's address that is the From address, or None (also when there is no From)."""
    if from_addr is None:
        return None
    for email in signer_emails:
        if same_address(email, from_addr):
            return email
    return None
