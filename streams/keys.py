"""Redis key layout. Every key of partition p carries the hash tag ``{p<p>}`` so that one
partition's keys share a Redis Cluster slot: per-partition scripts and transactions work on
a cluster, and state moves with its partition.

    <prefix>:{p<p>}:b:<bucket>        hash: customer_id -> packed state record
                                      (engine.state.STATE_DTYPE bytes); bucket = crc32(id) mod
                                      the partition's bucket count, so each hash stays small
                                      enough for Redis's compact listpack encoding
    <prefix>:{p<p>}:fence             hash: <input topic> -> last applied offset,
                                      wm -> watermark (epoch s), gen -> write generation,
                                      tok -> token of the last commit,
                                      nb -> bucket count the states were written with
    <prefix>:{p<p>}:due               sorted set: bucket scored by a lower bound of the
                                      earliest due time (epoch s) of its customers
    <prefix>:{p<p>}:dd:<day>:<shard>  set of 64-bit event-id digests (as integers, so Redis
                                      keeps them in a compact intset), by event day and
                                      digest mod the shard count
    <prefix>:{p<p>}:ddays             sorted set of the days that have a dedupe set
    <prefix>:{p<p>}:pop               this partition's population sketch (JSON)
    <prefix>:{p<p>}:fg:<digest>       forget marker: event-time cutoff of a forgotten customer
    <prefix>:{p<p>}:outbox            hash: commit token -> the output records of a committed
                                      batch not yet acknowledged by the broker (streams.outbox)
    <prefix>:{p<p>}:held              events fetched but held back by the event-time merge
                                      (streams.merge), packed (string)
    <prefix>:{p<p>}:quarantine        hash: customer_id -> a state record that did not decode
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from kafka.partitioner.default import murmur2

__all__ = [
    "DEFAULT_BUCKETS",
    "PartitionKeys",
    "bucket_of",
    "buckets_of",
    "event_digest",
    "event_digests",
    "key_partition",
    "partition_for",
    "partitions_for",
]

DEFAULT_BUCKETS = 1024  # state hashes per partition (CUSTSCORE_STATE_BUCKETS)


def bucket_of(customer_id: str, buckets: int) -> int:
    """The state hash of a customer within its partition (CRC-32 of the UTF-8 id)."""
    return zlib.crc32(customer_id.encode("utf-8")) % buckets


def buckets_of(customer_ids: Iterable[str], buckets: int) -> list[int]:
    """:func:`bucket_of` of each customer id."""
    crc32 = zlib.crc32
    return [crc32(c.encode("utf-8")) % buckets for c in customer_ids]


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, positive mod)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def partition_for(customer_id: str, partitions: int) -> int:
    """The partition of a customer id's events (its UTF-8 bytes are the message key)."""
    return key_partition(customer_id.encode("utf-8"), partitions)


_MURMUR_M = np.uint32(0x5BD1E995)
_MURMUR_SEED = 0x9747B28C
_VECTOR_MIN = 16  # fewer keys: the scalar murmur2 is quicker than numpy's per-call overhead


def partitions_for(customer_ids: Sequence[str], partitions: int) -> list[int]:
    """:func:`partition_for` of each customer id, murmur2 vectorised over ids of one length
    (the same 32-bit arithmetic as Kafka's, so the same partitions)."""
    keys = [c.encode("utf-8") for c in customer_ids]
    if len(keys) < _VECTOR_MIN:
        return [key_partition(key, partitions) for key in keys]
    out = [0] * len(keys)
    by_length: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        by_length.setdefault(len(key), []).append(i)
    for length, idx in by_length.items():
        rows = np.frombuffer(b"".join([keys[i] for i in idx]), dtype=np.uint8)
        rows = rows.reshape(len(idx), length)
        h = np.full(len(idx), _MURMUR_SEED ^ length, dtype=np.uint32)
        whole = length & ~3
        words = np.ascontiguousarray(rows[:, :whole]).view("<u4")
        for j in range(whole // 4):
            k = words[:, j] * _MURMUR_M
            k ^= k >> 24
            k *= _MURMUR_M
            h *= _MURMUR_M
            h ^= k
        extra = length - whole
        if extra >= 3:
            h ^= rows[:, whole + 2].astype(np.uint32) << 16
        if extra >= 2:
            h ^= rows[:, whole + 1].astype(np.uint32) << 8
        if extra >= 1:
            h ^= rows[:, whole]
            h *= _MURMUR_M
        h ^= h >> 13
        h *= _MURMUR_M
        h ^= h >> 15
        for i, partition in zip(idx, ((h & 0x7FFFFFFF) % partitions).tolist(), strict=True):
            out[i] = partition
    return out


def event_digest(event_id: str) -> int:
    """Signed 64-bit digest of an event id for de-duplication (collisions ~ n^2 / 2^65)."""
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def event_digests(event_ids: Iterable[str]) -> list[int]:
    """:func:`event_digest` of each event id."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return [
        from_bytes(blake2b(e.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
        for e in event_ids
    ]


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The keys of one partition."""

    prefix: str
    partition: int
    buckets: int = DEFAULT_BUCKETS

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{p{self.partition}}}"

    def state(self, customer_id: str) -> tuple[str, str]:
        """(hash key, field) of a customer's state record."""
        return self.bucket(bucket_of(customer_id, self.buckets)), customer_id

    def bucket(self, bucket: int) -> str:
        return f"{self.tag}:b:{bucket}"

    def bucket_keys(self, buckets: Iterable[int]) -> list[str]:
        """:meth:`bucket` of each bucket."""
        prefix = f"{self.tag}:b:"
        return [f"{prefix}{bucket}" for bucket in buckets]

    @property
    def bucket_pattern(self) -> str:
        return f"{self.tag}:b:*"

    @property
    def fence(self) -> str:
        return f"{self.tag}:fence"

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    def dedupe(self, day: int, shard: int) -> str:
        return f"{self.tag}:dd:{day}:{shard}"

    @property
    def dedupe_days(self) -> str:
        return f"{self.tag}:ddays"

    def forgotten(self, customer_id: str) -> str:
        """Forget marker: holds the event-time cutoff below which the customer stays erased.

        Named by a digest, so no key or value left behind contains the customer id.
        """
        digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=10).hexdigest()
        return f"{self.tag}:fg:{digest}"

    def forgotten_many(self, customer_ids: Iterable[str]) -> list[str]:
        """:meth:`forgotten` of each customer id."""
        prefix = f"{self.tag}:fg:"
        blake2b = hashlib.blake2b
        return [
            prefix + blake2b(c.encode("utf-8"), digest_size=10).hexdigest() for c in customer_ids
        ]

    @property
    def outbox(self) -> str:
        """Records of committed batches not yet acknowledged by the broker (token -> records)."""
        return f"{self.tag}:outbox"

    @property
    def held(self) -> str:
        """Events fetched but held back by the event-time merge (streams.merge), packed."""
        return f"{self.tag}:held"

    @property
    def quarantine(self) -> str:
        """Stored records that could not be decoded (customer id -> original bytes)."""
        return f"{self.tag}:quarantine"

    @property
    def counters(self) -> str:
        """Hash of the marketing loop's counters (contacts, outcomes, suppressed contacts,
        complaints by category), incremented by the fenced commit (docs/outcomes.md)."""
        return f"{self.tag}:counters"

    @property
    def population(self) -> str:
        return f"{self.tag}:pop"
