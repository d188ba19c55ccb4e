"""Population snapshot: value-tier, A/B/C/D cut points and quadrant means, computed exactly.

The population is the set of effective members (at least one purchase in the trailing
window) at the snapshot's clock. Value tiers rank them by trailing-window net spend: the
VIP cut is the spend of the customer at rank ceil(1 % of N), major at ceil(5 % of N), normal
at ceil(20 % of N); ties at a cut all get the higher tier. A/B/C/D sorts the same spends
descending and cuts where the running share of positive sales first reaches 70 / 90 / 95 %
(the customer whose purchase crosses a boundary still belongs to the class above it).
Quadrant means are means of purchases per year and of average spend per purchase over the
members, summed with math.fsum so that they do not depend on the order of customers.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from engine.scoring import PopulationCuts

__all__ = ["ABCD_SHARES", "TIER_SHARES", "snapshot"]

TIER_SHARES = (0.01, 0.05, 0.20)  # VIP, VIP + major, VIP + major + normal
ABCD_SHARES = (0.70, 0.90, 0.95)  # cumulative share of sales closing A, B, C
_NEVER = math.inf


def _tier_cuts(spend_desc: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    n = spend_desc.shape[0]
    if n == 0:
        return (_NEVER, _NEVER, _NEVER)
    return tuple(  # type: ignore[return-value]
        float(spend_desc[max(math.ceil(share * n), 1) - 1]) for share in TIER_SHARES
    )


def _abcd_cuts(spend_desc: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    positive = spend_desc[spend_desc > 0]
    total = float(positive.sum())
    if total <= 0:
        return (_NEVER, _NEVER, _NEVER)
    before = np.concatenate(([0.0], np.cumsum(positive)[:-1])) / total
    cuts = []
    for share in ABCD_SHARES:
        inside = np.flatnonzero(before < share)
        cuts.append(float(positive[inside[-1]]) if inside.size else _NEVER)
    return (cuts[0], cuts[1], cuts[2])


def snapshot(scores: npt.NDArray[np.void]) -> PopulationCuts:
    """Exact cut points from evaluated scores (SCORES_DTYPE) of the whole population."""
    members = scores[scores["effective"] == 1]
    spend_desc = np.sort(members["window_monetary"].astype(np.float64))[::-1]
    vip, major, normal = _tier_cuts(spend_desc)
    cut_a, cut_b, cut_c = _abcd_cuts(spend_desc)
    if members.shape[0]:
        count = members.shape[0]
        freq_mean = math.fsum(members["freq_per_year"].tolist()) / count
        spend_mean = math.fsum(members["window_avg_spend"].tolist()) / count
    else:
        freq_mean = spend_mean = _NEVER
    return PopulationCuts(vip, major, normal, cut_a, cut_b, cut_c, freq_mean, spend_mean)
