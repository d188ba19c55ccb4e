"""Batch drivers: fold a whole event array into fresh states and score the population exactly.

This is what ``custscore score`` and ``custscore export`` share: the population snapshot is
computed exactly from every customer's state at the as-of time (two passes: window features
first, then classification against the snapshot), and value tier and A/B/C/D are assigned by
rank (spend, then a stable customer digest the caller passes in), so both give the same
numbers for the same events whatever order their customers come in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.kernels import apply_events
from engine.ranking import ClassShares, rank_classes, snapshot
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import ScoringParams
from engine.state import new_states

__all__ = ["fold_events", "score_states"]


def fold_events(
    n_customers: int, events: npt.NDArray[np.void], params: ScoringParams
) -> npt.NDArray[np.void]:
    """New states for ``n_customers`` rows with ``events`` (EVENT_DTYPE) applied in order."""
    states = new_states(n_customers)
    apply_events(states, events, params.complaint_halflife_days)
    return states


def score_states(
    states: npt.NDArray[np.void],
    as_of: int,
    params: ScoringParams,
    rfm_map: npt.NDArray[np.uint8],
    digests: npt.NDArray[np.uint64] | None = None,
) -> tuple[npt.NDArray[np.void], PopulationCuts]:
    """Scores of every state at ``as_of`` against the exact population snapshot.

    ``digests`` (uint64, one per state) breaks spend ties in the tier and A/B/C/D ranking;
    pass a digest of the customer id (``models.customers.customer_digests``) so that the
    classes do not depend on the order of the states. Without it ties go by row order.
    """
    first_pass = evaluate(states, as_of, params, PopulationCuts.from_params(params), rfm_map)
    shares = ClassShares.from_params(params)
    cuts = snapshot(first_pass, digests, shares)
    scores = evaluate(states, as_of, params, cuts, rfm_map)
    rank_classes(scores, digests, shares)
    return scores, cuts
