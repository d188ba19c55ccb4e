"""The Faust app: one agent over the three input topics, the silence timer and web views.

A thin shell over :class:`streams.processor.BatchProcessor`: the agent hands each batch of
raw messages to it; the timers ask it to sweep owned partitions and refresh the population
snapshot; the views read Redis. Settings are passed in; nothing here reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import numpy as np
from prometheus_client import generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.settings import Settings
from engine.scoring import evaluate
from engine.state import decode_records
from engine.timeline import warm_up
from models.bundle import ModelBundle, load_model
from models.control_group import ControlGroup
from models.scorefile import score_record
from streams.codec import EventDecoder
from streams.kafka import CustscoreApp, KafkaBatchPublisher, faust_broker_options
from streams.keys import partition_for
from streams.merge import EventTimeMerge
from streams.metrics import WorkerMetrics, build_metrics
from streams.outcome_metrics import OutcomeMetrics
from streams.population_refresh import PopulationTracker
from streams.processor import BatchProcessor, RawMessage
from streams.redis_conn import redis_client
from streams.store import RedisStateStore
from streams.topics import TopicTable

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, metrics: WorkerMetrics | None = None) -> CustscoreApp:
    """Build the Faust app for ``settings`` (the worker process runs exactly one)."""
    metrics = metrics or build_metrics()
    bundle: ModelBundle = load_model(
        settings.params_file, window_months=settings.effective_window_months
    )
    app = CustscoreApp(
        settings.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap_servers}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 5),
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        producer_acks=-1,
        producer_max_batch_size=settings.producer_batch_bytes,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        **faust_broker_options(settings),
        env={},  # Faust would read unprefixed variables (BROKER_URL, ...): settings only
    )
    topics = TopicTable.from_settings(settings)
    merge = EventTimeMerge(
        topics=list(topics.inputs),
        idle_s=settings.max_task_idle_ms / 1000.0,
        highwater=lambda topic, partition: _highwater(app, topic, partition),
    )
    source = app.topic(
        *topics.inputs, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    redis = redis_client(settings)
    store = RedisStateStore.from_settings(redis, settings)
    control = ControlGroup(settings.holdout_salt, settings.holdout_fraction)
    outcome_metrics = OutcomeMetrics(metrics.registry)
    processor = BatchProcessor(
        store=store,
        publisher=KafkaBatchPublisher(app),
        metrics=metrics,
        model=bundle,
        decoder=EventDecoder(
            topics.inputs,
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            partitions=settings.partitions,
            max_envelope_events=settings.max_envelope_events,
            max_envelope_bytes=settings.max_envelope_bytes,
        ),
        topics=topics,
        live_clock=settings.live_clock,
        merge=merge,
        control=control,
        on_counters=outcome_metrics.count,
        max_batch_events=settings.max_batch_events,
    )
    population = PopulationTracker(
        redis, store, bundle, settings.partitions, metrics, control, outcome_metrics
    )
    warm_up(bundle.scoring, bundle.cuts, bundle.rfm_map)  # compile before the first batch
    # Everything built so far (modules, the app, numba's dispatchers) lives as long as the
    # process: out of the collector's generations, a batch's garbage collections stop
    # re-walking it (about 10 % of BatchProcessor.process CPU, loadtest/process_bench.py).
    gc.freeze()
    app.custscore = processor  # type: ignore[attr-defined]  # for tests and views

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        (revoked,) = args
        # what the merge knows of a revoked partition is stale when it comes back
        for partition in {tp.partition for tp in revoked}:
            merge.forget(partition)

    def owned_partitions() -> list[int]:
        return sorted(
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == topics.input_topic("purchase")
        )

    last_applied: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset applied

    @app.agent(source)
    async def score_events(stream: faust.StreamT[bytes]) -> None:
        batches = stream.take_events(  # type: ignore[attr-defined]
            settings.batch_size, within=settings.batch_within_s
        )
        async for events in batches:
            _observe_arrival(metrics, events)
            batch = [
                RawMessage(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                )
                for e in events
            ]
            task = asyncio.ensure_future(processor.process(batch))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                # take_events acks the batch on the way out: finish writing it first
                await task
                raise
            _update_lag(app, metrics, events, last_applied)

    @app.timer(interval=settings.sweep_interval_s)  # type: ignore[untyped-decorator]
    async def silence_sweep() -> None:
        owned = owned_partitions()
        for partition in owned:
            try:
                await processor.release_held(partition)
            except asyncio.CancelledError:
                raise
            except Exception:
                # an exception out of a Faust timer would crash the app: count, log, go on
                metrics.timer_errors.labels("sweep").inc()
                log.exception("held events of partition %d: failed; retrying next tick", partition)
        try:
            # every owned partition in one read, commit and publish per round
            while await processor.sweep_many(owned, settings.sweep_batch) >= settings.sweep_batch:
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.timer_errors.labels("sweep").inc()
            log.exception("sweep of partitions %s failed; retrying next tick", owned)

    @app.timer(interval=settings.snapshot_interval_s)  # type: ignore[untyped-decorator]
    async def refresh_population() -> None:
        owned = owned_partitions()
        try:
            await population.refresh(owned)
            for partition in owned:
                size = await store.due_size(partition)
                metrics.due_index_size.labels(str(partition)).set(size)
                watermark, _ = await store.fence(partition)
                await store.expire_dedupe(partition, watermark)
            metrics.redis_up.set(1)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # An exception out of a Faust timer crashes the whole app: a Redis outage must
            # not. Nothing here is urgent; the next interval tries again.
            metrics.redis_errors.inc()
            metrics.redis_up.set(0)
            log.warning("population refresh skipped: Redis unavailable (%s)", type(exc).__name__)
        except Exception:
            # nor may anything else (a bad record, a bug): count it, log it, try next time
            metrics.timer_errors.labels("population").inc()
            log.exception("population refresh failed; retrying at the next interval")

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        metrics.snapshot_age.set(
            time.time() - population.snapshot_at if population.snapshot_at else -1
        )
        return web.bytes(
            generate_latest(metrics.registry), content_type="text/plain; version=0.0.4"
        )

    @app.page("/healthz")
    async def health_view(web: Any, request: Any) -> Any:
        try:
            redis_ok = bool(await asyncio.wait_for(redis.ping(), timeout=2))
        except Exception:
            redis_ok = False
        publishing_ok = processor.publish_failing_s < settings.publish_unhealthy_after_s
        body = {
            "redis": redis_ok,
            "publishing": publishing_ok,
            "publish_failing_s": round(processor.publish_failing_s, 1),
            "partitions": owned_partitions(),
            "model_version": bundle.model_version,
        }
        return web.json(body, status=200 if redis_ok and publishing_ok else 503)

    @app.page("/stats")
    async def stats_view(web: Any, request: Any) -> Any:
        return web.json(await population.stats())

    @app.page("/customers/{customer_id}")
    async def customer_view(web: Any, request: Any, customer_id: str) -> Any:
        partition = partition_for(customer_id, settings.partitions)
        read = await store.read(partition, [customer_id], [])
        if read.blobs[0] is None:
            return web.json({"error": "unknown customer", "customer_id": customer_id}, status=404)
        decoded = decode_records(read.blobs)
        if decoded.corrupt:
            return web.json(
                {"error": decoded.corrupt[0][1], "customer_id": customer_id}, status=500
            )
        states = decoded.states
        scores = evaluate(
            states,
            max(read.watermark, int(states[0]["clock"])),
            bundle.scoring,
            bundle.cuts,
            bundle.rfm_map,
        )
        state = {name: _plain(states[0][name]) for name in states.dtype.names or ()}
        return web.json(
            {
                "customer_id": customer_id,
                "partition": partition,
                "as_of": read.watermark,
                "model_version": bundle.model_version,
                "scores": score_record(customer_id, scores[0]),
                "state": state,
            }
        )

    return app


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    """The broker's high-water mark of a topic-partition as last fetched (None: unknown)."""
    try:
        high = app.consumer.highwater(faust.types.TP(topic, partition))
    except Exception:  # no fetch response for it yet (or the consumer is not up)
        return None
    return int(high) if high is not None else None


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


