"""Synthetic customer-event streams from the BG/NBD + Gamma-Gamma process, in event-time order.

    python -m loadtest.generate --customers 1000000 --visit-rate 0.25 --out events.csv
    custscore bench generate --customers 100000 --kafka        # straight to the input topics

Every customer is drawn from the model the engine scores with (Fader, Hardie & Lee 2005):

* acquisition: the first purchase falls uniformly in ``[0, acquisition)`` (params time unit);
* purchase rate lambda ~ Gamma(r, rate alpha): repeat purchases are a Poisson process;
* dropout p ~ Beta(a, b): after each *repeat* purchase the customer leaves with probability p
  (nothing more from them: purchases, visits and complaints all stop);
* spend: nu ~ Gamma(q, rate v) per customer, every purchase amount ~ Gamma(p, rate nu)
  (Gamma-Gamma), rounded to cents;
* visits and complaints: Poisson processes while the customer is active, at ``visit_rate`` and
  ``complaint_rate`` per customer per time unit, scaled per customer by a Gamma(2, 1/2)
  (mean 1) propensity; complaint severity is uniform 1..5.

Observation ends at ``horizon`` time units after ``start``. Parameters come from a params file
(:func:`models.params_file.load_params`, default
:func:`models.params_file.default_params`: the CDNOW fit, in weeks). Generation is seeded
and exact, and streams: it keeps O(customers) arrays of next event times and emits one
time slice (default one day) at a time, each slice sorted by event time, so memory does not
grow with the number of events. Output is the standard event CSV
(``event_id,type,customer_id,ts,amount,severity``, ``ts`` in epoch milliseconds) or the input
topics' JSON (:func:`streams.codec.encode_event`) produced straight to Kafka.

A little over 500 lines because the generator, its two outputs and its options (shared by
``python -m loadtest.generate`` and ``custscore bench generate``) describe one stream spec;
the simulation alone is ``generate``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from config.settings import Settings, load_settings
from engine.state import KIND_COMPLAINT, KIND_PURCHASE, KIND_VISIT
from models.params_file import ParamsFile, default_params, load_params
from streams.codec import encode_event

__all__ = [
    "CSV_HEADER",
    "EventSlice",
    "GenerationStats",
    "StreamSpec",
    "customer_id",
    "encode_slice",
    "generate",
    "main",
    "slice_csv",
    "write_csv",
]

CSV_HEADER = "event_id,type,customer_id,ts,amount,severity\n"
T0_1997 = 852076800  # 1997-01-01T00:00:00Z, the start of CDNOW
_INF = math.inf


@dataclass(frozen=True)
class StreamSpec:
    """What to generate. Times are in the params' time unit (``unit_seconds``) unless noted."""

    customers: int
    seed: int = 0
    r: float = 0.2569893789837501  # CDNOW fit (weeks), models/data/default_params.json
    alpha: float = 5.135556383534098
    a: float = 0.48452952004144995
    b: float = 1.9854965974595886
    p: float = 5.277538110400077
    q: float = 3.9776886275630665
    v: float = 19.811795981704375
    unit_seconds: float = 604_800.0
    start: int = T0_1997  # epoch s of time 0
    acquisition: float = 12.0  # first purchases uniform in [0, acquisition)
    horizon: float = 78.0  # observation ends here
    visit_rate: float = 0.0  # visits per active customer per time unit
    complaint_rate: float = 0.0  # complaints per active customer per time unit
    slice_seconds: int = 86_400  # generation step (event time)
    id_prefix: str = "c"  # customer ids are <prefix><zero-padded index>

    @classmethod
    def from_params(cls, params: ParamsFile, customers: int, **overrides: Any) -> StreamSpec:
        """A spec with the BG/NBD + Gamma-Gamma parameters and time unit of ``params``."""
        s = params.scoring
        values: dict[str, Any] = {
            "r": s.r,
            "alpha": s.alpha,
            "a": s.a,
            "b": s.b,
            "p": s.p,
            "q": s.q,
            "v": s.v,
            "unit_seconds": s.unit_seconds,
        }
        values.update(overrides)
        return cls(customers=customers, **values)

    def check(self) -> None:
        """Raise ValueError on an unusable spec."""
        if self.customers < 1:
            raise ValueError("customers must be >= 1")
        for name in ("r", "alpha", "a", "b", "p", "q", "v", "unit_seconds", "horizon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0 < self.acquisition <= self.horizon:
            raise ValueError("acquisition must be in (0, horizon]")
        if self.visit_rate < 0 or self.complaint_rate < 0:
            raise ValueError("visit and complaint rates must be >= 0")
        if self.slice_seconds < 1:
            raise ValueError("slice_seconds must be >= 1")

    @property
    def end_ts(self) -> int:
        """Epoch s at which observation ends (no event at or after it)."""
        return self.start + int(self.horizon * self.unit_seconds)

    def expected_events(self) -> float:
        """Rough expected event count (purchases by the model, visits and complaints by rate)."""
        mean_active = min(
            self.horizon - self.acquisition / 2,
            self.b / max(self.a - 1, 1e-9) * self.alpha / self.r if self.a > 1 else self.horizon,
        )
        purchases = self.customers * (1 + self.r / self.alpha * mean_active)
        other = self.customers * (self.visit_rate + self.complaint_rate) * mean_active
        return purchases + other


@dataclass
class EventSlice:
    """Events of one time slice, in event-time order (parallel arrays)."""

    kind: npt.NDArray[np.uint8]
    customer: npt.NDArray[np.int64]  # customer index
    ts_ms: npt.NDArray[np.int64]  # event time, epoch milliseconds
    cents: npt.NDArray[np.int64]  # purchases: amount in cents
    severity: npt.NDArray[np.uint8]  # complaints: 1..5
    first_seq: int  # sequence number of the first event (event ids are g<seed>-<seq>)

    def __len__(self) -> int:
        return int(self.kind.shape[0])


@dataclass
class GenerationStats:
    """Counts of what :func:`generate` emitted."""

    events: int = 0
    purchases: int = 0
    visits: int = 0
    complaints: int = 0
    customers_seen: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.events:,} events ({self.purchases:,} purchases, {self.visits:,} visits, "
            f"{self.complaints:,} complaints) of {self.customers_seen:,} customers in "
            f"{self.seconds:.1f} s ({self.events_per_s:,.0f} events/s)"
        )


