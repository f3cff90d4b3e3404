"""The audit chain's encoding: one canonical form for the hash, the database and the shipped copy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.stores import SQLiteBackend

from gateway.records.chain import (
    EMPTY_HEAD,
    AuditEvent,
    ChainChecker,
    ChainHead,
    ChainRow,
    canonical,
    chain_events,
    entry_hash,
    join_canonical,
    row_entry,
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


def _rows(evs: list[AuditEvent]) -> list[ChainRow]:
    new = chain_events(evs, after=EMPTY_HEAD, at="2026-12-01T00:00:00.000000Z", default_actor="daemon")
    return [
        (
            e.seq,
            e.at,
            e.event,
            e.actor,
            e.message,
            e.case,
            e.document,
            e.correspondent,
            e.details_json,
            e.prev_hash,
            e.hash,
        )
        for e in new
    ]


def _reformatted(row: ChainRow) -> ChainRow:
    """The same details in another JSON form: the entry is unchanged, only its text is not canonical."""
    return (*row[:8], json.dumps(json.loads(row[8]), indent=1), *row[9:])  # type: ignore[return-value]


def _altered(row: ChainRow) -> ChainRow:
    return (*row[:2], row[2] + "!", *row[3:])  # type: ignore[return-value]


MUTATIONS = {
    "none": lambda rows, i: rows,
    "reformatted": lambda rows, i: [*rows[:i], _reformatted(rows[i]), *rows[i + 1 :]],
    "altered": lambda rows, i: [*rows[:i], _altered(rows[i]), *rows[i + 1 :]],
    "deleted": lambda rows, i: rows[:i] + rows[i + 1 :],
    "swapped": lambda rows, i: [*rows[:i], *rows[i : i + 2][::-1], *rows[i + 2 :]],
    "unreadable": lambda rows, i: [*rows[:i], (*rows[i][:8], "{", *rows[i][9:]), *rows[i + 1 :]],
}


@settings(deadline=None)
@given(st.lists(events, min_size=2, max_size=6), st.sampled_from(sorted(MUTATIONS)), st.integers(0, 4))
def test_the_streaming_checker_finds_what_the_entry_check_finds(evs: list[AuditEvent], how: str, at: int) -> None:
    """Rows hashed as stored give the same breaks, head and shipped lines as parsed entries."""
    rows = MUTATIONS[how](_rows(evs), min(at, len(evs) - 2))
    checker = ChainChecker()
    lines = [checker.check(r) for r in rows]
    if how == "unreadable":
        assert [b.kind for b in checker.breaks] == ["altered-entry"]
        return
    entries = [row_entry(r) for r in rows]
    assert (checker.count, checker.prev, checker.breaks) == verify_chain(entries)
    assert lines == [hashlib.sha256(canonical(e.to_json())).digest() for e in entries]


#: ``MUTATIONS`` and a column of the wrong type (a hand-edited row): the canonical body cannot be built.
BATCH_MUTATIONS = {
    **MUTATIONS,
    "wrong-type": lambda rows, i: [*rows[:i], (*rows[i][:3], None, *rows[i][4:]), *rows[i + 1 :]],
}


@settings(deadline=None)
@given(st.lists(events, min_size=2, max_size=6), st.sampled_from(sorted(BATCH_MUTATIONS)), st.integers(0, 4))
def test_the_batch_check_finds_what_the_row_check_finds(evs: list[AuditEvent], how: str, at: int) -> None:
    """``check_entries`` (``audit verify --since``'s loop) judges a batch as ``check_entry`` judges each row."""
    rows = BATCH_MUTATIONS[how](_rows(evs), min(at, len(evs) - 2))
    one, batch = ChainChecker(), ChainChecker()
    for r in rows:
        one.check_entry(r)
    batch.check_entries(rows[:1])
    batch.check_entries(rows[1:])
    assert (batch.count, batch.prev, batch.expected_seq, batch.breaks) == (
        one.count,
        one.prev,
        one.expected_seq,
        one.breaks,
    )
    assert bool(batch.breaks) == (how not in ("none", "reformatted")), how


def test_the_checker_continues_from_a_proven_head() -> None:
    """Started at entry 3's head, entry 4 must link to it; a foreign head is a broken link."""
    rows = _rows([AuditEvent("fetched", details={"n": n}) for n in range(6)])
    checker = ChainChecker(ChainHead(3, rows[2][10]))
    for r in rows[3:]:
        checker.check(r)
    assert (checker.count, checker.breaks, checker.prev) == (3, [], rows[-1][10])
    stranger = ChainChecker(ChainHead(3, "ab" * 32))
    stranger.check(rows[3])
    assert [b.kind for b in stranger.breaks] == ["broken-link"]
