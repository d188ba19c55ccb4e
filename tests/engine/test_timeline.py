"""run_timeline's contract: alerts and states do not depend on batch cuts or sweeps.

- any event-time-ordered interleaving of several customers' in-order streams (purchases,
  visits, complaints), cut into any consecutive batches (each one call on the carried state,
  watermark = the largest ts seen so far, like the worker), with or without sweep-only calls
  in between, gives the same alerts (anchors, kind, scheme or reason, from, to, suppressed,
  evaluation clocks) and the same final states as one call with everything;
- the timer alone (sweeps with growing watermarks at arbitrary steps after the last event)
  produces exactly the oracle's time-driven alerts at their due times;
- examples: a purchase never causes a win-back or a move into at_risk / lapsed / lost;
  A -> B -> C inside one batch is two alerts; a late event is evaluated at the customer's
  clock.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracles.fold_reference import C_KIND, P_KIND, V_KIND, reference

from engine.alert_rules import (
    KIND_SEGMENT_CHANGE,
    KIND_WIN_BACK,
    REASON_COMPLAINT,
    SCHEME_LIFECYCLE,
)
from engine.segments import DEFAULT_RFM_MAP
from engine.state import new_events, new_states
from engine.timeline import customer_slices, order_events, run_timeline
from tests.engine.test_scoring_oracle import _fitters, lifetimes_btyd
from tests.engine.test_timeline_oracle import (
    CUTS,
    DAY,
    DECODED_FIELDS,
    T0,
    P,
    decode,
    histories,
    to_events,
)
from tests.oracles.alerts import IdEv, OracleAlert, oracle_alerts

Tagged = tuple[int, IdEv]  # (customer row, event)
Row = tuple[Any, ...]  # one alert as run() returns it
AT_RISK, LAPSED, LOST = 4, 5, 6
FIELDS = (
    "kind",
    "scheme",
    "reason",
    "from_code",
    "to_code",
    "suppressed",
    "clock",
    *DECODED_FIELDS,
)


def run(states: np.ndarray, batch: list[Tagged], rows: list[int], watermark: int) -> list[Row]:
    """One run_timeline call; alerts as (row, anchor, kind, scheme, reason, from, to,
    suppressed, clock), anchor = ("event", id) or ("timer", due)."""
    arr = new_events(len(batch))
    for i, (row, e) in enumerate(batch):
        arr[i] = to_events([e], row)[0]
    ids = np.array([e.event_id for _, e in batch] or [""], dtype=str)[: len(batch)]
    order = order_events(arr["row"], arr["ts"], arr["kind"], ids)
    arr, ids = arr[order], ids[order]
    process = np.array(sorted(rows), dtype=np.int32)
    tl = run_timeline(
        states,
        arr,
        customer_slices(arr["row"], process),
        process,
        watermark,
        P,
        CUTS,
        DEFAULT_RFM_MAP,
    )
    out = []
    for a in tl.alerts:
        anchor = ("event", str(ids[a["event"]])) if a["event"] >= 0 else ("timer", int(a["due"]))
        out.append((int(a["index"]), anchor, *(int(a[f]) for f in FIELDS)))
    return out


def per_customer(alerts: list[Row]) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = {}
    for a in alerts:
        out.setdefault(a[0], []).append(a[1:])
    return out


@st.composite
def streams(draw: st.DrawFn) -> list[list[IdEv]]:
    """2-4 customers, each an in-order stream ((ts, type, event_id) order) of the three kinds;
    some share timestamps with others."""
    n = draw(st.integers(2, 4))
    out = []
    shared = draw(st.lists(st.integers(T0, T0 + 3 * 365 * DAY), max_size=3))
    for c in range(n):
        evs = draw(histories(max_events=12))
        if shared and evs:  # move some events onto another customer's timestamps
            evs = [
                e if k % 3 else IdEv(**{**e.__dict__, "ts": shared[k % len(shared)]})
                for k, e in enumerate(evs)
            ]
        evs = [IdEv(**{**e.__dict__, "event_id": f"c{c}-{e.event_id}"}) for e in evs]
        out.append(sorted(evs, key=lambda e: (e.ts, e.kind, e.event_id)))
    return out


def interleave(per: list[list[IdEv]], rnd: random.Random) -> list[Tagged]:
    """An event-time-ordered merge of the streams, ties between customers broken at random
    (each stream's own order kept)."""
    heads = [0] * len(per)
    out: list[Tagged] = []
    while True:
        live = [c for c in range(len(per)) if heads[c] < len(per[c])]
        if not live:
            return out
        t = min(per[c][heads[c]].ts for c in live)
        c = rnd.choice([c for c in live if per[c][heads[c]].ts == t])
        out.append((c, per[c][heads[c]]))
        heads[c] += 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(per=streams(), rnd=st.randoms(use_true_random=False), extra=st.integers(0, 400 * DAY))
def test_any_batch_split_gives_the_same_alerts_and_states(
    per: list[list[IdEv]], rnd: random.Random, extra: int
) -> None:
    n = len(per)
    merged = interleave(per, rnd)
    assume(merged)
    end = max(e.ts for _, e in merged) + extra

    whole = new_states(n)
    want = run(whole, merged, list(range(n)), end)

    split = new_states(n)
    got: list[Row] = []
    seen = 0
    i = 0
    while i < len(merged):
        size = rnd.choice((1, 1, 2, 3, 5, 8, len(merged)))
        batch = merged[i : i + size]
        i += size
        seen = max(seen, *(e.ts for _, e in batch))
        got += run(split, batch, sorted({row for row, _ in batch}), seen)
        if rnd.random() < 0.4:  # the timer sweep, up to the watermark so far
            got += run(split, [], list(range(n)), rnd.randint(seen - 40 * DAY, seen))
    for _ in range(rnd.randint(0, 3)):  # time passes with no event
        got += run(split, [], list(range(n)), rnd.randint(seen, end))
    got += run(split, [], list(range(n)), end)

    assert per_customer(got) == per_customer(want)
    assert split.tobytes() == whole.tobytes()

    # and whatever the cut: a purchase never causes a win-back or a move into at_risk,
    # lapsed or lost
    buys = {e.event_id for _, e in merged if e.kind == P_KIND and e.cents > 0}
    for a in want:
        if a[1][0] == "event" and a[1][1] in buys:
            assert a[2] != KIND_WIN_BACK, a
            assert not (a[3] == SCHEME_LIFECYCLE and a[6] in (AT_RISK, LAPSED, LOST)), a


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evs=histories(max_events=20),
    steps=st.lists(st.integers(1, 120 * DAY), min_size=1, max_size=12),
)
def test_the_timer_alone_gives_the_oracles_time_driven_alerts(
    evs: list[IdEv], steps: list[int]
) -> None:
    assume(evs)
    last = max(e.ts for e in evs)
    states = new_states(1)
    got = run(states, [(0, e) for e in evs], [0], last)
    mark = last
    swept: list[Row] = []
    for step in steps:
        mark += step
        swept += run(states, [], [0], mark)
    want = oracle_alerts(evs, mark, P, CUTS, DEFAULT_RFM_MAP)
    timer_wanted = [a for a in want if a.anchor[0] == "timer" and a.anchor[1] > last]
    assert decode_rows(swept) == timer_wanted
    assert all(a[1] == ("timer", a[8]) for a in swept)  # evaluated at exactly the due time
    assert decode_rows(got + swept) == want


