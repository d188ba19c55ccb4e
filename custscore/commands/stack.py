"""``custscore stack up / down / status``: the embedded broker and Valkey on their own.

``up`` starts both servers in the background, prints their addresses and returns;
``down`` stops them; ``status`` shows what runs where and whether it answers (exit
code 0 only when every recorded server runs and answers).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from custscore.stack import EmbeddedStack

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["register"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``up``, ``down`` and ``status`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)

    up = sub.add_parser(
        "up",
        help="start the embedded broker and Valkey in the background",
        description="Start the embedded Kafka-protocol broker (Tansu, memory-only) and Valkey "
        "on loopback, wait until both answer, print their addresses and return.",
    )
    up.add_argument(
        "--keep-redis-data",
        action="store_true",
        help="keep Valkey's append-only file from the previous run (the broker always "
        "starts empty, so old offset fences may then skip new events)",
    )
    up.set_defaults(handler=_up)

    down = sub.add_parser("down", help="stop the embedded broker and Valkey")
    down.set_defaults(handler=_down)

    status = sub.add_parser(
        "status",
        help="what runs where, and whether it answers (exit code 1 unless all answer)",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    stack = EmbeddedStack.from_settings(settings, keep_redis_data=args.keep_redis_data)
    began = time.monotonic()
    info = stack.start()
    elapsed = time.monotonic() - began
    for server in info.servers:
        print(f"{server.name:<6} {server.address:<28} pid {server.pid:<7} log {server.log}")
    print(
        f"embedded stack up in {elapsed:.2f} s (run dir {info.run_dir}); "
        "stop it with `custscore stack down`",
        flush=True,
    )
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stack = EmbeddedStack.from_settings(settings)
    info = stack.stop()
    if info is None:
        print(f"embedded stack not running (nothing recorded in {stack.run_dir})")
        return 0
    what = ", ".join(f"{s.name} {s.address} (pid {s.pid})" for s in info.servers)
    print(f"stopped {what}")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    report = EmbeddedStack.from_settings(settings).status()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.healthy else 1
