"""The report of ``custscore evaluate`` as rendered from ``metrics.json``: the committed
docs/evaluation.md and README headline table are current, and the verdict follows the
figures (it is derived by code, never written by hand)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from custscore.evaluation.readme import BEGIN, END, render_section, update_document
from custscore.evaluation.report import render_html, render_markdown
from custscore.evaluation.verdict import headline_table, verdict

ROOT = Path(__file__).resolve().parents[2]
METRICS = ROOT / "docs" / "evaluation" / "metrics.json"


@pytest.fixture()
def doc() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(METRICS.read_text(encoding="utf-8"))
    return data


def framework(doc: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in doc["frameworks"] if f["key"] == key)
    return found


def test_docs_evaluation_md_is_the_report_of_metrics_json(doc: dict[str, Any]) -> None:
    """`make evaluate` wrote docs/evaluation.md from docs/evaluation/metrics.json."""
    text = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    assert text == render_markdown(doc, doc["plots"], "evaluation")
    for name in doc["plots"]:
        assert (ROOT / "docs" / "evaluation" / name).is_file(), name
    assert doc["verdict"] == verdict({k: v for k, v in doc.items() if k != "verdict"})
    assert doc["runtime"]["seconds"]["total"] < 60, "the CDNOW report took a minute or more"


def test_readme_headline_table_is_current(doc: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1
    assert update_document(readme, doc) == readme, (
        "README.md is stale: python -m custscore.evaluation.readme docs/evaluation/metrics.json "
        "README.md"
    )
    assert render_section(doc) in readme


def test_the_headline_table_ranks_by_auc(doc: dict[str, Any]) -> None:
    rows = headline_table(doc)[2:]
    aucs = [float(r.split("|")[4]) for r in rows]
    assert aucs == sorted(aucs, reverse=True)
    assert len(rows) == len(doc["frameworks"])


def test_the_verdict_follows_the_figures(doc: dict[str, Any]) -> None:
    changed = copy.deepcopy(doc)
    framework(changed, "value_tier")["auc"] = 0.99
    text = verdict(changed)
    assert "value tier ranked the customers best (ROC AUC 0.990)" in text
    assert "of the segmentation frameworks, value tier did best (0.990)" in text

    naive_best = copy.deepcopy(doc)
    framework(naive_best, "bought_90d")["auc"] = 0.995
    assert ("bought in the last 90 days ranked the customers best (ROC AUC 0.995), "
            in verdict(naive_best))
    assert "ahead of the best engine score" in verdict(naive_best)

    no_worse = copy.deepcopy(doc)
    for key in ("p_alive", "churn_risk"):
        framework(no_worse, key)["auc"] = 0.6
    assert "Worse than chance" not in verdict(no_worse)
    assert "one-time buyers P(alive) = 1" not in verdict(no_worse)

    spend = copy.deepcopy(doc)
    spend["spend"]["captured"]["20%"].update(clv=0.5, past_spend=0.6)
    assert "10.0 points less than the top 20 % by past spend" in verdict(spend)


def test_undefined_figures_read_n_a(doc: dict[str, Any]) -> None:
    blank = copy.deepcopy(doc)
    blank["spend"]["rank_correlation_clv"] = None
    blank["purchases"]["mae"] = None
    for a in blank["alerts"]:
        a.update(precision=None, precision_low=None, precision_high=None)
    text = verdict(blank)
    assert "rank correlation with holdout spend is n/a" in text
    assert "n/a came back" in text
    render_markdown(blank, [])
    render_html(blank, {})


def test_the_html_marks_what_did_not_load(doc: dict[str, Any]) -> None:
    page = render_html(doc, {name: b"\x89PNG not really" for name in doc["plots"]})
    assert page.count('<img src="data:image/png;base64,') == len(doc["plots"])
    assert 'note.className = "plot-broken"' in page
    assert "document.body.dataset.plots" in page
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
