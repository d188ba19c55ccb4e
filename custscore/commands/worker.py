"""``custscore worker``: run one streaming worker (topics are created first if missing)."""

from __future__ import annotations

import argparse
import asyncio

from config.settings import Settings
from custscore.errors import CliError

__all__ = ["register", "run_worker"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--no-create-topics", action="store_true", help="do not create missing topics"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    run_worker(settings, loglevel=args.loglevel, create_topics=not args.no_create_topics)
    return 0


def run_worker(settings: Settings, *, loglevel: str = "info", create_topics: bool = True) -> None:
    """Run a Faust worker in this process until it is stopped (SIGINT / SIGTERM)."""
    import faust

    from models.params_file import ParamsError
    from streams.admin import TopicError
    from streams.topics import ensure_topics
    from streams.worker import create_app

    if create_topics:
        try:
            asyncio.run(ensure_topics(settings))
        except (TopicError, TimeoutError) as exc:
            raise CliError(str(exc)) from None
    try:
        app = create_app(settings)
    except ParamsError as exc:
        raise CliError(str(exc)) from None
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
