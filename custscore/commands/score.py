"""``custscore score EVENTS``: batch scoring with the same kernels the worker uses."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from config.settings import Settings
from custscore.errors import CliError

__all__ = ["parse_as_of", "register"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "events", help="standard event CSV (event_id,type,customer_id,ts,amount,severity)"
    )
    parser.add_argument("--params", help="params JSON (default: settings, else built-in CDNOW fit)")
    parser.add_argument("--as-of", help="RFC 3339 time or epoch ms (default: the last event)")
    parser.add_argument("--out", required=True, help="scores CSV to write")
    parser.set_defaults(handler=_run)


def parse_as_of(text: str | None) -> int | None:
    """Epoch seconds of an --as-of value; raises CliError with one line."""
    if text is None:
        return None
    from models.events import EventValueError, parse_ts

    try:
        return parse_ts(text)
    except EventValueError as exc:
        raise CliError(f"--as-of: {exc}") from None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from engine.batch_scoring import fold_events, score_states
    from models.bundle import load_model
    from models.customers import customer_digests
    from models.events import EventValueError, read_event_csv
    from models.params_file import ParamsError
    from models.scorefile import write_scores_csv

    as_of = parse_as_of(args.as_of)
    try:
        model = load_model(
            args.params or settings.params_file, window_months=settings.effective_window_months
        )
    except ParamsError as exc:
        raise CliError(str(exc)) from None
    started = time.perf_counter()
    try:
        log = read_event_csv(args.events)
    except FileNotFoundError:
        raise CliError(f"no such file: {args.events}") from None
    except (EventValueError, UnicodeDecodeError, OSError) as exc:
        raise CliError(f"{args.events}: {exc}") from None
    read_s = time.perf_counter() - started
    if log.bad_rows:
        first = "; ".join(f"line {line}: {why}" for line, why in log.bad_rows[:3])
        print(f"skipped {len(log.bad_rows)} bad row(s) of {log.rows_read} ({first})")
    if not log.customer_ids:
        raise CliError(f"{args.events}: no valid events")
    at = log.last_ts if as_of is None else as_of
    events = log.events[log.events["ts"] <= at]
    k0 = time.perf_counter()
    states = fold_events(len(log.customer_ids), events, model.scoring)
    fold_s = time.perf_counter() - k0
    s0 = time.perf_counter()
    scores, _ = score_states(
        states, at, model.scoring, model.rfm_map, customer_digests(log.customer_ids)
    )
    score_s = time.perf_counter() - s0
    known = states["first_seen"] > 0
    ids = [c for c, k in zip(log.customer_ids, known.tolist(), strict=True) if k]
    try:
        rows = write_scores_csv(Path(args.out), ids, scores[known])
    except OSError as exc:
        raise CliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    total = time.perf_counter() - started
    print(
        f"scored {rows} customers from {events.shape[0]} events as of "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} "
        f"(model {model.model_version}) in {total:.2f} s "
        f"[read {read_s:.2f} s, fold {fold_s:.3f} s, score {score_s:.3f} s] -> {args.out}"
    )
    return 0
