"""The engine's issue-15 scores (net_spend, effective with effective_min_spend, spend_drop,
nudge_at, and the due time that now includes the spend-drop month) equal the plain-Python
reference's (``oracles.fold_reference.reference``, from the raw events) on generated
histories, at clocks spread over the following months and at month starts (where the
spend-drop condition moves)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import month_of, month_start, reference

from engine.batch_scoring import fold_events
from engine.scoring import evaluate
from engine.scoring_params import ScoringParams
from engine.segments import DEFAULT_RFM_MAP
from tests.engine.test_timeline_oracle import (
    CUTS,
    DAY,
    MARKETING_PARAMS,
    P,
    histories,
    marketing_histories,
    to_events,
)
from tests.oracles.alerts import IdEv

PARAMS = st.one_of(
    st.just(P),
    MARKETING_PARAMS,
    st.builds(
        lambda floor, ratio, months: P._replace(
            effective_min_spend=floor, spend_drop_ratio=ratio, spend_drop_min_months=months
        ),
        st.sampled_from((10.0, 60.0, 200.0)),
        st.sampled_from((0.1, 0.5, 1.0)),
        st.sampled_from((1, 2, 3, 8)),
    ),
)
NEW = ("effective", "spend_drop", "nudge_at", "due", "value_tier", "lifecycle")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evs=st.one_of(marketing_histories(), histories()),
    params=PARAMS,
    later=st.lists(st.integers(0, 700 * DAY), min_size=1, max_size=4),
    month_start_clock=st.booleans(),
)
def test_new_scores_equal_the_reference(
    evs: list[IdEv], params: ScoringParams, later: list[int], month_start_clock: bool
) -> None:
    evs = sorted(evs, key=lambda e: (e.ts, e.kind, e.event_id))  # the engine's fold order
    states = fold_events(1, to_events(evs), params)
    last = max((e.ts for e in evs), default=852_076_800)
    for extra in later:
        clock = last + extra
        if month_start_clock:
            clock = max(month_start(month_of(clock)), last)
        got = evaluate(states, clock, params, CUTS, DEFAULT_RFM_MAP)[0]
        want = reference(list(evs), clock, params, CUTS, DEFAULT_RFM_MAP)
        for name in NEW:
            assert int(got[name]) == int(want[name]), (name, clock, int(got[name]), want[name])
        assert float(got["net_spend"]) == want["net_spend"]