def decode_rows(alerts: list[Row]) -> list[OracleAlert]:
    """run()'s tuples in the oracle's terms."""
    arr = np.zeros(
        len(alerts),
        dtype=[
            ("kind", "u1"),
            ("scheme", "u1"),
            ("reason", "u1"),
            ("from_code", "u1"),
            ("to_code", "u1"),
            ("suppressed", "u1"),
            ("event", "i4"),
            ("due", "i8"),
            *((name, "i8") for name in DECODED_FIELDS),
        ],
    )
    ids = []
    for i, a in enumerate(alerts):
        anchor = a[1]
        ids.append(anchor[1] if anchor[0] == "event" else "")
        arr[i] = (
            *a[2:8],
            i if anchor[0] == "event" else -1,
            anchor[1] if anchor[0] == "timer" else 0,
            *a[9:],
        )
    return decode(arr, np.array(ids, dtype=str))


# --- examples that pin the contract ---------------------------------------------------------


def test_a_purchase_in_a_late_batch_is_scored_at_its_own_time() -> None:
    """Customer 0 buys on days 0, 10 and 200; customer 1's event on day 600 is in the same
    batch, so the watermark is day 600. Day 200 is scored at day 200: the purchase lifts the
    customer back to active, with no win-back and no at_risk / lapsed / lost caused by it."""
    a = [
        IdEv(P_KIND, T0, 4000, event_id="a1"),
        IdEv(P_KIND, T0 + 10 * DAY, 4000, event_id="a2"),
        IdEv(P_KIND, T0 + 200 * DAY, 4000, event_id="a3"),
    ]
    b = [IdEv(V_KIND, T0 + 600 * DAY, event_id="b1")]
    states = new_states(2)
    alerts = run(states, [(0, e) for e in a] + [(1, e) for e in b], [0, 1], T0 + 600 * DAY)
    by_a3 = [x for x in alerts if x[1] == ("event", "a3")]
    assert by_a3, "the purchase moves the customer out of at_risk"
    assert all(x[2] == KIND_SEGMENT_CHANGE and x[8] == T0 + 200 * DAY for x in by_a3)
    assert (SCHEME_LIFECYCLE, AT_RISK, 3) in [(x[3], x[5], x[6]) for x in by_a3]
    # the silence win-back for day 10's purchase came from the timer, before day 200
    winbacks = [x for x in alerts if x[0] == 0 and x[2] == KIND_WIN_BACK]
    assert all(x[1][0] == "timer" for x in winbacks)
    assert winbacks[0][8] < T0 + 200 * DAY


