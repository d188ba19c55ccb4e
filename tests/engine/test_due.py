"""Due time: never in the past, and no discrete score or alert condition changes before it."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.batch_scoring import fold_events
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP, RFM_SEGMENT_NAMES, rfm_map_from_rules, validate_rfm_map
from tests.engine.test_fold import DISCRETE, T0, event_lists, to_array

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)


def discrete(scores: np.ndarray) -> tuple:
    row = scores[0]
    risk_high = bool(row["churn_risk"] >= P.risk_threshold) if row["frequency"] >= 1 else False
    return (*(int(row[name]) for name in DISCRETE), risk_high)


@settings(max_examples=300, deadline=None)
@given(
    evs=event_lists, extra=st.integers(0, 900 * 86400), probes=st.lists(st.floats(0, 1), max_size=8)
)
def test_nothing_changes_before_due(evs, extra: int, probes: list[float]) -> None:
    states = fold_events(1, to_array(evs), P)
    clock = max([e.ts for e in evs], default=T0) + extra
    now = evaluate(states, clock, P, CUTS, DEFAULT_RFM_MAP)
    due = int(now["due"][0])
    if due == 0:
        due_limit = clock + 5 * 365 * 86400  # "never": nothing may change for years
    else:
        assert due > clock
        due_limit = due
    before = discrete(now)
    for frac in [*probes, 1.0]:
        t = clock + int(frac * (due_limit - 1 - clock))
        later = discrete(evaluate(states, t, P, CUTS, DEFAULT_RFM_MAP))
        # a risk above the threshold may fall (complaint decay) - only a rise is an alert
        if before[-1]:
            assert later[:-1] == before[:-1], t - clock
        else:
            assert later == before, t - clock


def test_due_is_where_something_changes_for_a_silent_customer() -> None:
    from oracles.fold_reference import P_KIND, Ev

    evs = [Ev(P_KIND, T0, 5000), Ev(P_KIND, T0 + 20 * 86400, 5000)]
    states = fold_events(1, to_array(evs), P)
    clock = T0 + 20 * 86400
    changes = 0
    for _ in range(50):
        sc = evaluate(states, clock, P, CUTS, DEFAULT_RFM_MAP)
        due = int(sc["due"][0])
        if due == 0:
            break
        assert due > clock
        after = evaluate(states, due, P, CUTS, DEFAULT_RFM_MAP)
        changes += discrete(after) != discrete(sc)
        clock = due
    # overdue, R score steps, window expiry, lapsed, lost: all found by the due chain
    assert changes >= 6
    assert int(evaluate(states, clock, P, CUTS, DEFAULT_RFM_MAP)["lifecycle"][0]) == 6  # lost


def test_default_rfm_map_is_total_and_uses_every_segment() -> None:
    validate_rfm_map(DEFAULT_RFM_MAP)
    assert set(DEFAULT_RFM_MAP.ravel().tolist()) == set(range(1, len(RFM_SEGMENT_NAMES)))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(RFM_SEGMENT_NAMES[1:]),
            st.integers(1, 5),
            st.integers(1, 5),
            st.integers(1, 5),
            st.integers(1, 5),
        ),
        max_size=12,
    )
)
def test_configured_maps_are_total_or_rejected(rules) -> None:
    spec = tuple(
        (name, (min(a, b), max(a, b)), (min(c, d), max(c, d))) for name, a, b, c, d in rules
    )
    covered = {
        (r, fm)
        for _, (r0, r1), (f0, f1) in spec
        for r, fm in itertools.product(range(r0, r1 + 1), range(f0, f1 + 1))
    }
    if len(covered) == 25:
        table = rfm_map_from_rules(spec)
        assert (table >= 1).all()
    else:
        try:
            rfm_map_from_rules(spec)
        except ValueError as exc:
            assert "no segment" in str(exc)
        else:
            raise AssertionError("a partial map was accepted")


def _p_alive_due_chain(states, clock: int, steps: int = 400) -> list[tuple[int, np.ndarray]]:
    out = []
    for _ in range(steps):
        sc = evaluate(states, clock, P, CUTS, DEFAULT_RFM_MAP)
        due = int(sc["due"][0])
        if due == 0:
            break
        assert due > clock
        out.append((due, sc))
        clock = due
    return out


def test_p_alive_crossings_are_exact_midnights() -> None:
    """A repeat buyer's P(alive) falls below at_risk_p_alive and churn risk reaches the
    threshold at midnights; the due chain stops at exactly those midnights."""
    from oracles.fold_reference import C_KIND, P_KIND, Ev

    day = 86400
    evs = [
        Ev(P_KIND, T0 + 3600, 5000),
        Ev(P_KIND, T0 + 2 * day + 7200, 5000),
        Ev(P_KIND, T0 + 4 * day + 60, 5000),
        Ev(P_KIND, T0 + 6 * day + 50000, 5000),
        Ev(C_KIND, T0 + 6 * day + 60000, 0, 2, 0, 3),
    ]
    states = fold_events(1, to_array(evs), P)
    clock = T0 + 6 * day + 60000
    dues = [d for d, _ in _p_alive_due_chain(states, clock)]
    p = lambda t: float(evaluate(states, t, P, CUTS, DEFAULT_RFM_MAP)["p_alive"][0])  # noqa: E731
    crossing = next(d for d in dues if p(d) < P.at_risk_p_alive)
    assert crossing % day == 0 and p(crossing - 1) >= P.at_risk_p_alive
    assert int(evaluate(states, crossing, P, CUTS, DEFAULT_RFM_MAP)["lifecycle"][0]) == 4
    # P(alive) is constant within a day
    assert p(crossing) == p(crossing + day - 1)
    risk = lambda t: float(evaluate(states, t, P, CUTS, DEFAULT_RFM_MAP)["churn_risk"][0])  # noqa: E731
    rise = next(d for d in dues if risk(d) >= P.risk_threshold)
    assert rise % day == 0 and risk(rise - 1) < P.risk_threshold


@settings(max_examples=200, deadline=None)
@given(evs=event_lists, back=st.integers(0, 400 * 86400), extra=st.integers(0, 900 * 86400))
def test_due_is_later_than_any_clock(evs, back: int, extra: int) -> None:
    """Any clock, also one before the customer's last events (a late evaluation)."""
    states = fold_events(1, to_array(evs), P)
    for clock in (T0 - back, max([e.ts for e in evs], default=T0) - back,
                  max([e.ts for e in evs], default=T0) + extra):
        due = int(evaluate(states, clock, P, CUTS, DEFAULT_RFM_MAP)["due"][0])
        assert due == 0 or due > clock
