"""``custscore demo``: embedded stack, topics, a worker, a CDNOW replay, then a live summary.

Steps: start the embedded broker and Valkey (run dir and ports from settings), create the
topics, start ``python -m custscore worker`` as a child process with the same settings (as
``CUSTSCORE_*`` variables), wait until it owns every partition, write the CDNOW event CSV,
replay it at max speed, wait until the worker's ``/metrics`` shows every event consumed and
the state writes settled (counts, never end offsets), wait for one population refresh, print
the summary (throughput, alerts, tiers, segments, KPIs, the marketing loop's contacts and
response, sample alerts), then stop the worker and the stack. Ctrl-C (or SIGTERM) at any
point stops every child.

Starting, watching and reading the worker is :mod:`custscore.supervision`, shared with the
benchmark, the soak test and the integration tests; this module is the demo command only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from custscore.clients import ensure_topics_or_fail
from custscore.errors import CliError
from custscore.supervision import (
    MetricsSample,
    Settled,
    WorkerProcess,
    WorkerWatch,
    read_alerts,
)
from streams.topics import TopicTable

if TYPE_CHECKING:
    from custscore.commands.replay import ReplayResult
    from custscore.stack import EmbeddedStack
    from models.uplift import OutcomeTable

__all__ = ["AlertSampler", "ProgressLine", "kpi_lines", "marketing_lines", "register", "run_demo"]


# --------------------------------------------------------------------------- the demo


class AlertSampler:
    """Picks a varied handful of alerts: win-backs of distinct reasons, then segment changes
    of distinct schemes. Call it with batches of alerts; it returns True once it has enough."""

    def __init__(self, win_backs: int = 2, segment_changes: int = 1) -> None:
        self.wanted = {"reason": win_backs, "scheme": segment_changes}
        self.picked: dict[str, list[dict[str, Any]]] = {"reason": [], "scheme": []}
        self._seen: set[str] = set()

    def __call__(self, alerts: list[dict[str, Any]]) -> bool:
        """Consider ``alerts``; True when every wanted kind is filled."""
        for alert in alerts:
            field_name = "reason" if "reason" in alert else "scheme"
            what = f"{field_name}:{alert.get(field_name)}"
            picks = self.picked[field_name]
            if what not in self._seen and len(picks) < self.wanted[field_name]:
                self._seen.add(what)
                picks.append(alert)
        return self.done

    @property
    def done(self) -> bool:
        """Every wanted kind is filled."""
        return all(len(self.picked[k]) >= n for k, n in self.wanted.items())

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The picks, win-backs first."""
        return self.picked["reason"] + self.picked["scheme"]


@dataclass
class _Children:
    """What the demo started, so that every exit path can stop it."""

    stack: EmbeddedStack | None = None
    worker: WorkerProcess | None = None

    def stop(self, out: Callable[[str], None]) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C waits
        try:
            if self.worker is not None:
                if self.worker.running():
                    out(f"stopping the worker (pid {self.worker.pid})")
                self.worker.stop()  # also reaps it and sweeps its process group
            if self.stack is not None:
                out("stopping the embedded broker and Valkey")
                self.stack.stop()
        finally:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt wherever the demo is.

    SIGINT too, explicitly: under Python's default handler, ``asyncio.run`` installs its own,
    which only cancels the running task, and a task that finishes anyway (a replay that
    completes its last send) returns normally: the interrupt was lost and the demo ran on.
    With a handler of ours installed, ``asyncio.run`` leaves SIGINT alone.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _fmt_counts(counts: dict[str, int], order: tuple[str, ...] = ()) -> str:
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{k} {counts[k]:,}" for k in keys)


def _fmt_number(value: Any, spec: str = ",.2f") -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: Any, spec: str = ".1%") -> str:
    return "n/a" if value is None else format(value, spec)


def _pp(value: float | None) -> str:
    """A difference of rates in percentage points."""
    return "n/a" if value is None else f"{value * 100:+.1f} pp"


