"""Mailbox leases: which node works a mailbox, under which epoch, until when.

Several gateway nodes on one database must never work one mailbox at the same time. A
lease row per mailbox names its holder (the node), an epoch that grows by one at every
acquisition, and an expiry judged by the database's clock, so the nodes' own clocks may
differ. The epoch is the fence: every commit a mailbox worker makes carries the epoch it
holds (``Fence``) and is refused, in the same transaction, once the row shows another
holder or a newer epoch. A node that was paused past its lease and wakes up therefore
cannot write after another has taken the mailbox over, whatever it still believes.

The values here are plain data and the audit events that describe lease changes; the
SQL lives in each backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.records.chain import AuditEvent


@dataclass(frozen=True)
class Lease:
    """One mailbox's lease row; ``expires_at`` in the database's clock (UTC, ``Z``)."""

    mailbox: str
    holder: str
    epoch: int
    expires_at: str
    #: Whether the database's clock was past ``expires_at`` when the row was read.
    expired: bool = False
    #: Whether the holder gave it up (a clean stop) rather than letting it expire.
    released: bool = False

    @property
    def fence(self) -> Fence:
        return Fence(self.mailbox, self.holder, self.epoch)

    def to_json(self) -> dict[str, object]:
        return {
            "mailbox": self.mailbox,
            "holder": self.holder,
            "epoch": self.epoch,
            "expires_at": self.expires_at,
            "expired": self.expired,
            "released": self.released,
        }


@dataclass(frozen=True)
class Fence:
    """What a fenced commit requires of the lease row: this holder, this epoch."""

    mailbox: str
    node: str
    epoch: int


@dataclass(frozen=True)
class Acquisition:
    """The outcome of an attempt to take a lease: ``lease`` when granted; ``before``: the row as it was."""

    lease: Lease | None
    before: Lease | None

    @property
    def granted(self) -> bool:
        return self.lease is not None

    @property
    def taken_over(self) -> bool:
        """Granted from another node whose lease had expired unreleased (it died, or was paused past it)."""
        before = self.before
        return (
            self.lease is not None and before is not None and before.holder != self.lease.holder and not before.released
        )


def acquired_event(got: Acquisition) -> AuditEvent:
    """``lease-acquired`` (free, or this node's own from before) or ``lease-taken-over`` (another node's, expired)."""
    assert got.lease is not None
    lease, before = got.lease, got.before
    details: dict[str, object] = {
        "mailbox": lease.mailbox,
        "node": lease.holder,
        "epoch": lease.epoch,
        "expires_at": lease.expires_at,
    }
    if before is None:
        return AuditEvent("lease-acquired", details=details)
    details.update(from_node=before.holder, from_epoch=before.epoch)
    if got.taken_over:
        details.update(from_expired_at=before.expires_at)
        return AuditEvent("lease-taken-over", details=details)
    details.update(from_released=before.released)
    return AuditEvent("lease-acquired", details=details)


def released_event(lease: Lease) -> AuditEvent:
    return AuditEvent("lease-released", details={"mailbox": lease.mailbox, "node": lease.holder, "epoch": lease.epoch})


def lost_event(fence: Fence, reason: str) -> AuditEvent:
    """The node's own record that it stopped working a mailbox because its lease was gone."""
    details = {"mailbox": fence.mailbox, "node": fence.node, "epoch": fence.epoch, "reason": reason}
    return AuditEvent("lease-lost", details=details)
