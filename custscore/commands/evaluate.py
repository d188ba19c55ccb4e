"""``custscore evaluate EVENTS --calibration-end TIME --out DIR``: a calibration/holdout backtest.

Which framework predicts response best (issue 16; docs/evaluation.md)? The model is fitted
on the calibration events with ``custscore fit``'s code (the default, ``--fit``) or loaded
(``--params``); every calibration buyer is scored at the calibration end with ``custscore
score``'s code and the win-back rules run as in the worker (models.backtest); the holdout
says who bought again, how often and for how much. DIR receives ``report.html`` (one
self-contained page), ``report.md``, ``metrics.json`` (every figure), the PNG plots and,
with ``--fit``, the fitted ``params.json``.

The plots need matplotlib, the optional extra ``custscore[report]``: without it the command
stops with one line saying what to install, unless ``--no-plots`` asks for the report
without plots.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from custscore.errors import CliError

if TYPE_CHECKING:
    from custscore.evaluation.progress import StepProgress
    from models.backtest import Backtest
    from models.bundle import ModelBundle
    from models.events import EventLog

__all__ = ["REPORT_FILES", "register"]

# the files every run writes into --out (plus the PNGs, and params.json with --fit)
REPORT_FILES = ("report.html", "report.md", "metrics.json")
_STEPS = ("read", "fit", "score", "timeline", "metrics", "plots")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", metavar="EVENTS", help="standard event CSV")
    parser.add_argument("--calibration-end", required=True, metavar="TIME",
                        help="end of the calibration period (inclusive): RFC 3339 or epoch ms")
    parser.add_argument("--holdout-end", metavar="TIME",
                        help="end of the holdout period (inclusive; default: the last event)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--fit", action="store_true",
                       help="fit BG/NBD + Gamma-Gamma and calibrate the thresholds on the "
                       "calibration events, as `custscore fit` does (the default)")
    model.add_argument("--params", metavar="FILE",
                       help="use this params file instead of fitting (it should not have "
                       "seen the holdout)")
    parser.add_argument("--recent-days", type=int, default=90, metavar="N",
                        help="window at the end of calibration in which the win-back rules "
                        "are compared (default 90)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write to")
    parser.add_argument("--no-plots", action="store_true",
                        help="write the report without plots (no matplotlib needed)")
    parser.add_argument("--doc", metavar="FILE",
                        help="also write the Markdown report to FILE, its plot links "
                        "relative to FILE (make evaluate: docs/evaluation.md)")
    parser.set_defaults(handler=_run)


def _time(option: str, text: str) -> int:
    from models.events import EventValueError, parse_ts

    try:
        return parse_ts(text)
    except EventValueError as exc:
        raise CliError(f"{option}: {exc}") from None


def _writable_dir(path: Path, option: str) -> Path:
    """``path`` created if needed and checked writable (before any long work)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".evaluate-"):
            pass
    except FileExistsError:
        raise CliError(f"{option} {path}: exists and is not a directory") from None
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def _load(path: str) -> EventLog:
    from models.events import EventValueError, read_event_csv

    try:
        log = read_event_csv(path)
    except FileNotFoundError:
        raise CliError(f"event file not found: {path}") from None
    except IsADirectoryError:
        raise CliError(f"event file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    except EventValueError as exc:
        raise CliError(f"{path}: {exc}") from None
    if log.bad_rows:
        line, reason = log.bad_rows[0]
        print(f"skipped {len(log.bad_rows):,} bad row(s) of {log.rows_read:,} in {path} "
              f"(first: line {line}: {reason})", file=sys.stderr)
    if not log.events.shape[0]:
        raise CliError(f"{path}: no valid events")
    return log


def _model(args: argparse.Namespace, settings: Settings, log: EventLog, calibration_end: int,
           out: Path) -> tuple[ModelBundle, str, list[str]]:
    """The model, where it came from, and the fit's report lines."""
    from custscore.commands.fit import fit_events
    from models.bundle import load_model
    from models.holdout import day_end
    from models.params_file import ParamsError, save_params
    from models.scorefile import format_time

    window = settings.effective_window_months
    if args.params:
        try:
            return load_model(args.params, window_months=window), f"params file {args.params}", []
        except ParamsError as exc:
            raise CliError(str(exc)) from None
    as_of = day_end(calibration_end)  # the calibration period is whole UTC days
    label = f"{args.events} up to {format_time(as_of)}"
    fitted = fit_events(log, as_of=as_of, label=label)
    path = out / "params.json"
    try:
        save_params(path, fitted.scoring, fitted.fit)
        model = load_model(path, window_months=window)
    except (ParamsError, OSError) as exc:
        raise CliError(f"cannot write {path}: {exc}") from None
    return model, "fitted on the calibration events, saved as params.json", fitted.lines


def _command_line(args: argparse.Namespace) -> str:
    """The command as run (rebuilt from the parsed arguments, defaults spelt out)."""
    argv = ["evaluate", args.events, "--calibration-end", args.calibration_end]
    if args.holdout_end is not None:
        argv += ["--holdout-end", args.holdout_end]
    argv += ["--params", args.params] if args.params else ["--fit"]
    argv += ["--recent-days", str(args.recent_days), "--out", args.out]
    if args.no_plots:
        argv.append("--no-plots")
    if args.doc:
        argv += ["--doc", args.doc]
    return "custscore " + shlex.join(argv)


@dataclass(frozen=True)
class _Result:
    backtest: Backtest
    doc: dict[str, Any]
    pngs: dict[str, bytes]
    source: str
    fit_lines: list[str]


def _evaluate(args: argparse.Namespace, settings: Settings, out: Path,
              progress: StepProgress, started: float, calibration_end: int,
              holdout_end: int | None) -> _Result:
    """Read, fit or load, backtest, and render the plots; the figures as ``metrics.json``."""
    from custscore.evaluation import warm

    child = warm.start()  # compiles the timeline kernels on the other core, if not cached
    try:
        return _steps(args, settings, out, progress, started, calibration_end, holdout_end,
                      child)
    finally:
        warm.stop(child)


def _steps(args: argparse.Namespace, settings: Settings, out: Path, progress: StepProgress,
           started: float, calibration_end: int, holdout_end: int | None,
           child: subprocess.Popen[bytes] | None) -> _Result:
    from custscore.evaluation import plots as plotting
    from custscore.evaluation import warm
    from custscore.evaluation.metrics import RunInfo, metrics_document
    from custscore.evaluation.verdict import verdict
    from models.backtest import check_period, run_backtest

    progress.update("read")
    log = _load(args.events)
    try:
        holdout_end = check_period(log, calibration_end, holdout_end)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    progress.done("read")
    progress.update("fit")
    model, source, fit_lines = _model(args, settings, log, calibration_end, out)
    if not args.params:
        progress.done("fit")

    current = ["score"]

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage != current[0]:
            progress.done(current[0])
            current[0] = stage
            if stage == "timeline":
                warm.wait(child)  # then the timeline kernels load from numba's cache
        progress.update(stage, done, total)

    try:
        bt = run_backtest(log, model, calibration_end, holdout_end,
                          recent_days=args.recent_days, progress=on_progress)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    progress.done(current[0])

    run = RunInfo(
        events=args.events,
        rows_read=log.rows_read,
        bad_rows=len(log.bad_rows),
        customers_in_log=len(log.customer_ids),
        first_event=int(log.events["ts"].min()),
        model_source=source,
        params=model.scoring,
        command=_command_line(args),
    )
    doc = metrics_document(bt, run, progress.seconds, [])
    pngs: dict[str, bytes] = {}
    if not args.no_plots:
        progress.update("plots")
        doc["plots"] = plotting.plot_names(doc)
        pngs = plotting.render_plots(doc, lambda d, t: progress.update("plots", d, t))
        progress.done("plots")
    doc["runtime"]["seconds"] = {k: round(v, 3) for k, v in progress.seconds.items()}
    doc["runtime"]["seconds"]["total"] = round(time.perf_counter() - started, 3)
    doc["verdict"] = verdict(doc)
    return _Result(bt, doc, pngs, source, fit_lines)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # checked before the engine (numba) is imported, so a missing extra is said at once
    from custscore.evaluation import plots as plotting

    started = time.perf_counter()
    if not args.no_plots and not plotting.available():
        raise CliError("the report's plots need matplotlib, which is not installed: "
                       f"{plotting.INSTALL_HINT} (or pass --no-plots)")
    calibration_end = _time("--calibration-end", args.calibration_end)
    holdout_end = None if args.holdout_end is None else _time("--holdout-end", args.holdout_end)
    if args.recent_days < 1:
        raise CliError(f"--recent-days must be at least 1, not {args.recent_days}")

    from custscore.evaluation.progress import StepProgress
    from custscore.evaluation.report import render_html, render_markdown
    from custscore.evaluation.verdict import pct
    out = _writable_dir(Path(args.out), "--out")
    doc_path = Path(args.doc) if args.doc else None
    if doc_path is not None:
        _writable_dir(doc_path.parent, "--doc")

    progress = StepProgress(_STEPS if not args.no_plots else _STEPS[:-1])
    if args.params:
        progress.skip("fit")
    try:
        result = _evaluate(args, settings, out, progress, started, calibration_end, holdout_end)
    finally:
        progress.close()  # an error message starts on a line of its own
    doc, pngs = result.doc, result.pngs

    written: list[Path] = []
    try:
        for name, data in pngs.items():
            (out / name).write_bytes(data)
        (out / "metrics.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        (out / "report.md").write_text(render_markdown(doc, list(pngs)), encoding="utf-8")
        (out / "report.html").write_text(render_html(doc, pngs), encoding="utf-8")
        if doc_path is not None:
            rel = os.path.relpath(out, doc_path.parent)
            doc_path.write_text(render_markdown(doc, list(pngs), rel), encoding="utf-8")
            written.append(doc_path)
    except OSError as exc:
        raise CliError(f"cannot write the report to {out}: {exc.strerror or exc}") from None

    for line in result.fit_lines:
        print(line)
    bt, period = result.backtest, doc["period"]
    print(f"evaluated {bt.customers:,} calibration buyers of {args.events} (calibration "
          f"through {period['calibration_last_day']}, holdout {period['holdout_first_day']} to "
          f"{period['holdout_last_day']}: {pct(bt.base_rate)} bought again) with model "
          f"{bt.model_version}, {result.source}")
    print(doc["verdict"])
    extra = ", params.json" if not args.params else ""
    also = "".join(f"; {p}" for p in written)
    print(f"wrote {', '.join(REPORT_FILES)}{extra} and {len(pngs)} plots to {out}{also} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0
