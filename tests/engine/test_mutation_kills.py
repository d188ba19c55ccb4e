"""Tests written to kill mutants that survived the mutation run on engine/ (docs/mutation.md).

Each expectation is written from the definitions (docs/scoring.md, docs/alerts.md, the
module docstrings), never taken from the engine's own output. The engine's dtypes are used
only to lay out inputs (the record layout is the contract, docs/scoring.md §1).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from oracles.fold_reference import C_KIND, P_KIND, V_KIND, Ev

from engine.kernels import apply_events, decay_factor
from engine.ranking import snapshot
from engine.scoring import SCORES_DTYPE, PopulationCuts, evaluate
from engine.scoring_params import default_scoring_params
from engine.segments import DEFAULT_RFM_MAP
from engine.state import (
    DAY_BITS,
    STATE_DTYPE,
    STATE_DTYPE_V1,
    STATE_VERSION,
    decode_records,
    decode_states,
    encode_state,
    new_events,
    new_states,
)

P = default_scoring_params()
CUTS = PopulationCuts.from_params(P)
DAY = 86_400
T0 = 852_076_800  # 1997-01-01T00:00:00Z


def fold(evs: list[Ev], params=P) -> np.ndarray:  # type: ignore[no-untyped-def]
    arr = new_events(len(evs))
    for i, e in enumerate(evs):
        arr[i] = (0, e.kind, e.severity, e.resolved, e.ts, e.cents, e.complaint, e.refers)
    states = new_states(1)
    apply_events(states, arr, params.complaint_halflife_days)
    return states


def score(states: np.ndarray, clock: int, params=P, cuts=CUTS) -> np.void:  # type: ignore[no-untyped-def]
    return evaluate(states, clock, params, cuts, DEFAULT_RFM_MAP)[0]


# --- engine/state.py: stored records (docs/scoring.md §1) -------------------------------


def _v1_record() -> np.ndarray:
    old = np.zeros(1, dtype=STATE_DTYPE_V1)
    old["version"] = 1
    old["n_purchases"] = 3
    old["first_purchase"] = T0
    old["prev_purchase"] = T0 + 10 * DAY
    old["last_purchase"] = T0 + 20 * DAY + 5
    old["last_event"] = T0 + 21 * DAY
    old["first_amount_cents"] = 1234
    old["gross_cents"] = 9000
    old["complaints_open"] = 3
    old["complaints_resolved"] = 1
    old["complaint_ts"] = T0 + 15 * DAY
    return old


def test_record_is_packed_and_encoded_one_at_a_time() -> None:
    assert STATE_DTYPE.itemsize == 260  # docs/scoring.md §1: 260 bytes, packed
    states = new_states(3)
    states["gross_cents"] = [10, 20, 30]
    blob = encode_state(states, 1)
    assert len(blob) == 260
    assert decode_states([blob])["gross_cents"][0] == 20


def test_decode_keeps_going_past_unknown_customers_and_reports_corrupt_blobs() -> None:
    states = new_states(2)
    states["gross_cents"] = [111, 222]
    good = encode_state(states, 1)
    wrong_size = good + b"\x00"
    unknown_version = bytes([9]) + good[1:]
    decoded = decode_records([None, good, wrong_size, unknown_version, b""])
    assert decoded.upgraded == []
    assert [pos for pos, _ in decoded.corrupt] == [2, 3, 4]
    assert int(decoded.states["gross_cents"][1]) == 222
    # unknown customers and corrupt blobs become empty records of the current version
    for pos in (0, 2, 3, 4):
        assert int(decoded.states["gross_cents"][pos]) == 0
        assert int(decoded.states["version"][pos]) == STATE_VERSION
    with pytest.raises(ValueError):
        decode_states([good, wrong_size])
    # a version-1 byte on a blob of the current size is not a v1 record
    v1_flag_on_v2_size = bytes([1]) + good[1:]
    assert [p for p, _ in decode_records([v1_flag_on_v2_size]).corrupt] == [0]
    # a v1-sized blob with another version byte is corrupt too
    v1_blob = _v1_record().tobytes()
    assert [p for p, _ in decode_records([bytes([2]) + v1_blob[1:]]).corrupt] == [0]
    assert [p for p, _ in decode_records([v1_blob + b"\x00"]).corrupt] == [0]


def test_v1_record_is_upgraded_on_read() -> None:
    """docs/scoring.md §1: counts kept as purchase days, the known days marked, unresolved
    complaints become slots no resolution can name, filed at complaint_ts."""
    decoded = decode_records([None, _v1_record().tobytes()])
    assert decoded.upgraded == [1]
    assert decoded.corrupt == []
    row = decoded.states[1]
    assert int(row["version"]) == STATE_VERSION
    assert int(row["purchase_days"]) == 3
    assert int(row["purchase_lines"]) == 3
    assert int(row["first_day_cents"]) == 1234
    assert int(row["gross_cents"]) == 9000
    assert int(row["last_purchase"]) == T0 + 20 * DAY + 5
    bits = int(row["day_bits"][0]) | (int(row["day_bits"][1]) << 64)
    assert bits == (1 << 0) | (1 << 10) | (1 << 20)  # last, previous and first purchase day
    assert sorted(int(k) for k in row["complaint_ids"]) == [0, 0, 0xFFFFFFFF, 0xFFFFFFFF]
    opened = sorted(int(t) for t in row["complaint_opened"])
    assert opened == [0, 0, T0 + 15 * DAY, T0 + 15 * DAY]


def test_v1_upgrade_marks_only_days_inside_the_bitmap() -> None:
    old = _v1_record()
    old["first_purchase"] = T0 - 200 * DAY  # 220 days before the last purchase day
    row = decode_records([old.tobytes()]).states[0]
    bits = int(row["day_bits"][0]) | (int(row["day_bits"][1]) << 64)
    assert bits == (1 << 0) | (1 << 10)  # last and previous purchase day only
    old["prev_purchase"] = 0  # no previous purchase day
    row = decode_records([old.tobytes()]).states[0]
    assert int(row["day_bits"][0]) == 1 and int(row["day_bits"][1]) == 0


def test_complaint_key_is_a_32_bit_blake2b_digest_never_0() -> None:
    import hashlib

    from engine.state import complaint_key

    for ident in ("c-1", "complaint 42", "é"):
        digest = hashlib.blake2b(ident.encode("utf-8"), digest_size=4).digest()
        assert complaint_key(ident) == (int.from_bytes(digest, "big") or 1)
        assert 0 < complaint_key(ident) < 2**32


# --- engine/ranking.py: threshold cut points (docs/scoring.md §3.5) ------------------


def _members(spends: list[float]) -> np.ndarray:
    scores = np.zeros(len(spends), dtype=SCORES_DTYPE)
    scores["effective"] = 1
    scores["window_monetary"] = spends
    scores["window_frequency"] = 1
    scores["freq_per_year"] = 1.0
    scores["window_avg_spend"] = spends
    return scores


def test_an_empty_abcd_class_takes_the_cut_of_the_class_above() -> None:
    # one member holds 99.8 % of sales: A; the two others are preceded by more than 95 %: D
    cuts = snapshot(_members([1000.0, 1.0, 1.0]))
    assert (cuts.abcd_a, cuts.abcd_b, cuts.abcd_c) == (1000.0, 1000.0, 1000.0)
    # no positive sales: every class is empty, every cut +inf
    cuts = snapshot(_members([0.0, -5.0]))
    assert (cuts.abcd_a, cuts.abcd_b, cuts.abcd_c) == (math.inf, math.inf, math.inf)


# --- engine/kernels.py: folding (docs/scoring.md §2) ------------------------------------


def _purchase_days(evs: list[Ev]) -> int:
    return int(fold(evs)["purchase_days"][0])


def test_a_late_line_64_days_before_the_last_purchase_day_is_a_new_day() -> None:
    # day_bits bit i = last purchase day - i: bit 64 is the first bit of the second word
    evs = [Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 100 * DAY, 1000), Ev(P_KIND, T0 + 36 * DAY, 500)]
    assert _purchase_days(evs) == 3
    again = [*evs, Ev(P_KIND, T0 + 36 * DAY + 60, 500)]  # the same day again: known now
    assert _purchase_days(again) == 3
    for back in (63, 64, 65, 127):
        late = [Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 200 * DAY, 1000)]
        late.append(Ev(P_KIND, T0 + (200 - back) * DAY, 100))
        late.append(Ev(P_KIND, T0 + (200 - back) * DAY + 7, 100))
        assert _purchase_days(late) == 3, back


def test_counters_count_one_per_event_and_saturate() -> None:
    st = fold([Ev(C_KIND, T0, 0, 3, 0, 7), Ev(C_KIND, T0 + 1, 0, 2, 0, 8)])
    assert int(st["complaints_open"][0]) == 2
    st = fold([Ev(C_KIND, T0, 0, 3, 0, 7), Ev(C_KIND, T0 + 5, 0, 0, 1, 7, 1)])
    assert int(st["complaints_resolved"][0]) == 1
    assert int(st["complaints_open"][0]) == 1
    # saturating counters (u2 complaints, u4 lines and visits) stay at their maximum
    states = new_states(1)
    states["complaints_open"] = 65535
    states["complaints_resolved"] = 65535
    states["purchase_lines"] = 2**32 - 1
    states["n_visits"] = 2**32 - 1
    arr = new_events(4)
    arr[0] = (0, C_KIND, 2, 0, T0, 0, 11, 0)
    arr[1] = (0, C_KIND, 0, 1, T0 + 1, 0, 11, 1)
    arr[2] = (0, P_KIND, 0, 0, T0 + 2, 500, 1, 0)
    arr[3] = (0, V_KIND, 0, 0, T0 + 3, 0, 1, 0)
    apply_events(states, arr, P.complaint_halflife_days)
    assert int(states["complaints_open"][0]) == 65535
    assert int(states["complaints_resolved"][0]) == 65535
    assert int(states["purchase_lines"][0]) == 2**32 - 1
    assert int(states["n_visits"][0]) == 2**32 - 1


def test_an_older_complaint_adds_its_decayed_severity() -> None:
    """§2: an older complaint (t < complaint_ts) adds round(1000 x severity x d(ts - t))."""
    halflife = P.complaint_halflife_days
    evs = [Ev(C_KIND, T0 + 30 * DAY, 0, 2, 0, 5), Ev(C_KIND, T0, 0, 4, 0, 6)]
    sc = score(fold(evs), T0 + 30 * DAY)
    assert sc["complaint_level"] == pytest.approx(2 + 4 * 0.5, abs=1e-3)
    sc = score(fold(evs), T0 + 60 * DAY)
    assert sc["complaint_level"] == pytest.approx((2 + 4 * 0.5) * 0.5, abs=1e-3)
    assert decay_factor(0.0, halflife) == 1.0
    assert decay_factor(-5.0, halflife) == 1.0
    assert decay_factor(halflife * DAY, halflife) == 0.5


def test_a_late_line_beyond_the_bitmap_is_known_only_on_the_first_or_previous_day() -> None:
    """§2 "Which days are known": more than DAY_BITS days behind the last purchase day, the
    first and the previous purchase day are known; any other day counts as new."""
    base = [Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 10 * DAY, 1000), Ev(P_KIND, T0 + 300 * DAY, 1)]
    assert 300 - 10 > DAY_BITS
    assert _purchase_days([*base, Ev(P_KIND, T0 + 10 * DAY + 3600, 50)]) == 3  # previous day
    assert _purchase_days([*base, Ev(P_KIND, T0 + 3600, 50)]) == 3  # first day
    assert _purchase_days([*base, Ev(P_KIND, T0 + 5 * DAY, 50)]) == 4  # neither: new


def test_purchase_lines_count_every_positive_line() -> None:
    evs = [Ev(P_KIND, T0, 100), Ev(P_KIND, T0 + 5, 200), Ev(P_KIND, T0 + DAY, 0)]
    evs += [Ev(P_KIND, T0 + 2 * DAY, -50), Ev(P_KIND, T0 + 3 * DAY, 300)]
    st = fold(evs)
    assert int(st["purchase_lines"][0]) == 3  # $0 lines and refunds are not purchases
    assert int(st["purchase_days"][0]) == 2
    assert int(st["gross_cents"][0]) == 600
    assert int(st["refund_cents"][0]) == 50


# --- engine/scoring.py: visit intent and due times (docs/scoring.md §3.10, §3.12) -------


def test_visit_intent_lasts_exactly_intent_window_days() -> None:
    window = P.intent_window_days * DAY
    down = -min(P.visit_weight, P.adjust_max_down)
    st = fold([Ev(P_KIND, T0, 5000), Ev(V_KIND, T0 + DAY)])
    assert score(st, T0 + DAY + window)["risk_adjustment"] == pytest.approx(down)
    assert score(st, T0 + DAY + window + 1)["risk_adjustment"] == 0.0
    # a visit at the first representable second (epoch 1) is a visit too
    st = fold([Ev(V_KIND, 1)])
    assert score(st, 1 + DAY)["risk_adjustment"] == pytest.approx(down)
    assert score(st, 1 + DAY)["due"] == 1 + math.floor(window) + 1


def _p_alive(x: int, t_x: float, big_t: float, params=P) -> float:  # type: ignore[no-untyped-def]
    """BG/NBD P(alive), docs/scoring.md §3.8 (plain floats)."""
    odds = (
        params.a
        / (params.b + x - 1)
        * ((params.alpha + big_t) / (params.alpha + t_x)) ** (params.r + x)
    )
    return 1.0 / (1.0 + odds)


def _first_day(today: int, holds) -> int:  # type: ignore[no-untyped-def]
    day = today + 1
    while not holds(day):
        day += 1
    return day


def test_risk_due_is_found_when_the_crossing_is_months_ahead() -> None:
    """§3.12: for a repeat buyer below the risk threshold, due is the first midnight at which
    churn risk reaches it. Here the customer is already fading (P(alive) < 0.4), so only
    the risk crossing (P(alive) <= 0.1 at threshold 0.9) is pending, ~4 months ahead."""
    params = P._replace(risk_threshold=0.9)
    st = fold([Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 7 * DAY, 1000)])
    clock = T0 + 400 * DAY
    first_day, today, unit = T0 // DAY, clock // DAY, params.unit_seconds / DAY
    t_x = 7 / unit
    sc = score(st, clock, params)
    assert sc["p_alive"] < params.at_risk_p_alive and sc["churn_risk"] < 0.9
    crossing = _first_day(
        today, lambda d: 1.0 - _p_alive(1, t_x, (d - first_day) / unit, params) >= 0.9
    )
    assert crossing - today > 64
    lost_at = int(datetime(1999, 1, 1, tzinfo=UTC).timestamp())
    assert crossing * DAY < lost_at  # lost (24 months after 1997-01) comes later
    assert int(sc["due"]) == crossing * DAY


def test_fading_due_is_found_when_the_risk_crossing_is_out_of_range() -> None:
    """§3.12: the first midnight at which P(alive) < at_risk_p_alive, whatever the risk
    threshold (here so high that the risk crossing lies beyond 2106)."""
    params = P._replace(
        risk_threshold=0.9999,
        lost_months=600,
        at_risk_ratio=1e3,
        r_cut1=1.0,
        r_cut2=1.0,
        r_cut3=1.0,
        r_cut4=1.0,
    )
    st = fold([Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 300 * DAY, 1000)])
    clock = T0 + 700 * DAY  # past the window: no bucket leaves it any more
    first_day, today, unit = T0 // DAY, clock // DAY, params.unit_seconds / DAY
    t_x = 300 / unit
    sc = score(st, clock, params)
    assert sc["p_alive"] >= params.at_risk_p_alive
    fading = _first_day(
        today, lambda d: _p_alive(1, t_x, (d - first_day) / unit, params) < params.at_risk_p_alive
    )
    assert int(sc["due"]) == fading * DAY


def test_a_single_member_with_the_smallest_spend_is_class_a() -> None:
    """§3.5: the first-ranked member's preceding share is 0, below 70 %: A."""
    from engine.ranking import rank_classes

    scores = _members([0.01])
    rank_classes(scores)
    assert int(scores["abcd_class"][0]) == 1
    assert int(scores["value_tier"][0]) == 4  # ceil(1 % of 1) = 1 VIP


