"""Top costs from a py-spy ``--format raw --threads --idle`` recording of a worker.

    python -m loadtest.profile_report docs/bench/profile-custscore.txt [--top 25]

A raw recording is one line per distinct stack: ``thread (id): Name;frame;frame;... count``,
frames as ``function (file:line)``, root first. With ``--idle`` a sample is taken whether or
not the thread runs, so a thread's samples are its wall time; a sample whose leaf is the event
loop's ``select`` (or a thread wait) is *idle*, every other sample is *busy* (running, or
runnable and waiting for a CPU).

Each busy sample gets one category: an :data:`ANCESTORS` frame anywhere in the event-loop
callback that is running wins (outbound sends are one cost whether the leaf is in aiokafka,
asyncio or a socket write); otherwise the deepest frame whose file matches a
:data:`CATEGORIES` prefix, skipping frames of generic plumbing (asyncio, selectors, ...) so that
a socket write under redis-py counts as Redis; a sample with no such frame is event-loop
overhead. Shares are of the thread's busy samples.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ANCESTORS", "CATEGORIES", "ThreadProfile", "analyse", "main", "parse", "summary"]

# (category, file path prefixes as py-spy prints them; any one matches)
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decode + validate (streams/codec.py, msgspec)", ("streams/codec.py", "models/events.py")),
    (
        "numba kernels (apply_events, evaluate, detect_alerts)",
        ("engine/kernels.py", "engine/scoring.py", "engine/alert_rules.py", "engine/btyd.py"),
    ),
    ("numba dispatch / cache load", ("numba/", "llvmlite/")),
    ("state records (engine/state.py)", ("engine/",)),
    (
        "alert + score JSON (streams/alert_payloads.py, alert_kinds.py, models/scorefile.py)",
        ("streams/alert_payloads.py", "streams/alert_kinds.py", "models/scorefile.py"),
    ),
    (
        "Redis client (redis-py: commands, pipeline, parsing; hiredis packing)",
        ("redis/", "streams/redis_conn.py"),
    ),
    (
        "state store glue (streams/store.py, streams/keys.py)",
        ("streams/store.py", "streams/keys.py"),
    ),
    ("Prometheus metrics", ("prometheus_client/",)),
    (
        "population refresh (streams/population_refresh.py, models/population_sketch.py)",
        ("streams/population_refresh.py", "models/population_sketch.py"),
    ),
    (
        "processor glue (streams/processor.py, evaluation.py, batch_plan.py)",
        ("streams/processor.py", "streams/evaluation.py", "streams/batch_plan.py"),
    ),
    ("agent glue (streams/worker.py)", ("streams/worker.py",)),
    ("aiokafka fetch + record parsing", ("aiokafka/consumer/", "aiokafka/record/")),
    ("aiokafka client / protocol I/O", ("aiokafka/",)),
    (
        "Faust producer / topics (sends)",
        ("faust/topics.py", "faust/transport/producer.py", "faust/channels.py"),
    ),
    (
        "Faust stream per-event path (consumer loop, streams, conductor, acks)",
        (
            "faust/streams.py",
            "faust/transport/conductor.py",
            "faust/transport/consumer.py",
            "faust/transport/utils.py",
            "faust/events.py",
            "faust/agents/",
            "faust/sensors/",
            "mode/services.py",
            "mode/utils/queues.py",
            "mode/utils/locks.py",
        ),
    ),
    (
        "Faust consumer thread hand-off (mode.threads)",
        ("mode/threads.py", "faust/transport/drivers/aiokafka.py"),
    ),
    ("Faust / mode other", ("faust/", "mode/")),
    ("web views (aiohttp: the harness's /metrics scrapes)", ("aiohttp/", "yarl/", "multidict/")),
    ("baseline worker code (loadtest/)", ("loadtest/",)),
    ("logging", ("logging/",)),
)
ANCESTORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "aiokafka producer (alerts, score updates out; streams/kafka.py batches)",
        ("aiokafka/producer/", "streams/kafka.py"),
    ),
)
EVENT_LOOP = "asyncio event loop + task switching"
_GENERIC = (
    "asyncio/",
    "selectors.py",
    "<frozen",
    "threading.py",
    "contextlib.py",
    "functools.py",
    "typing.py",
    "<string>",
    "abc.py",
    "weakref.py",
    "enum.py",
    "_weakrefset.py",
    "socket.py",
)
_CALLBACK = "Handle._run (asyncio/events.py"
IDLE_LEAVES = (
    "select (selectors.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "_wait_for_tstate_lock",
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


@dataclass
class ThreadProfile:
    """Samples of one thread."""

    name: str
    samples: int = 0
    idle: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    self_fn: Counter[str] = field(default_factory=Counter)  # busy leaf functions
    inclusive_fn: Counter[str] = field(default_factory=Counter)  # busy, any frame

    @property
    def busy(self) -> int:
        return self.samples - self.idle


def _function(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m.group('func')} ({m.group('file')})" if m else frame


def _file(frame: str) -> str:
    m = _FRAME.match(frame)
    return m.group("file") if m else ""


def category(frames: list[str]) -> str:
    """The category of one busy sample (frames root first); see the module doc."""
    cut = max((i for i, f in enumerate(frames) if f.startswith(_CALLBACK)), default=-1)
    part = frames[cut + 1 :] if cut >= 0 else frames
    files = [_file(f) for f in part]
    for name, prefixes in ANCESTORS:
        if any(f.startswith(prefixes) for f in files):
            return name
    for path in reversed(files):
        if not path or path.startswith(_GENERIC):
            continue
        for name, prefixes in CATEGORIES:
            if path.startswith(prefixes):
                return name
    if cut >= 0 or any(f.startswith("asyncio/") for f in files):
        return EVENT_LOOP
    return "other"


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, count) of every line of a raw recording."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = "all"
        if frames and frames[0].startswith("thread ("):
            thread = frames[0]
            frames = frames[1:]
        out.append((thread, [f for f in frames if f], int(count)))
    return out


def analyse(path: Path) -> dict[str, ThreadProfile]:
    """Per-thread idle/busy split, busy categories and functions."""
    threads: dict[str, ThreadProfile] = {}
    for thread, frames, n in parse(path):
        tp = threads.setdefault(thread, ThreadProfile(thread))
        tp.samples += n
        leaf = frames[-1] if frames else ""
        if not frames or any(x in leaf for x in IDLE_LEAVES):
            tp.idle += n
            continue
        tp.categories[category(frames)] += n
        tp.self_fn[_function(leaf)] += n
        for fn in {_function(f) for f in frames}:
            tp.inclusive_fn[fn] += n
    return threads


def summary(path: Path, top: int = 15) -> dict[str, Any]:
    """A JSON-ready summary, busiest thread first (for the report)."""
    out: dict[str, Any] = {}
    for name, tp in sorted(analyse(path).items(), key=lambda kv: -kv[1].busy):
        busy = max(tp.busy, 1)
        out[name] = {
            "samples": tp.samples,
            "busy": tp.busy,
            "busy_share": tp.busy / max(tp.samples, 1),
            "categories": [[c, n, n / busy] for c, n in tp.categories.most_common()],
            "self": [[f, n, n / busy] for f, n in tp.self_fn.most_common(top)],
            "inclusive": [[f, n, n / busy] for f, n in tp.inclusive_fn.most_common(top * 4)],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("recording", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    for name, info in summary(args.recording, args.top).items():
        print(f"== {name}: {info['samples']:,} samples, busy {info['busy_share']:.1%}")
        print("   categories (share of busy samples):")
        for c, n, share in info["categories"]:
            print(f"   {share:6.1%} {n:>7,}  {c}")
        print("   self (leaf) functions:")
        for f, n, share in info["self"]:
            print(f"   {share:6.1%} {n:>7,}  {f}")
        print("   inclusive:")
        for f, n, share in info["inclusive"][: args.top * 2]:
            print(f"   {share:6.1%} {n:>7,}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
