"""Calibration/holdout backtest: which framework predicts who buys again, how much and when.

``custscore evaluate`` (issue 16; docs/evaluation.md) splits an event log at a calibration end,
scores every calibration buyer at the end of that UTC day with the code ``custscore score`` uses
(:func:`engine.batch_scoring.fold_events` and :func:`~engine.batch_scoring.score_states`),
runs the worker's own timeline (:func:`engine.timeline.run_timeline`) over the calibration
events for the win-back alerts, and reads off what happened in the holdout
(:mod:`models.holdout`). Every framework then becomes a ranking of the calibration buyers,
judged on holdout purchase yes/no (:mod:`models.evaluation_metrics`):

- a categorical framework ranks by a **fixed order of its classes** (:data:`CLASS_ORDERS`,
  most likely to buy first), written down before any holdout is seen; never an order
  learned from the holdout;
- a continuous score ranks by its value (lower first for churn risk and days since the last
  purchase).

Also: expected vs actual holdout purchases per calibration frequency (BG/NBD), CLV against
holdout spend, and the win-back rules against the naive 90-day silence rule
(:data:`ALERT_RULES`). Pure: numpy, engine and models; no files, no clock but timings.

Over 500 lines because it is one backtest with its declarations: what is judged (the
frameworks, their class orders and the alert rules, as data), the result types that
``metrics.json`` is built from, and the steps between them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.alert_rules import KIND_WIN_BACK, REASON_RISK_RISE, REASON_SILENCE
from engine.batch_scoring import fold_events, score_states
from engine.btyd import expected_purchases_array
from engine.scoring_params import DAY
from engine.state import KIND_PURCHASE, new_states
from engine.timeline import customer_slices, order_events, run_timeline
from models.bundle import ModelBundle
from models.customers import customer_digests
from models.evaluation_metrics import (
    CalibrationBucket,
    calibration_buckets,
    capture_shares,
    error_summary,
    gains_curve,
    precision_recall,
    rank_correlation,
    roc_auc,
    top_share_lift,
    wilson_interval,
)
from models.events import EventLog
from models.holdout import HoldoutSplit, calibration_mask, day_end, split_calibration_holdout
from models.params_file import TIME_UNITS
from models.scorefile import CLASS_NAMES, format_time

__all__ = [
    "ALERT_RULES",
    "CAPTURE_SHARES",
    "CLASS_ORDERS",
    "FRAMEWORKS",
    "NAIVE_DAYS",
    "AlertResult",
    "AlertRule",
    "Backtest",
    "ClassResponse",
    "Framework",
    "Progress",
    "PurchaseCounts",
    "Ranking",
    "SpendCapture",
    "alert_flags",
    "check_period",
    "class_score",
    "run_backtest",
]

NAIVE_DAYS = 90  # the naive rules' window: "bought in the last 90 days", "90 days of silence"
CAPTURE_SHARES = (0.01, 0.05, 0.20)  # top shares of customers for the spend capture
TOP_SHARE = 0.10  # top-decile lift
CALIBRATION_BUCKETS = 7  # calibration frequencies 0..6, as lifetimes' calibration plot
_TIMELINE_CHUNK = 4000  # customers per run_timeline call (bounds its evaluation arrays)

# Progress callback: (stage, done, total); stages "score", "timeline", "metrics".
Progress = Callable[[str, int, int], None]


def _score_names() -> tuple[str, ...]:
    return ("5", "4", "3", "2", "1", "none")


# Fixed class orders, most likely to buy again first. They are assumptions written down in
# advance (docs/evaluation.md, "Class orders"), not fitted: the RFM segments follow the
# segment list's own best-to-worst order (engine/segments.py) except that Can't Lose Them
# (FM 5) comes before At Risk (FM 3-4) at the same recency; tiers and A/B/C/D by spend;
# quadrants by frequency first (purchase frequency predicts purchasing), then spend;
# lifecycle by stage (growth and maturity before decline before termination).
CLASS_ORDERS: dict[str, tuple[str, ...]] = {
    "rfm_segment": (
        "Champions",
        "Loyal",
        "Potential Loyalist",
        "New",
        "Promising",
        "Need Attention",
        "About to Sleep",
        "Can't Lose Them",
        "At Risk",
        "Hibernating",
        "Lost",
        "none",
    ),
    "value_tier": ("vip", "major", "normal", "small", "none"),
    "abcd_class": ("A", "B", "C", "D", "none"),
    "quadrant": (
        "gold",
        "potential_high_frequency",
        "potential_high_spend",
        "maintain",
        "none",
    ),
    "lifecycle": ("active", "won_back", "new", "at_risk", "lapsed", "lost", "prospect", "none"),
    "r_score": _score_names(),
    "f_score": _score_names(),
    "m_score": _score_names(),
    "bought_90d": ("yes", "no"),
}
# engine code -> name, for the classes read off the scores
_CODE_NAMES: dict[str, tuple[str, ...]] = {
    **CLASS_NAMES,
    "r_score": ("none", "1", "2", "3", "4", "5"),
    "f_score": ("none", "1", "2", "3", "4", "5"),
    "m_score": ("none", "1", "2", "3", "4", "5"),
    "bought_90d": ("no", "yes"),
}


@dataclass(frozen=True)
class Framework:
    """One way of ranking customers by how likely they are to buy again."""

    key: str  # metrics.json key; the score column or derived value it ranks by
    label: str
    group: str  # "segmentation", "rfm score", "model" or "naive"
    definition: str
    classes: tuple[str, ...] = ()  # categorical: the fixed order, most likely first
    ascending: bool = False  # continuous: a lower value ranks first


FRAMEWORKS: tuple[Framework, ...] = (
    Framework("rfm_segment", "RFM segment", "segmentation", "the 11 named RFM segments",
              CLASS_ORDERS["rfm_segment"]),
    Framework("value_tier", "value tier", "segmentation",
              "customer pyramid by trailing spend rank (vip 1 %, major 4 %, normal 15 %)",
              CLASS_ORDERS["value_tier"]),
    Framework("abcd_class", "A/B/C/D", "segmentation",
              "classes by cumulative share of trailing sales (70/20/5/5 %)",
              CLASS_ORDERS["abcd_class"]),
    Framework("quadrant", "four quadrants", "segmentation",
              "frequency x average spend, split at the population means",
              CLASS_ORDERS["quadrant"]),
    Framework("lifecycle", "lifecycle stage", "segmentation",
              "prospect, new, active, at risk, lapsed, lost, won back",
              CLASS_ORDERS["lifecycle"]),
    Framework("r_score", "R score", "rfm score", "recency quintile score 1-5",
              CLASS_ORDERS["r_score"]),
    Framework("f_score", "F score", "rfm score", "trailing-window frequency score 1-5",
              CLASS_ORDERS["f_score"]),
    Framework("m_score", "M score", "rfm score", "trailing-window spend score 1-5",
              CLASS_ORDERS["m_score"]),
    Framework("p_alive", "P(alive)", "model", "BG/NBD probability of being alive"),
    Framework("churn_risk", "churn risk", "model",
              "1 - P(alive) adjusted for complaints and visits (lower ranks first)",
              ascending=True),
    Framework("expected_purchases_90d", "expected purchases (90 d)", "model",
              "BG/NBD expected purchases in the next 90 days"),
    Framework("expected_purchases_holdout", "expected purchases (holdout)", "model",
              "BG/NBD expected purchases over the holdout period"),
    Framework("clv", "CLV", "model", "discounted expected spend over the CLV horizon"),
    Framework("bought_90d", f"bought in the last {NAIVE_DAYS} days", "naive",
              f"a purchase in the last {NAIVE_DAYS} days of calibration (the complement of a "
              f"fixed {NAIVE_DAYS}-day silence flag at the calibration end)",
              CLASS_ORDERS["bought_90d"]),
    Framework("days_since_last_purchase", "days since last purchase", "naive",
              "plain recency in days (fewer ranks first)", ascending=True),
)


@dataclass(frozen=True)
class AlertRule:
    """A rule that flags customers to win back in the last ``recent_days`` of calibration."""

    key: str
    label: str
    group: str  # "engine" or "naive"
    definition: str


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule("silence", "win-back: silence", "engine",
              "a published silence win-back (overdue against the customer's own rhythm, or "
              "the population's for one-time buyers) whose clock is in the window"),
    AlertRule("risk_rise", "win-back: risk_rise", "engine",
              "a published risk_rise win-back (churn risk crossed the threshold upward; "
              "repeat buyers) whose clock is in the window"),
    AlertRule("win_back", "win-back: any reason", "engine",
              "any published win-back (silence, risk_rise or complaint) in the window"),
    AlertRule("naive_silence", f"naive: {NAIVE_DAYS}-day silence", "naive",
              f"reached {NAIVE_DAYS} days without a purchase at a moment in the window "
              "(the same window as the engine's alerts)"),
    AlertRule("naive_silent_at_end", f"naive: silent > {NAIVE_DAYS} days at the end", "naive",
              f"more than {NAIVE_DAYS} days without a purchase at the calibration end (all "
              f"the {NAIVE_DAYS}-day rule has flagged by then, whenever)"),
)


@dataclass(frozen=True)
class ClassResponse:
    """Holdout response of one class of a categorical framework."""

    name: str
    customers: int
    buyers: int  # of them, bought in the holdout
    rate: float
    low: float  # 95 % Wilson interval
    high: float


@dataclass(frozen=True)
class Ranking:
    """How well one framework ranks holdout buyers first."""

    framework: Framework
    auc: float
    top_decile_lift: float
    captured_20: float  # share of holdout buyers among the top 20 %
    gains: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]  # contacted, captured
    classes: tuple[ClassResponse, ...] = ()  # categorical only, in the fixed order, non-empty


@dataclass(frozen=True)
class PurchaseCounts:
    """BG/NBD expected vs actual holdout purchases (lifetimes' calibration plot)."""

    buckets: tuple[CalibrationBucket, ...]
    mae: float  # mean absolute error per customer
    rmse: float
    bias: float  # (expected total - actual total) / actual total
    expected_total: float
    actual_total: float
    duration: float  # holdout length in the model's time unit
    time_unit: str


@dataclass(frozen=True)
class SpendCapture:
    """CLV against holdout spend."""

    rank_correlation: float  # Spearman, CLV vs holdout spend
    past_rank_correlation: float  # Spearman, calibration spend vs holdout spend
    by_clv: dict[float, float]  # top share -> share of holdout spend captured
    by_past_spend: dict[float, float]
    by_holdout_spend: dict[float, float]  # the ceiling: ranked by the outcome itself
    curve_shares: tuple[float, ...]  # the shares of the curves below (plots)
    curve_clv: tuple[float, ...]
    curve_past: tuple[float, ...]
    curve_ceiling: tuple[float, ...]
    holdout_spend: float


@dataclass(frozen=True)
class AlertResult:
    """Precision and recall of one win-back rule (docs/evaluation.md, "Alert rules")."""

    rule: AlertRule
    flagged: int
    came_back: int  # flagged and bought in the holdout
    precision: float  # came_back / flagged
    precision_ci: tuple[float, float]
    lost: int  # calibration buyers with no holdout purchase
    lost_flagged: int
    recall: float  # lost_flagged / lost
    recall_ci: tuple[float, float]


@dataclass(frozen=True)
class Backtest:
    """Everything ``custscore evaluate`` reports."""

    calibration_end: int  # as given
    holdout_end: int
    as_of: int  # the last second of the calibration end's UTC day: the scoring time
    recent_days: int
    model_version: str
    customers: int  # calibration buyers: the population judged
    holdout_buyers: int  # of them, bought in the holdout
    base_rate: float
    new_in_holdout: int  # customers whose first purchase is in the holdout (not judged)
    one_time: tuple[int, int]  # calibration one-time buyers (x = 0): customers, bought again
    one_time_p_alive: float  # their smallest P(alive) (BG/NBD gives them all 1)
    events_calibration: int
    events_holdout: int
    rankings: tuple[Ranking, ...]
    purchases: PurchaseCounts
    spend: SpendCapture
    alerts: tuple[AlertResult, ...]
    seconds: dict[str, float] = field(default_factory=dict)


def _when(t: int) -> str:
    return format_time(t) or str(t)


def check_period(log: EventLog, calibration_end: int, holdout_end: int | None) -> int:
    """The holdout end (default: the last event); ValueError (one line) for a period the log
    does not cover. Periods are whole UTC days (models.holdout): the calibration runs through
    the day of ``calibration_end``, the holdout from the next day through that of the end."""
    if log.events.shape[0] == 0:
        raise ValueError("no valid events")
    first, last = int(log.events["ts"].min()), log.last_ts
    cal_day = calibration_end // DAY
    if cal_day < first // DAY:
        raise ValueError(
            f"calibration end {_when(calibration_end)} is before the first event {_when(first)}"
        )
    if cal_day >= last // DAY:
        raise ValueError(
            f"calibration end {_when(calibration_end)} is on or after the day of the last "
            f"event {_when(last)}: there is no holdout period"
        )
    end = last if holdout_end is None else holdout_end
    if end // DAY <= cal_day:
        raise ValueError(
            f"holdout end {_when(end)} is not on a day after the calibration end "
            f"{_when(calibration_end)}"
        )
    if end // DAY > last // DAY:
        raise ValueError(
            f"holdout end {_when(end)} is after the day of the last event {_when(last)}: the "
            "log does not cover the holdout period"
        )
    return end


def class_score(key: str, codes: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
    """The ranking score of engine class ``codes`` of framework ``key``: the class's place in
    :data:`CLASS_ORDERS` counted from the end, so the first class scores highest."""
    order = CLASS_ORDERS[key]
    names = _CODE_NAMES[key]
    by_code = np.array([len(order) - order.index(name) for name in names], dtype=np.float64)
    return by_code[codes.astype(np.intp)]


def _class_names(key: str, codes: npt.NDArray[np.integer]) -> npt.NDArray[np.object_]:
    return np.asarray(_CODE_NAMES[key], dtype=object)[codes.astype(np.intp)]


def alert_flags(
    log: EventLog,
    model: ModelBundle,
    as_of: int,
    recent_days: int,
    progress: Progress | None = None,
) -> dict[str, npt.NDArray[np.bool_]]:
    """Per customer row of ``log``: flagged by each rule of :data:`ALERT_RULES` in the last
    ``recent_days`` before ``as_of`` (the window (as_of - recent_days, as_of]), from the events
    at or before ``as_of`` (the calibration: ``as_of`` is the last second of its last day).

    The engine's rules run as the worker runs them: :func:`engine.timeline.run_timeline`
    over every customer's events and due times up to ``as_of``, from empty states; a
    win-back counts when it was published (not suppressed by the cool-down) and its clock is
    in the window.
    """
    n = len(log.customer_ids)
    start = as_of - recent_days * DAY
    keep = log.events["ts"] <= as_of
    events = log.events[keep]
    ids = np.asarray(log.event_ids)[keep]
    order = order_events(events["row"], events["ts"], events["kind"], ids)
    events = events[order]
    rows = np.unique(events["row"]).astype(np.int32)
    states = new_states(n)
    flags = {rule.key: np.zeros(n, dtype=np.bool_) for rule in ALERT_RULES}
    if progress is not None:
        progress("timeline", 0, rows.shape[0])
    for lo in range(0, rows.shape[0], _TIMELINE_CHUNK):
        chunk = rows[lo : lo + _TIMELINE_CHUNK]
        first = int(np.searchsorted(events["row"], chunk[0], side="left"))
        last = int(np.searchsorted(events["row"], chunk[-1], side="right"))
        part = events[first:last]
        line = run_timeline(
            states,
            part,
            customer_slices(part["row"], chunk),
            chunk,
            as_of,
            model.scoring,
            model.cuts,
            model.rfm_map,
        )
        a = line.alerts
        sent = a[
            (a["kind"] == KIND_WIN_BACK)
            & (a["suppressed"] == 0)
            & (a["clock"] > start)
            & (a["clock"] <= as_of)
        ]
        flags["silence"][sent["index"][sent["reason"] == REASON_SILENCE]] = True
        flags["risk_rise"][sent["index"][sent["reason"] == REASON_RISK_RISE]] = True
        flags["win_back"][sent["index"]] = True
        if progress is not None:
            progress("timeline", min(lo + _TIMELINE_CHUNK, rows.shape[0]), rows.shape[0])
    # naive: a purchase followed by NAIVE_DAYS of silence, the moment reached in the window
    buys = events[(events["kind"] == KIND_PURCHASE) & (events["cents"] > 0)]  # (row, ts) order
    next_ts = np.full(buys.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    same = buys["row"][1:] == buys["row"][:-1]
    next_ts[:-1][same] = buys["ts"][1:][same]
    reached = buys["ts"] + NAIVE_DAYS * DAY
    fired = (next_ts > reached) & (reached > start) & (reached <= as_of)
    flags["naive_silence"][buys["row"][fired]] = True
    last_buy = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_buy, buys["row"], buys["ts"])
    flags["naive_silent_at_end"] = (last_buy > 0) & (
        as_of - last_buy > NAIVE_DAYS * DAY
    )
    return flags


def _ranking(
    framework: Framework,
    score: npt.NDArray[np.float64],
    bought: npt.NDArray[np.bool_],
    names: npt.NDArray[np.object_] | None,
) -> Ranking:
    finite = np.isfinite(score)
    if not finite.all():  # NaN (no score) ranks last
        floor = float(score[finite].min()) - 1.0 if finite.any() else 0.0
        score = np.where(finite, score, floor)
    contacted, captured = gains_curve(score, bought)
    contacted = np.asarray(contacted, dtype=np.float64)
    captured = np.asarray(captured, dtype=np.float64)
    classes: list[ClassResponse] = []
    if names is not None:
        for name in framework.classes:
            member = names == name
            n = int(np.count_nonzero(member))
            if n == 0:
                continue
            k = int(np.count_nonzero(bought[member]))
            low, high = wilson_interval(k, n)
            classes.append(ClassResponse(name, n, k, k / n, float(low), float(high)))
    return Ranking(
        framework=framework,
        auc=float(roc_auc(score, bought)),
        top_decile_lift=float(top_share_lift(score, bought, TOP_SHARE)),
        captured_20=float(np.interp(0.2, contacted, captured)),
        gains=(contacted, captured),
        classes=tuple(classes),
    )


def _alert_result(
    rule: AlertRule, flagged: npt.NDArray[np.bool_], bought: npt.NDArray[np.bool_]
) -> AlertResult:
    lost = ~bought
    precision, _, n_flagged = precision_recall(flagged, bought)
    _, recall, _ = precision_recall(flagged, lost)
    came_back = int(np.count_nonzero(flagged & bought))
    lost_flagged = int(np.count_nonzero(flagged & lost))
    n_lost = int(np.count_nonzero(lost))
    p_lo, p_hi = wilson_interval(came_back, int(n_flagged))
    r_lo, r_hi = wilson_interval(lost_flagged, n_lost)
    return AlertResult(
        rule=rule,
        flagged=int(n_flagged),
        came_back=came_back,
        precision=float(precision),
        precision_ci=(float(p_lo), float(p_hi)),
        lost=n_lost,
        lost_flagged=lost_flagged,
        recall=float(recall),
        recall_ci=(float(r_lo), float(r_hi)),
    )


def _expected_holdout(
    split: HoldoutSplit, scores: npt.NDArray[np.void], model: ModelBundle
) -> npt.NDArray[np.float64]:
    """BG/NBD expected purchases over each customer's holdout duration."""
    P = model.scoring
    x = scores["frequency"].astype(np.float64)
    t_x = scores["recency"].astype(np.float64)
    T = scores["T"].astype(np.float64)
    duration = np.broadcast_to(np.asarray(split.duration_holdout, dtype=np.float64), x.shape)
    out = np.empty(x.shape[0], dtype=np.float64)
    for d in np.unique(duration):
        at = duration == d
        out[at] = expected_purchases_array(
            float(d), x[at], t_x[at], T[at], P.r, P.alpha, P.a, P.b
        )
    return out


def _spend(
    clv: npt.NDArray[np.float64],
    past: npt.NDArray[np.float64],
    spend: npt.NDArray[np.float64],
) -> SpendCapture:
    curve = tuple(round(float(s), 2) for s in np.linspace(0.01, 1.0, 100))
    by_clv = capture_shares(clv, spend, curve)
    by_past = capture_shares(past, spend, curve)
    ceiling = capture_shares(spend, spend, curve)
    return SpendCapture(
        rank_correlation=float(rank_correlation(clv, spend)),
        past_rank_correlation=float(rank_correlation(past, spend)),
        by_clv={s: float(v) for s, v in capture_shares(clv, spend, CAPTURE_SHARES).items()},
        by_past_spend={
            s: float(v) for s, v in capture_shares(past, spend, CAPTURE_SHARES).items()
        },
        by_holdout_spend={
            s: float(v) for s, v in capture_shares(spend, spend, CAPTURE_SHARES).items()
        },
        curve_shares=curve,
        curve_clv=tuple(float(by_clv[s]) for s in curve),
        curve_past=tuple(float(by_past[s]) for s in curve),
        curve_ceiling=tuple(float(ceiling[s]) for s in curve),
        holdout_spend=float(spend.sum()),
    )


def run_backtest(
    log: EventLog,
    model: ModelBundle,
    calibration_end: int,
    holdout_end: int | None = None,
    *,
    recent_days: int = 90,
    progress: Progress | None = None,
) -> Backtest:
    """Score the calibration buyers of ``log`` with ``model`` at the end of the calibration
    end's UTC day and judge every framework on the holdout (the days after it through the
    day of ``holdout_end``, default the last event; models.holdout); ValueError (one line)
    for a period the log does not cover, or no one to judge."""
    if recent_days < 1:
        raise ValueError(f"the alert window must be at least 1 day, got {recent_days}")
    end = check_period(log, calibration_end, holdout_end)
    as_of = day_end(calibration_end)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    split = split_calibration_holdout(
        log, calibration_end, end, unit_seconds=model.scoring.unit_seconds
    )
    rows = np.asarray(split.rows, dtype=np.intp)
    n = int(rows.shape[0])
    if n == 0:
        raise ValueError(f"no purchases up to the calibration end {_when(calibration_end)}")
    bought = np.asarray(split.bought_holdout, dtype=np.bool_)
    k = int(np.count_nonzero(bought))
    if k == 0 or k == n:
        raise ValueError(
            f"{'none' if k == 0 else 'all'} of the {n:,} calibration buyers bought in the "
            "holdout: there is nothing to rank"
        )
    seconds["split"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if progress is not None:
        progress("score", 0, 1)
    ts = log.events["ts"]
    calibration = log.events[calibration_mask(log, calibration_end)]
    states = fold_events(len(log.customer_ids), calibration, model.scoring)
    all_scores, _ = score_states(
        states, as_of, model.scoring, model.rfm_map, customer_digests(log.customer_ids)
    )
    scores = all_scores[rows]
    if progress is not None:
        progress("score", 1, 1)
    seconds["score"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    flags = alert_flags(log, model, as_of, recent_days, progress)
    seconds["timeline"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    expected = _expected_holdout(split, scores, model)
    days_since = scores["days_since_last_purchase"].astype(np.float64)
    bought_90d = (days_since <= NAIVE_DAYS).astype(np.uint8)
    values: dict[str, npt.NDArray[np.float64]] = {
        "expected_purchases_holdout": expected,
        "days_since_last_purchase": days_since,
    }
    rankings: list[Ranking] = []
    for i, fw in enumerate(FRAMEWORKS):
        if fw.classes:
            codes = bought_90d if fw.key == "bought_90d" else scores[fw.key]
            rankings.append(
                _ranking(fw, class_score(fw.key, codes), bought, _class_names(fw.key, codes))
            )
        else:
            value = values[fw.key] if fw.key in values else scores[fw.key].astype(np.float64)
            rankings.append(_ranking(fw, -value if fw.ascending else value, bought, None))
        if progress is not None:
            progress("metrics", i + 1, len(FRAMEWORKS) + 2)
    actual = np.asarray(split.frequency_holdout, dtype=np.float64)
    errors = error_summary(expected, actual)
    unit_name = next(
        (u for u, s in TIME_UNITS.items() if s == model.scoring.unit_seconds),
        f"{model.scoring.unit_seconds:g} s",
    )
    purchases = PurchaseCounts(
        buckets=tuple(
            calibration_buckets(split.frequency_cal, expected, actual, n=CALIBRATION_BUCKETS)
        ),
        mae=float(errors["mae"]),
        rmse=float(errors["rmse"]),
        bias=float(errors["bias"]),
        expected_total=float(errors["expected_total"]),
        actual_total=float(errors["actual_total"]),
        duration=float(np.max(split.duration_holdout)),
        time_unit=unit_name,
    )
    past = (states["gross_cents"][rows] - states["refund_cents"][rows]).astype(np.float64) / 100
    spend = _spend(
        scores["clv"].astype(np.float64), past, np.asarray(split.spend_holdout, np.float64)
    )
    if progress is not None:
        progress("metrics", len(FRAMEWORKS) + 1, len(FRAMEWORKS) + 2)
    alerts = tuple(_alert_result(rule, flags[rule.key][rows], bought) for rule in ALERT_RULES)
    if progress is not None:
        progress("metrics", len(FRAMEWORKS) + 2, len(FRAMEWORKS) + 2)
    seconds["metrics"] = time.perf_counter() - t0

    day = ts // DAY
    in_holdout = (day > as_of // DAY) & (day <= end // DAY)
    once = scores["frequency"] == 0
    buys = log.events[(log.events["kind"] == KIND_PURCHASE) & (log.events["cents"] > 0)]
    first_buy = np.full(len(log.customer_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_buy, buys["row"], buys["ts"])
    first_day = first_buy // DAY
    new = int(np.count_nonzero((first_day > as_of // DAY) & (first_day <= end // DAY)))
    return Backtest(
        calibration_end=calibration_end,
        holdout_end=end,
        as_of=as_of,
        recent_days=recent_days,
        model_version=model.model_version,
        customers=n,
        holdout_buyers=k,
        base_rate=k / n,
        new_in_holdout=new,
        one_time=(int(np.count_nonzero(once)), int(np.count_nonzero(once & bought))),
        one_time_p_alive=float(scores["p_alive"][once].min()) if once.any() else math.nan,
        events_calibration=int(calibration.shape[0]),
        events_holdout=int(np.count_nonzero(in_holdout)),
        rankings=tuple(rankings),
        purchases=purchases,
        spend=spend,
        alerts=alerts,
        seconds=seconds,
    )
