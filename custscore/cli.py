"""The ``custscore`` command line: one sub-command module each, imported only when used.

Built-in commands are the modules of :data:`COMMANDS`; other packages add commands as
plug-ins, by declaring a module under the ``custscore.commands`` entry-point group
(loadtest declares ``bench``), so the command line never imports them by name. A command
module has ``register(parser)``, which sets ``handler(args, settings) -> exit code``; a
plug-in also names its one-line help in ``HELP``.

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
from importlib.metadata import entry_points

from config.settings import SettingsError, load_settings
from custscore.errors import CliError

__all__ = ["COMMANDS", "PLUGIN_GROUP", "command_table", "main"]

# built-in sub-command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("custscore.commands.demo", "embedded stack + worker + CDNOW replay, then a summary"),
    "stack": ("custscore.commands.stack", "start / stop / show the embedded broker and Valkey"),
    "worker": ("custscore.commands.worker", "run a streaming worker"),
    "datasets": ("custscore.commands.datasets", "write bundled real datasets as event CSV"),
    "fit": ("custscore.commands.fit", "fit BG/NBD + Gamma-Gamma and calibrate thresholds"),
    "score": ("custscore.commands.score", "batch scoring of an event CSV"),
    "evaluate": (
        "custscore.commands.evaluate",
        "calibration/holdout backtest of every framework, with a report",
    ),
    "replay": (
        "custscore.commands.replay",
        "produce an event CSV to the input topics in event-time order",
    ),
    "export": ("custscore.commands.export", "every customer's streaming state as a scores CSV"),
    "inspect": ("custscore.commands.inspect", "one customer's state, scores and segments as JSON"),
    "forget": ("custscore.commands.forget", "erase a customer everywhere custscore wrote them"),
    "outcomes": ("custscore.commands.outcomes", "contacts, response and uplift over the holdout"),
    "migrate": (
        "custscore.commands.migrate",
        "rewrite stored state records of an older layout version",
    ),
}
# entry-point group of plug-in commands: name -> module path (e.g. bench = "loadtest.command")
PLUGIN_GROUP = "custscore.commands"


def command_table() -> dict[str, tuple[str, str | None]]:
    """Sub-command name -> (module path, one-line help): the built-in commands, then every
    installed plug-in (its help is None until its module is imported). A plug-in cannot
    replace a built-in command."""
    table: dict[str, tuple[str, str | None]] = dict(COMMANDS)
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        table.setdefault(ep.name, (ep.value, None))
    return table


def _parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="custscore", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML settings file (default: $CUSTSCORE_CONFIG)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    table = command_table()
    wanted = next((a for a in argv if a in table), None)
    for name, (module, help_text) in table.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not f"{module}.".startswith(f"{exc.name}."):
                raise  # the module exists; something it imports is missing
            sub.add_parser(name, help=f"{help_text or name} (not available in this build)")
            continue
        help_text = help_text or getattr(mod, "HELP", None) or ""
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
