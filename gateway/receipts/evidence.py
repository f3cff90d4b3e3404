"""A matched receipt as delivery steps: the stored receipt file is the evidence of each.

Built from the match as written into the receipt's manifest, so that recovery after a
crash between publishing the entry and committing it derives exactly the steps the
intake would have committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

from gateway.clock import iso
from gateway.receipts.model import DeliveryState, EvidenceKind
from gateway.records.deliveries import DeliveryStep, Evidence


def stated_time(value: str | None) -> str | None:
    """An RFC 5322 date or an ISO 8601 time from a receipt, as the gateway writes times; None if unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        return None  # a time without a zone proves no moment
    return iso(when.astimezone(UTC))


def delivery_steps(
    match: Mapping[str, Any], *, evidence_path: str, sha256: str, at: str, received_at: str | None
) -> list[DeliveryStep]:
    """One step per recipient the receipt speaks for (``match`` is ``ReceiptMatch.to_json()``)."""
    if match.get("problem") is not None or not match.get("document"):
        return []
    kind = cast(EvidenceKind, match["kind"])
    return [
        DeliveryStep(
            document_id=str(match["document"]),
            recipient=str(s["recipient"]),
            state=cast(DeliveryState, s["state"]),
            at=at,
            evidence=Evidence(kind, evidence_path, sha256, str(s.get("detail") or "") or None),
            received_at=received_at,
        )
        for s in match.get("steps", [])
    ]
