"""The audit chain's encoding: one canonical form for the hash, the database and the shipped copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.records.audit import (
    AuditEvent,
    AuditTrail,
    canonical,
    entry_hash,
    iter_entries,
    join_canonical,
    verify_chain,
)
from gateway.records.ledger import Ledger

text = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
events = st.builds(
    AuditEvent,
    type=st.sampled_from(["fetched", "verdict", "stored", "moved"]),
    message=st.none() | text,
    case=st.none() | text,
    document=st.none() | text,
    correspondent=st.none() | text,
    details=st.dictionaries(text, json_values, max_size=5),
    actor=st.none() | text,
)


@given(st.dictionaries(st.sampled_from("abc"), json_values), st.dictionaries(st.sampled_from("xyz"), json_values))
def test_joined_canonical_objects_equal_the_canonical_union(low: dict[str, Any], high: dict[str, Any]) -> None:
    assert join_canonical(canonical(low), canonical(high)) == canonical({**low, **high})


def _ledger(tmp_path: Path) -> Ledger:
    trail = AuditTrail(key=None, jsonl_path=tmp_path / "audit.jsonl")
    return Ledger(tmp_path / "ledger.sqlite", audit=trail)


@settings(max_examples=30, deadline=None)
@given(st.lists(events, min_size=1, max_size=6))
def test_every_entry_hashes_and_ships_as_its_canonical_form(tmp_path_factory: Any, evs: list[AuditEvent]) -> None:
    """What is chained, what the database holds and the JSON-lines copy are the same entry."""
    tmp = tmp_path_factory.mktemp("chain")
    ledger = _ledger(tmp)
    try:
        ledger.record_events(evs)
        assert ledger.audit is not None
        ledger.audit.export_jsonl(ledger.conn)
        stored = list(iter_entries(ledger.conn))
        n, _, breaks = verify_chain(stored)
        assert (n, breaks) == (len(evs), [])
        lines = (tmp / "audit.jsonl").read_bytes().splitlines()
        assert lines == [canonical(e.to_json()) for e in stored]
        for e, ev in zip(stored, evs, strict=True):
            assert e.hash == entry_hash(e.body())
            assert e.details == json.loads(json.dumps(ev.details))
    finally:
        ledger.close()


def test_a_rolled_back_entry_is_never_shipped(tmp_path: Path) -> None:
    """Its seq is taken by an entry another connection (mailbox) commits; the copy holds that one."""
    ledger, other = _ledger(tmp_path), _ledger(tmp_path)
    assert ledger.audit is not None
    try:
        try:
            with ledger.transaction() as conn:
                ledger.audit.append(conn, [AuditEvent("fetched", details={"uid": 1})])
                raise RuntimeError("disk full")
        except RuntimeError:
            pass
        other.record_events([AuditEvent("fetched", details={"uid": 2})])
        ledger.audit.export_jsonl(ledger.conn)
        (line,) = (tmp_path / "audit.jsonl").read_bytes().splitlines()
        assert json.loads(line)["details"] == {"uid": 2}
    finally:
        ledger.close()
        other.close()
