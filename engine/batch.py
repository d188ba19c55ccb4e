"""Batch drivers: fold a whole event array into fresh states and score the population exactly.

This is what ``custscore score`` and ``custscore export`` share: the population snapshot is
computed exactly from every customer's state at the as-of time (two passes: window features
first, then classification against the snapshot), so both give the same numbers for the same
events.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.kernels import apply_events
from engine.params import ScoringParams
from engine.population import snapshot
from engine.scoring import PopulationCuts, evaluate
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
) -> tuple[npt.NDArray[np.void], PopulationCuts]:
    """Scores of every state at ``as_of`` against the exact population snapshot."""
    first_pass = evaluate(states, as_of, params, PopulationCuts.from_params(params), rfm_map)
    cuts = snapshot(first_pass)
    return evaluate(states, as_of, params, cuts, rfm_map), cuts
