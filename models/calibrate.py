"""Calibration from history: BTYD inputs of an event log and the population cut points.

Everything is computed with the engine's own fold and scoring, at the as-of time (default:
the last event), so that the thresholds describe the same quantities the worker scores:

- RFM cut points are quintiles over buyers (recency, days since the last purchase; more
  recent scores higher) and over effective members (trailing-window purchase count and net
  spend). Frequency is an integer: its cut points are rounded up and made strictly
  increasing from 2, so that one purchase always scores 1 when counts are concentrated.
- Value tier, A/B/C/D cut points and quadrant means are the exact population snapshot
  (engine.ranking) at the as-of time, cut at the params' shares (``tier_share_*``,
  ``abcd_share_*``; ``engine.ranking.ClassShares.from_params``), so a model with other
  shares calibrates other cuts.
- ``mean_gap_days`` is the mean own inter-purchase gap of repeat buyers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.batch_scoring import fold_events, score_states
from engine.ranking import DEFAULT_SHARES, ClassShares, rank_classes, snapshot
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import ScoringParams
from models.customers import customer_digests
from models.events import EventLog

__all__ = ["History", "calibrate", "summarize_log"]

_QUINTILES = (0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True)
class History:
    """An event log folded and scored at ``as_of``: BTYD inputs and the scores behind them."""

    as_of: int
    frequency: npt.NDArray[np.float64]  # repeat purchases x (buyers only)
    recency: npt.NDArray[np.float64]  # t_x in the params' time unit
    T: npt.NDArray[np.float64]  # age in the params' time unit
    monetary_value: npt.NDArray[np.float64]  # mean repeat spend
    scores: npt.NDArray[np.void]  # SCORES_DTYPE, every customer
    cuts: PopulationCuts


def summarize_log(
    log: EventLog, params: ScoringParams, rfm_map: npt.NDArray[np.uint8], as_of: int | None = None
) -> History:
    """Fold ``log`` (events at or before ``as_of``) and score every customer at ``as_of``."""
    events = log.events
    at = log.last_ts if as_of is None else as_of
    events = events[events["ts"] <= at]
    states = fold_events(len(log.customer_ids), events, params)
    digests = customer_digests(log.customer_ids)
    scores, cuts = score_states(states, at, params, rfm_map, digests)
    shares = ClassShares.from_params(params)
    if shares != DEFAULT_SHARES:
        # score_states ranks at the default shares: classes and cuts again at the params'
        # (the window features the snapshot reads do not depend on the cuts)
        cuts = snapshot(scores, digests, shares)
        scores = evaluate(states, at, params, cuts, rfm_map)
        rank_classes(scores, digests, shares)
    buyers = scores[states["purchase_days"] > 0]
    return History(
        as_of=at,
        frequency=buyers["frequency"].astype(np.float64),
        recency=buyers["recency"].astype(np.float64),
        T=buyers["T"].astype(np.float64),
        monetary_value=buyers["monetary_value"].astype(np.float64),
        scores=scores,
        cuts=cuts,
    )


def _strictly_increasing(values: list[float], start: float, step: float) -> list[float]:
    out: list[float] = []
    floor = start
    for v in values:
        v = max(v, floor)
        out.append(v)
        floor = v + step
    return out


def calibrate(history: History, params: ScoringParams) -> ScoringParams:
    """``params`` with RFM, tier, A/B/C/D, quadrant and rhythm thresholds from ``history``.

    The tier and A/B/C/D cuts are the exact snapshot of ``history.scores`` at ``params``'
    shares (the same as ``history.cuts`` when ``summarize_log`` had the same shares)."""
    scores = history.scores
    buyers = scores[~np.isnan(scores["days_since_last_purchase"])]  # prospects have NaN
    members = scores[scores["effective"] == 1]
    repeat = scores[scores["frequency"] >= 1]
    if buyers.shape[0] == 0 or members.shape[0] == 0:
        raise ValueError("no purchases in the trailing window: nothing to calibrate on")
    days = np.quantile(buyers["days_since_last_purchase"], [1 - q for q in _QUINTILES])
    freq_q = np.quantile(members["window_frequency"], _QUINTILES)
    money_q = np.quantile(members["window_monetary"], _QUINTILES)
    f_cuts = _strictly_increasing([float(math.ceil(v)) for v in freq_q], 2.0, 1.0)
    m_cuts = _strictly_increasing([round(float(v), 2) for v in money_q], -math.inf, 0.01)
    r_cuts = [round(float(v), 4) for v in days]
    gap = float(np.mean(repeat["usual_gap_days"])) if repeat.shape[0] else params.mean_gap_days
    cuts = snapshot(scores, shares=ClassShares.from_params(params))
    return params._replace(
        r_cut1=r_cuts[0],
        r_cut2=r_cuts[1],
        r_cut3=r_cuts[2],
        r_cut4=r_cuts[3],
        f_cut1=f_cuts[0],
        f_cut2=f_cuts[1],
        f_cut3=f_cuts[2],
        f_cut4=f_cuts[3],
        m_cut1=m_cuts[0],
        m_cut2=m_cuts[1],
        m_cut3=m_cuts[2],
        m_cut4=m_cuts[3],
        tier_vip=cuts.tier_vip,
        tier_major=cuts.tier_major,
        tier_normal=cuts.tier_normal,
        abcd_a=cuts.abcd_a,
        abcd_b=cuts.abcd_b,
        abcd_c=cuts.abcd_c,
        quad_freq_mean=cuts.quad_freq_mean,
        quad_spend_mean=cuts.quad_spend_mean,
        mean_gap_days=round(gap, 4),
    )
