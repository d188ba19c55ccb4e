"""``custscore bench``: the load test and benchmark report (loadtest/).

    custscore bench [--quick]            run every phase, write docs/bench/ and BENCHMARKS.md
    custscore bench generate ...         synthetic BG/NBD + Gamma-Gamma event stream
    custscore bench report               rebuild the BENCHMARKS.md section and plots from results
    custscore bench memory --customers N Redis bytes per customer at scale
    custscore bench process [--envelope N]  BatchProcessor.process in-process, µs per event

The full run (``make bench``) starts its own embedded broker and Valkey on free ports, so it
never touches a stack you have running. See loadtest/bench.py for what each phase measures.

A plug-in of the ``custscore`` command line: pyproject.toml declares this module under the
``custscore.commands`` entry points, and custscore/cli.py finds it there (the CLI never
imports loadtest). The harness modules are imported inside the handlers, so that
``custscore --help`` and ``custscore bench --help`` do not load them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from config.settings import Settings
from custscore.errors import CliError
from custscore.processes import free_port
from custscore.stack import EmbeddedStack

__all__ = ["HELP", "register"]

HELP = "load test and benchmark report"


def register(parser: argparse.ArgumentParser) -> None:
    _run_options(parser)
    parser.set_defaults(handler=_run)
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    gen = sub.add_parser("generate", help="synthetic event stream (CSV or Kafka)")
    from loadtest.generate import add_arguments

    add_arguments(gen)
    gen.set_defaults(handler=_generate)
    rep = sub.add_parser("report", help="rebuild the BENCHMARKS.md section and plots")
    rep.add_argument("--results", type=Path, default=Path("docs/bench/results.json"))
    rep.add_argument("--out-dir", type=Path, default=Path("docs/bench"))
    rep.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"))
    rep.set_defaults(handler=_report)
    mem = sub.add_parser("memory", help="Redis bytes per customer at scale (own embedded stack)")
    mem.add_argument("--customers", type=int, default=1_000_000)
    mem.add_argument("--visit-rate", type=float, default=0.0)
    mem.add_argument("--partitions", type=int, default=8)
    mem.add_argument("--out", type=Path, default=Path("docs/bench/memory.json"))
    mem.set_defaults(handler=_memory)
    proc = sub.add_parser(
        "process", help="BatchProcessor.process in-process, null publisher (own Valkey)"
    )
    proc.add_argument("--customers", type=int, default=50_000, help="synthetic customers")
    proc.add_argument("--events", type=int, default=100_000, help="events of the stream")
    proc.add_argument("--envelope", type=int, default=1000, help="0: single events only")
    proc.add_argument("--cprofile", type=int, default=0, metavar="N", help="cProfile: top N")
    proc.set_defaults(handler=_process)
    lat = sub.add_parser(
        "latency", help="event->alert latency at several fetch and batch waits (own stack)"
    )
    lat.add_argument("--rate", type=float, default=1000.0, help="events/s produced")
    lat.add_argument("--seconds", type=float, default=25.0, help="seconds produced per trial")
    lat.add_argument(
        "--grid",
        default="1500:0.2,100:0.2,100:0.05,20:0.05",
        help="fetch_max_wait_ms:batch_within_s pairs, comma-separated",
    )
    lat.add_argument("--out", type=Path, default=Path("docs/bench/latency.json"))
    lat.set_defaults(handler=_latency)
    fp = sub.add_parser("fetch-probe", help="how long the broker holds a fetch (own stack)")
    fp.add_argument("--out", type=Path, default=Path("docs/bench/fetch_probe.json"))
    fp.set_defaults(handler=_fetch_probe)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run (CI, < 2 min): 12,000 events, 4 partitions, no live phase, "
        "5 s paced phase, no profile; writes no markdown unless --markdown is given",
    )
    parser.add_argument(
        "--source",
        default="synthetic",
        help="'synthetic' (default), 'cdnow' (the CDNOW master log) or an event CSV path",
    )
    parser.add_argument("--customers", type=int, default=None, help="synthetic customers")
    parser.add_argument("--visit-rate", type=float, default=None, help="synthetic visits/week")
    parser.add_argument("--events", type=int, default=None, help="events taken from the stream")
    parser.add_argument(
        "--naive-events",
        type=int,
        default=None,
        help="the naive baseline drains only this many (it is slow)",
    )
    parser.add_argument(
        "--backfill-customers",
        type=int,
        default=None,
        help="customers of the backfill scenario (default 1,000,000)",
    )
    parser.add_argument(
        "--backfill-events",
        type=int,
        default=None,
        help="events of the backfill scenario (default 20,000,000; 0 skips it; --quick: 0)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes per system")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument(
        "--systems",
        default=None,
        help="comma-separated subset of raw,faust,custscore,naive (default: all)",
    )
    parser.add_argument("--no-live", action="store_true", help="skip the live end-to-end phase")
    parser.add_argument("--paced-seconds", type=float, default=None, help="0 skips latency")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy phase")
    parser.add_argument("--profile-seconds", type=float, default=None)
    parser.add_argument(
        "--profile-systems",
        default=None,
        help="comma-separated systems to profile (default: custscore)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="worker setting for every run, e.g. --set batch_size=2000 (repeatable)",
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="plots and results.json")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file whose load-test section is regenerated (default BENCHMARKS.md; "
        "--quick writes none unless given)",
    )
    parser.add_argument("--keep-run-dir", action="store_true", help="keep worker logs")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.bench import run_bench
    from loadtest.bench_records import BenchConfig

    overrides: dict[str, object] = {"workers": args.workers, "source": args.source}
    for name, value in (
        ("customers", args.customers),
        ("visit_rate", args.visit_rate),
        ("limit", args.events),
        ("naive_limit", args.naive_events),
        ("partitions", args.partitions),
        ("paced_seconds", args.paced_seconds),
        ("profile_seconds", args.profile_seconds),
        ("backfill_customers", args.backfill_customers),
        ("backfill_events", args.backfill_events),
    ):
        if value is not None:
            overrides[name] = value
    if args.systems:
        systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
        unknown = sorted(set(systems) - {"raw", "faust", "custscore", "naive"})
        if unknown:
            raise CliError(f"unknown system(s): {', '.join(unknown)}")
        overrides["systems"] = systems
    if args.profile_systems:
        overrides["profile_systems"] = tuple(
            s.strip() for s in args.profile_systems.split(",") if s.strip()
        )
    if args.no_live:
        overrides["live"] = False
    if args.no_profile:
        overrides["profile"] = False
    worker_settings: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or name.strip().lower() not in Settings.model_fields:
            raise CliError(f"--set needs FIELD=VALUE with a settings field, not {item!r}")
        worker_settings[name.strip().lower()] = value
    overrides["worker_settings"] = worker_settings
    if args.keep_run_dir:
        overrides["keep_run_dir"] = True
    if args.workers < 1:
        raise CliError("--workers must be >= 1")
    if args.quick:
        out_dir = args.out_dir or Path(".custscore/bench-quick")
        config = BenchConfig.quick_config(out_dir=out_dir, **overrides)
    else:
        config = BenchConfig(out_dir=args.out_dir or Path("docs/bench"), **overrides)  # type: ignore[arg-type]
    doc = run_bench(config, say=lambda text: print(text, flush=True))
    markdown = (
        args.markdown
        if args.markdown is not None
        else (None if args.quick else Path("BENCHMARKS.md"))
    )
    from loadtest.report import write_report

    written = write_report(doc, config.out_dir, markdown, command=_command_line())
    for path in written:
        print(f"wrote     {path}")
    return 0


def _command_line() -> str:
    argv = sys.argv[1:]
    return "custscore " + " ".join(argv) if argv else "custscore bench"


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.generate import run

    try:
        return run(args, settings)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.report import write_report

    try:
        doc = json.loads(args.results.read_text())
    except FileNotFoundError:
        raise CliError(f"results not found: {args.results} (run `custscore bench` first)") from None
    for path in write_report(doc, args.out_dir, args.markdown, command=None):
        print(f"wrote {path}")
    return 0


def _fetch_probe(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.fetch_probe import probe

    with tempfile.TemporaryDirectory(prefix="custscore-probe-") as run_dir:
        port = free_port()
        stack = EmbeddedStack(
            run_dir,
            broker_port=port,
            redis_port=free_port(),
            tie_to_parent=True,
            start_timeout_s=30.0,
        )
        stack.start()
        try:
            result = asyncio.run(probe(stack.bootstrap_servers, "fetch-probe"))
        finally:
            stack.stop()
    for t in result["trials"]:
        print(
            f"fetch_max_wait_ms={t['fetch_max_wait_ms']}: p50 {t['p50']:.0f} ms, "
            f"p95 {t['p95']:.0f} ms, p99 {t['p99']:.0f} ms ({t['n']:,} records)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _process(args: argparse.Namespace, settings: Settings) -> int:
    import cProfile
    import pstats

    from loadtest.generate import StreamSpec
    from loadtest.process_bench import measure_process
    from loadtest.producer import Stream
    from models.params_file import default_params

    if args.customers < 1 or args.events < 1 or args.envelope < 0:
        raise CliError("--customers and --events must be >= 1, --envelope >= 0")
    spec = StreamSpec.from_params(default_params(), args.customers, seed=1, visit_rate=0.25)
    stream = Stream.synthetic(spec, limit=args.events)
    print(f"stream    {stream.name}: {len(stream):,} events of {stream.customers:,} customers")
    with tempfile.TemporaryDirectory(prefix="custscore-process-") as run_dir:
        stack = EmbeddedStack.start_on_free_ports(Path(run_dir), tie_to_parent=True)
        try:
            for n, envelope in enumerate(sorted({0, args.envelope})):
                run = settings.model_copy(
                    update={
                        "redis_url": None,
                        "redis_port": stack.redis_port,
                        "redis_key_prefix": f"p{n}",
                    }
                )
                profiler = cProfile.Profile() if args.cprofile else None
                if profiler is not None:
                    profiler.enable()
                r = measure_process(run, stream, envelope)
                if profiler is not None:
                    profiler.disable()
                print(
                    f"{r.form}: {r.cpu_us_per_event:.1f} µs CPU/event, "
                    f"{r.wall_us_per_event:.1f} µs wall/event (Redis {r.redis_s:.2f} s, "
                    f"evaluation {r.kernel_s:.2f} s of {r.wall_s:.2f} s; "
                    f"{r.batches:,} batches, {r.alerts:,} alerts)"
                )
                if profiler is not None:
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
        finally:
            stack.stop()
    return 0


def _latency(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.bench import run_latency_sweep
    from loadtest.bench_records import BenchConfig

    try:
        grid = [
            (int(fetch), float(within))
            for fetch, _, within in (item.partition(":") for item in args.grid.split(","))
        ]
    except ValueError:
        raise CliError(
            f"--grid needs fetch_max_wait_ms:batch_within_s pairs: {args.grid!r}"
        ) from None
    if args.rate <= 0 or args.seconds <= 0:
        raise CliError("--rate and --seconds must be > 0")
    config = BenchConfig(out_dir=args.out.parent)
    doc = run_latency_sweep(
        config, grid, args.rate, args.seconds, say=lambda text: print(text, flush=True)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"wrote     {args.out}")
    return 0


def _memory(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.memory_scale import run_memory

    run_memory(args.customers, args.visit_rate, args.partitions, args.out)
    return 0
