"""The audit chain's encoding: one canonical form for the hash, the database and the shipped copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.stores import SQLiteBackend

from gateway.records.chain import (
    EMPTY_HEAD,
    AuditEvent,
    canonical,
    chain_events,
    entry_hash,
    join_canonical,
    verify_chain,
)
from gateway.records.store import Store

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


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from("abc"), json_values), st.dictionaries(st.sampled_from("xyz"), json_values))
def test_joined_canonical_objects_equal_the_canonical_union(low: dict[str, Any], high: dict[str, Any]) -> None:
    assert join_canonical(canonical(low), canonical(high)) == canonical({**low, **high})


def _store(tmp_path: Path) -> Store:
    return SQLiteBackend(tmp_path).open(jsonl=tmp_path / "audit.jsonl")


@settings(deadline=None)
@given(st.lists(events, min_size=1, max_size=6))
def test_a_chained_entry_hashes_its_body_and_ships_as_its_canonical_form(evs: list[AuditEvent]) -> None:
    """The pure chaining: each entry's hash covers its body, links to the one before, and its line is canonical."""
    new = chain_events(evs, after=EMPTY_HEAD, at="2026-12-01T00:00:00.000000Z", default_actor="daemon")
    prev = EMPTY_HEAD.hash
    for entry, ev in zip(new, evs, strict=True):
        line = json.loads(entry.jsonl_line())
        assert entry.jsonl_line() == canonical(line)
        assert line["hash"] == entry.hash == entry_hash({k: v for k, v in line.items() if k != "hash"})
        assert line["prev_hash"] == prev and line["actor"] == (ev.actor or "daemon")
        assert entry.details_json == canonical(ev.details).decode("utf-8")
        prev = entry.hash


@settings(max_examples=30, deadline=None)
@given(st.lists(events, min_size=1, max_size=6))
def test_every_entry_hashes_and_ships_as_its_canonical_form(tmp_path_factory: Any, evs: list[AuditEvent]) -> None:
    """What is chained, what the database holds and the JSON-lines copy are the same entry."""
    tmp = tmp_path_factory.mktemp("chain")
    store = _store(tmp)
    try:
        store.record_events(evs)
        store.export_jsonl()
        stored = list(store.entries())
        n, _, breaks = verify_chain(stored)
        assert (n, breaks) == (len(evs), [])
        lines = (tmp / "audit.jsonl").read_bytes().splitlines()
        assert lines == [canonical(e.to_json()) for e in stored]
        for e, ev in zip(stored, evs, strict=True):
            assert e.hash == entry_hash(e.body())
            assert e.details == json.loads(json.dumps(ev.details))
    finally:
        store.close()


def test_a_rolled_back_entry_is_never_shipped(tmp_path: Path) -> None:
    """Its seq is taken by an entry another connection (mailbox) commits; the copy holds that one."""
    store, other = _store(tmp_path), _store(tmp_path)
    try:
        try:
            with store.unit_of_work() as uow:
                uow.append([AuditEvent("fetched", details={"uid": 1})])
                raise RuntimeError("disk full")
        except RuntimeError:
            pass
        other.record_events([AuditEvent("fetched", details={"uid": 2})])
        store.export_jsonl()
        (line,) = (tmp_path / "audit.jsonl").read_bytes().splitlines()
        assert json.loads(line)["details"] == {"uid": 2}
    finally:
        store.close()
        other.close()
