"""Folding events: one at a time equals the batch, equals the by-definition reference.

Every field of ``evaluate()`` against the oracle (and lifetimes) is in test_scoring_oracle.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import C_KIND, P_KIND, V_KIND, Ev, reference

from engine.batch_scoring import fold_events
from engine.kernels import apply_events
from engine.scoring import PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import (
    DAY_BITS,
    STATE_DTYPE,
    STATE_VERSION,
    decode_states,
    encode_state,
    new_events,
    new_states,
)

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)
T0 = 852076800  # 1997-01-01
SPAN = 3 * 365 * 86400

DISCRETE = (
    "frequency",
    "window_frequency",
    "effective",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
    "value_tier",
    "abcd_class",
    "quadrant",
    "lifecycle",
    "overdue",
)
CONTINUOUS = ("window_monetary", "monetary_value", "recency", "T", "usual_gap_days")

times = st.integers(T0, T0 + SPAN)
# same-second and same-day lines, zero amounts and refunds are all drawn
amounts = st.one_of(st.integers(-50_000, 500_000), st.just(0), st.just(2500))
purchase = st.builds(lambda t, c: Ev(P_KIND, t, c), times, amounts)
visit = st.builds(lambda t: Ev(V_KIND, t), times)
complaint = st.builds(
    lambda t, s, r, key, refers: Ev(C_KIND, t, 0, s, r, key, refers if r else 0),
    times,
    st.integers(1, 5),
    st.integers(0, 1),
    st.integers(1, 6),  # few keys: resolutions often name an open complaint
    st.integers(0, 1),
)


def _same_day_lines(evs: list[Ev], data: list[tuple[int, int]]) -> list[Ev]:
    """Extra order lines on the days (and seconds) of existing purchases."""
    out = list(evs)
    buys = [e for e in evs if e.kind == P_KIND]
    for k, (offset, cents) in enumerate(data):
        if buys:
            base = buys[k % len(buys)].ts
            day_start = base - base % 86400
            out.append(Ev(P_KIND, min(max(base + offset, day_start), day_start + 86399), cents))
    return out


# dense histories, and sparse ones (long gaps: won back, lapsed, lost); in event-time order,
# as the engine folds them (the worker applies each customer's events by (ts, type, event_id))
event_lists = st.builds(
    lambda evs, extra: sorted(_same_day_lines(evs, extra), key=lambda e: e.ts),
    st.one_of(
        st.lists(st.one_of(purchase, purchase, visit, complaint), max_size=40),
        st.lists(purchase, min_size=1, max_size=4),
    ),
    st.lists(st.tuples(st.integers(-86400, 86400), amounts), max_size=4),
)


def to_array(evs: list[Ev], row: int = 0) -> np.ndarray:
    arr = new_events(len(evs))
    for i, e in enumerate(evs):
        arr[i] = (row, e.kind, e.severity, e.resolved, e.ts, e.cents, e.complaint, e.refers)
    return arr


def astuple_tail(e: Ev) -> tuple[int, ...]:
    """An event's fields after kind and ts."""
    return (e.cents, e.severity, e.resolved, e.complaint, e.refers)


def fold_one_at_a_time(evs: list[Ev]) -> np.ndarray:
    states = new_states(1)
    for e in evs:
        # the state goes through its stored bytes between events, as in the worker
        apply_events(states, to_array([e]), P.complaint_halflife_days)
        states = decode_states([encode_state(states, 0)])
    return states


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=event_lists, extra_days=st.integers(0, 800))
def test_fold_matches_reference(evs: list[Ev], extra_days: int) -> None:
    clock = max([e.ts for e in evs], default=T0) + extra_days * 86400
    batch = fold_events(1, to_array(evs), P)
    single = fold_one_at_a_time(evs)
    assert batch.tobytes() == single.tobytes()
    got = evaluate(batch, clock, P, CUTS, DEFAULT_RFM_MAP)[0]
    want = reference(evs, clock, P, CUTS, DEFAULT_RFM_MAP)
    for name in DISCRETE:
        if name in want:
            assert int(got[name]) == want[name], name
    for name in CONTINUOUS:
        if name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-9), name
    if "next_purchase_eta" in want:
        assert int(got["next_purchase_eta"]) == want["next_purchase_eta"]
    # fixed-point complaint score: at most 1/1000 rounding per complaint
    n_complaints = sum(e.kind == C_KIND for e in evs)
    assert got["complaint_level"] == pytest.approx(
        want["complaint_level"], abs=1e-3 * (n_complaints + 1)
    )


