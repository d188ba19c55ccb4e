"""Baseline (b): the naive implementation a team would write first, on custscore's topics.

    CUSTSCORE_... python -m loadtest.worker_naive

A Faust agent that handles one event at a time: ``json.loads`` the value, one Redis ``GET`` of
the customer's state (a JSON document), update it and score it in plain Python (the rules
of the tests' plain-Python fold reference: RFM scores against the params file's cut points,
named RFM segment, value tier, BG/NBD P(alive) in closed form, a complaint-adjusted churn
risk, lifecycle stage), one Redis ``SET`` of the new document, then ``send`` a score update
to ``customer.scores`` and, when the RFM segment or value tier changed, a segment-change alert.

What it does *not* do, which custscore does (so it is flattered, not handicapped): no event-id
de-duplication, no applied-offset fence or atomic commit (at-least-once effects), no dead-letter
topic (bad messages are counted and dropped), no due index or silence timer, no expected
purchases / expected spend / CLV (the Gauss 2F1 and the CLV sum), no population snapshot, no
alert cool-down, no awaiting of producer acks before the state write.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from loadtest.baseline_kit import faust_baseline, run_faust_worker
from models.bundle import load_model
from models.events import amount_to_cents, parse_severity, parse_ts

__all__ = ["NaiveScorer", "build_app", "main"]

DAY = 86_400


def _month(ts: int) -> int:
    d = datetime.fromtimestamp(ts, tz=UTC)
    return (d.year - 1970) * 12 + d.month - 1


class NaiveScorer:
    """Plain-Python incremental state and scores (one customer, one event at a time)."""

    def __init__(self, params: Any, rfm_map: Any) -> None:
        self.P = params
        self.rfm = [[int(v) for v in row] for row in rfm_map.tolist()]

    def apply(self, state: dict[str, Any], kind: str, ts: int, cents: int, severity: int) -> None:
        P = self.P
        state.setdefault("first_seen", ts)
        if kind == "purchase":
            if cents >= 0:
                n = state.get("n", 0)
                if n == 0 or ts < state["first"]:
                    state["first"] = ts
                    state["first_amt"] = cents
                if ts >= state.get("last", 0):
                    state["prev"] = state.get("last", 0)
                    state["last"] = ts
                state["n"] = n + 1
                state["gross"] = state.get("gross", 0) + cents
            else:
                state["refund"] = state.get("refund", 0) - cents
            months = state.setdefault("months", {})
            m = str(_month(ts))
            spend, count = months.get(m, (0, 0))
            months[m] = (spend + cents, count + (1 if cents >= 0 else 0))
            newest = max(int(k) for k in months)
            for k in [k for k in months if int(k) <= newest - P.window_months]:
                del months[k]
        elif kind == "visit":
            state["visits"] = state.get("visits", 0) + 1
            state["last_visit"] = max(state.get("last_visit", 0), ts)
        else:
            level = state.get("complaint", 0.0)
            age = max(ts - state.get("complaint_ts", ts), 0)
            level *= 2.0 ** (-age / (P.complaint_halflife_days * DAY))
            state["complaint"] = level + severity
            state["complaint_ts"] = max(ts, state.get("complaint_ts", 0))
            state["open"] = state.get("open", 0) + 1

    def score(self, state: dict[str, Any], clock: int) -> dict[str, Any]:
        P = self.P
        out: dict[str, Any] = {}
        months = state.get("months", {})
        cb = _month(clock)
        f_w = sum(c for k, (_, c) in months.items() if cb - P.window_months < int(k) <= cb)
        m_w = sum(s for k, (s, _) in months.items() if cb - P.window_months < int(k) <= cb) / 100
        out["window_frequency"] = f_w
        out["window_monetary"] = m_w
        n = state.get("n", 0)
        if n == 0:
            out.update(rfm_segment=0, value_tier=0, lifecycle="prospect", p_alive=None)
            return out
        first, last = state["first"], state["last"]
        x = n - 1
        t_x = (last - first) / P.unit_seconds
        big_t = (max(clock, last) - first) / P.unit_seconds
        if x > 0:
            odds = P.a / (P.b + x - 1) * ((P.alpha + big_t) / (P.alpha + t_x)) ** (P.r + x)
            p_alive = 1.0 / (1.0 + odds)
        else:
            p_alive = 1.0
        elapsed = max(clock - last, 0)
        r = 1 + sum(elapsed <= c * DAY for c in (P.r_cut1, P.r_cut2, P.r_cut3, P.r_cut4))
        f = 1 + sum(f_w >= c for c in (P.f_cut1, P.f_cut2, P.f_cut3, P.f_cut4))
        m = 1 + sum(m_w >= c for c in (P.m_cut1, P.m_cut2, P.m_cut3, P.m_cut4))
        fm = -(-(f + m) // 2)
        tier = 0
        if f_w >= 1:
            tier = (
                4
                if m_w >= P.tier_vip
                else 3
                if m_w >= P.tier_major
                else (2 if m_w >= P.tier_normal else 1)
            )
        level = state.get("complaint", 0.0) * 2.0 ** (
            -max(clock - state.get("complaint_ts", clock), 0) / (P.complaint_halflife_days * DAY)
        )
        risk = min(max(1.0 - p_alive + P.complaint_weight * level, 0.0), 1.0)
        gap = max((last - first) / x if x else P.mean_gap_days * DAY, DAY)
        if _month(clock) - _month(last) >= P.lost_months:
            stage = "lost"
        elif f_w < 1:
            stage = "lapsed"
        elif elapsed > P.at_risk_ratio * gap or (x >= 1 and p_alive < P.at_risk_p_alive):
            stage = "at_risk"
        else:
            stage = "new" if x == 0 else "active"
        out.update(
            frequency=x,
            recency=t_x,
            T=big_t,
            monetary_value=(state["gross"] - state["first_amt"] - state.get("refund", 0)) / 100 / x
            if x
            else 0.0,
            r_score=r,
            f_score=f,
            m_score=m,
            rfm_segment=self.rfm[r - 1][fm - 1],
            value_tier=tier,
            p_alive=p_alive,
            churn_risk=risk,
            lifecycle=stage,
        )
        return out


def build_app(settings: Any) -> Any:
    """The naive Faust app for ``settings``."""

    base = faust_baseline(settings)
    app, counters, kinds = base.app, base.counters, base.kinds
    bundle = load_model(settings.params_file, window_months=settings.effective_window_months)
    scorer = NaiveScorer(bundle.scoring, bundle.rfm_map)
    redis = aioredis.Redis.from_url(settings.redis_address)
    scores_topic = app.topic(settings.topic_scores, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(settings.topic_segment_change, key_type=bytes, value_type=bytes)
    watermark = 0
    prefix = f"{settings.redis_key_prefix}:naive:"

    @app.agent(base.source)  # type: ignore[untyped-decorator]
    async def naive(stream: Any) -> None:
        nonlocal watermark
        async for event in stream.events():
            counters.batches_started += 1
            kind = kinds.get(event.message.topic, "unknown")
            counters.done(1, 0)
            try:
                body = json.loads(event.value)
                customer = str(body["customer_id"])
                ts = parse_ts(body["ts"])
                cents = amount_to_cents(body["amount"]) if kind == "purchase" else 0
                severity = parse_severity(body["severity"]) if kind == "complaint" else 0
            except Exception:  # a first version just drops what it cannot read
                counters.batches_done += 1
                continue
            watermark = max(watermark, ts)
            key = prefix + customer
            raw = await redis.get(key)
            state = json.loads(raw) if raw else {}
            before = (state.get("seg"), state.get("tier"))
            scorer.apply(state, kind, ts, cents, severity)
            scores = scorer.score(state, watermark)
            state["seg"], state["tier"] = scores["rfm_segment"], scores["value_tier"]
            await redis.set(key, json.dumps(state))
            counters.done(0, 1)
            await scores_topic.send(
                key=customer.encode(),
                value=json.dumps({"customer_id": customer, "as_of": watermark, **scores}).encode(),
            )
            if before != (state["seg"], state["tier"]):
                alert = {
                    "customer_id": customer,
                    "event_id": body.get("event_id"),
                    "event_ts": ts,
                    "from": {"rfm": before[0], "tier": before[1]},
                    "to": {"rfm": state["seg"], "tier": state["tier"]},
                    "emitted_at": time.time(),
                }
                await alerts_topic.send(key=customer.encode(), value=json.dumps(alert).encode())
                counters.alerts += 1
            counters.batches_done += 1

    return app


def main() -> None:
    run_faust_worker(build_app)


if __name__ == "__main__":
    main()
