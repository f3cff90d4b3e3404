"""Who a message is from, and whether a signer is that sender: one parser for every scheme.

A signature only says who signed; the clerk reads the From header. "Verified" therefore
needs the two to be the same address, and S/MIME and OpenPGP must agree on what
"the same" means, so both go through the functions here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from email.policy import default as _default_policy

from gateway.mime.cut import Entity

__all__ = ["from_values", "matching_signer", "same_address", "single_from"]


def single_from(entity: Entity) -> tuple[str | None, tuple[str, ...]]:
    """The one From address (addr-spec) of ``entity``, or None with reasons."""
    return from_values(entity.header_all("from"))


def from_values(values: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """The one address of the From header values, or None with reasons; display names are ignored.

    A message with several From headers or several addresses in one is not from anybody
    alone, so it can never be verified as from one of them.
    """
    if not values:
        return None, ("no-from",)
    if len(values) > 1:
        return None, ("multiple-from",)
    return _from_value(values[0])


@functools.lru_cache(maxsize=1024)
def _from_value(value: str) -> tuple[str | None, tuple[str, ...]]:
    """One From header value, parsed by ``email`` (RFC 5322 address lists, groups, comments).

    Cached by the value: correspondents write again and again, and the parse is not cheap
    next to the rest of the verdict. A pure function of the string, so a hit is exact.
    """
    try:
        header = _default_policy.header_factory("From", value)
        addresses = header.addresses
    except Exception:  # noqa: BLE001 - the email parser has no single error type
        return None, ("from-unparseable",)
    if len(addresses) > 1:
        return None, ("multiple-from",)
    if not addresses:
        return None, ("from-unparseable",)
    addr = str(addresses[0].addr_spec)
    local, at_sign, domain = addr.rpartition("@")
    if not at_sign or not local or not domain or any(c.isspace() for c in addr):
        return None, ("from-unparseable",)
    return addr, ()


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