def kpi_lines(stats: dict[str, Any]) -> list[str]:
    """The issue-15 KPI lines of the population block (docs/scoring.md, "KPIs")."""
    from engine.segments import ABCD_NAMES, QUADRANT_NAMES

    top = stats.get("pareto_top_share")
    lines = [
        f"  second-purchase rate {_pct(stats.get('second_purchase_rate'))} of buyers; "
        f"Pareto share: the top {_pct(top, '.0%')} of customers hold "
        f"{_pct(stats.get('pareto_share'))} of trailing-window spend"
    ]
    months = stats.get("monthly", [])[-3:]
    if months:
        flows = " | ".join(
            f"{m['month']} new {m['new']:,}, returning {m['returning']:,}, lost {m['lost']:,}"
            for m in months
        )
        lines.append(f"  customers by month  {flows}")
    by_category = stats.get("complaints_by_category", {})
    lines.append(
        f"  complaints    rate {_pct(stats.get('complaint_rate'), '.2%')} of customers, "
        f"{_fmt_number(stats.get('complaints_per_100_purchase_days'))} per 100 purchase days, "
        f"repurchase after a complaint {_pct(stats.get('repurchase_after_complaint'))} "
        f"(of {stats.get('complaint_buyers', 0):,} buyers); by category: "
        f"{_fmt_counts(by_category) or 'none'}"
    )
    lines.append(f"  quadrants     {_fmt_counts(stats.get('quadrants', {}), QUADRANT_NAMES[1:])}")
    lines.append(f"  A/B/C/D       {_fmt_counts(stats.get('abcd_classes', {}), ABCD_NAMES[1:])}")
    return lines


def marketing_lines(
    table: OutcomeTable, current_version: str, holdout_fraction: float
) -> list[str]:
    """The marketing loop block: contacts made and sent, the budget's suppressions, the
    holdout share, and the response rate and uplift by kind and group of the current holdout
    version (``custscore outcomes`` prints the full table)."""
    from models.uplift import GROUPS

    cells = [c for c in table.cells if c.holdout_version == current_version]
    kinds = sorted({c.kind for c in cells})
    lines: list[str] = []
    by_kind: dict[str, dict[str, list[int]]] = {}
    for c in cells:
        slot = by_kind.setdefault(c.kind, {g: [0, 0, 0] for g in GROUPS})[c.group]
        slot[0] += c.contacts
        slot[1] += c.closed
        slot[2] += c.responded
    sent = ", ".join(
        f"{kind} {by_kind[kind]['treated'][0]:,} (+{by_kind[kind]['holdout'][0]:,} held out)"
        for kind in kinds
    )
    lines.append(f"  contacts sent   {sent or 'none'}")
    suppressed = sum(n for _, _, n in table.suppressed)
    per_kind: dict[str, int] = {}
    for kind, _, n in table.suppressed:
        per_kind[kind] = per_kind.get(kind, 0) + n
    lines.append(
        f"  suppressed by the contact budget {suppressed:,}"
        + (f" ({_fmt_counts(per_kind)})" if suppressed else "")
    )
    made = sum(g[0] for k in by_kind.values() for g in k.values())
    held = sum(k["holdout"][0] for k in by_kind.values())
    lines.append(
        f"  holdout share   {_pct(holdout_fraction)} of customers (holdout_fraction), "
        f"{_pct(held / made if made else None)} of contacts made (version {current_version})"
    )
    for kind in kinds:
        groups = ", ".join(
            f"{g} {_pct(r / n if n else None)} of {n:,} closed"
            for g, (_, n, r) in by_kind[kind].items()
        )
        uplift = table.uplift(current_version, kind)
        interval = None if uplift is None else uplift.interval
        value = None if uplift is None else uplift.uplift
        band = "" if interval is None else f" (95 % {_pp(interval[0])} .. {_pp(interval[1])})"
        lines.append(f"  response rate   {kind}: {groups}; uplift {_pp(value)}{band}")
    if not cells:
        lines.append("  no contacts of the current holdout version counted yet")
    return lines