def test_a_to_b_to_c_inside_one_batch_is_two_alerts() -> None:
    """new -> active (second purchase) -> at_risk (overdue, by the timer) in one call."""
    evs = [IdEv(P_KIND, T0, 4000, event_id="a1"), IdEv(P_KIND, T0 + 10 * DAY, 4000, event_id="a2")]
    alerts = run(new_states(1), [(0, e) for e in evs], [0], T0 + 60 * DAY)
    life = [x for x in alerts if x[2] == KIND_SEGMENT_CHANGE and x[3] == SCHEME_LIFECYCLE]
    assert [(x[1], x[5], x[6]) for x in life] == [
        (("event", "a2"), 2, 3),
        (("timer", T0 + 30 * DAY + 1), 3, AT_RISK),  # overdue: silence > 2 x the 10-day gap
    ]
    assert life[1][8] == T0 + 30 * DAY + 1


def test_a_late_event_is_evaluated_at_the_customers_clock() -> None:
    evs = [IdEv(P_KIND, T0, 4000, event_id="a1"), IdEv(P_KIND, T0 + 10 * DAY, 4000, event_id="a2")]
    states = new_states(1)
    run(states, [(0, e) for e in evs], [0], T0 + 100 * DAY)  # swept to its due times
    clock = int(states[0]["clock"])
    assert T0 + 10 * DAY < clock <= T0 + 100 * DAY
    late = IdEv(C_KIND, T0 + 20 * DAY, 0, 5, 0, 9, 0, event_id="late")
    alerts = run(states, [(0, late)], [0], T0 + 20 * DAY)
    assert [(x[1], x[2], x[4], x[8]) for x in alerts] == [
        (("event", "late"), KIND_WIN_BACK, REASON_COMPLAINT, clock)
    ]
    assert int(states[0]["clock"]) == clock


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(max_events=14), extra=st.integers(0, 500 * DAY))
def test_every_score_row_read_carries_lifetimes_value_scores_at_its_evaluation(
    evs: list[IdEv], extra: int
) -> None:
    """The timeline computes expected purchases and CLV only for the score rows someone reads
    (an alert's, before and after, and each customer's final one): each equals lifetimes'
    for the history folded at that evaluation, at its clock (NaN before a first purchase)."""
    assume(evs)
    arr = to_events(evs)
    ids = np.array([e.event_id for e in evs])
    order = order_events(arr["row"], arr["ts"], arr["kind"], ids)
    ordered = [evs[i] for i in order.tolist()]
    arr = arr[order]
    rows = np.zeros(1, dtype=np.int32)
    states = new_states(1)
    end = max(e.ts for e in evs) + extra
    line = run_timeline(
        states, arr, customer_slices(arr["row"], rows), rows, end, P, CUTS, DEFAULT_RFM_MAP
    )
    bgf, ggf = _fitters(P)

    def check(score: np.void, folded: list[IdEv], clock: int, what: str) -> None:
        want = reference(folded, clock, P, CUTS, DEFAULT_RFM_MAP)
        if not (want["frequency"] > 0 or any(e.kind == P_KIND and e.cents > 0 for e in folded)):
            assert np.isnan(score["clv"]) and np.isnan(score["expected_purchases_90d"]), what
            return
        ref = lifetimes_btyd(
            P, bgf, ggf, want["frequency"], want["recency"], want["T"], want["monetary_value"]
        )
        for name in ("expected_purchases_90d", "clv"):
            assert score[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-12), (what, name)

    assert line.evaluated[0]
    check(line.final[0], ordered, int(states[0]["clock"]), "final")
    for a in line.alerts:
        clock = int(a["clock"])
        if a["event"] >= 0:
            upto, before_clock = int(a["event"]), clock
            check(line.scores[a["after"]], ordered[: upto + 1], clock, "after an event")
        else:
            upto, before_clock = sum(e.ts < int(a["due"]) for e in ordered) - 1, clock - 1
            check(line.scores[a["after"]], ordered[: upto + 1], clock, "after a due time")
        if a["before"] >= 0:
            folded = ordered[:upto] if a["event"] >= 0 else ordered[: upto + 1]
            check(line.scores[a["before"]], folded, before_clock, "before")