# --- engine/timeline.py (module docstring) -----------------------------------------------


def _timeline(states: np.ndarray, evs: list[tuple[int, Ev]], rows: list[int], watermark: int):  # type: ignore[no-untyped-def]
    from engine.timeline import customer_slices, order_events, run_timeline

    arr = new_events(len(evs))
    for i, (row, e) in enumerate(evs):
        arr[i] = (row, e.kind, e.severity, e.resolved, e.ts, e.cents, e.complaint, e.refers)
    ids = np.array([f"e{i}" for i in range(len(evs))], dtype=str)
    order = order_events(arr["row"], arr["ts"], arr["kind"], ids)
    arr = arr[order]
    process = np.array(sorted(rows), dtype=np.int32)
    return run_timeline(
        states,
        arr,
        customer_slices(arr["row"], process),
        process,
        watermark,
        P,
        CUTS,
        DEFAULT_RFM_MAP,
    )


def _alert_rows(tl) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    keys = ("index", "kind", "scheme", "reason", "from_code", "to_code", "suppressed", "clock")
    return [tuple(int(a[k]) for k in keys) for a in tl.alerts]


def test_timeline_reports_each_rows_own_latest_scores_and_the_scores_alerts_point_to() -> None:
    states = new_states(2)
    evs = [(0, Ev(P_KIND, T0, 12_345)), (1, Ev(P_KIND, T0 + DAY, 67_890))]
    tl = _timeline(states, evs, [0, 1], T0 + 400 * DAY)  # both swept through their due times
    assert list(tl.evaluated) == [True, True]
    # final: per processed row, its latest evaluation (each at its own last due time)
    assert int(tl.final["lifecycle"][0]) == 5 and int(tl.final["lifecycle"][1]) == 5  # lapsed
    assert int(tl.final["next_purchase_eta"][0]) == T0 + round(P.mean_gap_days * DAY)
    assert int(tl.final["next_purchase_eta"][1]) == T0 + DAY + round(P.mean_gap_days * DAY)
    lifecycle = [a for a in tl.alerts if a["kind"] == 1 and a["scheme"] == 5]
    assert lifecycle, "a one-time buyer moves new -> at_risk / lapsed over 400 days"
    for a in lifecycle:
        assert int(tl.scores["lifecycle"][a["after"]]) == int(a["to_code"])


