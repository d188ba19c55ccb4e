"""Population snapshot: cut points, quadrant means and the exact rank-based classes.

The population is the set of effective members (at least one purchase in the trailing
window) at the snapshot's clock. Members are ranked by trailing-window net spend,
descending, ties broken by a stable customer digest (ascending; the caller computes it from
the customer id, so the engine stays pure) and then by row:

- value tier by rank: with N members, the first ceil(1 % N) are VIP, up to ceil(5 % N)
  major, up to ceil(20 % N) normal, the rest small (1,000 members: 10 / 40 / 150 / 800,
  whatever their spends, ties included);
- A/B/C/D by rank and cumulative share of positive sales: a member whose preceding share
  (the positive spend of everyone ranked before it, over the total) is below 70 % is A,
  below 90 % B, below 95 % C, else D; non-positive spend is D. Shares are compared in integer
  cents, so they are exact; each class exceeds its share by less than one customer's spend.

The shares (1 / 5 / 20 % and 70 / 90 / 95 % above are the defaults) are model settings:
``ScoringParams.tier_share_*`` and ``abcd_share_*``, versioned with the params file
(:meth:`ClassShares.from_params`). Every function takes them as ``shares``; without it they
use :data:`DEFAULT_SHARES`, the default params' values.

:func:`rank_classes` assigns those exact classes (``custscore score`` / ``export``).
:func:`snapshot` summarises the same ranking as threshold cut points (the spend at each
boundary rank), which is what a params file stores and what the live worker judges new
spends against (``engine.scoring.tier_code`` / ``abcd_code``); with tied spends at a
boundary, thresholds give every tied member the higher class, ranks do not. Quadrant means
are means of purchases per year and of average spend per purchase over the members, summed
with math.fsum so that they do not depend on the order of customers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams, default_scoring_params

__all__ = [
    "ABCD_SHARES",
    "DEFAULT_SHARES",
    "TIER_SHARES",
    "ClassShares",
    "member_ranking",
    "rank_classes",
    "snapshot",
    "tier_counts",
]

_NEVER = math.inf
_BASIS = 10_000  # shares are whole basis points: integer arithmetic, no float boundaries


class ClassShares(NamedTuple):
    """The cumulative shares the population classes are cut at (fractions in (0, 1])."""

    tier: tuple[float, float, float]  # customers: VIP, VIP + major, VIP + major + normal
    abcd: tuple[float, float, float]  # positive sales closing A, B, C

    @classmethod
    def from_params(cls, params: ScoringParams) -> ClassShares:
        """The shares a params file sets (its ``tier_share_*`` and ``abcd_share_*``)."""
        shares = cls(
            (params.tier_share_vip, params.tier_share_major, params.tier_share_normal),
            (params.abcd_share_a, params.abcd_share_b, params.abcd_share_c),
        )
        for name, values in (("tier", shares.tier), ("abcd", shares.abcd)):
            if not all(0.0 < v <= 1.0 for v in values) or list(values) != sorted(values):
                raise ValueError(f"{name} shares must be ascending in (0, 1], not {values}")
        return shares


DEFAULT_SHARES = ClassShares.from_params(default_scoring_params())
TIER_SHARES = DEFAULT_SHARES.tier  # (0.01, 0.05, 0.20) with the default params
ABCD_SHARES = DEFAULT_SHARES.abcd  # (0.70, 0.90, 0.95) with the default params


def _basis_points(share: float) -> int:
    return round(share * _BASIS)


def tier_counts(n: int, shares: ClassShares | None = None) -> tuple[int, int, int]:
    """Members in VIP, VIP + major, VIP + major + normal: ceil(share x n), at least 1 (n > 0)."""
    if n == 0:
        return (0, 0, 0)
    tier = (shares or DEFAULT_SHARES).tier
    return tuple(  # type: ignore[return-value]
        max(-(-n * _basis_points(s) // _BASIS), 1) for s in tier
    )


def member_ranking(
    scores: npt.NDArray[np.void], digests: npt.NDArray[np.uint64] | None = None
) -> npt.NDArray[np.intp]:
    """Rows of the effective members, best first: spend descending, digest, row ascending.

    ``digests`` (one per row of ``scores``) is a stable per-customer key, e.g. blake2b of the
    customer id; without it, ties fall back to row order (which depends on the caller).
    """
    rows = np.flatnonzero(scores["effective"] == 1)
    cents = _cents(scores["window_monetary"][rows])
    keys: list[npt.NDArray[np.generic]] = [rows]
    if digests is not None:
        if digests.shape[0] != scores.shape[0]:
            raise ValueError(f"{digests.shape[0]} digests for {scores.shape[0]} customers")
        keys.append(np.asarray(digests, dtype=np.uint64)[rows])
    keys.append(-cents)
    return rows[np.lexsort(keys)]


def _cents(spend: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    return np.rint(np.asarray(spend, dtype=np.float64) * 100.0).astype(np.int64)


def _abcd_by_rank(
    cents_desc: npt.NDArray[np.int64], abcd_shares: tuple[float, float, float]
) -> npt.NDArray[np.uint8]:
    """A/B/C/D code (1..4) of each member in rank order."""
    positive = np.maximum(cents_desc, 0)
    total = int(positive.sum())
    codes = np.full(cents_desc.shape[0], 4, dtype=np.uint8)
    if total <= 0:
        return codes
    before = np.concatenate(([0], np.cumsum(positive)[:-1])).astype(object)  # exact ints
    scaled = before * _BASIS
    code = np.full(cents_desc.shape[0], 4, dtype=np.int64)
    for klass, share in reversed(list(enumerate(abcd_shares, start=1))):
        inside = np.asarray(scaled < _basis_points(share) * total, dtype=bool)
        code[inside] = klass
    code[cents_desc <= 0] = 4
    return code.astype(np.uint8)


def rank_classes(
    scores: npt.NDArray[np.void],
    digests: npt.NDArray[np.uint64] | None = None,
    shares: ClassShares | None = None,
) -> None:
    """Set ``value_tier`` and ``abcd_class`` of every effective member by rank, in place.

    Non-members keep code 0 (none). See the module docstring for the rule; ``shares``
    default to :data:`DEFAULT_SHARES` (pass ``ClassShares.from_params(params)``).
    """
    shares = shares or DEFAULT_SHARES
    ranked = member_ranking(scores, digests)
    n = ranked.shape[0]
    vip, major, normal = tier_counts(n, shares)
    tiers = np.ones(n, dtype=np.uint8)
    tiers[:normal] = 2
    tiers[:major] = 3
    tiers[:vip] = 4
    scores["value_tier"][ranked] = tiers
    scores["abcd_class"][ranked] = _abcd_by_rank(
        _cents(scores["window_monetary"][ranked]), shares.abcd
    )


def _tier_cuts(
    spend_desc: npt.NDArray[np.float64], shares: ClassShares
) -> tuple[float, float, float]:
    n = spend_desc.shape[0]
    if n == 0:
        return (_NEVER, _NEVER, _NEVER)
    return tuple(float(spend_desc[k - 1]) for k in tier_counts(n, shares))  # type: ignore[return-value]


def _abcd_cuts(
    spend_desc: npt.NDArray[np.float64], shares: ClassShares
) -> tuple[float, float, float]:
    codes = _abcd_by_rank(_cents(spend_desc), shares.abcd)
    cuts: list[float] = []
    for klass in (1, 2, 3):
        inside = np.flatnonzero(codes == klass)
        # the lowest spend of the class; an empty class takes the cut of the class above
        above = cuts[-1] if cuts else _NEVER
        cuts.append(float(spend_desc[inside[-1]]) if inside.size else above)
    return (cuts[0], cuts[1], cuts[2])


def snapshot(
    scores: npt.NDArray[np.void],
    digests: npt.NDArray[np.uint64] | None = None,
    shares: ClassShares | None = None,
) -> PopulationCuts:
    """Cut points from evaluated scores (SCORES_DTYPE) of the whole population.

    A cut is the spend of the member at the boundary rank (:func:`member_ranking`), so a
    threshold rule reproduces the rank classes except among members tied at a boundary.
    ``shares`` default to :data:`DEFAULT_SHARES` (pass ``ClassShares.from_params(params)``).
    """
    shares = shares or DEFAULT_SHARES
    ranked = member_ranking(scores, digests)
    members = scores[ranked]
    spend_desc = members["window_monetary"].astype(np.float64)
    vip, major, normal = _tier_cuts(spend_desc, shares)
    cut_a, cut_b, cut_c = _abcd_cuts(spend_desc, shares)
    if members.shape[0]:
        count = members.shape[0]
        freq_mean = math.fsum(members["freq_per_year"].tolist()) / count
        spend_mean = math.fsum(members["window_avg_spend"].tolist()) / count
    else:
        freq_mean = spend_mean = _NEVER
    return PopulationCuts(vip, major, normal, cut_a, cut_b, cut_c, freq_mean, spend_mean)