def _print_summary(
    replay: ReplayResult,
    settled: Settled,
    stats: dict[str, Any] | None,
    samples: list[dict[str, Any]],
    watch: WorkerWatch,
    kinds: Iterable[str],
    marketing: list[str] | None = None,
) -> None:
    from engine.segments import RFM_SEGMENT_NAMES, TIER_NAMES
    from models.scorefile import format_time

    sample = settled.sample
    span = max(settled.last_write_at - replay.started_at, 1e-9)
    _say()
    _say("== throughput")
    _say(f"  replay       {replay.summary()}")
    _say(
        f"  end to end   {replay.produced:,} events from first produce to last state write "
        f"in {span:.1f} s: {replay.produced / span:,.0f} events/s"
    )
    _say(
        f"  worker       {sample.events_in:,} events consumed, {sample.state_writes:,} state "
        f"writes, {sample.batches_done:,} batches, {sample.duplicates:,} duplicates skipped"
    )
    dead = sum(sample.dead_letter.values())
    _say(f"  dead letter  {dead:,}" + (f" ({_fmt_counts(sample.dead_letter)})" if dead else ""))
    _say()
    _say("== alerts published (custscore_alerts_total)")
    for kind in (*kinds, "holdout"):  # held-out customers' contacts: recorded, not sent
        by_reason = sample.reasons_of(kind)
        total = sum(by_reason.values())
        _say(f"  {kind:<15} {total:>9,}  ({_fmt_counts(by_reason) or 'none'})")
    if sample.suppressed:
        withheld = {f"{kind} {reason}": n for (kind, reason), n in sample.suppressed.items()}
        _say(
            f"  {'over budget':<15} {sum(sample.suppressed.values()):>9,}  "
            f"({_fmt_counts(withheld)}; contacts withheld by the contact budget)"
        )
    _say()
    if stats is None:
        _say("== population: /stats did not answer")
    else:
        age = float(stats.get("oldest_sketch_age_s", math.nan))
        _say(
            f"== population at {format_time(int(stats.get('watermark', 0)))} "
            f"(/stats; snapshot {age:.1f} s old)"
        )
        _say(
            f"  customers {stats.get('customers', 0):,}, buyers {stats.get('buyers', 0):,}, "
            f"effective members {stats.get('effective_members', 0):,}"
        )
        churn = stats.get("rolling_churn_rate")
        _say(
            f"  rolling churn rate {_fmt_number(churn, '.1%')}, repurchase frequency "
            f"{_fmt_number(stats.get('repurchase_frequency_per_year'))}/year, "
            f"avg {_fmt_number(stats.get('avg_days_between_purchases'), ',.1f')} days "
            "between purchases"
        )
        tiers = dict(stats.get("value_tiers", {}))
        tiers["not effective"] = tiers.pop("none", 0)
        _say(f"  value tiers   {_fmt_counts(tiers, (*TIER_NAMES[::-1], 'not effective'))}")
        _say(f"  RFM segments  {_fmt_counts(stats.get('rfm_segments', {}), RFM_SEGMENT_NAMES)}")
        _say(f"  lifecycle     {_fmt_counts(stats.get('lifecycle', {}))}")
        for line in kpi_lines(stats):
            _say(line)
    _say()
    if marketing is not None:
        _say("== marketing loop (Redis counters; `custscore outcomes` prints the full table)")
        for line in marketing:
            _say(line)
        _say()
    _say(f"== {len(samples)} sample alerts")
    for alert in samples:
        _say(json.dumps(alert, indent=2, ensure_ascii=False))
    _say()
    _say(f"metrics: {watch.url('/metrics')}  (also /stats, /healthz, /customers/<id>)")


DEMO_SESSION_TIMEOUT_S = 10.0


