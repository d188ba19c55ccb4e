"""A plain-Python alert oracle: the exact alerts of one customer's history, by definition.

Given one customer's events (``IdEv``: a ``oracles.fold_reference.Ev`` with an ``event_id``) and a
watermark, :func:`oracle_alerts` returns every alert the rules of ``engine/alert_rules.py`` give
when the customer is watched *continuously* in event time, up to and including the
watermark: at each event (in ``(ts, type, event_id)`` order, right after folding it in) and
at every second at which anything an alert depends on changes with no new event.

Nothing here calls engine code for scores or times. Scores come from the by-definition
reference ``oracles.fold_reference.reference`` on the events up to that time; the time-driven
change points are found here, from the reference's outputs:

- *discrete outputs* (R/F/M scores, RFM segment, effective, window frequency and spend,
  lifecycle stage, overdue, P(alive) below ``at_risk_p_alive``): between two calendar-month
  starts every one of them is constant (window features, lost) or monotone in time (R score,
  overdue, P(alive) of a repeat buyer), so equal values at both ends of a month piece mean
  no change inside it, and otherwise a bisection on the second finds the first change; the
  search goes on from there;
- *churn risk* against the threshold (``FLAG_RISK_HIGH`` set, an alert) and against
  threshold - hysteresis (the flag re-armed, no alert): P(alive) moves only at UTC midnights
  and visit intent ends at one second; in between, the complaint terms only decay, so risk
  only falls. The oracle walks the day grid: a rise can only happen at a midnight or at the
  end of intent, and a fall below the re-arm level is found by bisection inside the one day
  where the end-of-day risk is below it. The re-arm is therefore taken at the exact second
  risk falls below the level, not at whenever the customer happens to be evaluated next.

The alert rules (from the docstrings of ``engine/alert_rules.py``): five segment schemes with a
relative Schmitt trigger on value tier, A/B/C/D and quadrant, a silent first
classification and ``none`` handling; win-back by priority complaint > risk_rise > silence,
flags re-armed by a newer purchase day (silence) or risk below threshold - hysteresis, a
purchase never causing a win-back (it still marks the conditions handled), a cool-down of
the customer's own usual gap clipped to [cooldown_min_days, cooldown_max_days] on its own
clock, suppressed win-backs flagged and not restarting the cool-down.

The complaint score is folded in fixed point (1/1000, rounded at each fold) as docs/scoring.md
§2 defines it, so the risk compared with the thresholds is the documented one.

Issue 15, the marketing loop (/work/notes5/spec15.md), written from the spec's words:

- win-back reason ``spend_drop`` (priority complaint > risk_rise > spend_drop > silence): the
  condition from the raw events' net spend per calendar month (``fold_reference.spend_drop_at``),
  its flag set when first seen true (an alert unless a higher reason or a purchase), cleared
  at any evaluation where the condition is false;
- the repurchase nudge (kind ``nudge``, what ``repurchase``): with its flag clear (cleared by a
  purchase on a newer purchase day), ``purchase_days >= nudge_min_days`` and
  ``clock >= nudge_at > 0`` the flag is set; a contact unless the evaluation is caused by a
  purchase, P(alive) < ``nudge_min_p_alive`` or the emitted value tier is below
  ``nudge_min_tier`` (0 = no filter);
- one contact budget for nudges and win-backs (``last_contact``; a contact within the
  clipped usual gap of the last non-suppressed one is suppressed: a row, no window);
- the customer's holdout flag (``holdout``), recorded as ``group`` in each contact and kept by
  its outcome;
- outcomes (kind ``outcome``): a non-suppressed contact opens a window of W =
  round(``response_window_days`` x DAY) s; it is closed by a purchase (cents > 0) evaluated at
  a clock <= contact_at + W (``purchase``: responded, that event's cents), by the timer at
  contact_at + W + 1 (``window``), or by a newer non-suppressed contact (``superseded``). An
  outcome row carries the contact's kind, reason, group, emitted tier and quadrant and time.

Order inside one evaluation (the engine must do the same):

1. segment changes, schemes rfm, value_tier, abcd, quadrant, lifecycle;
2. outcome closing: by the purchase that caused the evaluation, or by the window's end (the
   timer at contact_at + W + 1);
3. the win-back (buyers; at most one). If it is a non-suppressed contact: an open window is
   first closed as ``superseded``, then the win-back row, then its window opens;
4. the nudge (at most one), the same way (after a published win-back in the same
   evaluation it is suppressed by the budget the win-back just used).

Time-driven change points added to the watch, from the definitions: ``nudge_at`` (while the
nudge flag is clear and the customer has enough purchase days), the window end
contact_at + W + 1 (while a window is open) and the month starts at which the spend-drop
condition changes value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from engine.scoring import PopulationCuts
from engine.scoring_params import ScoringParams
from oracles.fold_reference import (
    C_KIND,
    DAY,
    P_KIND,
    V_KIND,
    Ev,
    bgnbd_p_alive,
    decay,
    month_net_cents,
    month_of,
    month_start,
    open_complaints,
    reference,
    spend_drop_at,
)

__all__ = [
    "BY_PURCHASE",
    "BY_SUPERSEDED",
    "BY_WINDOW",
    "COMPLAINT",
    "NUDGE",
    "OUTCOME",
    "REPURCHASE",
    "RISK_RISE",
    "SCHEMES",
    "SEGMENT_CHANGE",
    "SILENCE",
    "SPEND_DROP",
    "WIN_BACK",
    "Anchor",
    "IdEv",
    "OracleAlert",
    "oracle_alerts",
]

SEGMENT_CHANGE = "segment-change"
WIN_BACK = "win-back"
SCHEMES = ("rfm", "value_tier", "abcd", "quadrant", "lifecycle")
NUDGE = "nudge"
OUTCOME = "outcome"
SILENCE, RISK_RISE, COMPLAINT = "silence", "risk_rise", "complaint"
SPEND_DROP = "spend_drop"
REPURCHASE = "repurchase"  # the "what" (reason) of a nudge
BY_PURCHASE, BY_WINDOW, BY_SUPERSEDED = "purchase", "window", "superseded"
_SCALE = 1000  # complaint score fixed point (docs/scoring.md §2)
_U4_MAX = 2**32 - 1

Anchor = tuple[str, Any]  # ("event", event_id) or ("timer", due time)


@dataclass(frozen=True)
class IdEv(Ev):
    """An ``Ev`` with the event id the engine orders ties by and anchors alerts on."""

    event_id: str = ""


class OracleAlert(NamedTuple):
    kind: str  # SEGMENT_CHANGE, WIN_BACK, NUDGE or OUTCOME
    what: str  # scheme name, win-back reason or REPURCHASE; outcomes: the contact's
    from_code: int  # segment changes: class codes (0 = none); otherwise 0
    to_code: int
    anchor: Anchor
    suppressed: bool
    # contacts (win-backs, nudges) and outcomes: the customer's group at the contact
    # (0 treated, 1 holdout) and the value tier and quadrant emitted at the contact (0 none);
    # segment changes: 0
    group: int = 0
    tier: int = 0
    quadrant: int = 0
    # outcomes only: the contact closed, how, and the contact's details
    responded: bool = False
    cents: int = 0
    closed_by: str = ""  # BY_PURCHASE, BY_WINDOW or BY_SUPERSEDED
    contact_at: int = 0  # the contact's clock
    contact_kind: str = ""  # WIN_BACK or NUDGE


class _Window(NamedTuple):
    """An open outcome window: the contact it measures."""

    at: int
    kind: str
    what: str
    group: int
    tier: int
    quadrant: int


def _raised(cut: float, h: float) -> float:
    return cut + h * abs(cut)


def _lowered(cut: float, h: float) -> float:
    return cut - h * abs(cut)


def _tier(spend: float, vip: float, major: float, normal: float) -> int:
    return 4 if spend >= vip else 3 if spend >= major else 2 if spend >= normal else 1


def _abcd(spend: float, a: float, b: float, c: float) -> int:
    return 1 if spend >= a else 2 if spend >= b else 3 if spend >= c else 4


def _quadrant(high_f: bool, high_s: bool) -> int:
    return {(True, True): 1, (False, True): 2, (False, False): 3, (True, False): 4}[
        (high_f, high_s)
    ]


class _History:
    """One fixed list of events (all folded so far): scores and churn risk at any time."""

    def __init__(
        self,
        evs: list[IdEv],
        P: ScoringParams,
        cuts: PopulationCuts,
        rfm_map: npt.NDArray[np.uint8],
    ) -> None:
        self.evs = evs
        self.P, self.cuts, self.rfm_map = P, cuts, rfm_map
        self._ref: dict[int, dict[str, Any]] = {}
        self._key: dict[int, tuple[Any, ...]] = {}
        purchases = [e for e in evs if e.kind == P_KIND and e.cents > 0]
        self.buyer = bool(purchases)
        days = sorted({e.ts // DAY for e in purchases})
        self.x = len(days) - 1
        self.first_day = days[0] if days else 0
        self.last_day = days[-1] if days else 0
        self.unit_days = P.unit_seconds / DAY
        self.t_x = (self.last_day - self.first_day) / self.unit_days
        last_purchase = max((e.ts for e in purchases), default=0)
        last_visit = max((e.ts for e in evs if e.kind == V_KIND), default=0)
        self.intent_s = P.intent_window_days * DAY
        self.visit = last_visit if last_visit > last_purchase else 0
        # the first second without visit intent (risk may jump up there)
        self.intent_end = self.visit + math.floor(self.intent_s) + 1 if self.visit else 0
        # decayed open-complaint severity, fixed point, rounded at each fold
        score, at = 0, 0
        hl = P.complaint_halflife_days
        for e in evs:
            if e.kind != C_KIND or e.resolved:
                continue
            add = e.severity * _SCALE
            if at == 0:
                score, at = add, e.ts
            elif e.ts >= at:
                score, at = round(score * decay(e.ts - at, hl)) + add, e.ts
            else:
                score += round(add * decay(at - e.ts, hl))
            score = min(score, _U4_MAX)
        self.score, self.score_at = score, at
        self.opened = [opened for _, opened in open_complaints(list(evs))]
        self.purchase_days = len(days)
        self.months = month_net_cents(list(evs))
        # the nudge time, a score constant between events (0 for non-repeat buyers)
        self.nudge_at = int(self.ref(evs[-1].ts)["nudge_at"]) if evs else 0

    def spend_drop_changes(self, a: int, b: int) -> list[int]:
        """Month starts in (a, b] at which the spend-drop condition changes value (with no
        new event it is a function of the calendar month alone)."""
        out = []
        prev = spend_drop_at(self.months, month_of(a), self.P)
        for k in range(month_of(a) + 1, month_of(b) + 1):
            now = spend_drop_at(self.months, k, self.P)
            if now != prev:
                out.append(month_start(k))
            prev = now
        return out

    def ref(self, t: int) -> dict[str, Any]:
        out = self._ref.get(t)
        if out is None:
            out = reference(list(self.evs), t, self.P, self.cuts, self.rfm_map)
            self._ref[t] = out
        return out

    def key(self, t: int) -> tuple[Any, ...]:
        """Every discrete output an alert depends on, except churn risk."""
        out = self._key.get(t)
        if out is None:
            sc = self.ref(t)
            fading = self.x >= 1 and sc["p_alive"] < self.P.at_risk_p_alive
            out = (
                *(
                    sc[name]
                    for name in (
                        "r_score",
                        "f_score",
                        "m_score",
                        "rfm_segment",
                        "effective",
                        "window_frequency",
                        "window_monetary",
                        "lifecycle",
                        "overdue",
                    )
                ),
                fading,
            )
            self._key[t] = out
        return out

    def risk(self, t: int) -> float:
        """Adjusted churn risk at ``t`` (meaningful for buyers)."""
        P = self.P
        hl = P.complaint_halflife_days
        pa = 1.0
        if self.x >= 1:
            big_t = (max(t // DAY, self.last_day) - self.first_day) / self.unit_days
            pa = bgnbd_p_alive(self.x, self.t_x, big_t, P)
        level = self.score / _SCALE * decay(t - self.score_at, hl) if self.score_at else 0.0
        unresolved = 0.0
        for opened in self.opened:
            unresolved += decay(t - opened, hl)
        up = min(P.complaint_weight * level + P.unresolved_weight * unresolved, P.adjust_max_up)
        intent = self.visit > 0 and t - self.visit <= self.intent_s
        down = min(P.visit_weight, P.adjust_max_down) if intent else 0.0
        return min(max(1.0 - pa * math.exp(-(up - down)), 0.0), 1.0)

    # --- time-driven change points -------------------------------------------------------

    def changes(self, a: int, b: int) -> list[int]:
        """Every second in (a, b] at which :meth:`key` differs from the second before."""
        out: list[int] = []
        bounds = [a] + [month_start(k) for k in range(month_of(a) + 1, month_of(b) + 1)]
        prev = self.key(a)
        for i, s in enumerate(bounds):
            e = bounds[i + 1] - 1 if i + 1 < len(bounds) else b
            cur, now = s, self.key(s)
            if s != a and now != prev:
                out.append(s)
            # inside a month piece every output is constant or monotone: equal ends, no change
            while cur < e and self.key(e) != now:
                lo, hi = cur, e
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.key(mid) == now:
                        lo = mid
                    else:
                        hi = mid
                out.append(hi)
                cur, now = hi, self.key(hi)
            prev = self.key(e)
        return out

    def _rise_points(self, a: int, b: int) -> Iterator[int]:
        """Midnights and the end of visit intent in (a, b], in order: the only seconds at
        which churn risk can go up with no new event."""
        end = self.intent_end if a < self.intent_end <= b else 0
        for day in range(a // DAY + 1, b // DAY + 1):
            if end and end < day * DAY:
                yield end
                end = 0
            yield day * DAY
        if end:
            yield end

    def next_risk_event(self, a: int, b: int, high: bool) -> int | None:
        """First second in (a, b] at which the risk flag would change: risk at or above the
        threshold when it is clear (repeat buyers), below threshold - hysteresis when set."""
        P = self.P
        if not self.buyer:
            return None
        if not high:
            if self.x < 1:
                return None
            for t in self._rise_points(a, b):
                if self.risk(t) >= P.risk_threshold:
                    return t
            return None
        level = P.risk_threshold - P.risk_hysteresis
        start = a + 1
        for t in [*self._rise_points(a, b), b + 1]:
            # risk does not rise in [start, t - 1]: it is lowest at t - 1
            if start <= t - 1 and self.risk(t - 1) < level:
                lo, hi = start - 1, t - 1
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.risk(mid) < level:
                        hi = mid
                    else:
                        lo = mid
                return hi
            start = t
        return None


class _Customer:
    """The alert bookkeeping of one customer, and the alerts so far."""

    def __init__(
        self,
        P: ScoringParams,
        cuts: PopulationCuts,
        rfm_map: npt.NDArray[np.uint8],
        watch_rearm: bool,
        holdout: bool,
    ) -> None:
        self.P, self.cuts, self.rfm_map = P, cuts, rfm_map
        self.watch_rearm = watch_rearm
        self.group = int(holdout)
        self.seg = [-1] * 5  # last emitted code per scheme; -1 = never classified
        self.risk_high = False
        self.silence_sent = False
        self.spend_drop_sent = False
        self.nudge_sent = False
        self.last_contact = 0
        self.window: _Window | None = None
        self.window_s = round(P.response_window_days * DAY)
        self.alerts: list[OracleAlert] = []

    def window_end(self) -> int:
        """The timer second that closes the open window (0 = none open)."""
        return self.window.at + self.window_s + 1 if self.window is not None else 0

    def nudge_time(self, hist: _History) -> int:
        """The nudge time while it can still fire with no new event (0 = none)."""
        armed = not self.nudge_sent and hist.purchase_days >= self.P.nudge_min_days
        return hist.nudge_at if armed and hist.nudge_at > 0 else 0

    def _close(self, anchor: Anchor, closed_by: str, cents: int) -> None:
        w = self.window
        assert w is not None
        self.alerts.append(
            OracleAlert(
                OUTCOME,
                w.what,
                0,
                0,
                anchor,
                False,
                group=w.group,
                responded=closed_by == BY_PURCHASE,
                cents=cents,
                closed_by=closed_by,
                contact_at=w.at,
                contact_kind=w.kind,
                tier=w.tier,
                quadrant=w.quadrant,
            )
        )
        self.window = None

    def _contact(self, kind: str, what: str, t: int, anchor: Anchor, sc: dict[str, Any]) -> None:
        """A win-back or nudge at ``t``: the shared budget, then supersede/open a window."""
        P = self.P
        gap = min(max(sc["usual_gap_days"], P.cooldown_min_days), P.cooldown_max_days)
        suppressed = self.last_contact > 0 and t - self.last_contact < gap * DAY
        tier, quadrant = max(self.seg[1], 0), max(self.seg[3], 0)  # emitted just now
        row = OracleAlert(
            kind, what, 0, 0, anchor, suppressed, group=self.group, tier=tier, quadrant=quadrant
        )
        if suppressed:
            self.alerts.append(row)
            return
        self.last_contact = t
        if self.window is not None:
            self._close(anchor, BY_SUPERSEDED, 0)
        self.alerts.append(row)
        self.window = _Window(t, kind, what, self.group, tier, quadrant)

    def _classes(self, sc: dict[str, Any]) -> list[int]:
        P, c = self.P, self.cuts
        h = P.class_hysteresis
        tier = abcd = quad = 0
        if sc["effective"]:
            spend = sc["window_monetary"]
            plain = sc["value_tier"]
            prev = max(self.seg[1], 0)  # larger = better
            if prev == 0:
                tier = plain
            else:
                strict = _tier(
                    spend, *(_raised(x, h) for x in (c.tier_vip, c.tier_major, c.tier_normal))
                )
                lenient = _tier(
                    spend, *(_lowered(x, h) for x in (c.tier_vip, c.tier_major, c.tier_normal))
                )
                tier = strict if strict > prev else lenient if lenient < prev else prev
            plain = sc["abcd_class"]
            prev = max(self.seg[2], 0)  # smaller = better
            if prev == 0:
                abcd = plain
            else:
                strict = _abcd(spend, *(_raised(x, h) for x in (c.abcd_a, c.abcd_b, c.abcd_c)))
                lenient = _abcd(spend, *(_lowered(x, h) for x in (c.abcd_a, c.abcd_b, c.abcd_c)))
                abcd = strict if strict < prev else lenient if lenient > prev else prev
            fy, avg = sc["freq_per_year"], sc["window_avg_spend"]
            prev = max(self.seg[3], 0)
            if prev == 0:
                quad = sc["quadrant"]
            else:
                fmean, smean = c.quad_freq_mean, c.quad_spend_mean
                high_f = fy >= (_lowered(fmean, h) if prev in (1, 4) else _raised(fmean, h))
                high_s = avg >= (_lowered(smean, h) if prev in (1, 2) else _raised(smean, h))
                quad = _quadrant(high_f, high_s)
        return [int(sc["rfm_segment"]), tier, abcd, quad, int(sc["lifecycle"])]

    def evaluate(
        self,
        hist: _History,
        t: int,
        anchor: Anchor,
        severity: int,
        purchase: bool,
        cents: int = 0,
    ) -> None:
        P = self.P
        sc = hist.ref(t)
        new = self._classes(sc)
        for s in range(5):
            if self.seg[s] >= 0 and new[s] != self.seg[s]:
                self.alerts.append(
                    OracleAlert(SEGMENT_CHANGE, SCHEMES[s], self.seg[s], new[s], anchor, False)
                )
            elif self.seg[s] < 0 and new[s] == 0:
                new[s] = -1  # not in the scheme yet: still unclassified
        self.seg = new

        # outcome closing: by this purchase, or by the timer at the window's end
        if self.window is not None:
            if purchase and t <= self.window.at + self.window_s:
                self._close(anchor, BY_PURCHASE, cents)
            elif t >= self.window_end():
                self._close(anchor, BY_WINDOW, 0)

        if not hist.buyer:
            return
        reason = ""
        if severity >= P.complaint_alert_severity:
            reason = COMPLAINT
        risk = hist.risk(t)
        if self.risk_high:
            if risk < P.risk_threshold - P.risk_hysteresis:
                self.risk_high = False
        elif sc["frequency"] >= 1 and risk >= P.risk_threshold:
            self.risk_high = True
            reason = reason or RISK_RISE
        if sc["spend_drop"]:
            if not self.spend_drop_sent:
                self.spend_drop_sent = True
                reason = reason or SPEND_DROP
        else:
            self.spend_drop_sent = False
        if not self.silence_sent and (sc["overdue"] or not sc["effective"]):
            self.silence_sent = True
            reason = reason or SILENCE
        if reason and not purchase:
            self._contact(WIN_BACK, reason, t, anchor, sc)

        nudge_at = int(sc["nudge_at"])
        if not self.nudge_sent and hist.purchase_days >= P.nudge_min_days and t >= nudge_at > 0:
            self.nudge_sent = True
            tier = max(self.seg[1], 0)
            if (
                not purchase
                and sc["p_alive"] >= P.nudge_min_p_alive
                and (P.nudge_min_tier == 0 or tier >= P.nudge_min_tier)
            ):
                self._contact(NUDGE, REPURCHASE, t, anchor, sc)

    def watch(self, hist: _History, a: int, b: int) -> None:
        """Timer evaluations in (a, b] with no new event: at every change point.

        Fixed ones (the scores' change points, spend-drop month starts) and ones that depend
        on the bookkeeping, which each evaluation may change: the nudge time while the nudge
        is armed, the end of an open outcome window, risk flag changes."""
        points = sorted(set(hist.changes(a, b)) | set(hist.spend_drop_changes(a, b)))
        i, t = 0, a
        while True:
            while i < len(points) and points[i] <= t:
                i += 1
            nxt = points[i] if i < len(points) else None
            for extra in (self.nudge_time(hist), self.window_end()):
                if t < extra <= b and (nxt is None or extra < nxt):
                    nxt = extra
            risky = None
            if self.watch_rearm or not self.risk_high:
                risky = hist.next_risk_event(t, nxt if nxt is not None else b, self.risk_high)
            if risky is not None and (nxt is None or risky < nxt):
                t = risky
            elif nxt is not None:
                t = nxt
            else:
                return
            self.evaluate(hist, t, ("timer", t), 0, False)


def oracle_alerts(
    events: Sequence[IdEv],
    watermark: int,
    P: ScoringParams,
    cuts: PopulationCuts,
    rfm_map: npt.NDArray[np.uint8],
    *,
    watch_rearm: bool = True,
    holdout: bool = False,
) -> list[OracleAlert]:
    """Every alert of one customer's history, watched continuously up to ``watermark``.

    Events are taken in ``(ts, type, event_id)`` order; each is evaluated at its own time,
    after the time-driven changes at or before it (a change due at exactly an event's time is
    the timer's). Alerts come in the order they happen.

    ``watch_rearm=False`` drops one thing from the continuous watch: churn risk falling below
    threshold - hysteresis with nothing else changing is then not noticed until the next
    event or change point (the risk flag is re-armed only where the customer is evaluated
    anyway). Where the two readings differ, the alerts depend on *when* a customer is looked
    at, not only on its history.

    ``holdout`` is the customer's control-group flag: recorded as ``group`` (1) in each
    contact and kept by its outcome; the contact process is the same for both groups.
    """
    customer = _Customer(P, cuts, rfm_map, watch_rearm, holdout)
    folded: list[IdEv] = []
    hist: _History | None = None
    hist_time = 0  # the time hist was last evaluated at
    last_day = -1  # last purchase day so far
    for ev in sorted(events, key=lambda e: (e.ts, e.kind, e.event_id)):
        if hist is not None and ev.ts > hist_time:
            customer.watch(hist, hist_time, ev.ts)
        if ev.kind == P_KIND and ev.cents > 0:
            if last_day >= 0 and ev.ts // DAY > last_day:
                # a newer purchase day re-arms the silence alert and starts a nudge cycle
                customer.silence_sent = False
                customer.nudge_sent = False
            last_day = max(last_day, ev.ts // DAY)
        folded.append(ev)
        hist = _History(list(folded), P, cuts, rfm_map)
        hist_time = ev.ts
        severity = ev.severity if ev.kind == C_KIND and not ev.resolved else 0
        purchase = ev.kind == P_KIND and ev.cents > 0
        cents = ev.cents if purchase else 0
        customer.evaluate(hist, ev.ts, ("event", ev.event_id), severity, purchase, cents)
    if hist is not None and watermark > hist_time:
        customer.watch(hist, hist_time, watermark)
    return customer.alerts
