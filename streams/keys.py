"""Redis key layout. Every key of partition p carries the hash tag ``{p<p>}`` so that one
partition's keys share a Redis Cluster slot: per-partition scripts and transactions work on
a cluster, and state moves with its partition.

    <prefix>:{p<p>}:s:<customer_id>   packed state record (engine.state.STATE_DTYPE bytes)
    <prefix>:{p<p>}:fence             hash: <input topic> -> last applied offset,
                                      wm -> watermark (epoch s), gen -> write generation
    <prefix>:{p<p>}:due               sorted set: customer_id scored by due time (epoch s)
    <prefix>:{p<p>}:dd:<day>          set of 8-byte event-id digests, by event day
    <prefix>:{p<p>}:ddays             sorted set of the days that have a dedupe set
    <prefix>:{p<p>}:pop               this partition's population sketch (JSON)
    <prefix>:{p<p>}:fg:<digest>       forget marker: event-time cutoff of a forgotten customer
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kafka.partitioner.default import murmur2

__all__ = ["PartitionKeys", "event_digest", "key_partition", "partition_for"]


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (murmur2, positive mod)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def partition_for(customer_id: str, partitions: int) -> int:
    """The partition of a customer id's events (its UTF-8 bytes are the message key)."""
    return key_partition(customer_id.encode("utf-8"), partitions)


def event_digest(event_id: str) -> bytes:
    """8-byte digest of an event id for de-duplication (collisions ~ n^2 / 2^65)."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The keys of one partition."""

    prefix: str
    partition: int

    @property
    def tag(self) -> str:
        return f"{self.prefix}:{{p{self.partition}}}"

    def state(self, customer_id: str) -> str:
        return f"{self.tag}:s:{customer_id}"

    @property
    def state_pattern(self) -> str:
        return f"{self.tag}:s:*"

    @property
    def fence(self) -> str:
        return f"{self.tag}:fence"

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    def dedupe(self, day: int) -> str:
        return f"{self.tag}:dd:{day}"

    @property
    def dedupe_days(self) -> str:
        return f"{self.tag}:ddays"

    def forgotten(self, customer_id: str) -> str:
        """Forget marker: holds the event-time cutoff below which the customer stays erased.

        Named by a digest, so no key or value left behind contains the customer id.
        """
        digest = hashlib.blake2b(customer_id.encode("utf-8"), digest_size=10).hexdigest()
        return f"{self.tag}:fg:{digest}"

    @property
    def population(self) -> str:
        return f"{self.tag}:pop"

    def customer_from_state_key(self, key: str) -> str:
        return key[len(self.tag) + 3 :]
