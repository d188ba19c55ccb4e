"""The ``custscore`` command line: one sub-command module each, imported only when used.

Errors reach the user as one line on stderr and a non-zero exit code, never a traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from config.settings import SettingsError, load_settings
from custscore.errors import CliError

__all__ = ["main"]

# sub-command name -> (module under custscore.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "embedded stack + worker + CDNOW replay, then a summary"),
    "stack": ("stack", "start / stop / show the embedded broker and Valkey"),
    "worker": ("worker", "run a streaming worker"),
    "datasets": ("datasets", "write bundled real datasets as event CSV"),
    "fit": ("fit", "fit BG/NBD + Gamma-Gamma and calibrate thresholds"),
    "score": ("score", "batch scoring of an event CSV"),
    "replay": ("replay", "produce an event CSV to the input topics in event-time order"),
    "export": ("export", "every customer's streaming state as a scores CSV"),
    "inspect": ("inspect", "one customer's state, scores and segments as JSON"),
    "forget": ("forget", "erase a customer everywhere custscore wrote them"),
    "migrate": ("migrate", "rewrite stored state records of an older layout version"),
    "bench": ("bench", "load test and benchmark report"),
}


def _parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="custscore", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML settings file (default: $CUSTSCORE_CONFIG)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        try:
            mod = importlib.import_module(f"custscore.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"custscore.commands.{module}":
                raise
            sub.add_parser(name, help=f"{help_text} (not available in this build)")
            continue
        mod.register(sub.add_parser(name, help=help_text, description=help_text))
    return parser, parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        _, args = _parser(args_list)
        handler = getattr(args, "handler", None)
        if handler is None:
            raise CliError(f"'{args.command}' is not available in this build")
        settings = load_settings(args.config)
        return int(handler(args, settings) or 0)
    except (CliError, SettingsError) as exc:
        print(f"custscore: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("custscore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `custscore inspect X | head`): not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0
    except Exception as exc:
        if debug:
            raise
        print(f"custscore: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