def run_demo(
    settings: Settings,
    *,
    events_file: Path | None = None,
    timeout_s: float = 600.0,
    keep_running: bool = False,
) -> int:
    """The whole demo; returns the exit code. Children are stopped on every exit path."""
    from custscore.commands.replay import ProgressBar, describe_bad_rows, load_events, replay_events
    from custscore.processes import port_in_use
    from custscore.stack import EmbeddedStack

    if settings.kafka_bootstrap or settings.redis_url:
        raise CliError(
            "the demo runs its own embedded broker and Valkey: unset CUSTSCORE_KAFKA_BOOTSTRAP "
            "and CUSTSCORE_REDIS_URL (or run `custscore worker` and `custscore replay` instead)"
        )
    if port_in_use(settings.web_host, settings.web_port):
        raise CliError(
            f"worker web port {settings.web_port} on {settings.web_host} is already in use; "
            "choose another with CUSTSCORE_WEB_PORT or stop what uses it"
        )
    if events_file is not None and not events_file.is_file():
        raise CliError(f"event file not found: {events_file}", exit_code=1)
    if "session_timeout_s" not in settings.model_fields_set:
        # a one-worker group on the embedded broker: its join waits half the session timeout
        settings = settings.model_copy(update={"session_timeout_s": DEMO_SESSION_TIMEOUT_S})
    children = _Children()
    run_dir = Path(settings.run_dir)
    with _sigterm_as_interrupt():
        try:
            began = time.monotonic()
            stack = EmbeddedStack.from_settings(settings, tie_to_parent=True)
            info = stack.start()
            children.stack = stack
            _say(
                f"stack     broker {info.bootstrap_servers}, valkey {info.redis_url} "
                f"(run dir {info.run_dir}, {time.monotonic() - began:.1f} s)"
            )
            asyncio.run(ensure_topics_or_fail(settings))
            _say(f"topics    created, {settings.partitions} partitions each")
            worker = WorkerProcess.start(settings, run_dir / "worker.log")
            children.worker = worker
            watch = WorkerWatch.for_settings(settings, worker)
            _say(f"worker    pid {worker.pid}, log {worker.log_path}; waiting for its group join")
            if events_file is None:
                from custscore.commands.datasets import find_cdnow, write_cdnow_events

                events_file = run_dir / "cdnow_events.csv"
                cdnow = write_cdnow_events(find_cdnow(), events_file)
                _say(
                    f"dataset   CDNOW master log: {cdnow.events:,} purchases of "
                    f"{cdnow.customers:,} customers ({cdnow.first_day} to {cdnow.last_day}) "
                    f"-> {events_file}"
                )
            log = load_events(events_file)
            note = describe_bad_rows(log, events_file)
            if note:
                _say(f"          {note}")
            joined = watch.wait_ready(settings.partitions, timeout_s)
            _say(f"worker    owns all {settings.partitions} partitions after {joined:.1f} s")
            replay = asyncio.run(replay_events(settings, log, None, progress=ProgressBar()))
            _say(f"replay    {replay.summary()}")
            settled = watch.wait_consumed(
                replay.produced,
                timeout_s,
                quiet_s=max(2.0, 2 * settings.sweep_interval_s),
                progress=ProgressLine(replay.produced),
            )
            _say(f"worker    consumed everything; settled {settled.waited_s:.1f} s after replay")
            stats = _population(settings, watch, settled)
            alert_topics = TopicTable.from_settings(settings).alerts
            expected = {
                topic: settled.sample.alerts_of(kind) for kind, topic in alert_topics.items()
            }
            sampler = AlertSampler()
            asyncio.run(read_alerts(settings, expected, enough=sampler))
            samples = sampler.samples
            marketing = _marketing(settings)
            _print_summary(replay, settled, stats, samples, watch, alert_topics, marketing)
            if keep_running:
                _say(
                    "\nworker and stack keep running; try `custscore inspect <customer id>` "
                    "with the same settings. Ctrl-C stops everything."
                )
                while True:
                    worker.check_alive()
                    time.sleep(1.0)
        finally:
            children.stop(lambda text: print(text, file=sys.stderr, flush=True))
    return 0


class ProgressLine:
    """The worker's consumption as a progress line on stderr."""

    def __init__(self, expected: int) -> None:
        from custscore.commands.replay import ProgressBar

        self.bar = ProgressBar("worker", sys.stderr)
        self.expected = expected
        self.began = time.monotonic()

    def __call__(self, sample: MetricsSample) -> None:
        self.bar(min(sample.events_in, self.expected), self.expected, time.monotonic() - self.began)


def _population(settings: Settings, watch: WorkerWatch, settled: Settled) -> dict[str, Any] | None:
    wait_s = settings.snapshot_interval_s + 10.0
    _say(f"population waiting up to {wait_s:.0f} s for a snapshot refresh after the last write")
    stats = watch.wait_snapshot(settled.last_write_at, settings.partitions, wait_s)
    if stats is not None:
        age = float(stats.get("oldest_sketch_age_s", math.nan))
        computed = time.time() - age
        note = "after" if computed >= settled.last_write_at else "BEFORE"
        _say(f"population snapshot {age:.1f} s old, computed {note} the last state write")
    return stats


def _marketing(settings: Settings) -> list[str]:
    """The marketing loop block from the worker's Redis counters (one line if unreadable)."""
    from custscore.commands.outcomes import read_outcomes
    from models.control_group import ControlGroup

    try:
        table = asyncio.run(read_outcomes(settings))
    except CliError as exc:
        return [f"  counters unreadable: {exc}"]
    current = ControlGroup(settings.holdout_salt, settings.holdout_fraction).version
    return marketing_lines(table, current, settings.holdout_fraction)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore demo``."""
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep the stack and worker running until Ctrl-C",
    )
    parser.add_argument(
        "--events",
        type=Path,
        metavar="FILE",
        help="replay this event CSV instead of the CDNOW master log",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="longest wait for the worker's group join, and again for it to consume "
        "the replay (default 600)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout <= 0:
        raise CliError(f"--timeout must be > 0, not {args.timeout:g}")
    return run_demo(
        settings, events_file=args.events, timeout_s=args.timeout, keep_running=args.keep_running
    )
