"""Per-entry digests of a long trail, kept in 32 bytes each instead of one object per entry.

Verification needs one digest per entry after the chain has been read: the shipped
line's sha256, for the JSON-lines comparison. A dict holds each as a key, a value and an
object of its own, which for millions of
entries is most of the process's memory; a chain numbered 1, 2, 3 … fits in one
``bytearray`` indexed by seq. Whatever does not fit that (a gap, a value that is not a
plain digest: only a damaged trail has them) is kept in a small dict beside it, so the
mapping answers exactly what a dict would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

_SIZE = 32


class DigestsBySeq(Mapping[int, bytes]):
    """seq -> 32-byte digest, filled in chain order with ``add``."""

    def __init__(self) -> None:
        self._dense = bytearray()
        self._count = 0  # seqs 1.._count live in _dense
        self._other: dict[int, bytes] = {}

    def add(self, seq: int, digest: bytes) -> None:
        if seq == self._count + 1 and len(digest) == _SIZE and not self._other:
            self._dense += digest
            self._count = seq
        else:
            self._other[seq] = digest

    def __getitem__(self, seq: int) -> bytes:
        if isinstance(seq, int) and 1 <= seq <= self._count:
            at = (seq - 1) * _SIZE
            return bytes(self._dense[at : at + _SIZE])
        return self._other[seq]

    def __contains__(self, seq: object) -> bool:
        return (isinstance(seq, int) and 1 <= seq <= self._count) or seq in self._other

    def __iter__(self) -> Iterator[int]:
        yield from range(1, self._count + 1)
        yield from self._other

    def __len__(self) -> int:
        return self._count + len(self._other)

    def dense_prefix(self, n: int) -> bytes | None:
        """The digests of seqs 1..n joined, when all of them are held in order; else None."""
        if n > self._count:
            return None
        return bytes(self._dense[: n * _SIZE]) if n < self._count else bytes(self._dense)

    def last(self) -> int:
        """The highest seq held (0 when empty), without walking every key."""
        return max(self._count, max(self._other, default=0))
