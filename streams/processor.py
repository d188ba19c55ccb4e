"""The worker's batch pipeline, free of Faust: decode -> read -> triage -> evaluate -> commit
-> publish.

The Faust agent and timers (streams/worker.py) are thin shells that hand messages and
partition numbers to :class:`BatchProcessor`. Order per batch, per partition (docs/design.md,
"State and guarantees"): first publish any outbox entry a previous owner left; then sort the
messages against the fence, dedupe marks and merge frontier (:mod:`streams.batch_plan`) and
evaluate each customer at its own event and due times (:mod:`streams.evaluation` over
:mod:`engine.timeline`); then write states, due entries, dedupe marks, the applied-offset
fence *and* the batch's output records (the outbox, :mod:`streams.outbox`) in one atomic,
generation-checked commit (:mod:`streams.store`); then publish those records (awaiting broker
acks) and drop the outbox entry. Only then does the agent return and let Faust commit
offsets. A refused commit publishes nothing, so no alert exists whose state change was not
committed. Redis and producer failures are retried with backoff inside the batch, so nothing
is acknowledged before it is written. The timer sweep evaluates due customers through the
same core. This module does only the I/O, locking, retries, metrics and commits; the two
modules named above decide what is applied, written and published, without I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.state import decode_records
from models.bundle import ModelBundle
from models.control_group import NO_CONTROL_GROUP, ControlGroup
from streams.batch_plan import Item, PartitionPlan, RawMessage, triage
from streams.codec import DecodedEvent, EventDecoder, dead_letter_record
from streams.evaluation import (
    Outcome,
    Record,
    TimelineInput,
    due_input,
    evaluate,
    events_input,
)
from streams.keys import bucket_of
from streams.merge import EventTimeMerge, pack_held, unpack_held
from streams.metrics import WorkerMetrics
from streams.outbox import pack_records, unpack_records
from streams.store import Commit, PartitionRead, ReadRequest, RedisStateStore
from streams.topics import TopicTable

__all__ = ["BatchProcessor", "Publisher", "RawMessage", "Retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SWEEP_BUCKETS = 32  # due buckets read per sweep round trip


class Publisher(Protocol):
    """Sends records and returns once the broker acknowledged every one of them."""

    async def send_many(self, records: Sequence[Record]) -> None: ...


@dataclass(frozen=True)
class Retry:
    """Backoff for transient Redis / broker failures inside a batch."""

    first_s: float = 0.05
    max_s: float = 5.0


@dataclass
class _Outbox:
    """Records to publish once committed, and the alert counts to add once published."""

    records: list[Record] = field(default_factory=list)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason label)
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, reason)
    counters: dict[str, int] = field(default_factory=dict)  # committed counter increments

    def add(self, other: _Outbox | Outcome) -> None:
        self.records += other.records
        for label, n in other.alerts.items():
            self.alerts[label] = self.alerts.get(label, 0) + n
        for label, n in other.suppressed.items():
            self.suppressed[label] = self.suppressed.get(label, 0) + n
        for name, n in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + n


class BatchProcessor:
    """Applies batches and timer sweeps; one instance per worker."""

    def __init__(
        self,
        *,
        store: RedisStateStore,
        publisher: Publisher,
        metrics: WorkerMetrics,
        model: ModelBundle,
        decoder: EventDecoder,
        topics: TopicTable,
        live_clock: bool = False,
        wall_clock: Callable[[], float] = time.time,
        retry: Retry = Retry(),
        merge: EventTimeMerge | None = None,
        control: ControlGroup | None = None,
        on_counters: Callable[[dict[str, int]], None] | None = None,
        max_batch_events: int = 20_000,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.model = model
        self.decoder = decoder
        self.topics = topics
        self.live_clock = live_clock
        self.wall_clock = wall_clock
        self.retry = retry
        self._locks: dict[int, asyncio.Lock] = {}
        self.publish_failing_s = 0.0  # how long the current publish has been failing
        self.merge = merge
        self.control = control or NO_CONTROL_GROUP
        # told each published batch's committed counters (the outcome metrics)
        self.on_counters = on_counters
        # a taken batch of envelopes can hold a million events: apply it in slices of whole
        # messages (memory, script size and outbox entry stay bounded)
        self.max_batch_events = max_batch_events
        # per partition: events the event-time merge holds back (mirrors the `held` key as of
        # this worker's last read or commit; absent = not read yet)
        self._held: dict[int, list[DecodedEvent]] = {}
        # per partition: the generation the cached held events belong to (our last commit's)
        self._generation: dict[int, int] = {}
        # per partition: the applied-offset fence of this worker's last read (merge frontier)
        self._applied: dict[int, dict[str, int]] = {}
        # per partition: done once a sweep's commit is published (a later batch waits for it)
        self._publish_gates: dict[int, asyncio.Future[None]] = {}
        # (partition, commit token) of outbox entries a sweep of ours is publishing right now
        self._publishing: set[tuple[int, str]] = set()
        stage = metrics.stage_seconds
        self._stage_read, self._stage_evaluate = stage.labels("read"), stage.labels("evaluate")
        self._stage_commit, self._stage_publish = stage.labels("commit"), stage.labels("publish")

    def lock(self, partition: int) -> asyncio.Lock:
        """The lock that serialises the agent and the timer on one partition."""
        return self._locks.setdefault(partition, asyncio.Lock())

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = self.retry.first_s
        while True:
            try:
                result = await call()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.metrics.redis_errors.inc()
                self.metrics.redis_up.set(0)
                log.warning("%s failed (%s); retrying in %.2fs", what, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.max_s)
                continue
            self.metrics.redis_up.set(1)
            return result

    async def _publish(self, outbox: _Outbox) -> None:
        if not outbox.records:
            return
        delay = self.retry.first_s
        failing_since = 0.0
        while True:
            try:
                await self.publisher.send_many(outbox.records)
                break
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # broker errors come in many types; retry them all
                # visible, not silent: a counter, a gauge of how long, and /healthz (worker)
                failing_since = failing_since or time.monotonic()
                self.publish_failing_s = time.monotonic() - failing_since
                self.metrics.publish_errors.inc()
                self.metrics.publish_failing.set(self.publish_failing_s)
                log.warning("publish failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.max_s)
        if failing_since:
            self.publish_failing_s = 0.0
            self.metrics.publish_failing.set(0)
        for (kind, reason), n in outbox.alerts.items():
            self.metrics.alerts.labels(kind, reason).inc(n)
        for (kind, reason), n in outbox.suppressed.items():
            self.metrics.alerts_suppressed.labels(kind, reason).inc(n)
        if outbox.counters and self.on_counters is not None:
            self.on_counters(outbox.counters)

    # ------------------------------------------------------------------ batches

    async def process(self, messages: Sequence[RawMessage]) -> None:
        """Apply one consumed batch (any mix of input topics and partitions).

        All partitions of the batch share one Redis read round trip, one commit round trip
        (a pipeline of per-partition scripts) and one publish (one wait for broker acks),
        in that order: alerts reach the broker only once the state that produced them is
        committed (the outbox, :mod:`streams.outbox`).
        """
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        now = self.wall_clock()
        by_partition: dict[int, list[Item]] = {}
        per_topic: dict[str, int] = {}
        in_slice = 0
        for msg in messages:
            results = self.decoder.decode_message(msg.topic, msg.partition, msg.key, msg.value, now)
            if in_slice and in_slice + len(results) > self.max_batch_events:
                # apply what came before this message first: each slice commits whole
                # messages (an envelope stays all or nothing), in the consumed order
                await self._run_partitions(by_partition, now)
                by_partition, in_slice = {}, 0
            in_slice += len(results)
            per_topic[msg.topic] = per_topic.get(msg.topic, 0) + len(results)
            by_partition.setdefault(msg.partition, []).extend((msg, d) for d in results)
        for topic, n in per_topic.items():
            self.metrics.events_in.labels(self.topics.inputs.get(topic, "unknown")).inc(n)
        await self._run_partitions(by_partition, now)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def release_held(self, partition: int) -> None:
        """Apply held events of ``partition`` whose time has come (no new message needed)."""
        if self._held.get(partition, True):  # unknown (None) or some held
            await self._run_partitions({partition: []}, self.wall_clock())

    async def _run_partitions(
        self,
        by_partition: dict[int, list[Item]],
        now: float,
    ) -> None:
        partitions = sorted(by_partition)
        async with contextlib.AsyncExitStack() as locks:
            for partition in partitions:  # one global order: no deadlock with the timer
                await locks.enter_async_context(self.lock(partition))
            if self.merge is not None:
                # under the lock: a timer's release never sees these messages' heads before
                # the messages themselves are planned (they would arrive late otherwise)
                for items in by_partition.values():
                    for msg, decoded in items:
                        ts = decoded.ts if isinstance(decoded, DecodedEvent) else -1
                        self.merge.observe(msg.topic, msg.partition, msg.offset, ts)
            plans = [await self._make_plan(p, by_partition[p]) for p in partitions]
            while plans:
                t0 = time.perf_counter()
                in_flight = frozenset(self._publishing)  # before the read: see _flush_pending
                requests = [
                    ReadRequest(plan.partition, plan.customers, plan.event_ids) for plan in plans
                ]
                reads = await self._retrying(
                    "state read", functools.partial(self.store.read_many, requests)
                )
                redis_s = time.perf_counter() - t0
                self._stage_read.observe(redis_s)
                await self._flush_pending(
                    {read.partition: read.outbox for read in reads}, in_flight
                )
                commits: list[Commit] = []
                outboxes: dict[int, _Outbox] = {}
                stale: set[int] = set()
                k0 = time.perf_counter()
                for plan, read in zip(plans, reads, strict=True):
                    self._applied[plan.partition] = read.offsets
                    if read.generation != self._generation.get(plan.partition):
                        # another writer since our held events were read: read them again
                        self._held.pop(plan.partition, None)
                        stale.add(plan.partition)
                        continue
                    outbox = _Outbox()
                    commit = self._plan_partition(plan, read, outbox, now)
                    if commit is not None:
                        commit.outbox = pack_records(outbox.records) if outbox.records else b""
                        commits.append(commit)
                        outboxes[plan.partition] = outbox
                k1 = time.perf_counter()
                self.metrics.kernel_seconds.observe(k1 - k0)
                self._stage_evaluate.observe(k1 - k0)
                refused = await self._commit(commits)
                t2 = time.perf_counter()
                self.metrics.redis_seconds.observe(redis_s + t2 - k1)
                self._stage_commit.observe(t2 - k1)
                committed = [c for c in commits if c.partition not in refused]
                plan_of = {plan.partition: plan for plan in plans}
                for commit in committed:
                    self._generation[commit.partition] = commit.generation + 1
                    # from the plan, not self._held: a sweep whose commit was refused while
                    # ours was in flight may have dropped the partition's entry (it holds no
                    # lock across its commit); ours was generation-checked, so its view stands
                    held = plan_of[commit.partition].still_held
                    self._held[commit.partition] = held
                    self.metrics.merge_held.labels(str(commit.partition)).set(len(held))
                await self._publish_committed(committed, outboxes)
                self._stage_publish.observe(time.perf_counter() - t2)
                for partition in refused:
                    self._held.pop(partition, None)  # re-read what the other writer left
                # A refused partition was written by another worker since our read (it took
                # the partition over, or we are the zombie). Nothing of ours was written or
                # published. Dropping our share would lose it (the agent acks the batch next),
                # so re-read and redo it; the fence skips what the other writer applied.
                plans = [
                    await self._make_plan(plan.partition, plan.items)
                    for plan in plans
                    if plan.partition in refused or plan.partition in stale
                ]

    async def _make_plan(self, partition: int, items: list[Item]) -> PartitionPlan:
        """A partition's plan: its held events (read with the generation they belong to when
        not known), and the event-time frontier from what this worker knows of the inputs.

        The frontier uses the fence offsets of this worker's last read of the partition, so it
        can only be lower than one computed after this read: it never lets an event through
        too early, and it says which customers' states the read needs.
        """
        if partition not in self._held:
            blob, generation = await self._retrying(
                "held read", functools.partial(self.store.held, partition)
            )
            self._held[partition] = unpack_held(blob)
            self._generation[partition] = generation
        frontier = math.inf
        if self.merge is not None:
            expired = self.merge.expired
            frontier = self.merge.frontier(partition, self._applied.get(partition, {}))
            self.metrics.merge_idle_expired.inc(self.merge.expired - expired)
        return PartitionPlan(partition, items, self._held[partition], frontier)

    async def _flush_pending(
        self, pending: dict[int, dict[str, bytes]], in_flight: frozenset[tuple[int, str]]
    ) -> None:
        """Publish outbox entries a previous owner committed but may not have published.

        ``in_flight``: the entries a sweep of ours was publishing when ``pending`` was read
        (taken before the read). They are the sweep's to acknowledge, even if it has done so
        while the read was on its way: checking the set after the read would take an entry
        acknowledged meanwhile for an abandoned one and publish it a second time."""
        acks = [
            (p, token)
            for p, entries in pending.items()
            for token in entries
            if (p, token) not in in_flight
        ]
        if not acks:
            return
        records = [r for p, token in acks for r in unpack_records(pending[p][token])]
        await self._publish(_Outbox(records=records))
        self.metrics.outbox_recovered.inc(len(acks))
        await self._retrying("outbox ack", lambda: self.store.ack_outbox(acks))

    async def _publish_committed(
        self, commits: Sequence[Commit], outboxes: dict[int, _Outbox], gated: bool = True
    ) -> None:
        """Publish what the given (committed) commits hold, then drop their outbox entries.

        ``gated``: first wait for a sweep's publish of the same partitions that committed
        before these commits (alerts of a customer reach the topics in commit order)."""
        if gated:
            gates = [self._publish_gates.get(c.partition) for c in commits]
            await asyncio.gather(*(gate for gate in gates if gate is not None))
        merged = _Outbox()
        for commit in commits:
            merged.add(outboxes[commit.partition])
        await self._publish(merged)
        acks = [(c.partition, c.token) for c in commits if c.outbox]
        await self._retrying("outbox ack", lambda: self.store.ack_outbox(acks))

    def _plan_partition(
        self, plan: PartitionPlan, read: PartitionRead, outbox: _Outbox, now: float
    ) -> Commit | None:
        """Filter one partition's messages, run the kernels; what to publish and commit."""
        triaged = triage(plan, read.offsets, read.seen, read.forgotten)
        self.metrics.fence_skipped.inc(triaged.fence_skipped)
        self.metrics.duplicates.inc(triaged.duplicates)
        self.metrics.forgotten_skipped.inc(triaged.forgotten_skipped)
        for msg, rejected in triaged.rejected:
            self.metrics.dead_letter.labels(rejected.reason).inc()
            record = dead_letter_record(
                rejected=rejected,
                topic=msg.topic,
                partition=msg.partition,
                offset=msg.offset,
                key=msg.key,
                value=msg.value,
                wall_now=now,
            )
            outbox.records.append((self.topics.dead_letter, msg.key, record))
        due, still_held = triaged.due, triaged.still_held
        if not triaged.offsets and len(still_held) == len(plan.held):
            return None  # a redelivery at or below the fence, and nothing to release
        commit = Commit(
            partition=plan.partition,
            generation=read.generation,
            offsets=triaged.offsets,
            cutoffs=triaged.cutoffs,
        )
        if still_held or plan.held:
            commit.held = pack_held(still_held)
        plan.still_held = still_held
        commit.event_ids = [(e.event_id, e.ts) for e in triaged.kept]
        watermark = read.watermark
        if due:
            watermark = max(watermark, max(e.ts for e in due))
            clock = int(now) if self.live_clock else watermark
            states = self._decode(plan.partition, plan.customers, read.blobs, commit)
            timeline = events_input(plan.customers, due)
            self._evaluate(plan.customers, states, timeline, clock, commit, outbox)
        commit.watermark = watermark
        self.metrics.watermark.labels(str(plan.partition)).set(watermark)
        return commit

    def _decode(
        self,
        partition: int,
        customers: Sequence[str],
        blobs: Sequence[bytes | None],
        commit: Commit,
    ) -> npt.NDArray[np.void]:
        """Stored records as current-version states; undecodable ones are quarantined (their
        bytes kept under the customer id, the customer starting afresh) instead of failing
        the batch."""
        decoded = decode_records(blobs)
        if decoded.upgraded:
            self.metrics.state_upgraded.inc(len(decoded.upgraded))
        for i, why in decoded.corrupt:
            blob = blobs[i]
            assert blob is not None
            commit.quarantine[customers[i]] = blob
            self.metrics.state_quarantined.inc()
            log.error(
                "quarantined the state of customer %r (partition %d): %s",
                customers[i],
                partition,
                why,
            )
        return decoded.states

    def _evaluate(
        self,
        customers: list[str],
        states: npt.NDArray[np.void],
        timeline: TimelineInput,
        clock: int,
        commit: Commit,
        outbox: _Outbox,
    ) -> None:
        """Evaluate (:func:`streams.evaluation.evaluate`); states and due times into the
        commit, records and alert counts into the outbox."""
        wall = self.wall_clock()
        outcome = evaluate(
            self.model, customers, states, timeline, clock, wall, self.topics, self.control
        )
        commit.states.update(outcome.states)
        commit.due.update(outcome.due)
        for name, n in outcome.counters.items():
            commit.counters[name] = commit.counters.get(name, 0) + n
        outbox.add(outcome)
        self.metrics.state_writes.inc(len(outcome.states))

    async def _commit(self, commits: list[Commit]) -> set[int]:
        """Commit; the partitions whose commit was refused (nothing of theirs was written)."""
        if not commits:
            return set()
        refused = await self._retrying("state commit", lambda: self.store.commit_many(commits))
        for exc in refused:
            # another worker wrote this partition since we read it: its writes stand
            self.metrics.fence_conflicts.inc()
            log.warning("commit refused: %s", exc)
        return {exc.partition for exc in refused}

    # ------------------------------------------------------------------ timer

    async def sweep(self, partition: int, limit: int) -> int:
        """Evaluate due customers of one partition (:meth:`sweep_many` of ``[partition]``)."""
        return await self.sweep_many([partition], limit)

    async def sweep_many(self, partitions: Sequence[int], limit: int) -> int:
        """Evaluate customers of ``partitions`` at their due times up to each watermark.

        The watermark (wall time in live mode) only says which due times have passed; each
        customer is evaluated at exactly its own due times. The due index names buckets
        (with a lower bound of their earliest due time), so one call reads up to
        ``SWEEP_BUCKETS`` due buckets whole per partition, evaluates their due customers and
        gives each bucket read its exact bound back with the commit.

        Like a batch, every partition is read together, committed in one pipeline and
        published with one wait for acks; unlike a batch, the partition locks are released
        once the commit is written, before the publish and its wait for broker acks, so a
        batch on the same partition is not held up by the sweep's publish. The batch then
        reads the state the sweep committed (no fence conflict between the two), leaves the
        sweep's outbox entry to the sweep (it is in flight, not abandoned) and publishes only
        once the sweep's publish is acknowledged (:meth:`_publish_committed`), so a
        customer's alerts reach the topics in commit order and once.
        Returns at least ``limit`` when a full page of buckets was due somewhere, so the
        timer calls again.
        """
        ordered = sorted(set(partitions))
        if not ordered:
            return 0
        async with contextlib.AsyncExitStack() as locks:
            for partition in ordered:
                await locks.enter_async_context(self.lock(partition))
            in_flight = frozenset(self._publishing)
            pending = await asyncio.gather(
                *(
                    self._retrying("outbox read", functools.partial(self.store.pending_outbox, p))
                    for p in ordered
                )
            )
            await self._flush_pending(dict(zip(ordered, pending, strict=True)), in_flight)
            reads = await asyncio.gather(*(self._sweep_read(p) for p in ordered))
            work: list[tuple[Commit, _Outbox, int]] = []
            full_page = False
            for partition, read in zip(ordered, reads, strict=True):
                if read is None:
                    continue
                full_page |= read.full_page
                work.append(self._sweep_evaluate(partition, read))
            if not work:
                return 0
            commits = [commit for commit, _, _ in work]
            refused = await self._commit(commits)
            committed = [c for c in commits if c.partition not in refused]
            for commit in commits:
                if commit.partition in refused:
                    # another writer has the partition; its own sweep re-scores these
                    self._held.pop(commit.partition, None)
                elif self._generation.get(commit.partition) == commit.generation:
                    self._generation[commit.partition] = commit.generation + 1
            # from here until the publish is acknowledged, a batch on these partitions
            # publishes after us and leaves our outbox entries alone
            loop = asyncio.get_running_loop()
            for commit in committed:
                self._publish_gates[commit.partition] = loop.create_future()
                self._publishing.add((commit.partition, commit.token))
        try:
            outboxes = {commit.partition: outbox for commit, outbox, _ in work}
            await self._publish_committed(committed, outboxes, gated=False)
        finally:
            for commit in committed:
                self._publishing.discard((commit.partition, commit.token))
                gate = self._publish_gates.pop(commit.partition, None)
                if gate is not None and not gate.done():
                    gate.set_result(None)
        swept = sum(n for commit, _, n in work if commit.partition not in refused)
        self.metrics.swept.inc(swept)
        return max(swept, limit) if full_page else swept

    async def _sweep_read(self, partition: int) -> _SweepRead | None:
        """A partition's due customers and their states (None: nothing due, or the
        partition was written between the bucket read and the state read)."""
        watermark, _ = await self._retrying(
            "fence read", functools.partial(self.store.fence, partition)
        )
        clock = int(self.wall_clock()) if self.live_clock else watermark
        if clock <= 0:
            return None
        buckets = await self._retrying(
            "due read", functools.partial(self.store.due_buckets, partition, clock, SWEEP_BUCKETS)
        )
        if not buckets:
            return None
        generation, contents = await self._retrying(
            "bucket read", functools.partial(self.store.read_buckets, partition, buckets)
        )
        customers: list[str] = []
        bucket_due: dict[int, int] = {}
        for bucket, content in zip(buckets, contents, strict=True):
            dues = decode_records([blob for _, blob in content]).states["due"].tolist()
            bucket_due[bucket] = min((d for d in dues if d > clock), default=0)
            customers += [c for (c, _), d in zip(content, dues, strict=True) if 0 < d <= clock]
        read = await self._retrying(
            "state read", functools.partial(self.store.read, partition, customers, [])
        )
        if read.generation != generation:
            return None  # another writer since the bucket read: the next tick reads afresh
        return _SweepRead(clock, customers, bucket_due, read, len(buckets) >= SWEEP_BUCKETS)

    def _sweep_evaluate(self, partition: int, sweep: _SweepRead) -> tuple[Commit, _Outbox, int]:
        """Evaluate a partition's due customers at their due times up to the sweep's clock;
        the commit (with the buckets' exact due bounds), what to publish, and how many
        customers were evaluated."""
        read, customers, bucket_due = sweep.read, sweep.customers, sweep.bucket_due
        commit = Commit(
            partition=partition,
            generation=read.generation,
            cutoffs={c: f for c, f in zip(customers, read.forgotten, strict=True) if f},
        )
        states = self._decode(partition, customers, read.blobs, commit)
        timeline = due_input(states)
        outbox = _Outbox()
        self._evaluate(customers, states, timeline, sweep.clock, commit, outbox)
        for customer, when in commit.due.items():
            if when > 0:
                bucket = bucket_of(customer, self.store.buckets)
                current = bucket_due[bucket]
                bucket_due[bucket] = min(current, when) if current else when
        commit.bucket_due = bucket_due
        commit.outbox = pack_records(outbox.records) if outbox.records else b""
        return commit, outbox, len(timeline.rows)


@dataclass
class _SweepRead:
    """What a sweep read of one partition found due."""

    clock: int
    customers: list[str]
    bucket_due: dict[int, int]  # bucket -> earliest due time after the clock (0 = none)
    read: PartitionRead
    full_page: bool  # SWEEP_BUCKETS buckets were due: more may be