def test_timeline_output_does_not_depend_on_the_batch_size() -> None:
    """A timer sweep over many rows with many due times overflows the first output arrays
    (8 score slots per event or row, + 64) and starts again with room to spare: the result
    equals one sweep per row (nothing depends on where a batch was cut)."""
    n = 24
    evs = []
    for row in range(n):
        for month in range(6):  # six monthly purchases: many window and rhythm due times
            evs.append((row, Ev(P_KIND, T0 + (31 * month + row % 7) * DAY, 2000 + 100 * row)))
    last = max(e.ts for _, e in evs)
    folded = new_states(n)
    _timeline(folded, evs, list(range(n)), last)
    watermark = last + 3 * 365 * DAY
    together = _timeline(folded.copy(), [], list(range(n)), watermark)
    assert len(together.scores) > 8 * n + 64  # the first attempt's arrays were too small
    alone = []
    for row in range(n):
        alone += _alert_rows(_timeline(folded.copy(), [], [row], watermark))
    assert _alert_rows(together) == alone


def test_warm_up_runs() -> None:
    from engine.timeline import warm_up

    assert warm_up(P, CUTS, DEFAULT_RFM_MAP) is None


def test_no_fading_due_when_at_risk_p_alive_is_zero() -> None:
    """P(alive) < 0 never holds: the due time is the next recency cut (§3.12)."""
    params = P._replace(at_risk_p_alive=0.0, at_risk_ratio=10.0)  # overdue after 70 days
    st = fold([Ev(P_KIND, T0, 1000), Ev(P_KIND, T0 + 7 * DAY, 1000)])
    clock = T0 + 7 * DAY
    assert int(score(st, clock, params)["due"]) == clock + math.floor(P.r_cut4 * DAY) + 1


