"""``custscore migrate`` on the real Valkey: an older-layout record is rewritten as the current
layout, a current one and a corrupt one are left unchanged (the corrupt one listed), and
nothing but the upgraded state field is written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import redis.asyncio as aioredis
from fixtures.stack import run_async
from fixtures.streaming import private_settings
from streaming_support import cli_env, offline_settings

from config.settings import Settings
from custscore.cli import main
from custscore.clients import state_store
from custscore.commands.migrate import _UPGRADE_LUA, _write
from engine.state import (
    COMPLAINT_SLOTS,
    STATE_DTYPE,
    STATE_DTYPE_V1,
    STATE_VERSION,
    decode_records,
    new_states,
)
from streams.keys import partition_for
from streams.store import Commit

DAY = 86_400
T0 = 852_076_800  # 1997-01-01T00:00:00Z


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return private_settings(kafka_bootstrap, redis_url, partitions=4)


def v1_record() -> bytes:
    old = np.zeros(1, STATE_DTYPE_V1)
    old["version"] = 1
    old["flags"] = 1
    old["seg_rfm"] = 3
    old["complaints_open"] = 3
    old["complaints_resolved"] = 1
    old["first_seen"] = T0 - DAY
    old["first_purchase"] = T0
    old["prev_purchase"] = T0 + 30 * DAY
    old["last_purchase"] = T0 + 40 * DAY
    old["last_visit"] = T0 + 41 * DAY
    old["last_event"] = T0 + 42 * DAY
    old["complaint_ts"] = T0 + 42 * DAY
    old["due"] = T0 + 90 * DAY
    old["n_purchases"] = 4
    old["n_visits"] = 7
    old["complaint_score"] = 4500
    old["ring_head"] = 325  # 1997-02
    old["gross_cents"] = 12_345
    old["refund_cents"] = 500
    old["first_amount_cents"] = 2_000
    old["ring_cents"][0, 0] = 2_000
    old["ring_count"][0, 0] = 2
    return old.tobytes()


def v2_record() -> bytes:
    state = new_states(1)
    state["first_seen"] = state["first_purchase"] = state["last_purchase"] = T0
    state["last_event"] = state["clock"] = T0
    state["purchase_days"] = state["purchase_lines"] = 1
    state["gross_cents"] = state["first_day_cents"] = 999
    return state.tobytes()


CORRUPT = b"\x09garbage"
CUSTOMERS = {"old-alice": v1_record(), "broken-bob": CORRUPT, "new-carol": v2_record()}


async def _store(settings: Settings, records: dict[str, bytes]) -> None:
    """Write records the way the worker does (fence with bucket count, due entries)."""
    client = aioredis.Redis.from_url(settings.redis_address)
    try:
        store = state_store(client, settings)
        for customer, blob in records.items():
            partition = partition_for(customer, settings.partitions)
            _, generation = await store.fence(partition)
            commit = Commit(partition=partition, generation=generation, watermark=T0 + 50 * DAY)
            commit.states[customer] = blob
            commit.due[customer] = T0 + 90 * DAY
            await store.commit(commit)
    finally:
        await client.aclose()


async def _snapshot(settings: Settings) -> dict[str, Any]:
    """Every key under the settings' prefix: hashes as dicts, anything else as DUMP bytes."""
    client = aioredis.Redis.from_url(settings.redis_address)
    try:
        out: dict[str, Any] = {}
        async for key in client.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
            name = key.decode()
            if (await client.type(name)) == b"hash":
                out[name] = await client.hgetall(name)
            else:
                out[name] = await client.dump(name)
        return out
    finally:
        await client.aclose()


async def _blob(settings: Settings, customer: str) -> bytes | None:
    client = aioredis.Redis.from_url(settings.redis_address)
    try:
        store = state_store(client, settings)
        key, field = store.keys(partition_for(customer, settings.partitions)).state(customer)
        blob: bytes | None = await client.hget(key, field)
        return blob
    finally:
        await client.aclose()


def _report(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], str]:
    captured = capsys.readouterr()
    return [ln for ln in captured.out.splitlines() if ln.strip()], captured.err


