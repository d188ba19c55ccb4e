"""``custscore fit INPUT --out PARAMS.json``: fit BG/NBD + Gamma-Gamma and write a params file.

INPUT is an RFM summary CSV (``customer_id,frequency,recency,T[,monetary_value]``, times in the
unit named by ``--time-unit``; thresholds and policy stay the built-in ones) or a standard event
CSV, folded and scored at its last event by the engine's own kernels (models.calibrate), which
also calibrates the RFM, tier, A/B/C/D, quadrant and rhythm thresholds. Gamma-Gamma is fitted
on the rows with frequency > 0 and monetary_value > 0 when there is spend data; otherwise the
built-in spend parameters are kept, and the output says so.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from config.settings import Settings
from custscore.errors import CliError

if TYPE_CHECKING:
    from engine.scoring_params import ScoringParams
    from models.events import EventLog

__all__ = ["FitOutcome", "FittedModel", "fit_events", "fit_input", "register"]


@dataclass(frozen=True)
class _Data:
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary_value: NDArray[np.float64] | None
    thresholds: Mapping[str, float]
    bad_rows: int = 0


@dataclass(frozen=True)
class FitOutcome:
    """What :func:`fit_input` fitted and wrote."""

    params: Any  # models.params_file.ParamsFile
    lines: list[str]  # the report printed by the command


@dataclass(frozen=True)
class FittedModel:
    """Fitted and calibrated parameters, not yet written: what :func:`fit_events` returns."""

    scoring: ScoringParams
    fit: dict[str, Any]  # the params file's ``fit`` section
    lines: list[str]  # the report ``custscore fit`` prints, without its last ("wrote") line


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="RFM summary CSV or event CSV")
    parser.add_argument("--out", required=True, metavar="PARAMS.json", help="params file to write")
    parser.add_argument(
        "--time-unit",
        choices=["days", "weeks"],
        default=None,
        help="BTYD time unit: of the summary's recency/T (required for a summary), "
        "or to fit events in (default days)",
    )
    parser.add_argument(
        "--kind",
        choices=["auto", "summary", "events"],
        default="auto",
        help="what INPUT is (default: from its header)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    outcome = fit_input(Path(args.input), Path(args.out), time_unit=args.time_unit, kind=args.kind)
    for line in outcome.lines:
        print(line)
    return 0


def _sniff(path: Path) -> str:
    from models.summary import summary_header

    try:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), None)
    except FileNotFoundError:
        raise CliError(f"input not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    if not header:
        raise CliError(f"{path}: empty file (a header line is required)")
    if summary_header(header) is not None:
        return "summary"
    names = {h.strip().lower() for h in header}
    if {"event_id", "type", "customer_id", "ts"} <= names:
        return "events"
    raise CliError(
        f"{path}: cannot tell the kind of file from its header ({','.join(header)}); expected "
        "customer_id,frequency,recency,T[,monetary_value] or event_id,type,customer_id,ts,..."
    )


def _read_summary(path: Path) -> _Data:
    from models.summary import SummaryError, read_summary

    try:
        s = read_summary(path)
    except SummaryError as exc:
        raise CliError(str(exc)) from None
    return _Data(s.frequency, s.recency, s.T, s.monetary_value, {})


def _read_events(path: Path, time_unit: str) -> _Data:
    """BTYD inputs and calibrated thresholds of an event CSV, as ``custscore score`` sees it."""
    from models.events import EventValueError, read_event_csv

    try:
        log = read_event_csv(path)
    except FileNotFoundError:
        raise CliError(f"input not found: {path}") from None
    except (EventValueError, OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if log.events.shape[0] == 0:
        raise CliError(f"{path}: no valid events")
    return _history_data(log, time_unit, None, str(path))


def _history_data(log: EventLog, time_unit: str, as_of: int | None, label: str) -> _Data:
    """BTYD inputs and calibrated thresholds of an event log at ``as_of`` (default: its last
    event).

    The log is folded and scored with the engine's own kernels (models.calibrate), so x, t_x,
    T and the cut points are the quantities the worker scores.
    """
    from engine.segments import DEFAULT_RFM_MAP
    from models.calibrate import calibrate, summarize_log
    from models.params_file import THRESHOLD_FIELDS, TIME_UNITS, default_params

    params = default_params().scoring._replace(unit_seconds=TIME_UNITS[time_unit])
    history = summarize_log(log, params, DEFAULT_RFM_MAP, as_of)
    try:
        calibrated = calibrate(history, params)
    except ValueError as exc:
        raise CliError(f"{label}: cannot calibrate thresholds: {exc}") from None
    return _Data(
        history.frequency,
        history.recency,
        history.T,
        history.monetary_value,
        {name: getattr(calibrated, name) for name in THRESHOLD_FIELDS},
        bad_rows=len(log.bad_rows),
    )


def fit_events(log: EventLog, *, as_of: int | None = None, time_unit: str = "days",
               label: str = "events") -> FittedModel:
    """Fit and calibrate on the events of ``log`` at or before ``as_of`` (default: the last
    event), exactly as ``custscore fit EVENTS`` does on a file of those events; raises
    CliError (one line, starting with ``label``) when it cannot."""
    return _fit(_history_data(log, time_unit, as_of, label), label, "events", time_unit)


def fit_input(path: Path, out: Path, *, time_unit: str | None = None,
              kind: str = "auto") -> FitOutcome:
    """Fit the models on ``path`` and write ``out``; raises CliError (one line) on bad input."""
    from models.params_file import ParamsError, save_params

    if kind == "auto":
        kind = _sniff(path)
    if kind == "summary":
        if time_unit is None:
            raise CliError(
                "an RFM summary carries no time unit: pass --time-unit days or --time-unit weeks"
            )
        data = _read_summary(path)
    else:
        time_unit = time_unit or "days"
        data = _read_events(path, time_unit)

    fitted = _fit(data, str(path), kind, time_unit)
    try:
        written = save_params(out, fitted.scoring, fitted.fit)
    except ParamsError as exc:
        raise CliError(str(exc)) from None
    lines = [
        *fitted.lines,
        f"wrote {out} (model_version {written.model_version}, time unit {time_unit})",
    ]
    return FitOutcome(params=written, lines=lines)


def _fit(data: _Data, label: str, kind: str, time_unit: str) -> FittedModel:
    """BG/NBD + Gamma-Gamma fitted on ``data``, with its thresholds, and the report lines."""
    from engine.scoring_params import ScoringParams
    from models.bgnbd import fit_bgnbd
    from models.gamma_gamma import fit_gamma_gamma
    from models.params_file import TIME_UNITS, default_params

    start = time.perf_counter()
    n = int(data.frequency.shape[0])
    n_repeat = int(np.count_nonzero(data.frequency > 0))
    try:
        bg = fit_bgnbd(data.frequency, data.recency, data.T)
    except ValueError as exc:
        raise CliError(f"{label}: cannot fit BG/NBD: {exc}") from None

    base = default_params().scoring
    lines = [f"fitted {label} ({kind}, {time_unit}): {n:,} customers, {n_repeat:,} repeat buyers"]
    if data.bad_rows:
        lines.append(f"note: {data.bad_rows:,} invalid event rows were skipped")
    rows = [("BG/NBD" if i == 0 else "", k, f"{v:.6f}")
            for i, (k, v) in enumerate(bg.params.items())]
    rows.append(("", "loglik", f"{bg.loglik:.4f}"))
    rows.append(("", "fit", f"{bg.iterations} iterations, {bg.seconds:.3f} s"))
    notes: list[str] = []
    if not bg.converged:
        notes.append("warning: the BG/NBD optimiser did not reach its gradient tolerance")

    gg_values: dict[str, float] = {"p": base.p, "q": base.q, "v": base.v}
    gg_meta: dict[str, Any] = {"gamma_gamma": "default"}
    if data.monetary_value is None:
        notes.append("note: no monetary_value column: Gamma-Gamma keeps the built-in "
                     f"parameters (p {base.p:g}, q {base.q:g}, v {base.v:g})")
    else:
        sel = (data.frequency > 0) & (data.monetary_value > 0)
        try:
            gg = fit_gamma_gamma(data.frequency[sel], data.monetary_value[sel])
        except ValueError as exc:
            raise CliError(f"{label}: cannot fit Gamma-Gamma: {exc}") from None
        if gg.q <= 1.0:
            notes.append(f"warning: fitted Gamma-Gamma q = {gg.q:.4g} <= 1 (infinite mean "
                         "spend): the built-in spend parameters are kept")
        else:
            gg_values = gg.params
            gg_meta = {"gamma_gamma": "fitted", "gamma_gamma_n": gg.n_customers,
                       "gamma_gamma_loglik": gg.loglik,
                       "gamma_gamma_converged": gg.converged}
            rows.extend(("Gamma-Gamma" if i == 0 else "", k, f"{v:.6f}")
                        for i, (k, v) in enumerate(gg.params.items()))
            rows.append(("", "loglik", f"{gg.loglik:.4f}"))
            rows.append(("", "fit", f"{gg.iterations} iterations, {gg.seconds:.3f} s"))
            if not gg.converged:
                notes.append("warning: the Gamma-Gamma optimiser did not reach its gradient "
                             "tolerance")

    values: dict[str, Any] = base._asdict()
    values.update(unit_seconds=TIME_UNITS[time_unit], **bg.params, **gg_values)
    values.update(data.thresholds)
    scoring = ScoringParams(**values)
    meta: dict[str, Any] = {
        "source": label,
        "kind": kind,
        "n_customers": n,
        "n_repeat": n_repeat,
        "loglik": bg.loglik,
        "converged": bg.converged,
        **gg_meta,
        "seconds": round(time.perf_counter() - start, 6),
        "fitted_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    width = max(len(r[0]) for r in rows)
    lines.extend(f"  {m:<{width}}  {k:<6}  {v}" for m, k, v in rows)
    lines.extend(notes)
    return FittedModel(scoring=scoring, fit=meta, lines=lines)