def customer_id(spec: StreamSpec, index: int) -> str:
    """The id of customer ``index`` (what the CSV and the messages carry)."""
    return f"{spec.id_prefix}{index:07d}"


def generate(spec: StreamSpec, stats: GenerationStats | None = None) -> Iterator[EventSlice]:
    """Yield the stream slice by slice (exact simulation; memory is O(customers))."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    n = spec.customers
    unit = spec.unit_seconds
    # latent traits (the same draws as oracles.btyd_sim, per customer)
    lam = rng.gamma(spec.r, 1.0 / spec.alpha, n)
    drop = np.clip(rng.beta(spec.a, spec.b, n), 1e-12, 1.0)
    nu = rng.gamma(spec.q, 1.0 / spec.v, n)
    birth = rng.uniform(0.0, spec.acquisition, n)
    visit_rate = spec.visit_rate * rng.gamma(2.0, 0.5, n) if spec.visit_rate > 0 else None
    complaint_rate = (
        spec.complaint_rate * rng.gamma(2.0, 0.5, n) if spec.complaint_rate > 0 else None
    )
    # next event time of each stream per customer (time units; inf = never)
    next_p = birth.copy()  # the first purchase is at birth
    next_v = birth + rng.exponential(1.0, n) / visit_rate if visit_rate is not None else None
    next_c = (
        birth + rng.exponential(1.0, n) / complaint_rate if complaint_rate is not None else None
    )
    bought = np.zeros(n, dtype=bool)
    stats = stats if stats is not None else GenerationStats()
    began = time.perf_counter()
    seq = 0
    slice_units = spec.slice_seconds / unit
    edge = 0.0
    while edge < spec.horizon:
        edge = min(edge + slice_units, spec.horizon)
        kinds: list[npt.NDArray[np.uint8]] = []
        custs: list[npt.NDArray[np.int64]] = []
        times: list[npt.NDArray[np.float64]] = []
        cents: list[npt.NDArray[np.int64]] = []
        sev: list[npt.NDArray[np.uint8]] = []
        nxt = _next_of(next_p, next_v, next_c)
        active = np.flatnonzero(nxt < edge)
        while active.shape[0]:
            tp = next_p[active]
            tv = next_v[active] if next_v is not None else np.full(active.shape[0], _INF)
            tc = next_c[active] if next_c is not None else np.full(active.shape[0], _INF)
            is_p = (tp <= tv) & (tp <= tc) & (tp < edge)
            is_v = ~is_p & (tv <= tc) & (tv < edge)
            is_c = ~is_p & ~is_v & (tc < edge)
            if is_p.any():
                who = active[is_p]
                t = tp[is_p]
                amount = rng.gamma(spec.p, 1.0 / nu[who])
                c = np.maximum(np.rint(amount * 100.0), 1).astype(np.int64)
                repeat = bought[who]
                dies = repeat & (rng.random(who.shape[0]) < drop[who])
                bought[who] = True
                gap = rng.exponential(1.0, who.shape[0]) / lam[who]
                next_p[who] = np.where(dies, _INF, t + gap)
                dead = who[dies]
                if next_v is not None:
                    next_v[dead] = _INF
                if next_c is not None:
                    next_c[dead] = _INF
                kinds.append(np.full(who.shape[0], KIND_PURCHASE, np.uint8))
                custs.append(who)
                times.append(t)
                cents.append(c)
                sev.append(np.zeros(who.shape[0], np.uint8))
            if next_v is not None and visit_rate is not None and is_v.any():
                who = active[is_v]
                t = tv[is_v]
                next_v[who] = t + rng.exponential(1.0, who.shape[0]) / visit_rate[who]
                kinds.append(np.full(who.shape[0], KIND_VISIT, np.uint8))
                custs.append(who)
                times.append(t)
                cents.append(np.zeros(who.shape[0], np.int64))
                sev.append(np.zeros(who.shape[0], np.uint8))
            if next_c is not None and complaint_rate is not None and is_c.any():
                who = active[is_c]
                t = tc[is_c]
                next_c[who] = t + rng.exponential(1.0, who.shape[0]) / complaint_rate[who]
                kinds.append(np.full(who.shape[0], KIND_COMPLAINT, np.uint8))
                custs.append(who)
                times.append(t)
                cents.append(np.zeros(who.shape[0], np.int64))
                sev.append(np.asarray(rng.integers(1, 6, who.shape[0]), dtype=np.uint8))
            moved = is_p | is_v | is_c
            active = active[moved]
            active = active[_next_of_rows(next_p, next_v, next_c, active) < edge]
        if not kinds:
            continue
        t_all = np.concatenate(times)
        ts_ms = spec.start * 1000 + np.floor(t_all * unit * 1000.0).astype(np.int64)
        order = np.argsort(ts_ms, kind="stable")
        out = EventSlice(
            kind=np.concatenate(kinds)[order],
            customer=np.concatenate(custs)[order],
            ts_ms=ts_ms[order],
            cents=np.concatenate(cents)[order],
            severity=np.concatenate(sev)[order],
            first_seq=seq,
        )
        seq += len(out)
        stats.events += len(out)
        stats.purchases += int(np.count_nonzero(out.kind == KIND_PURCHASE))
        stats.visits += int(np.count_nonzero(out.kind == KIND_VISIT))
        stats.complaints += int(np.count_nonzero(out.kind == KIND_COMPLAINT))
        stats.seconds = time.perf_counter() - began
        yield out
    stats.customers_seen = int(np.count_nonzero(bought))
    stats.seconds = time.perf_counter() - began


def _next_of(
    next_p: npt.NDArray[np.float64],
    next_v: npt.NDArray[np.float64] | None,
    next_c: npt.NDArray[np.float64] | None,
) -> npt.NDArray[np.float64]:
    out = next_p
    if next_v is not None:
        out = np.minimum(out, next_v)
    if next_c is not None:
        out = np.minimum(out, next_c)
    return out


def _next_of_rows(
    next_p: npt.NDArray[np.float64],
    next_v: npt.NDArray[np.float64] | None,
    next_c: npt.NDArray[np.float64] | None,
    rows: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    return _next_of(
        next_p[rows],
        next_v[rows] if next_v is not None else None,
        next_c[rows] if next_c is not None else None,
    )


# --------------------------------------------------------------------------- output


def _event_ids(spec: StreamSpec, sl: EventSlice) -> list[str]:
    head = f"g{spec.seed}-"
    return [f"{head}{k}" for k in range(sl.first_seq, sl.first_seq + len(sl))]


def slice_csv(spec: StreamSpec, sl: EventSlice) -> str:
    """The CSV rows of one slice (no header)."""
    ids = _event_ids(spec, sl)
    prefix = spec.id_prefix
    lines = []
    for eid, kind, cust, ts, cents, sev in zip(
        ids,
        sl.kind.tolist(),
        sl.customer.tolist(),
        sl.ts_ms.tolist(),
        sl.cents.tolist(),
        sl.severity.tolist(),
        strict=True,
    ):
        if kind == KIND_PURCHASE:
            amount = f"{cents // 100}.{cents % 100:02d}"
            lines.append(f"{eid},purchase,{prefix}{cust:07d},{ts},{amount},\n")
        elif kind == KIND_VISIT:
            lines.append(f"{eid},visit,{prefix}{cust:07d},{ts},,\n")
        else:
            lines.append(f"{eid},complaint,{prefix}{cust:07d},{ts},,{sev}\n")
    return "".join(lines)


def write_csv(
    spec: StreamSpec,
    out: TextIO,
    *,
    progress: Callable[[GenerationStats], None] | None = None,
) -> GenerationStats:
    """Generate ``spec`` into ``out`` as the standard event CSV; returns the counts."""
    stats = GenerationStats()
    began = time.perf_counter()
    out.write(CSV_HEADER)
    for sl in generate(spec, stats):
        out.write(slice_csv(spec, sl))
        stats.seconds = time.perf_counter() - began
        if progress is not None:
            progress(stats)
    out.flush()
    stats.seconds = time.perf_counter() - began
    return stats


def encode_slice(spec: StreamSpec, sl: EventSlice) -> list[tuple[int, str, bytes, bytes]]:
    """(kind, event id, key, JSON value) of every event in a slice: the input-topic format of
    :func:`streams.codec.encode_event`, with the generator's millisecond event times."""
    ids = _event_ids(spec, sl)
    prefix = spec.id_prefix
    out: list[tuple[int, str, bytes, bytes]] = []
    for eid, kind, cust, ts_ms, cents, sev in zip(
        ids,
        sl.kind.tolist(),
        sl.customer.tolist(),
        sl.ts_ms.tolist(),
        sl.cents.tolist(),
        sl.severity.tolist(),
        strict=True,
    ):
        cid = f"{prefix}{cust:07d}"
        value = encode_event(kind, eid, cid, ts_ms // 1000, cents, sev, 0, ts_ms=ts_ms)
        out.append((kind, eid, cid.encode(), value))
    return out


async def produce_stream(
    settings: Settings,
    spec: StreamSpec,
    *,
    progress: Callable[[GenerationStats], None] | None = None,
) -> GenerationStats:
    """Generate ``spec`` straight to the input topics (acks=all), slice by slice."""
    # Kafka-side imports stay here: `custscore bench` registers this module's options, so it
    # is loaded by `custscore --help` (streams.topics alone pulls in numba).
    from custscore.clients import ensure_topics_or_fail, send_records, started_producer
    from streams.keys import partition_for
    from streams.topics import TopicTable

    topics = TopicTable.from_settings(settings).input_topics_by_kind()
    stats = GenerationStats()
    parts: dict[bytes, int] = {}
    async with started_producer(
        settings, linger_ms=5, max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024
    ) as producer:
        await ensure_topics_or_fail(settings)
        pending: list[asyncio.Future[Any]] = []
        for sl in generate(spec, stats):
            records = []
            for kind, _eid, key, value in encode_slice(spec, sl):
                part = parts.get(key)
                if part is None:
                    part = parts[key] = partition_for(key.decode(), settings.partitions)
                records.append((topics[kind], part, key, value))
            step = await send_records(producer, records)
            await asyncio.gather(*pending)
            pending = step
            if progress is not None:
                progress(stats)
        await asyncio.gather(*pending)
    return stats


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the generator (shared by ``python -m loadtest.generate`` and the CLI)."""
    parser.add_argument("--customers", type=int, default=10_000, help="customers (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params JSON with the generating BG/NBD + Gamma-Gamma parameters "
        "(default: the built-in CDNOW fit, in weeks)",
    )
    parser.add_argument(
        "--acquisition",
        type=float,
        default=12.0,
        help="first purchases spread over this many time units (default 12)",
    )
    parser.add_argument(
        "--horizon", type=float, default=78.0, help="observation length in time units (default 78)"
    )
    parser.add_argument(
        "--visit-rate",
        type=float,
        default=0.0,
        help="visits per active customer per time unit (default 0)",
    )
    parser.add_argument(
        "--complaint-rate",
        type=float,
        default=0.0,
        help="complaints per active customer per time unit (default 0)",
    )
    parser.add_argument(
        "--start", default="1997-01-01", help="calendar date of time 0 (UTC, default 1997-01-01)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="event CSV to write ('-' for stdout)"
    )
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="produce to the input topics instead of writing a file "
        "(broker and topics from CUSTSCORE_* settings)",
    )


def spec_from_args(args: argparse.Namespace) -> StreamSpec:
    """A :class:`StreamSpec` from parsed options (raises ValueError on bad values)."""
    params = load_params(args.params) if args.params else default_params()
    start = int(datetime.fromisoformat(args.start).replace(tzinfo=UTC).timestamp())
    spec = StreamSpec.from_params(
        params,
        args.customers,
        seed=args.seed,
        acquisition=args.acquisition,
        horizon=args.horizon,
        visit_rate=args.visit_rate,
        complaint_rate=args.complaint_rate,
        start=start,
    )
    spec.check()
    return spec


class _Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0

    def __call__(self, stats: GenerationStats) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0:
            self.last = now
            self.stream.write(f"generate: {stats.events:,} events, {stats.seconds:.1f} s\n")
            self.stream.flush()


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the generator for parsed options; prints a summary line on stderr."""
    spec = spec_from_args(args)
    progress = _Progress(sys.stderr)
    if args.kafka:
        if settings is None:
            settings = load_settings()
        stats = asyncio.run(produce_stream(settings, spec, progress=progress))
        where = f"topics on {settings.bootstrap_servers}"
    elif args.out is None or str(args.out) == "-":
        stats = write_csv(spec, sys.stdout, progress=progress)
        where = "stdout"
    else:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        with tmp.open("w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
            stats = write_csv(spec, fh, progress=progress)
        tmp.replace(args.out)
        where = str(args.out)
    print(f"generated {stats.summary()} -> {where}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.generate", description=(__doc__ or "").splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
