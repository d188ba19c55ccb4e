"""One event-time order per partition: how far the three inputs of a partition may run ahead.

Partition p of the purchase, visit and complaint topics is one task (as in Kafka Streams).
Events are applied in event-time order across the three topic-partitions: an event is applied
only once every input that may still deliver an earlier event has caught up to its time.
An input *may* deliver an earlier event while the broker holds data of it that this worker
has not received (its high-water mark is past the last offset delivered or applied); its
next event is then no earlier than the largest ``ts`` it delivered so far (its *head*), so
events up to that head are safe and later ones wait. The wait is bounded, as Kafka Streams
bounds it with ``max.task.idle.ms`` (KIP-353, KIP-695): an input that delivers nothing for
``max_task_idle_ms`` while others wait stops holding them back. Unlike Kafka Streams, the
bound also covers an input whose data is known to be on the broker: an offset that is never
delivered (a transaction marker, a compacted record) would otherwise stall the partition for
good, so the default (10 s) is far above a fetch under load instead.

The order can still differ from the exact event-time merge when an input stays idle past the
bound (its events then arrive late), when one topic-partition itself holds events out of
``ts`` order, when data is produced to an input after the worker's last fetch found it caught
up (a caught-up input does not hold the others back, as in Kafka Streams with
``max.task.idle.ms`` = 0), and for the first bound after a worker starts (the heads are not
stored). Late
events are applied exactly and evaluated at the customer's own clock (engine.timeline).

Events held back are kept in Redis with the partition's fenced commit (the ``held`` key), so
the consumer may commit their offsets: a crash loses nothing and re-applies nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from streams.codec import DecodedEvent

__all__ = ["EventTimeMerge", "Highwater", "pack_held", "unpack_held"]

Highwater = Callable[[str, int], int | None]  # (topic, partition) -> broker high-water mark


@dataclass
class EventTimeMerge:
    """Tracks each input topic-partition's head and idle time; gives a partition's frontier.

    ``highwater`` is None when the caller knows nothing about the broker (batch tests, tools):
    then nothing waits and the merge is the per-batch sort alone.
    """

    topics: Sequence[str]
    idle_s: float
    highwater: Highwater | None = None
    monotonic: Callable[[], float] = time.monotonic
    _head: dict[tuple[str, int], int] = field(default_factory=dict)
    _delivered: dict[tuple[str, int], int] = field(default_factory=dict)
    _waiting_since: dict[tuple[str, int], float] = field(default_factory=dict)
    expired: int = 0  # how many times an idle input stopped holding the others back

    def observe(self, topic: str, partition: int, offset: int, ts: int) -> None:
        """A message of ``topic``/``partition`` was delivered (valid or not)."""
        tp = (topic, partition)
        self._delivered[tp] = max(self._delivered.get(tp, -1), offset)
        if ts > self._head.get(tp, -1):
            self._head[tp] = ts
        self._waiting_since.pop(tp, None)

    def frontier(self, partition: int, applied: dict[str, int]) -> float:
        """Largest event time that may be applied now on ``partition`` (inf: no bound).

        ``applied`` is the partition's fence: the last applied offset per input topic.
        """
        if self.highwater is None:
            return math.inf
        bound = math.inf
        now = self.monotonic()
        for topic in self.topics:
            tp = (topic, partition)
            high = self.highwater(topic, partition)
            delivered = max(self._delivered.get(tp, -1), applied.get(topic, -1))
            if high is not None and high - 1 <= delivered:
                self._waiting_since.pop(tp, None)
                continue  # caught up: nothing earlier can come from this input
            since = self._waiting_since.setdefault(tp, now)
            if now - since >= self.idle_s:
                if since > 0:
                    self.expired += 1
                    self._waiting_since[tp] = 0.0  # count one expiry per idle spell
                continue
            bound = min(bound, self._head.get(tp, -1))
        return bound

    def forget(self, partition: int) -> None:
        """Drop what is known of a partition (it was revoked)."""
        for topic in self.topics:
            tp = (topic, partition)
            self._head.pop(tp, None)
            self._delivered.pop(tp, None)
            self._waiting_since.pop(tp, None)


class _StoredHeld(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A held event as stored: an array of DecodedEvent's fields in order, the complaint
    category last and only when there is one (so a value with no category reads exactly as
    before categories were kept, and a worker of that version can still read it)."""

    event_id: str
    customer_id: str
    kind: int
    ts: int
    cents: int
    severity: int
    resolved: int
    complaint: int
    refers: int
    category: str = ""


_held_encoder = msgspec.msgpack.Encoder()
_held_decoder = msgspec.msgpack.Decoder(list[_StoredHeld])


def pack_held(events: Sequence[DecodedEvent]) -> bytes:
    """Held events as one stored value (b"" for none)."""
    if not events:
        return b""
    rows: list[tuple[str | int, ...]] = []
    for e in events:
        fields: tuple[str | int, ...] = (
            e.event_id,
            e.customer_id,
            e.kind,
            e.ts,
            e.cents,
            e.severity,
            e.resolved,
            e.complaint,
            e.refers,
        )
        rows.append((*fields, e.category) if e.category else fields)
    return _held_encoder.encode(rows)


def unpack_held(blob: bytes) -> list[DecodedEvent]:
    """The events of a stored held value."""
    if not blob:
        return []
    return [DecodedEvent(*msgspec.structs.astuple(h)) for h in _held_decoder.decode(blob)]
