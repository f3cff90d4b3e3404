"""The audit chain's maths: one canonical form, entry hashes, and checking a chain. Pure.

Each entry holds the sha256 of the previous entry, so deleting, reordering or editing one
breaks the chain from there on. The same canonical bytes are hashed, stored and shipped
as the JSON-lines copy, so an auditor can re-hash any copy of an entry and compare.

One small API for every feature: ``AuditEvent(type, message=..., case=..., details=...)``;
a store turns events into entries with ``chain_events`` inside the transaction that
changes the state they describe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from json.encoder import encode_basestring
from typing import Any

from gateway.clock import iso, utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """One thing that happened, before it gets its place in the chain."""

    type: str
    message: str | None = None
    case: str | None = None
    document: str | None = None
    correspondent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None


def with_node(events: Sequence[AuditEvent], node: str | None) -> Sequence[AuditEvent]:
    """``events`` naming the node that writes them (``details["node"]``), for a trail several nodes share.

    The node goes into the details, which the hash already covers, so the canonical form
    and every existing chain stay as they are. An event that names a node already keeps it.
    """
    if not node:
        return events
    return [ev if "node" in ev.details else replace(ev, details={**ev.details, "node": node}) for ev in events]


@dataclass(frozen=True)
class AuditEntry:
    """An event with its place in the chain."""

    seq: int
    at: str
    event: str
    actor: str
    message: str | None
    case: str | None
    document: str | None
    correspondent: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """The fields covered by ``hash`` (everything except the hash itself)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "event": self.event,
            "actor": self.actor,
            "message": self.message,
            "case": self.case,
            "document": self.document,
            "correspondent": self.correspondent,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AuditEntry:
        return cls(
            d["seq"],
            d["at"],
            d["event"],
            d["actor"],
            d.get("message"),
            d.get("case"),
            d.get("document"),
            d.get("correspondent"),
            d.get("details", {}),
            d["prev_hash"],
            d["hash"],
        )


@dataclass(frozen=True)
class ChainHead:
    """Where the next entry attaches: the last entry's number and hash (0 and GENESIS when empty)."""

    seq: int
    hash: str


EMPTY_HEAD = ChainHead(0, GENESIS)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(obj: Any) -> bytes:
    """The byte form that is hashed: sorted keys, no whitespace, UTF-8.

    One encoder for all calls: ``json.dumps`` with options builds a new encoder each
    time, which costs more than encoding an entry's small dicts.
    """
    return _CANONICAL.encode(obj).encode("utf-8")


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def join_canonical(*objects: bytes) -> bytes:
    """The canonical form of the union of canonical JSON objects, without encoding again.

    Valid when every key of one object sorts before every key of the next (then sorted
    keys and compact separators make the union's form the objects' members joined by
    commas); ``tests/test_audit_chain.py`` checks it against ``canonical``. It lets the
    largest part of an entry, its details, be encoded once and used for the hash, the
    database column and the JSON-lines copy.
    """
    members = [o[1:-1] for o in objects if o != b"{}"]
    return b"{" + b",".join(members) + b"}"


def now_iso() -> str:
    """The trail's timestamp: the gateway's one format (``gateway.clock``)."""
    return iso(utcnow())


@dataclass(slots=True)
class NewEntry:
    """An event placed in the chain, in the forms a store writes and the JSON-lines copy ships.

    ``details_json`` is the canonical encoding of the details, made once for the hash, the
    stored column and the copy. ``parts`` are the canonical groups of keys around the
    hash (see ``chain_events``), kept so the copy's line needs no second encoding.
    """

    seq: int
    at: str
    event: str
    actor: str
    message: str | None
    case: str | None
    document: str | None
    correspondent: str | None
    details_json: str
    prev_hash: str
    hash: str
    parts: tuple[bytes, bytes, bytes, bytes]

    def jsonl_line(self) -> bytes:
        """canonical(entry.to_json()), joined from the parts."""
        head, details, middle, tail = self.parts
        return join_canonical(head, details, middle, b'{"hash":"' + self.hash.encode("ascii") + b'"}', tail)