_ARRIVAL_SAMPLES = 16  # messages per batch whose fetch and batch-wait times are observed


def _observe_arrival(metrics: WorkerMetrics, events: Sequence[Any]) -> None:
    """The fetch (record creation to the consumer) and batch-wait (consumer to the agent)
    stages of a sample of the batch's messages. Faust's monitor stamps each message it
    receives (``time_in``, monotonic); the record's Kafka timestamp is the producer's."""
    now_mono, now_wall = time.monotonic(), time.time()
    stride = max(1, len(events) // _ARRIVAL_SAMPLES)
    fetch, wait = metrics.stage_seconds.labels("fetch"), metrics.stage_seconds.labels("batch_wait")
    for event in events[::stride]:
        message = event.message
        received = getattr(message, "time_in", None)
        if received is None or not message.timestamp:
            continue
        wait.observe(max(now_mono - received, 0.0))
        fetch.observe(max(now_wall - (now_mono - received) - message.timestamp, 0.0))


def _update_lag(
    app: faust.App,
    metrics: WorkerMetrics,
    events: Sequence[Any],
    last_applied: dict[tuple[str, int], int],
) -> None:
    """Lag of every owned topic-partition this worker has applied events of, against the
    broker's high-water mark (not only those of the batch just applied: a partition absent from
    a batch still shows how far behind it is). Partitions no longer owned lose their series."""
    for e in events:
        tp = (e.message.topic, e.message.partition)
        last_applied[tp] = max(last_applied.get(tp, -1), e.message.offset)
    owned = {(tp.topic, tp.partition) for tp in app.assignor.assigned_actives()}
    consumer = app.consumer
    for (topic, partition), offset in list(last_applied.items()):
        if (topic, partition) not in owned:
            del last_applied[(topic, partition)]
            with contextlib.suppress(KeyError):
                metrics.consumer_lag.remove(topic, str(partition))
            continue
        try:
            high = consumer.highwater(faust.types.TP(topic, partition))
        except Exception:  # highwater unknown before the first fetch response
            log.debug("no highwater yet for %s/%s", topic, partition)
            continue
        if high is not None:
            metrics.consumer_lag.labels(topic, str(partition)).set(max(high - offset - 1, 0))
