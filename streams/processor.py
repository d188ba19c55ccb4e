"""The worker's batch pipeline, free of Faust: decode -> load -> kernels -> publish -> commit.

The Faust agent and timer (streams/app.py) are thin shells that hand messages and
partition numbers to :class:`BatchProcessor`. Order per batch, per partition (DESIGN.md §4):
publish alerts, dead letters and score updates (awaiting broker acks), then write states,
due entries, dedupe marks and the applied-offset fence in one atomic commit; only then does
the agent return and let Faust commit offsets. Redis and producer failures are retried with
backoff inside the batch, so nothing is acknowledged before it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.alerts import KIND_SEGMENT_CHANGE, detect_alerts
from engine.kernels import apply_events
from engine.params import ScoringParams
from engine.scoring import PopulationCuts, evaluate
from engine.segments import REASON_NAMES, SCHEME_NAMES
from engine.state import MAX_TS, decode_states, new_events
from models.scorefile import score_records
from streams.alerts import AlertContext, build_alert, build_score_updates
from streams.codec import DecodedEvent, EventDecoder, Rejected, dead_letter_record
from streams.keys import bucket_of
from streams.metrics import WorkerMetrics
from streams.store import Commit, PartitionRead, ReadRequest, RedisStateStore

__all__ = ["BatchProcessor", "Model", "OutputTopics", "Publisher", "RawMessage", "Retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_TYPE_NAMES = {1: "purchase", 2: "visit", 3: "complaint"}
SWEEP_BUCKETS = 32  # due buckets read per sweep round trip


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed message, as the agent got it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class OutputTopics:
    segment_change: str
    win_back: str
    scores: str
    dead_letter: str


class Publisher(Protocol):
    """Sends records and returns once the broker acknowledged every one of them."""

    async def send_many(
        self, records: Sequence[tuple[str, bytes | None, bytes | None]]
    ) -> None: ...


@dataclass
class Model:
    """The scoring model in force: parameters, segment map, version and population cuts."""

    params: ScoringParams
    rfm_map: npt.NDArray[np.uint8]
    version: str
    cuts: PopulationCuts
    cuts_computed_at: float = 0.0  # wall time; 0 = calibrated cuts from the params file


@dataclass(frozen=True)
class Retry:
    """Backoff for transient Redis / broker failures inside a batch."""

    first_s: float = 0.05
    max_s: float = 5.0


@dataclass
class _Plan:
    """One partition's share of a batch."""

    partition: int
    items: list[tuple[RawMessage, DecodedEvent | Rejected]]

    def __post_init__(self) -> None:
        self.valid = [(m, d) for m, d in self.items if isinstance(d, DecodedEvent)]
        self.customers = list(dict.fromkeys(d.customer_id for _, d in self.valid))

    def request(self) -> ReadRequest:
        return ReadRequest(
            self.partition, self.customers, [(d.event_id, d.ts) for _, d in self.valid]
        )


@dataclass
class _Outbox:
    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)


