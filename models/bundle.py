"""The model in force as the engine needs it: scoring params, RFM map, version, cut points.

One type for every consumer: the batch commands (``custscore score``/``export``/``inspect``),
the worker's batch processor and its population tracker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams
from engine.segments import DEFAULT_RFM_MAP

__all__ = ["ModelBundle", "load_model"]


@dataclass(frozen=True)
class ModelBundle:
    """Everything the kernels take from a params file: the scoring parameters, the segment
    map, the model version (in every alert and score update) and the population cuts alerts
    are judged against (the params file's calibrated cuts: a function of the model version,
    never of when a timer fired)."""

    scoring: ScoringParams
    rfm_map: npt.NDArray[np.uint8]
    model_version: str
    cuts: PopulationCuts


def load_model(path: str | Path | None, *, window_months: int | None = None) -> ModelBundle:
    """The model of a params file, or the built-in CDNOW default when ``path`` is None.

    ``window_months`` overrides the file's trailing window (12 retail, 6 department stores,
    3 supermarkets); the model version then changes with it. Raises
    models.params_file.ParamsError (one line) for a bad file or value.
    """
    from models.params_file import default_params, from_scoring_params, load_params

    params_file = load_params(path) if path is not None else default_params()
    if window_months is not None and window_months != params_file.scoring.window_months:
        overridden = params_file.scoring._replace(window_months=window_months)
        params_file = from_scoring_params(overridden, params_file.fit)
    scoring = params_file.scoring
    return ModelBundle(
        scoring=scoring,
        rfm_map=DEFAULT_RFM_MAP,
        model_version=params_file.model_version,
        cuts=PopulationCuts.from_params(scoring),
    )
