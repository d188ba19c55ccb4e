"""The batch forms of the key helpers equal their one-at-a-time definitions."""

from __future__ import annotations

import random
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.keys import (
    PartitionKeys,
    bucket_of,
    buckets_of,
    event_digest,
    event_digests,
    partition_for,
    partitions_for,
)

IDS = st.lists(st.text(max_size=40), max_size=60)


@settings(max_examples=200, derandomize=True)
@given(ids=IDS, partitions=st.sampled_from([1, 3, 8, 12, 64, 1000]))
def test_partitions_for_is_kafkas_murmur2(ids: list[str], partitions: int) -> None:
    assert partitions_for(ids, partitions) == [partition_for(c, partitions) for c in ids]


def test_partitions_for_many_ids_of_every_length() -> None:
    rnd = random.Random(3)
    alphabet = string.printable + "éü中😀\x00"
    # one length group per length 0..40 (tails of 0..3 bytes), and mixed lengths in one call
    ids = ["".join(rnd.choices(alphabet, k=rnd.randint(0, 40))) for _ in range(3000)]
    for partitions in (1, 8, 12, 1000):
        assert partitions_for(ids, partitions) == [partition_for(c, partitions) for c in ids]
    same = [f"c{i:07d}" for i in range(500)]
    assert partitions_for(same, 8) == [partition_for(c, 8) for c in same]


@settings(max_examples=100, derandomize=True)
@given(ids=IDS)
def test_batch_digests_buckets_and_markers(ids: list[str]) -> None:
    assert event_digests(ids) == [event_digest(e) for e in ids]
    assert buckets_of(ids, 1024) == [bucket_of(c, 1024) for c in ids]
    keys = PartitionKeys("p", 5)
    assert keys.forgotten_many(ids) == [keys.forgotten(c) for c in ids]