def test_migrate_upgrades_old_records_and_reports_the_rest(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_async(_store(settings, CUSTOMERS))
    cli_env(settings, monkeypatch)
    before = run_async(_snapshot(settings))
    bob_partition = partition_for("broken-bob", settings.partitions)
    corrupt_line = (
        f"corrupt: customer 'broken-bob' partition {bob_partition}: "
        f"state record version 9, {len(CORRUPT)} bytes"
    )

    # --dry-run counts and writes nothing
    assert main(["migrate", "--dry-run"]) == 0
    out, err = _report(capsys)
    assert err == ""
    assert out == [
        corrupt_line,
        f"would upgrade 1 state records to layout version {STATE_VERSION}; 1 current; "
        "1 corrupt (left unchanged) in 4 partitions (dry run: nothing written)",
    ]
    assert run_async(_snapshot(settings)) == before

    assert main(["migrate"]) == 0
    out, err = _report(capsys)
    assert err == ""
    assert out == [
        corrupt_line,
        f"upgraded 1 state records to layout version {STATE_VERSION}; 1 current; "
        "1 corrupt (left unchanged) in 4 partitions",
    ]

    # the v1 record now decodes as the current layout, without upgrading, with its fields
    blob = run_async(_blob(settings, "old-alice"))
    assert blob is not None and len(blob) == STATE_DTYPE.itemsize and blob[0] == STATE_VERSION
    decoded = decode_records([blob])
    assert decoded.upgraded == [] and decoded.corrupt == []
    new = decoded.states[0]
    old = np.frombuffer(v1_record(), dtype=STATE_DTYPE_V1)[0]
    for name in (
        "flags seg_rfm complaints_open complaints_resolved first_seen first_purchase "
        "prev_purchase last_purchase last_visit last_event complaint_ts due n_visits "
        "complaint_score ring_head gross_cents refund_cents"
    ).split():
        assert int(new[name]) == int(old[name]), name
    assert np.array_equal(new["ring_cents"], old["ring_cents"])
    assert np.array_equal(new["ring_count"], old["ring_count"])
    assert int(new["purchase_days"]) == int(new["purchase_lines"]) == 4
    assert int(new["first_day_cents"]) == 2_000
    assert int(new["clock"]) == T0 + 42 * DAY
    # purchase days known to v1: last (bit 0), previous (10 days back), first (40 days back)
    assert int(new["day_bits"][0]) == (1 << 0) | (1 << 10) | (1 << 40)
    # two unresolved complaints, as slots no resolution can name, filed at complaint_ts
    assert [int(k) != 0 for k in new["complaint_ids"]] == [True, True] + [False] * (
        COMPLAINT_SLOTS - 2
    )
    assert [int(t) for t in new["complaint_opened"][:2]] == [T0 + 42 * DAY] * 2

    # nothing but that one field changed: fences, due index, other records, corrupt blob
    after = run_async(_snapshot(settings))
    assert after.keys() == before.keys()
    changed = {k for k in before if before[k] != after[k]}
    assert len(changed) == 1
    (bucket,) = changed
    assert {f: v for f, v in after[bucket].items() if f != b"old-alice"} == {
        f: v for f, v in before[bucket].items() if f != b"old-alice"
    }
    assert run_async(_blob(settings, "broken-bob")) == CORRUPT
    assert run_async(_blob(settings, "new-carol")) == v2_record()

    # a second run finds only current records (and the corrupt one, still listed)
    assert main(["migrate"]) == 0
    out, _ = _report(capsys)
    assert out[-1].startswith(
        f"upgraded 0 state records to layout version {STATE_VERSION}; 2 current;"
    )
    assert corrupt_line in out
    assert run_async(_snapshot(settings)) == after


def test_migrate_of_an_empty_store_reports_zero(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env(settings, monkeypatch)
    assert main(["migrate"]) == 0
    out, err = _report(capsys)
    assert (out, err) == (
        [
            f"upgraded 0 state records to layout version {STATE_VERSION}; 0 current; "
            "0 corrupt (left unchanged) in 4 partitions"
        ],
        "",
    )


def test_a_record_rewritten_since_read_is_not_overwritten(settings: Settings) -> None:
    """The compare-and-set: a worker's (or forget's) write between read and write wins."""
    run_async(_store(settings, {"old-alice": v1_record(), "old-dave": v1_record()}))
    worker_wrote = v2_record()
    run_async(_store(settings, {"old-dave": worker_wrote}))

    async def write() -> int:
        client = aioredis.Redis.from_url(settings.redis_address)
        try:
            store = state_store(client, settings)
            writes = []
            for customer in ("old-alice", "old-dave", "gone-erin"):
                keys = store.keys(partition_for(customer, settings.partitions))
                upgraded = decode_records([v1_record()]).states.tobytes()
                writes.append((*keys.state(customer), v1_record(), upgraded))
            return await _write(client, client.register_script(_UPGRADE_LUA), writes)
        finally:
            await client.aclose()

    assert run_async(write()) == 2  # old-dave changed, gone-erin absent
    assert run_async(_blob(settings, "old-dave")) == worker_wrote
    assert run_async(_blob(settings, "gone-erin")) is None  # not brought back
    alice = run_async(_blob(settings, "old-alice"))
    assert alice is not None and alice[0] == STATE_VERSION


def test_migrate_with_another_bucket_count_is_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_async(_store(settings, {"old-alice": v1_record()}))
    other = settings.model_copy(update={"state_buckets": settings.state_buckets * 2})
    cli_env(other, monkeypatch)
    assert main(["migrate"]) == 2
    out, err = _report(capsys)
    assert out == []
    assert len(err.strip().splitlines()) == 1
    assert "state buckets" in err and "CUSTSCORE_STATE_BUCKETS" in err
    assert run_async(_blob(settings, "old-alice")) == v1_record()


def test_migrate_without_redis_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env(offline_settings(), monkeypatch)
    assert main(["migrate", "--dry-run"]) == 2
    out, err = _report(capsys)
    assert out == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("custscore: error: no Redis answers at redis://")
    assert "Traceback" not in err
