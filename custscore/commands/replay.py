"""``custscore replay EVENTS``: produce an event CSV to the input topics in event-time order.

Every valid row of the standard event CSV becomes one JSON message (docs/design.md, "Contracts") on
its input topic, keyed by ``customer_id``, produced with ``acks=all``. ``--speed max`` sends as fast
as the broker takes it; ``--speed 100x`` paces the stream so that event time runs 100 times faster
than wall time (an event ``d`` seconds of event time after the first one is sent ``d / 100`` seconds
after the start). Bad rows are skipped and counted.

:func:`replay_events` is the reusable part (the demo and the tests call it).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt

from custscore.clients import ensure_topics_or_fail, send_records, started_producer
from custscore.errors import CliError

if TYPE_CHECKING:
    from config.settings import Settings
    from models.events import EventLog

__all__ = [
    "DEFAULT_BATCH",
    "ProgressBar",
    "ReplayResult",
    "describe_bad_rows",
    "load_events",
    "parse_speed",
    "register",
    "release_offsets",
    "released_until",
    "replay_events",
]

DEFAULT_BATCH = 5000
_MAX_SLEEP_S = 0.25  # paced mode wakes at least this often (progress, Ctrl-C)

ProgressFn = Callable[[int, int, float], None]  # (sent, total, elapsed seconds)


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced."""

    produced: int
    by_type: dict[str, int]
    started_at: float  # wall time (epoch s) of the first send
    finished_at: float  # wall time when the last message was acknowledged
    first_ts: int  # event time (epoch s) of the first and last event
    last_ts: int
    speed: float | None  # None = max
    # messages sent per (input topic, partition): events, or envelopes with --envelope
    messages: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall seconds from the first send to the last acknowledgement."""
        return max(self.finished_at - self.started_at, 0.0)

    @property
    def events_per_s(self) -> float:
        """Produced events per wall second (0 when nothing was produced)."""
        return self.produced / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The one-line report: events produced, seconds, events/s."""
        return (
            f"produced {self.produced:,} events in {self.seconds:.2f} s "
            f"({self.events_per_s:,.0f} events/s)"
        )


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as possible); ``100x`` or ``100`` -> 100.0 (must be > 0)."""
    value = text.strip().lower()
    if value == "max":
        return None
    number = value[:-1] if value.endswith("x") else value
    try:
        speed = float(number)
    except ValueError:
        speed = math.nan
    if not math.isfinite(speed) or speed <= 0:
        raise CliError(f"--speed must be 'max' or a positive factor like '100x', not {text!r}")
    return speed


def release_offsets(ts: npt.NDArray[np.int64], speed: float | None) -> npt.NDArray[np.float64]:
    """Wall seconds after the start at which each event is due (all 0 at max speed).

    ``ts`` is event time in epoch seconds, ascending; event time runs ``speed`` times faster
    than wall time, counted from the first event.
    """
    if speed is None or ts.shape[0] == 0:
        return np.zeros(ts.shape[0], dtype=np.float64)
    return (ts.astype(np.float64) - float(ts[0])) / speed


def released_until(offsets: npt.NDArray[np.float64], start: int, elapsed: float, batch: int) -> int:
    """End of the next send step: events from ``start`` due by ``elapsed``, at most ``batch``."""
    due = int(np.searchsorted(offsets, elapsed, side="right"))
    return min(max(due, start), start + batch, int(offsets.shape[0]))


def load_events(path: str | Path) -> EventLog:
    """read_event_csv with file-system and format errors as one-line CliErrors."""
    from models.events import EventValueError, read_event_csv

    try:
        return read_event_csv(path)
    except FileNotFoundError:
        raise CliError(f"event file not found: {path}", exit_code=1) from None
    except IsADirectoryError:
        raise CliError(f"event file is a directory: {path}", exit_code=1) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}", exit_code=1) from None
    except EventValueError as exc:
        raise CliError(str(exc), exit_code=1) from None


async def replay_events(
    settings: Settings,
    log: EventLog,
    speed: float | None = None,
    *,
    batch: int = DEFAULT_BATCH,
    progress: ProgressFn | None = None,
    create_topics: bool = True,
    envelope: int = 0,
) -> ReplayResult:
    """Produce every event of ``log`` to its input topic, in event-time order.

    Partitions are chosen with Kafka's default partitioner on the customer id (the same as
    the worker's co-partitioning), so per-customer order is kept within each topic. Record
    timestamps are wall time, not event time (old event times would fall outside a real
    broker's retention). Returns after every message was acknowledged by the broker.

    ``envelope`` > 0 sends batch envelopes of up to that many events per (topic, partition)
    instead of one message per event (docs/alerts.md, "Batch envelopes"); a producer step then
    holds at least ``envelope`` events per partition, so envelopes can fill.
    """
    from models.events import TYPE_BY_KIND
    from streams.codec import encode_event, pack_envelopes
    from streams.keys import partition_for
    from streams.topics import TopicTable

    if batch < 1:
        raise CliError(f"--batch must be >= 1, not {batch}")
    if envelope < 0:
        raise CliError(f"--envelope must be >= 0, not {envelope}")
    if envelope:
        batch = max(batch, envelope * settings.partitions)
    topics = TopicTable.from_settings(settings).input_topics_by_kind()
    events = log.events
    total = int(events.shape[0])
    offsets = release_offsets(events["ts"], speed)
    keys = [c.encode("utf-8") for c in log.customer_ids]
    parts = [partition_for(c, settings.partitions) for c in log.customer_ids]
    kinds = events["kind"].tolist()
    rows = events["row"].tolist()
    stamps = events["ts"].tolist()
    cents = events["cents"].tolist()
    severities = events["severity"].tolist()
    resolved = events["resolved"].tolist()
    by_type = dict.fromkeys(TYPE_BY_KIND.values(), 0)
    messages: dict[tuple[str, int], int] = {}
    linger_ms = 5 if speed is None else 0
    async with started_producer(
        settings, linger_ms=linger_ms, max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024
    ) as producer:
        if create_topics:
            await ensure_topics_or_fail(settings)
        clock = time.monotonic
        began = clock()
        started_at = time.time()
        pending: list[asyncio.Future[Any]] = []
        i = 0
        while i < total:
            elapsed = clock() - began
            if offsets[i] > elapsed:
                await asyncio.sleep(min(offsets[i] - elapsed, _MAX_SLEEP_S))
                if progress is not None:
                    progress(i, total, clock() - began)
                continue
            end = released_until(offsets, i, elapsed, batch)
            records = []
            for k in range(i, end):
                kind, row = kinds[k], rows[k]
                topic = topics[kind]
                records.append(
                    (
                        topic,
                        parts[row],
                        keys[row],
                        encode_event(
                            kind,
                            log.event_ids[k],
                            log.customer_ids[row],
                            stamps[k],
                            cents[k],
                            severities[k],
                            resolved[k],
                            log.complaint_ids.get(k),
                            category=log.categories.get(k),
                        ),
                    )
                )
                by_type[TYPE_BY_KIND[kind]] += 1
            if envelope:
                records = pack_envelopes(records, envelope, settings.max_envelope_bytes)
            for topic, partition, _, _ in records:
                messages[topic, partition] = messages.get((topic, partition), 0) + 1
            step = await send_records(producer, records)
            # One step in flight while the next is built: wait for the previous one's acks.
            await asyncio.gather(*pending)
            pending = step
            i = end
            if progress is not None:
                progress(i, total, clock() - began)
        await asyncio.gather(*pending)
        finished_at = time.time()
    return ReplayResult(
        produced=total,
        by_type=by_type,
        started_at=started_at,
        finished_at=finished_at if total else started_at,
        first_ts=int(stamps[0]) if total else 0,
        last_ts=int(stamps[-1]) if total else 0,
        speed=speed,
        messages=messages,
    )


class ProgressBar:
    """A carriage-return progress line on a terminal (plain lines every 10 % otherwise)."""

    def __init__(
        self, label: str = "replay", stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last_draw = 0.0
        self._last_decile = -1
        self._finished = False

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        """Draw (throttled to 10 per second on a terminal); draws the final state once."""
        if self._finished:
            return
        now = time.monotonic()
        final = self._finished = done >= total
        share = done / total if total else 1.0
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.tty:
            if not final and now - self._last_draw < 0.1:
                return
            filled = int(share * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {share:6.1%} {done:,}/{total:,} events "
                f"{elapsed:6.1f} s {rate:,.0f}/s"
            )
            if final:
                self.stream.write("\n")
        else:
            decile = int(share * 10)
            if decile == self._last_decile and not final:
                return
            self._last_decile = decile
            self.stream.write(
                f"{self.label}: {share:.0%} {done:,}/{total:,} events {elapsed:.1f} s\n"
            )
        self._last_draw = now
        self.stream.flush()


def describe_bad_rows(log: EventLog, path: str | Path) -> str | None:
    """One line about skipped rows (count and the first one), or None when all were valid."""
    if not log.bad_rows:
        return None
    line, reason = log.bad_rows[0]
    return (
        f"skipped {len(log.bad_rows):,} bad row(s) of {log.rows_read:,} in {path} "
        f"(first: line {line}: {reason})"
    )


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore replay``."""
    parser.add_argument("events", metavar="EVENTS", help="standard event CSV")
    parser.add_argument(
        "--speed",
        default="max",
        help="'max' (default: as fast as possible) or a factor like '100x': event time runs "
        "that many times faster than wall time",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"events per producer step; one step is in flight while the next is built "
        f"(default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--envelope",
        type=int,
        default=0,
        metavar="N",
        help="send batch envelopes of up to N events per topic-partition instead of one "
        "message per event (default 0: single events)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    speed = parse_speed(args.speed)
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, not {args.batch}")
    log = load_events(args.events)
    note = describe_bad_rows(log, args.events)
    if note:
        print(note, file=sys.stderr)
    if not log.events.shape[0]:
        raise CliError(f"no valid events in {args.events}", exit_code=1)
    pace = "max speed" if speed is None else f"{speed:g}x event time"
    print(
        f"replaying {log.events.shape[0]:,} events of {len(log.customer_ids):,} customer(s) "
        f"to {settings.bootstrap_servers} at {pace}",
        flush=True,
    )
    result = asyncio.run(
        replay_events(
            settings,
            log,
            speed,
            batch=args.batch,
            progress=ProgressBar(),
            envelope=args.envelope,
        )
    )
    print(result.summary())
    return 0
