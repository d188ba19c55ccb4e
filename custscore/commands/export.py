"""``custscore export --out SCORES.csv``: every customer's streaming state as a scores CSV.

Reads every state record of every partition from Redis (SCAN + MGET, never KEYS), evaluates
them at the largest partition watermark (or ``--as-of``) against the exact population snapshot
with :func:`engine.batch_scoring.score_states`, and writes them with
:func:`models.scorefile.write_scores_csv`: the same code and columns as ``custscore score``, so
the two files agree on the same events.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from custscore.clients import open_store
from custscore.errors import CliError

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["ExportResult", "StreamingStates", "export_scores", "read_all_states", "register"]


@dataclass(frozen=True)
class StreamingStates:
    """Every stored state record, with each partition's watermark."""

    customer_ids: list[str]
    blobs: list[bytes]
    watermarks: dict[int, int]  # partition -> watermark (epoch s, 0 = none)

    @property
    def watermark(self) -> int:
        """The largest partition watermark (epoch s), 0 when no partition has one."""
        return max(self.watermarks.values(), default=0)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    as_of: int  # epoch s
    as_of_source: str  # "largest partition watermark" or "--as-of"
    model_version: str


async def read_all_states(settings: Settings) -> StreamingStates:
    """Every customer's state blob from Redis, over all ``settings.partitions`` partitions."""
    ids: list[str] = []
    blobs: list[bytes] = []
    watermarks: dict[int, int] = {}
    async with open_store(settings) as store:
        for partition in range(settings.partitions):
            watermarks[partition], _ = await store.fence(partition)
            for customer_id, blob in await store.scan_states(partition):
                ids.append(customer_id)
                blobs.append(blob)
    return StreamingStates(ids, blobs, watermarks)


def export_scores(settings: Settings, out: str | Path, as_of: int | None = None) -> ExportResult:
    """Score every stored customer at ``as_of`` (default: largest watermark) into ``out``."""
    from engine.batch_scoring import score_states
    from engine.state import decode_states
    from models.bundle import load_model
    from models.customers import customer_digests
    from models.params_file import ParamsError
    from models.scorefile import write_scores_csv

    try:
        bundle = load_model(settings.params_file, window_months=settings.effective_window_months)
    except ParamsError as exc:
        raise CliError(str(exc)) from None
    found = asyncio.run(read_all_states(settings))
    if not found.customer_ids:
        raise CliError(
            f"no customer state under key prefix {settings.redis_key_prefix!r} at "
            f"{settings.redis_address} (has a worker consumed any events?)",
            exit_code=1,
        )
    source = "--as-of"
    if as_of is None:
        as_of, source = found.watermark, "largest partition watermark"
    try:
        states = decode_states(list(found.blobs))
    except ValueError as exc:
        raise CliError(f"unreadable state record in Redis: {exc}", exit_code=1) from None
    scores, _ = score_states(
        states, as_of, bundle.scoring, bundle.rfm_map, customer_digests(found.customer_ids)
    )
    path = Path(out)
    try:
        rows = write_scores_csv(path, found.customer_ids, scores)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", exit_code=1) from None
    return ExportResult(path, rows, as_of, source, bundle.model_version)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore export``."""
    parser.add_argument("--out", required=True, metavar="SCORES.csv", help="scores CSV to write")
    parser.add_argument(
        "--as-of",
        metavar="TIME",
        help="evaluate the stored states at this event time: RFC 3339 with offset, or epoch "
        "milliseconds (default: the largest partition watermark); events already applied stay "
        "applied, so an earlier time does not rewind the state",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from custscore.commands.score import parse_as_of
    from models.scorefile import format_time

    as_of = parse_as_of(args.as_of)
    result = export_scores(settings, args.out, as_of)
    print(
        f"exported {result.rows:,} customers to {result.path} as of "
        f"{format_time(result.as_of)} ({result.as_of_source}; model {result.model_version})"
    )
    return 0