@settings(max_examples=200, deadline=None)
@given(evs=event_lists, data=st.data())
def test_order_of_non_complaint_events_does_not_matter(evs: list[Ev], data: st.DataObject) -> None:
    """Purchases and visits commute (topics interleave in any order) while every purchase
    day is within the DAY_BITS-day bitmap of the last one (docs/scoring.md §2)."""
    span = (DAY_BITS - 1) * 86400
    evs = [Ev(e.kind, T0 + (e.ts - T0) % span, *astuple_tail(e)) for e in evs]
    shuffled = data.draw(st.permutations(evs))
    # keep the relative order of complaints, which arrive in one topic
    complaints = iter([e for e in evs if e.kind == C_KIND])
    reordered = [next(complaints) if e.kind == C_KIND else e for e in shuffled]
    a = fold_events(1, to_array(evs), P)
    b = fold_events(1, to_array(reordered), P)
    assert a.tobytes() == b.tobytes()


@settings(max_examples=200, deadline=None)
@given(evs=event_lists, ts=times, data=st.data())
def test_equal_timestamps_commute(evs: list[Ev], ts: int, data: st.DataObject) -> None:
    """Purchases and visits at one timestamp give one state in any order among themselves and
    the complaints (whose relative order, by event id, the worker fixes)."""
    same = [Ev(e.kind, ts, *astuple_tail(e)) for e in evs]
    shuffled = data.draw(st.permutations(same))
    complaints = iter([e for e in same if e.kind == C_KIND])
    reordered = [next(complaints) if e.kind == C_KIND else e for e in shuffled]
    prefix = [Ev(P_KIND, T0, 1000), Ev(C_KIND, T0, 0, 3, 0)]
    a = fold_events(1, to_array(prefix + same), P)
    b = fold_events(1, to_array(prefix + reordered), P)
    assert a.tobytes() == b.tobytes()


def test_refunds_reduce_spend_but_are_not_purchases() -> None:
    evs = [
        Ev(P_KIND, T0, 10_000),
        Ev(P_KIND, T0 + 86400, 5_000),
        Ev(P_KIND, T0 + 2 * 86400, -3_000),
    ]
    st_ = fold_events(1, to_array(evs), P)
    sc = evaluate(st_, T0 + 3 * 86400, P, CUTS, DEFAULT_RFM_MAP)[0]
    assert int(st_["purchase_days"][0]) == 2
    assert sc["window_frequency"] == 2
    assert sc["window_monetary"] == pytest.approx(120.0)
    assert sc["monetary_value"] == pytest.approx(20.0)  # repeat spend 50 net of refund 30
    assert int(st_["last_purchase"][0]) == T0 + 86400  # a refund is not a purchase


def test_won_back_after_a_lapse() -> None:
    year = 365 * 86400
    evs = [Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 40 * 86400, 1000), Ev(P_KIND, T0 + 2 * year, 1000)]
    states = fold_events(1, to_array(evs), P)
    lapsed = evaluate(states[:0].copy(), T0, P, CUTS, DEFAULT_RFM_MAP)  # empty input is fine
    assert lapsed.shape == (0,)
    stage = evaluate(states, T0 + 2 * year + 86400, P, CUTS, DEFAULT_RFM_MAP)["lifecycle"][0]
    assert stage == 7  # won_back
    before = fold_events(1, to_array(evs[:2]), P)
    assert evaluate(before, T0 + 2 * year - 86400, P, CUTS, DEFAULT_RFM_MAP)["lifecycle"][0] == 5


def test_record_is_packed_and_small() -> None:
    assert STATE_DTYPE.itemsize <= 264  # layout v3: 260 bytes (v2 203 + the marketing loop)
    assert not STATE_DTYPE.isalignedstruct


def test_decode_rejects_wrong_size_and_version() -> None:
    good = encode_state(new_states(1), 0)
    with pytest.raises(ValueError, match="bytes"):
        decode_states([good[:-1]])
    bad = bytearray(good)
    bad[0] = 99
    with pytest.raises(ValueError, match="version"):
        decode_states([bytes(bad)])
    assert decode_states([None])["version"][0] == STATE_VERSION


def test_a_layout_2_record_upgrades_field_by_field() -> None:
    """Layout 2 (sessions 3-4) is layout 3 without the marketing-loop fields, with the
    cool-down clock named last_winback: every old field keeps its value (written here one by
    one from the old dtype), last_winback becomes last_contact, the new fields start empty."""
    from engine.state import STATE_DTYPE_V2, decode_records

    old = np.zeros(1, dtype=STATE_DTYPE_V2)
    rng = np.random.default_rng(7)
    for name in STATE_DTYPE_V2.names:
        field = old[name]
        old[name] = rng.integers(1, 100, size=field.shape).astype(field.dtype)
    old["version"] = 2
    decoded = decode_records([old.tobytes()])
    assert decoded.upgraded == [0] and not decoded.corrupt
    new = decoded.states[0]
    assert int(new["version"]) == 3
    for name in STATE_DTYPE_V2.names:
        if name == "version":
            continue
        target = "last_contact" if name == "last_winback" else name
        assert np.array_equal(new[target], old[0][name]), name
    for name in ("contact_at", "contact_kind", "contact_ref", "resp_version", "resp_n", "resp_y"):
        assert not np.any(new[name]), name
