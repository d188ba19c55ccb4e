"""Segment, class and stage codes, their names, the RFM segment map and suggested actions.

Codes are small integers stored in the state record and used inside numba kernels; names
are what the outside world (CSV, JSON alerts) sees. The RFM segment map is data: a 5 x 5
table indexed by (R score - 1, FM score - 1), where FM = ceil((F + M) / 2). Every cell
holds a segment, so the map is total by construction; :func:`validate_rfm_map` checks a
configured one.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ABCD_NAMES",
    "ACTIONS",
    "CLOSED_BY_NAMES",
    "DEFAULT_RFM_MAP",
    "GROUP_NAMES",
    "KIND_NAMES",
    "LIFECYCLE_NAMES",
    "NUDGE_OFFERS",
    "NUDGE_REASON",
    "QUADRANT_NAMES",
    "REASON_NAMES",
    "RFM_SEGMENT_NAMES",
    "SCHEME_NAMES",
    "TIER_NAMES",
    "rfm_map_from_rules",
    "validate_rfm_map",
]

NONE: Final = "none"

RFM_SEGMENT_NAMES: Final = (
    NONE,
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
)
TIER_NAMES: Final = (NONE, "small", "normal", "major", "vip")
ABCD_NAMES: Final = (NONE, "A", "B", "C", "D")
# The four-quadrant numbering (docs/scoring.md §3.6): 1 gold, 2 potential (low frequency /
# high spend), 3 maintain, 4 potential (high frequency / low spend).
QUADRANT_NAMES: Final = (
    NONE,
    "gold",
    "potential_high_spend",
    "maintain",
    "potential_high_frequency",
)
LIFECYCLE_NAMES: Final = (
    NONE,
    "prospect",
    "new",
    "active",
    "at_risk",
    "lapsed",
    "lost",
    "won_back",
)
SCHEME_NAMES: Final = (NONE, "rfm", "value_tier", "abcd", "quadrant", "lifecycle")
REASON_NAMES: Final = (NONE, "silence", "risk_rise", "complaint", "spend_drop")
NUDGE_REASON: Final = "repurchase"  # the one reason of a nudge (its metric label)
KIND_NAMES: Final = (NONE, "segment_change", "win_back", "nudge", "outcome")
CLOSED_BY_NAMES: Final = (NONE, "purchase", "window", "superseded")
GROUP_NAMES: Final = ("treated", "holdout")

# Default map as rules (segment, R range, FM range), inclusive; covers all 25 cells once.
DEFAULT_RFM_RULES: Final = (
    ("Champions", (5, 5), (4, 5)),
    ("Loyal", (3, 4), (4, 5)),
    ("Potential Loyalist", (4, 5), (2, 3)),
    ("New", (5, 5), (1, 1)),
    ("Promising", (4, 4), (1, 1)),
    ("Need Attention", (3, 3), (3, 3)),
    ("About to Sleep", (3, 3), (1, 2)),
    ("At Risk", (1, 2), (3, 4)),
    ("Can't Lose Them", (1, 2), (5, 5)),
    ("Hibernating", (2, 2), (1, 2)),
    ("Lost", (1, 1), (1, 2)),
)


def rfm_map_from_rules(
    rules: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...],
) -> npt.NDArray[np.uint8]:
    """Build the 5 x 5 code table from (segment, (r_lo, r_hi), (fm_lo, fm_hi)) rules.

    The first rule that covers a cell wins. Raises ValueError for an unknown segment name
    or a cell no rule covers.
    """
    table = np.zeros((5, 5), dtype=np.uint8)
    for name, (r_lo, r_hi), (fm_lo, fm_hi) in rules:
        if name not in RFM_SEGMENT_NAMES[1:]:
            raise ValueError(f"unknown RFM segment {name!r}")
        code = RFM_SEGMENT_NAMES.index(name)
        for r in range(r_lo, r_hi + 1):
            for fm in range(fm_lo, fm_hi + 1):
                if table[r - 1, fm - 1] == 0:
                    table[r - 1, fm - 1] = code
    validate_rfm_map(table)
    return table


def validate_rfm_map(table: npt.NDArray[np.uint8]) -> None:
    """Raise ValueError unless ``table`` is a total 5 x 5 map onto known segments."""
    if table.shape != (5, 5):
        raise ValueError(f"RFM map must be 5 x 5, got {table.shape}")
    bad = np.argwhere((table < 1) | (table >= len(RFM_SEGMENT_NAMES)))
    if bad.size:
        r, fm = bad[0]
        raise ValueError(f"RFM map has no segment for R={r + 1}, FM={fm + 1}")


DEFAULT_RFM_MAP: Final = rfm_map_from_rules(DEFAULT_RFM_RULES)

# Suggested win-back action by reason and value tier (rows: REASON_NAMES, cols: TIER_NAMES).
ACTIONS: Final = {
    "silence": {
        NONE: "reminder_email",
        "small": "reminder_email",
        "normal": "personalised_offer",
        "major": "personalised_offer",
        "vip": "account_manager_call",
    },
    "risk_rise": {
        NONE: "reminder_email",
        "small": "reminder_email",
        "normal": "loyalty_incentive",
        "major": "loyalty_incentive",
        "vip": "account_manager_call",
    },
    "complaint": {
        NONE: "service_follow_up",
        "small": "service_follow_up",
        "normal": "service_recovery_offer",
        "major": "service_recovery_offer",
        "vip": "account_manager_call",
    },
    # spend fell far below the customer's own run-rate: find out why before they are gone
    "spend_drop": {
        NONE: "reactivation_offer",
        "small": "reactivation_offer",
        "normal": "reactivation_offer",
        "major": "account_review_call",
        "vip": "account_manager_call",
    },
}

# Suggested offer of a repurchase nudge by quadrant and value tier (docs/scoring.md §9.2):
# gold customers need no special effort (a thank-you with early access, no discount);
# high-spend/low-frequency ones are reminded at their own rhythm, more often; high-frequency/
# low-spend ones get basket-size offers; low/low ones are only kept from leaving.
NUDGE_OFFERS: Final = {
    NONE: {tier: "timely_reminder" for tier in TIER_NAMES},
    "gold": {tier: "thank_you_early_access" for tier in TIER_NAMES},
    "potential_high_spend": {
        **{tier: "timely_reminder" for tier in TIER_NAMES},
        "vip": "account_manager_call",
    },
    "maintain": {tier: "retention_reminder" for tier in TIER_NAMES},
    "potential_high_frequency": {tier: "basket_size_offer" for tier in TIER_NAMES},
}
