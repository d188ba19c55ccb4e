"""``custscore outcomes``: measured response of the marketing loop, from the Redis counters.

Sums every partition's contact and outcome counters (streams.contact_counters) and prints the
outcome table of models.uplift: per holdout version (the one of the current settings first,
marked "current"), contacts, closed windows, responses, response rate and response spend per
closed contact by kind, reason, action, tier and group, then the treated - holdout uplift with
Newcombe's 95 % interval; finally the contacts the budget suppressed. ``--json`` prints the
same as JSON (the ``outcomes`` object of the worker's ``/stats``). docs/outcomes.md says how
to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from custscore.clients import open_redis
from custscore.errors import CliError

if TYPE_CHECKING:
    from config.settings import Settings
    from models.uplift import OutcomeTable

__all__ = ["read_outcomes", "register"]


async def read_outcomes(settings: Settings) -> OutcomeTable:
    """The outcome table of every partition's counters under the settings' key prefix."""
    from redis.exceptions import RedisError

    from models.uplift import outcome_table
    from streams.contact_counters import read_counters

    async with open_redis(settings) as client:
        try:
            counters = await read_counters(client, settings.redis_key_prefix)
        except RedisError as exc:
            raise CliError(
                f"cannot read the contact counters at {settings.redis_address}: {exc}",
                exit_code=1,
            ) from None
        except ValueError as exc:  # a field whose value is not an integer
            raise CliError(
                f"unreadable contact counters under key prefix {settings.redis_key_prefix!r}: "
                f"{exc}",
                exit_code=1,
            ) from None
    return outcome_table(counters)


def register(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``custscore outcomes``."""
    parser.add_argument(
        "--json", action="store_true", help="print the table as JSON (as in the worker's /stats)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from models.control_group import ControlGroup
    from models.uplift import format_outcome_lines, outcome_stats

    current = ControlGroup(settings.holdout_salt, settings.holdout_fraction).version
    table = asyncio.run(read_outcomes(settings))
    if args.json:
        print(json.dumps(outcome_stats(table, current), indent=2, allow_nan=False))
    else:
        print("\n".join(format_outcome_lines(table, current)))
    return 0