def chain_events(events: Sequence[AuditEvent], *, after: ChainHead, at: str, default_actor: str) -> list[NewEntry]:
    """Give ``events`` their places after ``after``; every hash links to the one before.

    Keys in order: actor..correspondent | details | document, event | hash | message,
    prev_hash, seq; each group is encoded once for the hashed body and the shipped line.
    """
    out: list[NewEntry] = []
    seq, prev = after.seq, after.hash
    for ev in events:
        seq += 1
        actor = ev.actor or default_actor
        details_json = canonical(ev.details)
        parts = (
            canonical({"actor": actor, "at": at, "case": ev.case, "correspondent": ev.correspondent}),
            b'{"details":' + details_json + b"}",
            canonical({"document": ev.document, "event": ev.type}),
            canonical({"message": ev.message, "prev_hash": prev, "seq": seq}),
        )
        h = hashlib.sha256(join_canonical(*parts)).hexdigest()
        out.append(
            NewEntry(
                seq,
                at,
                ev.type,
                actor,
                ev.message,
                ev.case,
                ev.document,
                ev.correspondent,
                details_json.decode("utf-8"),
                prev,
                h,
                parts,
            )
        )
        prev = h
    return out


@dataclass(frozen=True)
class ChainBreak:
    """One place where the record does not hold together, named for the auditor."""

    kind: str
    seq: int | None
    detail: str
    expected: str | None = None
    found: str | None = None
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify_chain(entries: Iterable[AuditEntry]) -> tuple[int, str, list[ChainBreak]]:
    """Recompute every hash and link; returns (entries seen, head hash, breaks)."""
    breaks: list[ChainBreak] = []
    prev = GENESIS
    expected_seq = 1
    n = 0
    for e in entries:
        n += 1
        if e.seq != expected_seq:
            breaks.append(
                ChainBreak("sequence-gap", e.seq, "entry numbers are not consecutive", str(expected_seq), str(e.seq))
            )
        if e.prev_hash != prev:
            breaks.append(
                ChainBreak("broken-link", e.seq, "prev_hash does not match the previous entry", prev, e.prev_hash)
            )
        actual = entry_hash(e.body())
        if actual != e.hash:
            breaks.append(ChainBreak("altered-entry", e.seq, "entry content does not match its hash", e.hash, actual))
        prev = e.hash
        expected_seq = e.seq + 1
    return n, prev, breaks


#: An entry as the store reads it, column for column: seq, at, event, actor, message, case,
#: document, correspondent, details (its canonical JSON text), prev_hash, hash.
ChainRow = tuple[int, str, str, str, str | None, str | None, str | None, str | None, str, str, str]


def row_entry(row: ChainRow) -> AuditEntry:
    """The entry a row holds; ``ValueError`` when its details are not JSON."""
    seq, at, event, actor, message, case, document, corr, details, prev, h = row
    return AuditEntry(seq, at, event, actor, message, case, document, corr, json.loads(details), prev, h)


def row_canonical(row: ChainRow) -> tuple[bytes, bytes]:
    """(hashed body, shipped line) of a row, joined from its columns without parsing its details.

    The stored details are the canonical text the hash was made over, so an untouched row
    gives back exactly the bytes that were hashed; anything else changes the hash, and
    ``ChainChecker`` then judges the row the slow way. ``TypeError`` for a column of the
    wrong type (only a hand-edited row has one).
    """
    head, tail, h = _row_parts(row)
    return (head + tail).encode("utf-8"), (head + ',"hash":' + encode_basestring(h) + tail).encode("utf-8")


def row_body(row: ChainRow) -> bytes:
    """The hashed body alone (``row_canonical``'s first half), for checks that ship no lines."""
    head, tail, _ = _row_parts(row)
    return (head + tail).encode("utf-8")


def _row_parts(row: ChainRow) -> tuple[str, str, str]:
    """The canonical JSON before and after the hash's place, and the stored hash.

    Written out rather than looped: it runs once per entry of the trail.
    """
    seq, at, event, actor, message, case, document, corr, details, prev, h = row
    if type(seq) is not int or type(details) is not str:
        raise TypeError("not a chain row")
    enc = encode_basestring
    head = (
        f'{{"actor":{enc(actor)},"at":{enc(at)},"case":{"null" if case is None else enc(case)},'
        f'"correspondent":{"null" if corr is None else enc(corr)},"details":{details},'
        f'"document":{"null" if document is None else enc(document)},"event":{enc(event)}'
    )
    tail = f',"message":{"null" if message is None else enc(message)},"prev_hash":{enc(prev)},"seq":{seq}}}'
    return head, tail, h


