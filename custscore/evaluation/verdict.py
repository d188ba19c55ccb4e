"""The verdict paragraph and the headline table, derived from ``metrics.json`` by code.

Nothing here is hand-written about a particular data set: every name and number comes from
the document (:func:`custscore.evaluation.metrics.metrics_document`), so the verdict changes
when the figures do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["best_by", "headline_table", "num", "pct", "verdict"]

Doc = Mapping[str, Any]


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage, "30.0 %"; "n/a" when undefined."""
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def num(value: float | None, fmt: str = "{:.3f}") -> str:
    """``value`` formatted; "n/a" when undefined."""
    return "n/a" if value is None else fmt.format(value)


def best_by(frameworks: Sequence[Doc], key: str, group: str | None = None) -> Doc | None:
    """The framework with the largest ``key`` (optionally of one group); None when none has it."""
    pool = [f for f in frameworks if f.get(key) is not None and (group is None or
                                                                 f["group"] == group)]
    return max(pool, key=lambda f: f[key]) if pool else None


def _ranking_sentence(fws: Sequence[Doc], pop: Doc) -> str:
    best = best_by(fws, "auc")
    if best is None:
        return "No framework could be ranked."
    if best["group"] == "naive":
        other = best_by([f for f in fws if f["group"] != "naive"], "auc")
        versus = "the best engine score" if other else None
    else:
        other = best_by(fws, "auc", "naive")
        versus = "the best naive rule" if other else None
    text = f"Who buys again: {best['label']} ranked the customers best (ROC AUC {best['auc']:.3f})"
    if other is not None and versus is not None:
        text += (f", {best['auc'] - other['auc']:.3f} ahead of {versus}, {other['label']} "
                 f"({other['auc']:.3f})")
    segs = [f for f in fws if f["group"] == "segmentation" and f["auc"] is not None]
    if segs:
        top = max(segs, key=lambda f: f["auc"])
        low = min(segs, key=lambda f: f["auc"])
        text += (f"; of the segmentation frameworks, {top['label']} did best "
                 f"({top['auc']:.3f}) and {low['label']} worst ({low['auc']:.3f})")
    text += "."
    below = [f for f in fws if f["auc"] is not None and f["auc"] < 0.5]
    if below:
        names = ", ".join(f"{f['label']} ({f['auc']:.3f})" for f in below)
        text += f" Worse than chance (AUC below 0.5): {names}."
        once, again = pop.get("one_time_buyers", 0), pop.get("one_time_bought_again", 0)
        repeat = pop["calibration_buyers"] - once
        if (any(f["key"] == "p_alive" for f in below) and once and repeat
                and pop.get("one_time_min_p_alive") == 1.0):
            text += (f" BG/NBD gives all {once:,} one-time buyers P(alive) = 1, and only "
                     f"{pct(again / once)} of them bought again, against "
                     f"{pct((pop['holdout_buyers'] - again) / repeat)} of the repeat buyers.")
    return text


def _lift_sentence(fws: Sequence[Doc], rate: float | None) -> str:
    best = best_by(fws, "top_decile_lift")
    if best is None:
        return ""
    text = (f"Top decile: {best['label']} had the highest lift, "
            f"{best['top_decile_lift']:.2f}x ({pct(best['top_decile_response_rate'])} of its "
            f"top 10 % bought again, against {pct(rate)} of everyone)")
    naive = best_by(fws, "top_decile_lift", "naive")
    if naive is not None and naive is not best:
        text += f"; the best naive rule, {naive['label']}, reached {naive['top_decile_lift']:.2f}x"
    return text + "."


def _purchases_sentence(p: Doc) -> str:
    if p.get("bias") is None:
        return ""
    return (f"How many: BG/NBD expected {p['expected_total']:,.0f} holdout purchases against "
            f"{p['actual_total']:,.0f} actual ({p['bias'] * 100:+.1f} % in total; mean "
            f"absolute error {num(p['mae'], '{:.2f}')} purchases per customer).")


def _spend_sentence(s: Doc) -> str:
    top = s["captured"].get("20%")
    if not top or top["clv"] is None or top["past_spend"] is None:
        return ""
    diff = (top["clv"] - top["past_spend"]) * 100
    more = "more" if diff >= 0 else "less"
    return (f"How much: the top 20 % by CLV made {pct(top['clv'])} of holdout spend, "
            f"{abs(diff):.1f} points {more} than the top 20 % by past spend "
            f"({pct(top['past_spend'])}); CLV's rank correlation with holdout spend is "
            f"{num(s['rank_correlation_clv'])} (past spend: "
            f"{num(s['rank_correlation_past_spend'])}).")


def _alerts_sentence(alerts: Sequence[Doc], days: int) -> str:
    by_key = {a["key"]: a for a in alerts}
    engine, naive = by_key.get("silence"), by_key.get("naive_silence")
    if engine is None or naive is None:
        return ""
    return (f"Win-back: of the {engine['flagged']:,} customers the silence rule flagged in the "
            f"last {days} days of calibration, {pct(engine['precision'])} came back in the "
            f"holdout (the naive {naive['label'].split(': ')[-1]} rule: {pct(naive['precision'])} "
            f"of {naive['flagged']:,}), and it flagged {pct(engine['recall'])} of the "
            f"{engine['lost']:,} customers lost in the holdout (naive: {pct(naive['recall'])}).")


def verdict(doc: Doc) -> str:
    """One paragraph: which framework did best on which question, and by how much."""
    pop = doc["population"]
    period = doc["period"]
    fws = doc["frameworks"]
    parts = [
        f"Of the {pop['calibration_buyers']:,} customers who bought by "
        f"{period['calibration_last_day']}, {pop['holdout_buyers']:,} "
        f"({pct(pop['response_rate'])}) bought again by {period['holdout_last_day']}.",
        _ranking_sentence(fws, pop),
        _lift_sentence(fws, pop["response_rate"]),
        _purchases_sentence(doc["purchases"]),
        _spend_sentence(doc["spend"]),
        _alerts_sentence(doc["alerts"], period["alert_window_days"]),
    ]
    return " ".join(p for p in parts if p)


def headline_table(doc: Doc) -> list[str]:
    """Markdown lines: every framework ranked by ROC AUC on holdout purchase yes/no."""
    lines = [
        "| rank | framework | kind | ROC AUC | top-decile lift | bought again, top 10 % "
        "| holdout buyers in the top 20 % |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for f in sorted(doc["frameworks"], key=lambda f: f["rank"]):
        auc = "n/a" if f["auc"] is None else f"{f['auc']:.3f}"
        lift = "n/a" if f["top_decile_lift"] is None else f"{f['top_decile_lift']:.2f}x"
        lines.append(
            f"| {f['rank']} | {f['label']} | {f['group']} | {auc} | {lift} | "
            f"{pct(f['top_decile_response_rate'])} | {pct(f['captured_20'])} |"
        )
    return lines
