"""``custscore inspect CUSTOMER_ID``: one customer's decoded state, scores and segments as JSON.

The record is read from the customer's partition and evaluated at that partition's watermark
(the worker's clock). Population-relative classes (value tier, A/B/C/D, quadrant) are judged
against the params file's calibrated cut points, as the worker's alerts are; the live
population snapshot the workers keep in Redis (the per-partition sketches) is shown beside
them, so drift between the two is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from custscore.clients import open_redis, state_store
from custscore.errors import CliError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from config.settings import Settings
    from engine.ranking import ClassShares
    from engine.scoring import PopulationCuts
    from streams.store import RedisStateStore

__all__ = ["inspect_customer", "register"]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


async def _live_cuts(
    client: aioredis.Redis, store: RedisStateStore, partitions: int, shares: ClassShares
) -> tuple[PopulationCuts | None, float | None]:
    """Cut points merged from the workers' population sketches (at the model's class shares),
    and the oldest sketch's age."""
    from models.population_sketch import cuts_from_sketches

    blobs = await client.mget([store.keys(p).population for p in range(partitions)])
    sketches = [json.loads(b) for b in blobs if b]
    if not sketches:
        return None, None
    age = time.time() - min(s["computed_at"] for s in sketches)
    return cuts_from_sketches(sketches, shares), round(age, 1)


async def inspect_customer(settings: Settings, customer_id: str) -> dict[str, Any] | None:
    """The JSON-ready view of one customer, or None when nothing is stored for them."""
    from engine.ranking import ClassShares
    from engine.scoring import evaluate
    from engine.state import FIELD_DOCS, decode_states
    from models.bundle import load_model
    from models.params_file import ParamsError
    from models.scorefile import format_time, score_record
    from streams.keys import bucket_of, partition_for

    try:
        bundle = load_model(settings.params_file, window_months=settings.effective_window_months)
    except ParamsError as exc:
        raise CliError(str(exc)) from None
    partition = partition_for(customer_id, settings.partitions)
    async with open_redis(settings) as client:
        store = state_store(client, settings)
        read = await store.read(partition, [customer_id], [])
        if read.blobs[0] is None:
            return None
        bucket = bucket_of(customer_id, store.buckets)
        # the due index holds a lower bound per bucket; the customer's own due time is state.due
        due_score = await client.zscore(store.keys(partition).due, str(bucket))
        cuts, sketch_age = await _live_cuts(
            client, store, settings.partitions, ClassShares.from_params(bundle.scoring)
        )
    try:
        states = decode_states(read.blobs)
    except ValueError as exc:
        raise CliError(f"unreadable state record of {customer_id!r}: {exc}", exit_code=1) from None
    # the worker judges value tier, A/B/C/D and quadrant against the params file's calibrated
    # cuts (docs/alerts.md); the live snapshot is shown beside them to make drift visible
    scores = evaluate(states, read.watermark, bundle.scoring, bundle.cuts, bundle.rfm_map)
    record = states[0]
    state = {name: _plain(record[name]) for name in states.dtype.names or ()}
    times = {
        name: format_time(int(record[name]))
        for name, doc in FIELD_DOCS.items()
        if "(epoch s" in doc and record[name].shape == ()
    }
    return {
        "customer_id": customer_id,
        "partition": partition,
        "as_of": format_time(read.watermark),
        "model_version": bundle.model_version,
        "population_cuts": {
            "source": "params file",
            **{k: (None if not np.isfinite(v) else v) for k, v in bundle.cuts._asdict().items()},
        },
        "population_snapshot": None
        if cuts is None
        else {
            "age_s": sketch_age,
            **{k: (None if not np.isfinite(v) else v) for k, v in cuts._asdict().items()},
        },
        "scores": score_record(customer_id, scores[0]),
        "state": state,
        "state_times": times,
        "state_bucket": bucket,
        "due_index": format_time(int(due_score)) if due_score is not None else None,
        "record_bytes": len(read.blobs[0]),
    }


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore inspect``."""
    parser.add_argument("customer_id", metavar="CUSTOMER_ID")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    view = asyncio.run(inspect_customer(settings, args.customer_id))
    if view is None:
        raise CliError(
            f"unknown customer {args.customer_id!r}: nothing stored under key prefix "
            f"{settings.redis_key_prefix!r} at {settings.redis_address}",
            exit_code=1,
        )
    print(json.dumps(view, indent=2, ensure_ascii=False))
    return 0
