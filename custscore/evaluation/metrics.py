"""Every figure of a backtest as one JSON document: ``metrics.json``.

The verdict, the tables and the plots are all rendered from this document, so what the
report says can be checked against the file. Floats are plain JSON numbers; an undefined
figure (a rate of nothing) is ``null``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.scoring_params import ScoringParams
from models.backtest import (
    CAPTURE_SHARES,
    NAIVE_DAYS,
    TOP_SHARE,
    Backtest,
    Ranking,
)
from models.params_file import BGNBD_FIELDS, GAMMA_GAMMA_FIELDS
from models.scorefile import format_time

__all__ = ["SCHEMA", "RunInfo", "metrics_document", "share_key"]

SCHEMA = "custscore.evaluation/1"


@dataclass(frozen=True)
class RunInfo:
    """What the backtest does not know: where the data and the model came from."""

    events: str  # the event file as given
    rows_read: int
    bad_rows: int
    customers_in_log: int
    first_event: int
    model_source: str  # "fitted on the calibration events" or the params file
    params: ScoringParams
    command: str  # the command line, for the report's header


def share_key(share: float) -> str:
    """The JSON key of a top share: "1%", "5%", "20%"."""
    return f"{share * 100:g}%"


def _day(epoch_s: int) -> str:
    return (format_time(epoch_s) or "")[:10]


def _num(value: float, digits: int = 6) -> float | None:
    return None if not math.isfinite(value) else round(float(value), digits)


def _ranking(r: Ranking, base_rate: float) -> dict[str, Any]:
    fw = r.framework
    doc: dict[str, Any] = {
        "key": fw.key,
        "label": fw.label,
        "group": fw.group,
        "definition": fw.definition,
        "kind": "classes" if fw.classes else "score",
        "order": list(fw.classes) if fw.classes else ("ascending" if fw.ascending else
                                                      "descending"),
        "auc": _num(r.auc),
        "top_decile_lift": _num(r.top_decile_lift),
        "top_decile_response_rate": _num(r.top_decile_lift * base_rate),
        "captured_20": _num(r.captured_20),
        "gains": {
            "contacted": [_num(v, 4) for v in r.gains[0].tolist()],
            "captured": [_num(v, 5) for v in r.gains[1].tolist()],
        },
    }
    if fw.classes:
        doc["classes"] = [
            {
                "name": c.name,
                "customers": c.customers,
                "buyers": c.buyers,
                "rate": _num(c.rate),
                "low": _num(c.low),
                "high": _num(c.high),
            }
            for c in r.classes
        ]
    return doc


def metrics_document(
    bt: Backtest, run: RunInfo, seconds: Mapping[str, float], plots: list[str]
) -> dict[str, Any]:
    """The JSON document of ``bt`` (without ``verdict``, which is derived from it)."""
    day = 86_400
    p = bt.purchases
    s = bt.spend
    frameworks = [_ranking(r, bt.base_rate) for r in bt.rankings]
    by_auc = sorted(frameworks, key=lambda f: -(f["auc"] if f["auc"] is not None else -1.0))
    for rank, f in enumerate(by_auc, start=1):
        f["rank"] = rank
    return {
        "schema": SCHEMA,
        "command": run.command,
        "input": {
            "events": run.events,
            "rows_read": run.rows_read,
            "bad_rows": run.bad_rows,
            "customers": run.customers_in_log,
            "events_calibration": bt.events_calibration,
            "events_holdout": bt.events_holdout,
        },
        "period": {
            "calibration_end": format_time(bt.calibration_end),  # as given
            "holdout_end": format_time(bt.holdout_end),
            # whole UTC days (models.holdout): calibration first..last day, holdout after it
            "calibration_first_day": _day(run.first_event),
            "calibration_last_day": _day(bt.as_of),
            "holdout_first_day": _day(bt.as_of + 1),
            "holdout_last_day": _day(bt.holdout_end),
            "holdout_days": bt.holdout_end // day - bt.as_of // day,
            "scored_at": format_time(bt.as_of),
            "alert_window_days": bt.recent_days,
            "alert_window_start": format_time(bt.as_of - bt.recent_days * day),
        },
        "model": {
            "source": run.model_source,
            "model_version": bt.model_version,
            "time_unit": p.time_unit,
            "bgnbd": {k: getattr(run.params, k) for k in BGNBD_FIELDS},
            "gamma_gamma": {k: getattr(run.params, k) for k in GAMMA_GAMMA_FIELDS},
            "window_months": run.params.window_months,
        },
        "population": {
            "calibration_buyers": bt.customers,
            "holdout_buyers": bt.holdout_buyers,
            "response_rate": _num(bt.base_rate),
            "new_in_holdout": bt.new_in_holdout,
            "one_time_buyers": bt.one_time[0],
            "one_time_bought_again": bt.one_time[1],
            "one_time_min_p_alive": _num(bt.one_time_p_alive),
        },
        "settings": {
            "naive_days": NAIVE_DAYS,
            "top_share": TOP_SHARE,
            "capture_shares": list(CAPTURE_SHARES),
        },
        "frameworks": frameworks,
        "purchases": {
            "buckets": [
                {
                    "frequency_cal": b.frequency_cal,
                    "customers": b.customers,
                    "expected": _num(b.expected),
                    "actual": _num(b.actual),
                }
                for b in p.buckets
            ],
            "mae": _num(p.mae),
            "rmse": _num(p.rmse),
            "bias": _num(p.bias),  # (expected total - actual total) / actual total
            "expected_total": _num(p.expected_total),
            "actual_total": _num(p.actual_total),
            "duration": _num(p.duration),
            "time_unit": p.time_unit,
        },
        "spend": {
            "holdout_spend": _num(s.holdout_spend, 2),
            "rank_correlation_clv": _num(s.rank_correlation),
            "rank_correlation_past_spend": _num(s.past_rank_correlation),
            "captured": {
                share_key(share): {
                    "clv": _num(s.by_clv[share]),
                    "past_spend": _num(s.by_past_spend[share]),
                    "ceiling": _num(s.by_holdout_spend[share]),
                }
                for share in CAPTURE_SHARES
            },
            "curve": {
                "shares": list(s.curve_shares),
                "clv": [_num(v, 5) for v in s.curve_clv],
                "past_spend": [_num(v, 5) for v in s.curve_past],
                "ceiling": [_num(v, 5) for v in s.curve_ceiling],
            },
        },
        "alerts": [
            {
                "key": a.rule.key,
                "label": a.rule.label,
                "group": a.rule.group,
                "definition": a.rule.definition,
                "flagged": a.flagged,
                "came_back": a.came_back,
                "precision": _num(a.precision),
                "precision_low": _num(a.precision_ci[0]),
                "precision_high": _num(a.precision_ci[1]),
                "lost": a.lost,
                "lost_flagged": a.lost_flagged,
                "recall": _num(a.recall),
                "recall_low": _num(a.recall_ci[0]),
                "recall_high": _num(a.recall_ci[1]),
            }
            for a in bt.alerts
        ],
        "plots": plots,
        "runtime": {
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
        },
    }
