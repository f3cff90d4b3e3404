"""Batches are bounded in count and bytes, and keep every UID once, in order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.inbound.intake import plan_batches


@given(
    st.lists(st.integers(min_value=0, max_value=5000), max_size=200),
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=10_000),
)
def test_batches_cover_all_uids_within_bounds(sizes: list[int], count: int, max_bytes: int) -> None:
    uids = list(range(1, len(sizes) + 1))
    by_uid = dict(zip(uids, sizes, strict=True))
    batches = plan_batches(uids, by_uid, count, max_bytes)
    assert [u for b in batches for u in b] == uids
    for b in batches:
        assert 1 <= len(b) <= count
        assert len(b) == 1 or sum(by_uid[u] for u in b) <= max_bytes


def test_a_message_larger_than_the_bound_travels_alone() -> None:
    assert plan_batches([1, 2, 3], {1: 10, 2: 1000, 3: 10}, 50, 100) == [[1], [2], [3]]
