"""The CDNOW master log split at Fader, Hardie & Lee's calibration end, with lifetimes' own
split of it, computed once per session (lifetimes takes a few seconds on 69,659 lines)."""

from __future__ import annotations

from typing import Any

import pytest
from holdout_support import CAL_END, HOLD_END, cdnow_frames, epoch, lifetimes_split

from models.holdout import split_calibration_holdout


@pytest.fixture(scope="session")
def cdnow_holdout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``log`` (EventLog), ``tx`` (the CSV as a frame, naive UTC ``date``), ``split`` (ours, in
    days) and ``lifetimes`` (lifetimes' split of the positive lines summed per day, in days)."""
    frames = cdnow_frames(False, tmp_path_factory.mktemp("cdnow"))
    frames["split"] = split_calibration_holdout(frames["log"], epoch(CAL_END), epoch(HOLD_END))
    frames["lifetimes"] = lifetimes_split(frames["tx"], CAL_END, HOLD_END, per_day=True)
    return frames