def test_the_oldest_window_bucket_may_be_january_1970() -> None:
    """§3.12: the window due time is when the oldest non-empty bucket leaves the window, the
    bucket of month index 0 (January 1970) included."""
    far = 100_000.0
    params = P._replace(
        r_cut1=far,
        r_cut2=far,
        r_cut3=far,
        r_cut4=far,
        at_risk_ratio=1e4,
        at_risk_p_alive=1e-9,
        risk_threshold=0.999999,
    )
    st = fold([Ev(P_KIND, 5 * DAY, 1000), Ev(P_KIND, 65 * DAY, 1000)])  # Jan and Mar 1970
    due = int(score(st, 70 * DAY, params)["due"])
    assert due == int(datetime(1971, 1, 1, tzinfo=UTC).timestamp())


def test_an_event_twelve_months_behind_the_ring_head_counts_only_in_lifetime_totals() -> None:
    """§2: an event 12 or more months older than the newest bucket does not enter the ring
    (its slot is the newest month's)."""
    jan98 = int(datetime(1998, 1, 15, tzinfo=UTC).timestamp())
    for late in (T0 + 14 * DAY, T0 - 20 * DAY):  # 1997-01-15 (12 months back), 1996-12-12
        st = fold([Ev(P_KIND, jan98, 1000), Ev(P_KIND, late, 500), Ev(P_KIND, late + 60, -200)])
        sc = score(st, jan98 + DAY)
        assert float(sc["window_monetary"]) == 10.0
        assert int(sc["window_frequency"]) == 1
        assert int(st["gross_cents"][0]) == 1500 and int(st["refund_cents"][0]) == 200


def test_the_ring_wraps_from_january_1970() -> None:
    """The ring starts at the first monetary event, month index 0 included; a purchase 12
    months later clears that month's slot."""
    jan71 = int(datetime(1971, 1, 10, tzinfo=UTC).timestamp())
    st = fold([Ev(P_KIND, 5 * DAY, 700), Ev(P_KIND, jan71, 300)])
    sc = score(st, jan71 + DAY)
    assert float(sc["window_monetary"]) == 3.0
    assert int(sc["window_frequency"]) == 1


# --- engine/btyd.py ------------------------------------------------------------------------


def test_hyp2f1_is_a_polynomial_when_a_is_a_non_positive_integer() -> None:
    """2F1(-n, b; b; z) = (1 - z)^n (the series stops after n + 1 terms)."""
    from engine.btyd import hyp2f1

    for n, z in ((1, 0.5), (2, 0.5), (3, -0.75), (2, 0.9)):
        assert hyp2f1(-float(n), 1.5, 1.5, z) == pytest.approx((1.0 - z) ** n, rel=1e-14)
