"""The report's PNG plots: one function per plot, each drawing from ``metrics.json`` only.

matplotlib is the optional extra ``custscore[report]``; nothing here is imported without it
(:func:`available` tells). Figures are drawn on the Agg canvas without pyplot (no global
state, no display), and saved without a timestamp or version in their metadata, so the same
figures give the same bytes.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["INSTALL_HINT", "available", "plot_names", "render_plots"]

INSTALL_HINT = "pip install 'custscore[report]'"
Doc = Mapping[str, Any]
_DPI = 96
_LAYOUT: Final = "tight"
_GROUP_COLOURS = {
    "segmentation": "#1f77b4",
    "rfm score": "#9467bd",
    "model": "#2ca02c",
    "naive": "#7f7f7f",
}


def available() -> bool:
    """Whether matplotlib is installed (the ``report`` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout=_LAYOUT)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _percent_axis(ax: Axes, axis: str = "both") -> None:
    from matplotlib.ticker import PercentFormatter

    if axis in ("x", "both"):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if axis in ("y", "both"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def gains(doc: Doc) -> bytes:
    """Cumulative gains: share of holdout buyers among the top x % of each ranking."""
    fws = doc["frameworks"]
    panels = (
        ("segmentation frameworks and R/F/M scores", ("segmentation", "rfm score")),
        ("model scores and naive rules", ("model", "naive")),
    )
    fig = _figure(12, 5.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (title, groups) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":", label="random (0.500)")
        chosen = sorted((f for f in fws if f["group"] in groups), key=lambda f: f["rank"])
        for i, f in enumerate(chosen):
            ax.plot(
                f["gains"]["contacted"],
                f["gains"]["captured"],
                lw=1.6,
                ls="--" if f["group"] == "naive" else "-",
                color=f"C{i % 10}",
                label=f"{f['label']} ({f['auc']:.3f})" if f["auc"] is not None else f["label"],
            )
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("customers contacted, best-ranked first")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        _percent_axis(ax)
        ax.legend(fontsize=8, loc="lower right", title="ROC AUC", title_fontsize=8)
    axes[0].set_ylabel("holdout buyers reached")
    fig.suptitle("Cumulative gains on holdout purchase yes/no", fontsize=12)
    return _png(fig)


def _bars(ax: Axes, fws: Sequence[Doc], key: str, ref: float, fmt: str, title: str) -> None:
    labels = [f["label"] for f in fws]
    values = [f[key] if f[key] is not None else 0.0 for f in fws]
    colours = [_GROUP_COLOURS.get(f["group"], "#333333") for f in fws]
    y = list(range(len(fws)))
    ax.barh(y, values, color=colours)
    ax.axvline(ref, color="black", lw=0.8, ls=":")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(0, max([*values, ref]) * 1.18)


def lift(doc: Doc) -> bytes:
    """Top-decile lift and ROC AUC of every framework, best AUC first, coloured by group."""
    from matplotlib.patches import Patch

    fws = sorted(doc["frameworks"], key=lambda f: f["rank"])
    fig = _figure(12, 0.32 * len(fws) + 1.6)
    left, right = fig.subplots(1, 2, sharey=True)
    _bars(left, fws, "top_decile_lift", 1.0, "{:.2f}x",
          "top-decile lift (response in the top 10 % / overall)")
    _bars(right, fws, "auc", 0.5, "{:.3f}", "ROC AUC (0.5 = random)")
    left.invert_yaxis()  # the axes share y: best first, once
    handles = [Patch(color=c, label=g) for g, c in _GROUP_COLOURS.items()]
    right.legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle("How well each framework ranks holdout buyers first", fontsize=12)
    return _png(fig)


def calibration(doc: Doc) -> bytes:
    """Expected (BG/NBD) vs actual holdout purchases per calibration purchase count."""
    p = doc["purchases"]
    buckets = p["buckets"]
    x = [b["frequency_cal"] for b in buckets]
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    ax.plot(x, [b["actual"] for b in buckets], marker="o", label="actual", color="C0")
    ax.plot(x, [b["expected"] for b in buckets], marker="s", ls="--", label="expected (BG/NBD)",
            color="C1")
    for b in buckets:
        ax.annotate(f"n={b['customers']:,}", (b["frequency_cal"], b["actual"]),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.set_xticks(x)
    ax.margins(y=0.12)
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("average purchases in the holdout")
    ax.set_title(
        f"Expected vs actual holdout purchases (MAE {p['mae']:.2f}, total "
        f"{p['bias'] * 100:+.1f} %)" if p["bias"] is not None
        else "Expected vs actual holdout purchases",
        fontsize=11,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def response(doc: Doc, key: str) -> bytes:
    """Holdout response rate per class of one framework, with 95 % Wilson intervals."""
    fw = next(f for f in doc["frameworks"] if f["key"] == key)
    classes = fw["classes"]
    rate = doc["population"]["response_rate"]
    fig = _figure(max(6.5, 0.75 * len(classes) + 2.5), 4.4)
    ax = fig.subplots()
    x = list(range(len(classes)))
    rates = [c["rate"] for c in classes]
    low = [c["rate"] - c["low"] for c in classes]
    high = [c["high"] - c["rate"] for c in classes]
    ax.bar(x, rates, color=_GROUP_COLOURS.get(fw["group"], "#333333"), alpha=0.85)
    ax.errorbar(x, rates, yerr=[low, high], fmt="none", ecolor="black", capsize=3, lw=1)
    for xi, c in zip(x, classes, strict=True):
        ax.text(xi, c["high"], f"{c['rate'] * 100:.0f} %\nn={c['customers']:,}", ha="center",
                va="bottom", fontsize=7)
    if rate is not None:
        ax.axhline(rate, color="black", lw=0.8, ls=":", label=f"everyone ({rate * 100:.1f} %)")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(x, [c["name"] for c in classes], rotation=30 if len(classes) > 5 else 0,
                  ha="right" if len(classes) > 5 else "center", fontsize=8)
    ax.set_ylim(0, min(1.0, max(c["high"] for c in classes) * 1.25 + 0.05))
    _percent_axis(ax, "y")
    ax.set_ylabel("bought again in the holdout")
    ax.set_title(f"Holdout response by {fw['label']}\n(classes in their fixed order; "
                 "95 % Wilson intervals)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def clv_capture(doc: Doc) -> bytes:
    """Share of holdout spend made by the top x % of customers by CLV, by past spend, and by
    holdout spend itself (the ceiling)."""
    s = doc["spend"]
    curve = s["curve"]
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    ax.plot(curve["shares"], curve["ceiling"], color="black", lw=0.8, ls=":",
            label="ceiling (ranked by holdout spend)")
    ax.plot(curve["shares"], curve["clv"], color="C2", lw=1.8,
            label=f"by CLV (rank corr. {s['rank_correlation_clv']:.3f})")
    ax.plot(curve["shares"], curve["past_spend"], color="C7", lw=1.6, ls="--",
            label=f"by past spend (rank corr. {s['rank_correlation_past_spend']:.3f})")
    for share_key, cap in s["captured"].items():
        share = float(share_key.rstrip("%")) / 100
        ax.plot([share], [cap["clv"]], marker="o", color="C2")
        ax.annotate(f"top {share_key}: {cap['clv'] * 100:.0f} %", (share, cap["clv"]),
                    textcoords="offset points", xytext=(6, -12), fontsize=8, color="C2")
    ax.set_xscale("log")
    ax.set_xlim(0.01, 1)
    ax.set_ylim(0, 1)
    _percent_axis(ax)
    ax.set_xlabel("top customers (log scale)")
    ax.set_ylabel("share of holdout spend")
    ax.set_title("Holdout spend captured by the top customers", fontsize=11)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def alerts(doc: Doc) -> bytes:
    """Precision and recall of each win-back rule, with 95 % Wilson intervals."""
    rules = doc["alerts"]
    fig = _figure(9, 4.4)
    ax = fig.subplots()
    width = 0.38
    x = list(range(len(rules)))
    for offset, key, colour, name in ((-width / 2, "precision", "C0", "precision (came back)"),
                                      (width / 2, "recall", "C3", "recall (of the lost)")):
        values = [r[key] if r[key] is not None else 0.0 for r in rules]
        err = [[max(v - (r[f"{key}_low"] or 0.0), 0.0) for v, r in zip(values, rules,
                                                                      strict=True)],
               [max((r[f"{key}_high"] or 0.0) - v, 0.0) for v, r in zip(values, rules,
                                                                      strict=True)]]
        ax.bar([i + offset for i in x], values, width, color=colour, label=name, alpha=0.85)
        ax.errorbar([i + offset for i in x], values, yerr=err, fmt="none", ecolor="black",
                    capsize=3, lw=1)
    ax.set_xticks(x, [f"{r['label'].replace(': ', ':' + chr(10))}\n({r['flagged']:,} flagged)"
                      for r in rules], fontsize=8)
    ax.set_ylim(0, 1)
    _percent_axis(ax, "y")
    ax.set_title(f"Win-back rules in the last {doc['period']['alert_window_days']} days of "
                 "calibration", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_names(doc: Doc) -> list[str]:
    """The PNG file names :func:`render_plots` writes for ``doc``, in report order."""
    names = ["gains.png", "lift.png"]
    names += [f"response_{f['key']}.png" for f in doc["frameworks"] if f.get("classes")]
    names += ["calibration.png", "clv_capture.png", "alerts.png"]
    return names


def render_plots(doc: Doc, progress: Callable[[int, int], None] | None = None) -> dict[str, bytes]:
    """Every plot of the report: file name -> PNG bytes (needs matplotlib)."""
    makers: dict[str, Callable[[], bytes]] = {
        "gains.png": lambda: gains(doc),
        "lift.png": lambda: lift(doc),
        "calibration.png": lambda: calibration(doc),
        "clv_capture.png": lambda: clv_capture(doc),
        "alerts.png": lambda: alerts(doc),
    }
    names = plot_names(doc)
    out: dict[str, bytes] = {}
    for i, name in enumerate(names):
        if name.startswith("response_"):
            key = name.removeprefix("response_").removesuffix(".png")
            out[name] = response(doc, key)
        else:
            out[name] = makers[name]()
        if progress is not None:
            progress(i + 1, len(names))
    return out