class BatchProcessor:
    """Applies batches and timer sweeps; one instance per worker."""

    def __init__(
        self,
        *,
        store: RedisStateStore,
        publisher: Publisher,
        metrics: WorkerMetrics,
        model: Model,
        decoder: EventDecoder,
        outputs: OutputTopics,
        input_topics: dict[str, str],  # topic -> event type name
        live_clock: bool = False,
        wall_clock: Callable[[], float] = time.time,
        retry: Retry = Retry(),
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.metrics = metrics
        self.model = model
        self.decoder = decoder
        self.outputs = outputs
        self.input_topics = input_topics
        self.live_clock = live_clock
        self.wall_clock = wall_clock
        self.retry = retry
        self._locks: dict[int, asyncio.Lock] = {}

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
        while True:
            try:
                await self.publisher.send_many(outbox.records)
                break
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # broker errors come in many types; retry them all
                log.warning("publish failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.max_s)
        for (kind, reason), n in outbox.counts.items():
            self.metrics.alerts.labels(kind, reason).inc(n)
        for reason, n in outbox.suppressed.items():
            self.metrics.alerts_suppressed.labels(reason).inc(n)

    # ------------------------------------------------------------------ batches

    async def process(self, messages: Sequence[RawMessage]) -> None:
        """Apply one consumed batch (any mix of input topics and partitions).

        All partitions of the batch share one Redis read round trip, one publish (one wait
        for broker acks) and one commit round trip (a pipeline of per-partition scripts).
        """
        started = time.perf_counter()
        self.metrics.batch_size.observe(len(messages))
        now = self.wall_clock()
        by_partition: dict[int, list[tuple[RawMessage, DecodedEvent | Rejected]]] = {}
        per_topic: dict[str, int] = {}
        for msg in messages:
            per_topic[msg.topic] = per_topic.get(msg.topic, 0) + 1
            decoded = self.decoder.decode(msg.topic, msg.key, msg.value, now)
            by_partition.setdefault(msg.partition, []).append((msg, decoded))
        for topic, n in per_topic.items():
            self.metrics.events_in.labels(self.input_topics.get(topic, "unknown")).inc(n)
        partitions = sorted(by_partition)
        async with contextlib.AsyncExitStack() as held:
            for partition in partitions:  # one global order: no deadlock with the timer
                await held.enter_async_context(self.lock(partition))
            plans = [_Plan(p, by_partition[p]) for p in partitions]
            while plans:
                t0 = time.perf_counter()
                requests = [plan.request() for plan in plans]
                reads = await self._retrying(
                    "state read", functools.partial(self.store.read_many, requests)
                )
                redis_s = time.perf_counter() - t0
                outbox = _Outbox()
                commits = []
                k0 = time.perf_counter()
                for plan, read in zip(plans, reads, strict=True):
                    commit = self._plan_partition(plan, read, outbox, now)
                    if commit is not None:
                        commits.append(commit)
                self.metrics.kernel_seconds.observe(time.perf_counter() - k0)
                await self._publish(outbox)
                t1 = time.perf_counter()
                refused = await self._commit(commits)
                self.metrics.redis_seconds.observe(redis_s + time.perf_counter() - t1)
                # A refused partition was written by another worker since our read (it took
                # the partition over, or we are the zombie). Dropping our share would lose it:
                # the agent acks the batch next, and a later commit moves the fence past it.
                # Re-read and redo it instead; the fence skips what the other writer applied.
                plans = [plan for plan in plans if plan.partition in refused]
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _plan_partition(
        self, plan: _Plan, read: PartitionRead, outbox: _Outbox, now: float
    ) -> Commit | None:
        """Filter one partition's messages, run the kernels; what to publish and commit."""
        seen = dict(zip([id(m) for m, _ in plan.valid], read.seen, strict=True))
        cutoff = {c: f for c, f in zip(plan.customers, read.forgotten, strict=True) if f}
        offsets: dict[str, int] = {}
        kept: list[DecodedEvent] = []
        kept_ids: set[str] = set()
        for msg, decoded in plan.items:
            offsets[msg.topic] = max(offsets.get(msg.topic, -1), msg.offset)
            if msg.offset <= read.offsets.get(msg.topic, -1):
                self.metrics.fence_skipped.inc()
                continue
            if isinstance(decoded, Rejected):
                self.metrics.dead_letter.labels(decoded.reason).inc()
                outbox.records.append(
                    (
                        self.outputs.dead_letter,
                        msg.key,
                        dead_letter_record(
                            rejected=decoded,
                            topic=msg.topic,
                            partition=msg.partition,
                            offset=msg.offset,
                            key=msg.key,
                            value=msg.value,
                            wall_now=now,
                        ),
                    )
                )
                continue
            if seen[id(msg)] or decoded.event_id in kept_ids:
                self.metrics.duplicates.inc()
                continue
            if decoded.ts <= cutoff.get(decoded.customer_id, 0):
                self.metrics.forgotten_skipped.inc()  # a replay of a forgotten customer's past
                continue
            kept_ids.add(decoded.event_id)
            kept.append(decoded)
        new_offsets = {t: o for t, o in offsets.items() if o > read.offsets.get(t, -1)}
        if not new_offsets:
            return None  # everything was at or below the fence: a redelivery
        commit = Commit(
            partition=plan.partition,
            generation=read.generation,
            offsets=new_offsets,
            cutoffs=cutoff,
        )
        watermark = read.watermark
        if kept:
            watermark = max(watermark, max(e.ts for e in kept))
            clock = int(now) if self.live_clock else watermark
            self._apply(
                plan.customers, read.blobs, kept, clock, read.watermark, commit, outbox, now
            )
        commit.watermark = watermark
        self.metrics.watermark.labels(str(plan.partition)).set(watermark)
        return commit

    def _apply(
        self,
        customers: list[str],
        blobs: list[bytes | None],
        kept: list[DecodedEvent],
        clock: int,
        before_clock: int,
        commit: Commit,
        outbox: _Outbox,
        now: float,
    ) -> None:
        model = self.model
        states = decode_states(blobs)
        before = states.copy()
        row_of = {c: i for i, c in enumerate(customers)}
        rows_of_events = [row_of[e.customer_id] for e in kept]
        events = new_events(len(kept))
        events["row"] = rows_of_events
        events["kind"] = [e.kind for e in kept]
        events["severity"] = [e.severity for e in kept]
        events["resolved"] = [e.resolved for e in kept]
        events["ts"] = [e.ts for e in kept]
        events["cents"] = [e.cents for e in kept]
        latest: dict[int, DecodedEvent] = {}
        for row, e in zip(rows_of_events, kept, strict=True):
            if row not in latest or e.ts >= latest[row].ts:
                latest[row] = e
        severity = apply_events(states, events, model.params.complaint_halflife_days)
        rows = np.fromiter(sorted(latest), dtype=np.int32, count=len(latest))
        self._score_and_alert(
            customers,
            states,
            before,
            rows,
            clock,
            lambda row: before_clock or clock,
            severity,
            commit,
            outbox,
            now,
            cause=lambda row: ({"type": "event", "event_id": latest[row].event_id}, latest[row].ts),
        )
        for e in kept:
            commit.event_ids.append((e.event_id, e.ts))

    def _score_and_alert(
        self,
        customers: list[str],
        states: npt.NDArray[np.void],
        before: npt.NDArray[np.void],
        rows: npt.NDArray[np.int32],
        clock: int,
        before_at: Callable[[int], int],
        severity: npt.NDArray[np.uint8],
        commit: Commit,
        outbox: _Outbox,
        now: float,
        cause: Callable[[int], tuple[dict[str, Any], int]],
    ) -> None:
        model = self.model
        params, cuts = model.params, model.cuts
        scores = evaluate(states, clock, params, cuts, model.rfm_map, rows)
        alerts = detect_alerts(states, rows, scores, clock, params, cuts, severity)
        due = np.clip(scores["due"], 0, MAX_TS)
        states["due"][rows] = due
        touched = [customers[row] for row in rows.tolist()]
        records = score_records(touched, scores)  # shared by the alerts and score updates
        before_records: dict[int, dict[str, Any]] = {}
        alerting = sorted({int(a["index"]) for a in alerts if a["kind"] == KIND_SEGMENT_CHANGE})
        by_time: dict[int, list[int]] = {}  # the scores before a change, at its own time
        for k in alerting:
            by_time.setdefault(before_at(int(rows[k])), []).append(k)
        for at, ks in by_time.items():
            picked = rows[ks]
            old = evaluate(before, at, params, cuts, model.rfm_map, picked)
            records_before = score_records([touched[k] for k in ks], old)
            before_records.update(zip(ks, records_before, strict=True))
        for a in alerts:
            k = int(a["index"])
            row = int(rows[k])
            cause_info, event_ts = cause(row)
            ctx = AlertContext(model.version, customers[row], event_ts, cause_info, now)
            if a["suppressed"]:
                reason = _reason_name(a)
                outbox.suppressed[reason] = outbox.suppressed.get(reason, 0) + 1
                continue
            kind, body = build_alert(ctx, a, records[k], before_records.get(k), states[row])
            topic = (
                self.outputs.segment_change if kind == "segment_change" else self.outputs.win_back
            )
            outbox.records.append((topic, customers[row].encode(), body))
            label = (kind, _reason_name(a))
            outbox.counts[label] = outbox.counts.get(label, 0) + 1
        updates = build_score_updates(model.version, clock, records)
        for k, (row, customer) in enumerate(zip(rows.tolist(), touched, strict=True)):
            outbox.records.append((self.outputs.scores, customer.encode(), updates[k]))
            commit.states[customer] = states[row : row + 1].tobytes()
            commit.due[customer] = int(due[k])
        self.metrics.state_writes.inc(len(rows))

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
        """Re-score customers of ``partition`` whose due time has passed; returns how many.

        The due index names buckets (with a lower bound of their earliest due time), so one call
        reads up to ``SWEEP_BUCKETS`` due buckets whole, re-scores their due customers and gives
        each bucket read its exact bound back with the commit. It returns at least ``limit``
        when a full page of buckets was due, so the timer calls again.
        """
        async with self.lock(partition):
            watermark, _ = await self._retrying("fence read", lambda: self.store.fence(partition))
            clock = int(self.wall_clock()) if self.live_clock else watermark
            if clock <= 0:
                return 0
            buckets = await self._retrying(
                "due read", lambda: self.store.due_buckets(partition, clock, SWEEP_BUCKETS)
            )
            if not buckets:
                return 0
            generation, contents = await self._retrying(
                "bucket read", lambda: self.store.read_buckets(partition, buckets)
            )
            customers: list[str] = []
            bucket_due: dict[int, int] = {}
            for bucket, content in zip(buckets, contents, strict=True):
                dues = decode_states([blob for _, blob in content])["due"].tolist()
                bucket_due[bucket] = min((d for d in dues if d > clock), default=0)
                customers += [c for (c, _), d in zip(content, dues, strict=True) if 0 < d <= clock]
            swept = await self._rescore(partition, generation, clock, customers, bucket_due)
            if swept is None:
                return 0  # another writer since the bucket read: the next tick reads afresh
            self.metrics.swept.inc(swept)
            # a full page of due buckets: more may be due, so the timer calls again
            return swept if len(buckets) < SWEEP_BUCKETS else max(swept, limit)

    async def _rescore(
        self,
        partition: int,
        generation: int,
        clock: int,
        customers: list[str],
        bucket_due: dict[int, int],
    ) -> int | None:
        """Re-score due ``customers``, set their buckets' exact due bounds; how many (None:
        the partition was written since the buckets were read, nothing done)."""
        read = await self._retrying(
            "state read", lambda: self.store.read(partition, customers, [])
        )
        if read.generation != generation:
            return None
        states = decode_states(read.blobs)
        present = np.flatnonzero(states["first_seen"] > 0).astype(np.int32)
        commit = Commit(
            partition=partition,
            generation=read.generation,
            cutoffs={c: f for c, f in zip(customers, read.forgotten, strict=True) if f},
        )
        outbox = _Outbox()
        due_before = states["due"].copy()
        self._score_and_alert(
            customers,
            states,
            states.copy(),
            present,
            clock,
            # just before the due time nothing discrete had changed yet
            lambda row: max(int(due_before[row]) - 1, 1) if due_before[row] else clock,
            np.zeros(len(customers), dtype=np.uint8),
            commit,
            outbox,
            self.wall_clock(),
            cause=lambda row: (
                {"type": "timer", "due": int(due_before[row])},
                int(due_before[row]) or clock,
            ),
        )
        for customer, when in commit.due.items():
            if when > 0:
                bucket = bucket_of(customer, self.store.buckets)
                current = bucket_due[bucket]
                bucket_due[bucket] = min(current, when) if current else when
        commit.bucket_due = bucket_due
        await self._publish(outbox)
        # refused: another writer has the partition; its own sweep re-scores these
        await self._commit([commit])
        return len(present)


def _reason_name(alert: np.void) -> str:
    if int(alert["kind"]) == KIND_SEGMENT_CHANGE:
        return SCHEME_NAMES[int(alert["scheme"])]
    return REASON_NAMES[int(alert["reason"])]
