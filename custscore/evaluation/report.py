"""``report.md`` and the self-contained ``report.html`` of ``custscore evaluate``.

Both are rendered from one list of blocks built from ``metrics.json`` (:func:`blocks`), so
they say the same things. The HTML has its CSS inline and every plot embedded as a
``data:image/png;base64`` URI: one file, no network. Its small inline script marks every
``<img>`` that failed to load with a visible caption (a ``<p class="plot-broken">`` right
after it) and, once the page has loaded, sets
``document.body.dataset.plots`` (the ``data-plots`` attribute of ``<body>``) to
``"<loaded>/<total>"``.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from custscore.evaluation.verdict import headline_table, pct, verdict
from models.backtest import ALERT_RULES, CLASS_ORDERS, FRAMEWORKS, NAIVE_DAYS

__all__ = ["Block", "blocks", "render_html", "render_markdown"]

Doc = Mapping[str, Any]


@dataclass(frozen=True)
class Block:
    """One element of the report: heading (h1-h3), paragraph (p), verdict, bullet list (ul),
    table (rows of cells; ``align`` per column, "l" or "r") or image (img: file, alt)."""

    kind: str
    text: str = ""
    items: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    align: str = ""


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows), align=align)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "n/a"
    return f"{low * 100:.1f}–{high * 100:.1f} %"


def _headline(doc: Doc) -> Block:
    lines = headline_table(doc)
    header = tuple(c.strip() for c in lines[0].strip("|").split("|"))
    rows = [tuple(c.strip() for c in line.strip("|").split("|")) for line in lines[2:]]
    return _table(header, rows, "rllrrrr")


def _class_sections(doc: Doc, plots: set[str]) -> list[Block]:
    out: list[Block] = []
    for f in doc["frameworks"]:
        if not f.get("classes"):
            continue
        out.append(Block("h3", f"{f['label']} (ROC AUC {_num(f['auc'], '{:.3f}')})"))
        rows = [
            (c["name"], f"{c['customers']:,}", f"{c['buyers']:,}", pct(c["rate"]),
             _interval(c["low"], c["high"]))
            for c in f["classes"]
        ]
        out.append(_table(("class (fixed order)", "customers", "bought again", "response rate",
                           "95 % interval"), rows, "lrrrr"))
        name = f"response_{f['key']}.png"
        if name in plots:
            out.append(Block("img", name, items=(f"Holdout response by {f['label']}",)))
    return out


def _method(doc: Doc) -> list[Block]:
    period, model, pop = doc["period"], doc["model"], doc["population"]
    seconds = doc["runtime"]["seconds"]
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")
    bg = ", ".join(f"{k} {v:.6g}" for k, v in model["bgnbd"].items())
    gg = ", ".join(f"{k} {v:.6g}" for k, v in model["gamma_gamma"].items())
    orders = [
        f"{fw.label}: " + " > ".join(c for c in CLASS_ORDERS[fw.key] if c != "none")
        for fw in FRAMEWORKS
        if fw.classes
    ]
    return [
        Block("h2", "Method"),
        _table(
            ("", ""),
            [
                ("events", f"`{doc['input']['events']}`: {doc['input']['rows_read']:,} rows "
                 f"({doc['input']['bad_rows']:,} invalid), {doc['input']['customers']:,} "
                 "customers"),
                ("calibration", f"{period['calibration_first_day']} to "
                 f"{period['calibration_last_day']} (whole UTC days; "
                 f"{doc['input']['events_calibration']:,} events); scored at "
                 f"{period['scored_at']}"),
                ("holdout", f"{period['holdout_first_day']} to {period['holdout_last_day']}, "
                 f"{period['holdout_days']:,} days ({doc['input']['events_holdout']:,} events)"),
                ("judged", f"{pop['calibration_buyers']:,} calibration buyers (customers with a "
                 f"purchase by the calibration end); {pop['new_in_holdout']:,} customers whose "
                 "first purchase is in the holdout are not judged"),
                ("model", f"{model['model_version']}, {model['source']}; time unit "
                 f"{model['time_unit']}, trailing window {model['window_months']} months"),
                ("BG/NBD", bg),
                ("Gamma-Gamma", gg),
            ],
            "ll",
        ),
        Block("p", "Every calibration buyer is scored at the calibration end with the code "
              "`custscore score` uses (fold, then exact population ranking); the win-back "
              "rules run as in the worker, each customer evaluated at its own event and due "
              "times from an empty state. The holdout only provides the outcomes: bought again "
              "(yes/no), purchase days and spend."),
        Block("h3", "Class orders"),
        Block("p", "A categorical framework ranks customers by a fixed order of its classes, "
              "most likely to buy again first. The orders are written down in advance "
              "(`models/backtest.py`, `CLASS_ORDERS`), never learned from the holdout, so a "
              "class that did better than the order says shows up in the response tables as "
              "an inversion:"),
        Block("ul", items=tuple(orders)),
        Block("p", "Why these orders: the RFM segments follow the segment list's own "
              "best-to-worst order, except that Can't Lose Them (R 1-2, FM 5) comes before "
              "At Risk (R 1-2, FM 3-4), the same recency with more frequency and spend; tiers "
              "and A/B/C/D go by trailing spend; quadrants by frequency first, then spend "
              "(past purchase frequency predicts purchasing more than basket size); lifecycle "
              "stages by the life cycle: growth and maturity (active, won back, new), then "
              "decline (at risk), then termination (lapsed, lost). `none` (not classified) "
              "comes last. Continuous scores rank by their value, higher first, except churn "
              "risk and days since the last purchase (lower first)."),
        Block("h3", "Definitions"),
        Block("ul", items=(
            "ROC AUC: the probability that a random holdout buyer ranks above a random "
            "non-buyer, ties counting one half (0.5 = random, 1 = perfect).",
            "Top-decile lift: the response rate of the top 10 % of the ranking divided by "
            "everyone's; customers tied at the cut count in proportion. Gains: the share of "
            "holdout buyers among the top x %.",
            "Response rate of a class: the share of its customers who bought in the holdout, "
            "with a 95 % Wilson score interval.",
            "Expected purchases: BG/NBD's conditional expectation over the holdout length, "
            "from each customer's x, t_x and T at the calibration end; buckets by calibration "
            "repeat purchases 0-6, as lifetimes' "
            "`plot_calibration_purchases_vs_holdout_purchases`. MAE: mean absolute error per "
            "customer; bias: (expected total - actual total) / actual total (positive = "
            "over-prediction).",
            "Spend capture: the share of holdout spend made by the top 1/5/20 % of customers "
            "ranked by CLV, or by calibration spend (net of refunds); the ceiling ranks by "
            "holdout spend itself. Rank correlation: Spearman.",
            f"Alert rules: flagged = a rule fired in the last {period['alert_window_days']} "
            "days of calibration (after "
            f"{period['alert_window_start']}). Precision = the share of flagged customers who "
            "came back (bought in the holdout): how many on the list could still be won. "
            "Recall = the share of the holdout's lost customers (calibration buyers with no "
            "holdout purchase) the rule flagged: how many of those who left it warned about. "
            "Both with 95 % Wilson intervals.",
            *(f"{r.label}: {r.definition}." for r in ALERT_RULES),
            f"Naive baselines: bought in the last {NAIVE_DAYS} days (a yes/no ranking), days "
            f"since the last purchase, and the fixed {NAIVE_DAYS}-day silence rule.",
        )),
        Block("h3", "Runtime"),
        Block("p", f"This run took {seconds.get('total', 0.0):.1f} s on "
              f"{doc['runtime']['cpus']} CPU(s): {steps}. The numba kernels come from "
              "numba's on-disk cache; the first run after installing compiles them once, "
              "which takes longer."),
    ]


def blocks(doc: Doc, plots: Sequence[str]) -> list[Block]:
    """The report as blocks; ``plots`` are the PNG names that exist."""
    have = set(plots)
    period, pop = doc["period"], doc["population"]
    p, s = doc["purchases"], doc["spend"]
    out: list[Block] = [
        Block("h1", "Which framework predicts response best?"),
        Block("p", f"Holdout backtest of `{doc['input']['events']}`: calibration "
              f"{period['calibration_first_day']} to {period['calibration_last_day']}, holdout "
              f"{period['holdout_first_day']} to {period['holdout_last_day']}; model "
              f"{doc['model']['model_version']}, {doc['model']['source']}. Written by "
              f"`{doc['command']}`."),
        Block("verdict", doc.get("verdict") or verdict(doc)),
        Block("h2", "Ranking who buys again"),
        Block("p", f"Each framework ranks the {pop['calibration_buyers']:,} calibration buyers; "
              f"{pop['holdout_buyers']:,} of them ({pct(pop['response_rate'])}) bought again "
              "in the holdout. Categorical frameworks rank by their fixed class order (see "
              "Method)."),
        _headline(doc),
    ]
    out += [Block("img", n, items=(alt,)) for n, alt in (
        ("gains.png", "Cumulative gains of every framework"),
        ("lift.png", "Top-decile lift and ROC AUC of every framework"),
    ) if n in have]
    out += [Block("h2", "Response rate by segment"), *_class_sections(doc, have)]
    out += [
        Block("h2", "Purchase counts: expected vs actual"),
        Block("p", f"BG/NBD expected purchases over the holdout ({p['duration']:g} "
              f"{p['time_unit']}) against the actual purchase days, by the number of repeat "
              f"purchases in the calibration period. Per customer: MAE "
              f"{_num(p['mae'], '{:.3f}')}, RMSE {_num(p['rmse'], '{:.3f}')}; in total "
              f"{p['expected_total']:,.0f} expected against {p['actual_total']:,.0f} actual, a "
              f"bias of {_num(None if p['bias'] is None else p['bias'] * 100, '{:+.1f}')} %."),
        _table(("calibration repeat purchases", "customers", "expected", "actual"),
               [(str(b["frequency_cal"]), f"{b['customers']:,}", _num(b["expected"], "{:.3f}"),
                 _num(b["actual"], "{:.3f}")) for b in p["buckets"]], "rrrr"),
    ]
    if "calibration.png" in have:
        out.append(Block("img", "calibration.png", items=("Expected vs actual purchases",)))
    out += [
        Block("h2", "Spend: CLV vs past spend"),
        Block("p", f"Holdout spend {s['holdout_spend']:,.2f}. Rank correlation with holdout "
              f"spend: CLV {_num(s['rank_correlation_clv'], '{:.3f}')}, past spend "
              f"{_num(s['rank_correlation_past_spend'], '{:.3f}')}."),
        _table(("top customers", "by CLV", "by past spend", "ceiling"),
               [(k, pct(v["clv"]), pct(v["past_spend"]), pct(v["ceiling"]))
                for k, v in s["captured"].items()], "rrrr"),
    ]
    if "clv_capture.png" in have:
        out.append(Block("img", "clv_capture.png", items=("Holdout spend captured",)))
    out += [
        Block("h2", "Win-back rules"),
        Block("p", f"Customers flagged in the last {period['alert_window_days']} days of "
              f"calibration; {doc['alerts'][0]['lost']:,} calibration buyers were lost in the "
              "holdout (no purchase)."),
        _table(("rule", "flagged", "came back (precision)", "95 % interval",
                "lost customers flagged (recall)", "95 % interval"),
               [(a["label"], f"{a['flagged']:,}", f"{a['came_back']:,} ({pct(a['precision'])})",
                 _interval(a["precision_low"], a["precision_high"]),
                 f"{a['lost_flagged']:,} ({pct(a['recall'])})",
                 _interval(a["recall_low"], a["recall_high"])) for a in doc["alerts"]],
               "lrrrrr"),
    ]
    if "alerts.png" in have:
        out.append(Block("img", "alerts.png", items=("Precision and recall of the rules",)))
    if not have:
        out.append(Block("p", "No plots: matplotlib is not installed (pip install "
                         "'custscore[report]')."))
    return out + _method(doc)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: Doc, plots: Sequence[str], image_dir: str = "") -> str:
    """The report as Markdown; images link to ``image_dir``/name (relative)."""
    lines: list[str] = []
    for b in blocks(doc, plots):
        if b.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "verdict":
            lines += ["**Verdict.** " + b.text, ""]
        elif b.kind == "ul":
            lines += [f"- {item}" for item in b.items] + [""]
        elif b.kind == "table":
            lines.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else "---" for a in b.align) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            lines.append("")
        elif b.kind == "img":
            src = str(PurePosixPath(image_dir) / b.text) if image_dir else b.text
            lines += [f"![{b.items[0]}]({src})", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2733;
max-width:1180px;margin:2rem auto;padding:0 1.2rem;line-height:1.5;background:#fbfbfd}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{margin-top:2.4rem;border-bottom:2px solid #dde3ea;
padding-bottom:.2rem}h3{margin-top:1.6rem}
.verdict{background:#eef5ff;border-left:5px solid #1f77b4;padding:.9rem 1.1rem;
border-radius:4px;font-size:1.02rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem;background:#fff}
th,td{padding:.3rem .7rem;border-bottom:1px solid #e4e8ee;vertical-align:top}
th{background:#f0f3f7;text-align:left}td.r,th.r{text-align:right;
font-variant-numeric:tabular-nums}tbody tr:nth-child(even){background:#f8fafc}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #e4e8ee;background:#fff}
figcaption{font-size:.85rem;color:#5b6775}code{background:#eef1f5;padding:0 .25rem;
border-radius:3px;font-size:.88em}
img.img-failed{min-height:3rem;min-width:12rem;border:2px dashed #c0392b}
.plot-broken{color:#c0392b;font-weight:600}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { loaded += 1; return; }
    img.classList.add("img-failed");
    var note = document.createElement("p");
    note.className = "plot-broken";
    note.textContent = "plot failed to load: " + (img.getAttribute("alt") || "image");
    img.insertAdjacentElement("afterend", note);
  });
  document.body.dataset.plots = loaded + "/" + images.length;
});
"""


def _inline(text: str) -> str:
    """Escaped HTML of a text with `code` spans."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


def render_html(doc: Doc, pngs: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page, the PNGs embedded as data URIs."""
    body: list[str] = []
    for b in blocks(doc, list(pngs)):
        if b.kind in ("h1", "h2", "h3"):
            body.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "verdict":
            body.append(f'<p class="verdict"><strong>Verdict.</strong> {_inline(b.text)}</p>')
        elif b.kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            cls = [' class="r"' if a == "r" else "" for a in b.align]
            head = "".join(f"<th{c}>{_inline(h)}</th>" for c, h in zip(cls, b.header,
                                                                      strict=True))
            rows = "".join(
                "<tr>" + "".join(f"<td{c}>{_inline(v)}</td>" for c, v in zip(cls, row,
                                                                           strict=True))
                + "</tr>"
                for row in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(pngs[b.text]).decode("ascii")
            alt = html.escape(b.items[0], quote=True)
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}" '
                f'data-file="{html.escape(b.text, quote=True)}">'
                f"<figcaption>{html.escape(b.items[0])} ({html.escape(b.text)})</figcaption>"
                "</figure>"
            )
    title = "custscore evaluate: which framework predicts response best?"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