class ChainChecker:
    """``verify_chain`` one row at a time, for trails too long to hold: the same breaks, in order.

    ``check`` hashes each row's canonical bytes as read (``row_canonical``); only a row whose
    hash does not match is parsed and re-encoded (``entry_hash``), so a row that differs
    from its hash in form only (reformatted details) is judged exactly as ``verify_chain``
    judges it. ``after`` is where checking starts: the empty chain, or a head an earlier
    run proved (``audit verify --since``).
    """

    def __init__(self, after: ChainHead = EMPTY_HEAD) -> None:
        self.prev = after.hash
        self.expected_seq = after.seq + 1
        self.count = 0
        self.breaks: list[ChainBreak] = []

    def check(self, row: ChainRow) -> bytes:
        """Check one row against the one before; returns the sha256 of its shipped line."""
        # ``_link`` written out: this runs once per entry of a full verify.
        self.count += 1
        seq, prev, h = row[0], row[9], row[10]
        if seq != self.expected_seq:
            self.breaks.append(
                ChainBreak("sequence-gap", seq, "entry numbers are not consecutive", str(self.expected_seq), str(seq))
            )
        if prev != self.prev:
            self.breaks.append(
                ChainBreak("broken-link", seq, "prev_hash does not match the previous entry", self.prev, prev)
            )
        self.prev = h
        self.expected_seq = seq + 1
        try:
            body, line = row_canonical(row)
        except TypeError:
            return self._slow(row)
        if hashlib.sha256(body).hexdigest() == h:
            return hashlib.sha256(line).digest()
        return self._slow(row)

    def check_entry(self, row: ChainRow) -> None:
        """``check`` without the shipped line's digest: the same breaks, for a run that compares no copy."""
        h = self._link(row)
        try:
            body = row_body(row)
        except TypeError:
            self._slow(row)
            return
        if hashlib.sha256(body).hexdigest() != h:
            self._slow(row)

    def check_entries(self, rows: Sequence[ChainRow]) -> None:
        """``check_entry`` for each row in order, written out as one loop: an auditor's daily
        ``audit verify --since`` spends most of its database time here.

        The canonical body is built as ``_row_parts`` builds it; a row it cannot be built
        from (a column of the wrong type) or whose hash differs goes to ``_slow``, as there.
        """
        enc, sha256, breaks = encode_basestring, hashlib.sha256, self.breaks
        prev, expected = self.prev, self.expected_seq
        for row in rows:
            seq, at, event, actor, message, case, document, corr, details, prev_hash, h = row
            if seq != expected:
                breaks.append(
                    ChainBreak("sequence-gap", seq, "entry numbers are not consecutive", str(expected), str(seq))
                )
            if prev_hash != prev:
                breaks.append(
                    ChainBreak("broken-link", seq, "prev_hash does not match the previous entry", prev, prev_hash)
                )
            prev = h
            expected = seq + 1
            if type(seq) is int and type(details) is str:
                try:
                    body = (
                        f'{{"actor":{enc(actor)},"at":{enc(at)},"case":{"null" if case is None else enc(case)},'
                        f'"correspondent":{"null" if corr is None else enc(corr)},"details":{details},'
                        f'"document":{"null" if document is None else enc(document)},"event":{enc(event)},'
                        f'"message":{"null" if message is None else enc(message)},"prev_hash":{enc(prev_hash)},'
                        f'"seq":{seq}}}'
                    )
                except TypeError:
                    pass
                else:
                    if sha256(body.encode("utf-8")).hexdigest() == h:
                        continue
            self._slow(row)
        self.prev, self.expected_seq = prev, expected
        self.count += len(rows)

    def _link(self, row: ChainRow) -> str:
        """Numbering and link to the entry before; returns the row's stored hash."""
        self.count += 1
        seq, prev, h = row[0], row[9], row[10]
        if seq != self.expected_seq:
            self.breaks.append(
                ChainBreak("sequence-gap", seq, "entry numbers are not consecutive", str(self.expected_seq), str(seq))
            )
        if prev != self.prev:
            self.breaks.append(
                ChainBreak("broken-link", seq, "prev_hash does not match the previous entry", self.prev, prev)
            )
        self.prev = h
        self.expected_seq = seq + 1
        return h

    def _slow(self, row: ChainRow) -> bytes:
        try:
            entry = row_entry(row)
        except ValueError as exc:
            self.breaks.append(ChainBreak("altered-entry", row[0], f"entry details are not JSON: {exc}", row[10], None))
            return hashlib.sha256(repr(row).encode("utf-8", "replace")).digest()
        actual = entry_hash(entry.body())
        if actual != entry.hash:
            self.breaks.append(
                ChainBreak("altered-entry", entry.seq, "entry content does not match its hash", entry.hash, actual)
            )
        return hashlib.sha256(canonical(entry.to_json())).digest()
