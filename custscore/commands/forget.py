"""``custscore forget CUSTOMER_ID``: erase a customer's state record, tombstone their scores.

The state record lives under the customer's partition hash tag, so one script deletes it
atomically with writing a forget marker (also on Redis Cluster), named by a
digest of the id, holding the partition watermark: replays of the customer's past events are
skipped, events newer than the cutoff start a new record, and a batch that read the customer
before the forget cannot write it back. Then a tombstone (key =
``customer_id``, null value) goes to the compacted ``customer.scores`` topic, so compaction
removes the last published scores too. An unknown customer still gets the tombstone (scores may
have been published by a worker whose state was lost); the report says nothing was stored.

Not erased: de-duplication sets hold 8-byte digests of event ids, not customer data, and expire
with the retention; the due index holds bucket numbers, not customer ids; alerts already
published stay on their (non-compacted) topics.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from custscore.clients import (
    ensure_topics_or_fail,
    open_redis,
    started_producer,
    state_store,
)

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["ForgetResult", "forget_customer", "register"]


@dataclass(frozen=True)
class ForgetResult:
    """What a forget erased and where the tombstone went."""

    customer_id: str
    partition: int
    state_deleted: bool
    tombstone_topic: str
    tombstone_partition: int
    tombstone_offset: int

    @property
    def erased_anything(self) -> bool:
        """True when a state record existed."""
        return self.state_deleted

    def summary(self) -> str:
        """The human report, one line."""
        where = (
            f"tombstone written to {self.tombstone_topic} "
            f"(partition {self.tombstone_partition}, offset {self.tombstone_offset})"
        )
        if not self.erased_anything:
            return (
                f"nothing was stored for customer {self.customer_id!r} "
                f"(partition {self.partition}); {where}"
            )
        return (
            f"forgot customer {self.customer_id!r}: deleted the state record "
            f"(partition {self.partition}); {where}"
        )


async def forget_customer(settings: Settings, customer_id: str) -> ForgetResult:
    """Delete the customer's state record and mark them forgotten, then tombstone their scores."""
    from streams.keys import partition_for

    partition = partition_for(customer_id, settings.partitions)
    # Broker first: when it is down, nothing is deleted and the command can simply be rerun.
    async with started_producer(settings) as producer:
        await ensure_topics_or_fail(settings)
        async with open_redis(settings) as client:
            deleted, _ = await state_store(client, settings).forget(
                partition, customer_id
            )
        meta = await producer.send_and_wait(
            settings.topic_scores, value=None, key=customer_id.encode("utf-8")
        )
    return ForgetResult(
        customer_id=customer_id,
        partition=partition,
        state_deleted=deleted,
        tombstone_topic=settings.topic_scores,
        tombstone_partition=int(meta.partition),
        tombstone_offset=int(meta.offset),
    )


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore forget``."""
    parser.add_argument("customer_id", metavar="CUSTOMER_ID")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(forget_customer(settings, args.customer_id))
    print(result.summary())
    return 0
